from django.urls import include, path

from . import views

app_name = "demands"

urlpatterns = [
    path("demands/", views.demand_list, name="list"),
    path("demands/<int:pk>/", views.demand_detail, name="detail"),
    path("rejected/", views.rejected_list, name="rejected"),
    path("api/demands/", views.api_demand_list, name="api-list"),
    path("api/demands/<int:pk>/", views.api_demand_detail, name="api-detail"),
    path("", include("demands.monitoring.urls")),  # monitoring: /monitoring/…, /metrics, /healthz, /readyz
]
