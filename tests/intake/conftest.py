"""Fixtures for HTTP ingest and the DLQ work queue: keys, and Kafka delivery recorded instead of sent."""

import pytest
from django.contrib.auth.models import Permission

from demands.intake import http as http_ingest, keys
from demands.kafka import Delivered, DeliveryFailed


class RecordingDelivery:
    """Stands in for http_ingest.deliver: remembers what would have been produced, or fails."""

    def __init__(self):
        self.records = []  # (topic, key, value, headers)
        self.fail_with: str | None = None

    def __call__(self, records, **kwargs):
        if self.fail_with:
            raise DeliveryFailed(self.fail_with)
        start = len(self.records)
        self.records.extend(records)
        return [Delivered(topic, 0, start + index) for index, (topic, _key, _value, _headers) in enumerate(records)]

    @property
    def values(self):
        return [value for _topic, _key, value, _headers in self.records]


@pytest.fixture
def delivery(monkeypatch):
    recording = RecordingDelivery()
    monkeypatch.setattr(http_ingest, "deliver", recording)
    from demands.intake import dlq

    monkeypatch.setattr(dlq, "deliver", recording)
    return recording


@pytest.fixture
def issued_key(db):
    """(SourceApiKey, plain key) for source web_app."""
    return keys.api_key_create(name="shop widget", source="web_app")


@pytest.fixture
def dlq_client(client, staff_user):
    staff_user.user_permissions.add(Permission.objects.get(codename="change_rejectedmessage"))
    client.force_login(staff_user)
    return client
