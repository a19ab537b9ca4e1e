from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView
from django.views.i18n import JavaScriptCatalog

from demands.access import StaffAuthenticationForm

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="demands:list", permanent=False)),
    path("login/", auth_views.LoginView.as_view(authentication_form=StaffAuthenticationForm), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    # The scripts' strings (locale/*/LC_MESSAGES/djangojs.po), in the request's language.
    path("jsi18n/", JavaScriptCatalog.as_view(), name="javascript-catalog"),
    path("", include("demands.urls")),
]
