"""URLs of the configuration pages (/config/…)."""

from django.urls import path

urlpatterns = []
