from django.urls import path

from . import ingest_views, views

app_name = "demands"

urlpatterns = [
    path("demands/", views.demand_list, name="list"),
    path("demands/<int:pk>/", views.demand_detail, name="detail"),
    path("rejected/", ingest_views.rejected_list, name="rejected"),
    path("api/demands/", views.api_demand_list, name="api-list"),
    path("api/demands/<int:pk>/", views.api_demand_detail, name="api-detail"),
    # HTTP ingest and the dead-letter work queue (issue 5).
    path("api/ingest/", ingest_views.api_ingest, name="api-ingest"),
    path("api/ingest", ingest_views.api_ingest),  # no redirect: a redirected POST loses its body
    path("rejected/<int:pk>/", ingest_views.rejected_detail, name="rejected-detail"),
    path("rejected/<int:pk>/replay/", ingest_views.rejected_replay, name="rejected-replay"),
    path("rejected/<int:pk>/discard/", ingest_views.rejected_discard, name="rejected-discard"),
]
