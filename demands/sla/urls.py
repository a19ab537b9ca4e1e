"""SLA policy pages, included by demands/urls.py into the `demands` namespace."""

from django.urls import path

from . import views

urlpatterns = [
    path("sla/", views.policy_list, name="sla-policies"),
    path("sla/new/", views.policy_edit, name="sla-policy-new"),
    path("sla/<int:pk>/", views.policy_edit, name="sla-policy-edit"),
]
