"""Several timers at once on PostgreSQL: every reminder and every escalation step exactly once."""

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections

from demands.models import Demand, Notification
from demands.sla.escalation import sla_tick
from demands.sla.models import EscalationFiring, EscalationStep

from .conftest import T0, ingest, make_policy


@pytest.mark.django_db(transaction=True)
def test_timers_in_several_threads_fire_each_step_exactly_once(clock, django_user_model):
    if connection.vendor != "postgresql":
        pytest.skip("row locks with SKIP LOCKED: PostgreSQL (SQLite runs one writer at a time)")
    lead = django_user_model.objects.create_user(username="lead", is_staff=True)
    make_policy(steps=[
        {"after_minutes": 10, "condition": EscalationStep.Condition.NOT_ACKNOWLEDGED, "notify_user": lead},
        {"after_minutes": 20, "condition": EscalationStep.Condition.NOT_ACKNOWLEDGED, "notify_user": lead},
    ])
    demands = [ingest() for _ in range(40)]
    Demand.objects.update(assignee=lead)
    errors, start = [], threading.Barrier(4)

    def timer(now):
        try:
            start.wait()
            sla_tick(now=now)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    for minutes in (11, 21, 25, 35):  # step 1, step 2, at risk (24 min), breached (30)
        now = T0 + timedelta(minutes=minutes)
        threads = [threading.Thread(target=timer, args=(now,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert errors == []
    assert EscalationFiring.objects.count() == 2 * len(demands)
    assert Notification.objects.filter(kind=Notification.Kind.ESCALATION).count() == 2 * len(demands)
    # at risk and breached: two reminders per demand, never more
    assert Notification.objects.filter(kind=Notification.Kind.SLA).count() == 2 * len(demands)
    assert set(Demand.objects.values_list("sla_state", flat=True)) == {"breached"}
