"""Monotonic counters for /metrics: arrivals, resolutions and rejections since the beginning.

A counter is the sum of every flow bucket still kept plus `FlowTotal`, into which pruning
(`flow.prune_flow`) folds the buckets it forgets, in the transaction that deletes them: a counter
never goes down when old buckets go, survives restarts and reads the same from every web
process. `flow_counters` reads both tables in one SQL statement (one snapshot even under READ
COMMITTED), so a prune committing between two reads cannot hide buckets from a scrape. Two
monitors pruning at once lock the rows they fold: the second finds them deleted, folds nothing.
"""

from __future__ import annotations

from django.db.models import Sum

from .models import FlowBucket, FlowTotal


def flow_counters() -> dict[str, dict[tuple[str, str], int]]:
    """{kind: {(type, source): count since the beginning}} for every kind of flow bucket."""
    kept = FlowBucket.objects.values("kind", "type", "source").annotate(n=Sum("count")).order_by()
    folded = FlowTotal.objects.values("kind", "type", "source").annotate(n=Sum("count")).order_by()
    totals: dict[str, dict[tuple[str, str], int]] = {kind: {} for kind in FlowBucket.Kind.values}
    for row in kept.union(folded, all=True):  # one statement: one snapshot of both tables
        per_kind = totals.setdefault(row["kind"], {})
        key = (row["type"], row["source"])
        per_kind[key] = per_kind.get(key, 0) + (row["n"] or 0)
    return totals
