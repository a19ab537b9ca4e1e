"""URLs of the configuration pages (/config/…), namespace `demands:config`."""

from django.urls import path

from . import views

app_name = "config"

urlpatterns = [
    path("", views.index, name="index"),
    path("rules/", views.rule_list, name="rules"),
    path("rules/new/", views.rule_edit, name="rule-new"),
    path("rules/<int:pk>/", views.rule_edit, name="rule"),
    path("rules/<int:pk>/enabled/", views.rule_toggle, name="rule-toggle"),
    path("rules/<int:pk>/move/", views.rule_move, name="rule-move"),
    path("teams/", views.team_list, name="teams"),
    path("teams/<int:pk>/", views.team_detail, name="team"),
    path("api-keys/", views.api_key_list, name="api-keys"),
    path("api-keys/<int:pk>/revoke/", views.api_key_revoke, name="api-key-revoke"),
]
