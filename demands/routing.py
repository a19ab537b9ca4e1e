from django.urls import path

from .consumers import DemandStreamConsumer
from .monitoring.consumers import MonitoringConsumer

websocket_urlpatterns = [
    path("ws/demands/", DemandStreamConsumer.as_asgi()),
    path("ws/demands/<int:pk>/", DemandStreamConsumer.as_asgi()),
    path("ws/notifications/", DemandStreamConsumer.as_asgi()),
    path("ws/monitoring/", MonitoringConsumer.as_asgi()),
]
