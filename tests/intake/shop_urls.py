"""URLs for the widget test: the project's, plus a stand-in customer page that includes the widget."""

from django.http import HttpResponse
from django.urls import include, path
from django.utils.html import format_html


def shop(request):
    # Served by the live server, so the browser sees a real loopback page, like a customer's site.
    return HttpResponse(format_html(
        "<!doctype html><html><head><meta charset='utf-8'><title>Shop</title></head><body><h1>Shop</h1>"
        "<script src='{}/static/widget/feedback.js' data-endpoint='{}/api/ingest/' data-key='{}' "
        "data-source='web_app' data-lang='{}'></script></body></html>",
        request.GET["endpoint"], request.GET["endpoint"], request.GET["key"], request.GET["lang"],
    ))


urlpatterns = [path("shop/", shop), path("", include("unified_msg_site.urls"))]
