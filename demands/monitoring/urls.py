from django.urls import path

from . import rule_views, views

app_name = "monitoring"

urlpatterns = [
    path("monitoring/", views.monitoring_page, name="index"),
    path("monitoring/series.json", views.series_json, name="series"),
    path("monitoring/summary/", views.summary_fragment, name="summary"),
    path("monitoring/alerts/", views.alert_list, name="alerts"),
    path("monitoring/alerts/<int:pk>/", views.alert_detail, name="alert"),
    path("monitoring/alerts/<int:pk>/acknowledge/", views.alert_acknowledge_view, name="alert-acknowledge"),
    path("monitoring/alerts/<int:pk>/silence/", views.alert_silence_view, name="alert-silence"),
    path("monitoring/rules/", rule_views.rule_list, name="rules"),
    path("monitoring/rules/new/", rule_views.rule_edit, name="rule-new"),
    path("monitoring/rules/<int:pk>/", rule_views.rule_edit, name="rule"),
    path("monitoring/rules/<int:pk>/toggle/", rule_views.rule_toggle, name="rule-toggle"),
    path("monitoring/silences/<int:pk>/expire/", views.silence_expire_view, name="silence-expire"),
    path("metrics", views.metrics_view, name="metrics"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
]
