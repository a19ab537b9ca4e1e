import json

import pytest
from django.core.cache import cache
from django.db import connections

from demands.pipeline.parse import IncomingMessage
from demands.pipeline.persist import forget_session_state
from demands.outbound.ingest import WatchedViews
from demands.pipeline.rules import RuleBook
from demands.sla.policies import PolicyBook

REFERENCE = {
    "id": "123456",
    "type": "user_feedback",
    "content": "页面加载太慢,请优化。",
    "timestamp": "2025-04-05T10:30:00Z",
    "source": "web_app",
}


@pytest.fixture(autouse=True, scope="session")
def _no_persistent_connections():
    # Threads in tests (consume loops, sync_to_async pools) must not keep connections open past
    # the test, or PostgreSQL refuses to drop the test database. Every thread's connection is
    # built from this one settings dict, so this reaches them all.
    connections.settings["default"]["CONN_MAX_AGE"] = 0


@pytest.fixture(autouse=True)
def _every_message_list(settings):
    # The list's default view is the grouped one once demands repeat (DEMANDS_DEFAULT_VIEW "auto"),
    # and most tests repeat REFERENCE; tests of the grouped default (test_groups.py) set "auto".
    settings.DEMANDS_DEFAULT_VIEW = "all"


@pytest.fixture(autouse=True)
def _default_language():
    # A test that renders for a Chinese reader (or a tick run in a thread that served one) must not
    # leave this thread's language switched for the tests after it.
    from django.conf import settings
    from django.utils import translation

    translation.activate(settings.LANGUAGE_CODE)
    yield
    translation.activate(settings.LANGUAGE_CODE)


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()  # facets are cached between requests
    RuleBook.invalidate_all()  # compiled rules must not outlive the test that created them
    WatchedViews.invalidate()  # nor saved views that notify
    forget_session_state()  # nor group ids from a flushed database, nor staging tables rolled back
    PolicyBook.invalidate_all()  # nor SLA policies a rolled-back test created (demands would point at them)
    yield
    cache.clear()
    RuleBook.invalidate_all()
    WatchedViews.invalidate()
    forget_session_state()
    PolicyBook.invalidate_all()


@pytest.fixture
def reference_message() -> dict:
    return dict(REFERENCE)


def record(value, *, offset: int = 0, partition: int = 0, topic: str = "demand-topic", key: bytes | None = None) -> IncomingMessage:
    """A Kafka record as the consume loop hands it to ingest; dicts are JSON-encoded like sources do."""
    if isinstance(value, dict):
        value = json.dumps(value, ensure_ascii=False).encode()
    return IncomingMessage(topic=topic, partition=partition, offset=offset, value=value, key=key)


def role(name: str):
    """The role groups the migration creates (recreated here: transactional tests flush them)."""
    from django.contrib.auth.models import Group, Permission

    group, _ = Group.objects.get_or_create(name=name)
    if name == "Triagers":
        group.permissions.add(*Permission.objects.filter(
            codename__in=["triage_demand", "change_rejectedmessage"], content_type__app_label="demands"
        ))
    return group


@pytest.fixture
def staff_user(django_user_model):
    """A triager: staff who may change demands."""
    user = django_user_model.objects.create_user(username="triager", password="pw-triager-123", is_staff=True)
    user.groups.add(role("Triagers"))
    return user


@pytest.fixture
def viewer_user(django_user_model):
    """Staff who may only look."""
    user = django_user_model.objects.create_user(username="viewer", password="pw-viewer-123", is_staff=True)
    user.groups.add(role("Viewers"))
    return user


@pytest.fixture
def plain_user(django_user_model):
    return django_user_model.objects.create_user(username="customer", password="pw-customer-123", is_staff=False)


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client
