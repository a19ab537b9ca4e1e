"""Intake's pages and endpoint, included by demands/urls.py into the `demands` namespace."""

from django.urls import path

from . import views

urlpatterns = [
    path("api/ingest/", views.api_ingest, name="api-ingest"),
    path("api/ingest", views.api_ingest),  # no redirect: a redirected POST loses its body
    path("rejected/", views.rejected_list, name="rejected"),
    path("rejected/<int:pk>/", views.rejected_detail, name="rejected-detail"),
    path("rejected/<int:pk>/replay/", views.rejected_replay, name="rejected-replay"),
    path("rejected/<int:pk>/discard/", views.rejected_discard, name="rejected-discard"),
]
