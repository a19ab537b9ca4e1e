"""Routes of outbound notifications (included by demands.urls, so names are demands:outbound-…)."""

from django.urls import path

from . import views

urlpatterns = [
    path("act/<str:token>/", views.action, name="outbound-action"),
    path("demands/<int:pk>/follow/", views.follow, name="follow"),
    path("notifications/settings/", views.settings_page, name="outbound-settings"),
    path("notifications/deliveries/", views.delivery_log, name="outbound-deliveries"),
]
