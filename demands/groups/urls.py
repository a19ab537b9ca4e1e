"""Group triage's URLs, included by demands/urls.py."""

from django.urls import path

from . import api, views

urlpatterns = [
    path("api/groups/", api.group_list, name="api-groups"),
    path("groups/bulk/", views.group_bulk, name="group-bulk"),
    path("groups/<int:pk>/", views.group_detail, name="group-detail"),
    path("groups/<int:pk>/triage/", views.group_triage, name="group-triage"),
    path("groups/<int:pk>/unmerge/", views.group_unmerge, name="group-unmerge"),
    path("demands/count/", views.result_count, name="result-count"),  # the list's count, fetched after the page
]
