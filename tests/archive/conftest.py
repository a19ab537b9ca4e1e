import itertools
from datetime import timedelta

import pytest
from django.utils import timezone

from demands.models import Demand, Status
from demands.pipeline import parse, rules
from demands.pipeline.persist import persist_batch
from demands.pipeline.rules import RuleBook

from ..conftest import REFERENCE, record

_ids = itertools.count(1)


@pytest.fixture(autouse=True)
def _fresh_rulebook(monkeypatch):
    monkeypatch.setattr(rules, "RELOAD_EVERY", 0)
    monkeypatch.setattr(parse, "_default_rulebook", RuleBook())


def ingest(n: int = 1, **fields) -> list[Demand]:
    """Store n demands through the real ingest path (rules, groups, flow); return them as models."""
    batch = [record({**REFERENCE, "id": f"a{next(_ids)}", **fields}, offset=next(_ids)) for _ in range(n)]
    created = persist_batch(batch).created
    return list(Demand.objects.filter(pk__in=[d.pk for d in created]).order_by("id"))


def closed(n: int = 1, *, days_ago: float, status: str = Status.RESOLVED, **fields) -> list[Demand]:
    """Demands closed (and last changed) `days_ago` days ago."""
    demands = ingest(n, **fields)
    when = timezone.now() - timedelta(days=days_ago)
    Demand.objects.filter(pk__in=[d.pk for d in demands]).update(status=status, resolved_at=when, updated_at=when)
    return list(Demand.objects.filter(pk__in=[d.pk for d in demands]).order_by("id"))
