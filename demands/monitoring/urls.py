from django.urls import path

from . import views

app_name = "monitoring"

urlpatterns = [
    path("monitoring/", views.monitoring_page, name="index"),
    path("monitoring/series.json", views.series_json, name="series"),
    path("monitoring/summary/", views.summary_fragment, name="summary"),
    path("monitoring/alerts/", views.alert_list, name="alerts"),
    path("monitoring/alerts/<int:pk>/", views.alert_detail, name="alert"),
    path("monitoring/alerts/<int:pk>/acknowledge/", views.alert_acknowledge_view, name="alert-acknowledge"),
    path("monitoring/alerts/<int:pk>/silence/", views.alert_silence_view, name="alert-silence"),
    path("monitoring/silences/<int:pk>/expire/", views.silence_expire_view, name="silence-expire"),
    path("metrics", views.metrics_view, name="metrics"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
]
