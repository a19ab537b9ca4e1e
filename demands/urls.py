from django.urls import include, path

from . import api, views
from .archive import views as archive_views

app_name = "demands"

urlpatterns = [
    path("demands/", views.demand_list, name="list"),
    path("demands/export.csv", views.demand_export, name="export"),
    path("demands/bulk/", views.demand_bulk, name="bulk"),
    path("demands/<int:pk>/", views.demand_detail, name="detail"),
    path("demands/<int:pk>/status/", views.demand_status, name="status"),
    path("demands/<int:pk>/priority/", views.demand_priority, name="priority"),
    path("demands/<int:pk>/assign/", views.demand_assign, name="assign"),
    path("demands/<int:pk>/comment/", views.demand_comment, name="comment"),
    path("demands/<int:pk>/duplicate/", views.demand_duplicate, name="duplicate"),
    path("demands/<int:pk>/archive/", archive_views.demand_archive, name="archive"),
    path("demands/<int:pk>/restore/", archive_views.demand_restore, name="restore"),
    path("views/", views.saved_view_create, name="saved-view-create"),
    path("views/<int:pk>/delete/", views.saved_view_delete, name="saved-view-delete"),
    path("groups/", views.demand_list, {"grouped": True}, name="groups"),  # the list, grouped
    path("", include("demands.groups.urls")),  # groups: the grouped list's actions, a group's page, merge
    path("notifications/", views.notification_list, name="notifications"),
    path("notifications/read/", views.notification_read, name="notifications-read"),
    path("preferences/", views.preferences, name="preferences"),
    path("api/demands/", api.demand_list, name="api-list"),
    path("api/demands/<int:pk>/", api.demand_detail, name="api-detail"),
    path("api/demands/<int:pk>/history/", api.demand_history, name="api-history"),
    path("api/demands/<int:pk>/comments/", api.demand_comment, name="api-comment"),
    path("config/", include("demands.config.urls")),  # rules, teams, API keys in the product
    path("", include("demands.monitoring.urls")),  # monitoring: /monitoring/…, /metrics, /healthz, /readyz
    path("", include("demands.intake.urls")),  # HTTP ingest (/api/ingest/) and the dead-letter work queue (/rejected/)
    path("", include("demands.triage.urls")),  # one-step triage: every field and a comment in one post
    path("", include("demands.outbound.urls")),  # one-click links (/act/…), Follow, notification settings and delivery log
    path("", include("demands.sla.urls")),  # SLA policies (/sla/…)
]
