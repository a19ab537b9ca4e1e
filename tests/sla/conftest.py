"""SLA fixtures: a controllable clock, policies, and demands ingested the way the consumer stores them."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from demands.pipeline.persist import persist_batch
from demands.sla.models import EscalationStep, SlaPolicy
from demands.sla.policies import PolicyBook

from ..conftest import REFERENCE, record

SHANGHAI = ZoneInfo("Asia/Shanghai")
# A Tuesday morning in Shanghai: inside Mon-Fri 09:00-18:00.
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=SHANGHAI)


class Clock:
    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture(autouse=True)
def _fresh_policies():
    PolicyBook.invalidate_all()
    yield
    PolicyBook.invalidate_all()


@pytest.fixture
def clock(monkeypatch):
    """Every timezone.now() (ingest, the services) reads this clock; tick functions get `now=clock()`."""
    clock = Clock(T0)
    monkeypatch.setattr(timezone, "now", clock)
    return clock


def make_policy(**fields) -> SlaPolicy:
    values = {"name": "Urgent", "match_priorities": "urgent", "respond_minutes": 30, "resolve_minutes": 240}
    values.update(fields)
    steps = values.pop("steps", [])
    policy = SlaPolicy.objects.create(**values)
    for step in steps:
        EscalationStep.objects.create(policy=policy, **step)
    return policy


_counter = iter(range(1, 1_000_000))


def ingest(**fields):
    """One demand through persist_batch (rules, SLA stamp, the insert): the stored Demand."""
    from demands.models import Demand

    message = {**REFERENCE, "id": f"sla-{next(_counter)}", "priority": "urgent", **fields}
    result = persist_batch([record(message)])
    return Demand.objects.get(pk=result.created[0].pk)
