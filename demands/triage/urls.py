"""One-step triage's endpoint, included by demands/urls.py into the `demands` namespace."""

from django.urls import path

from . import views

urlpatterns = [
    path("demands/<int:pk>/triage/", views.demand_triage, name="triage"),
]
