"""The Kafka cluster's state: brokers up, the controller, under-replicated and offline partitions.

The monitor stores what its lag read saw of the cluster (`record_cluster`, from the probe's
metadata: one request per tick serves both), or that the cluster could not be reached; the
monitoring page, `/metrics` and the `cluster_degraded` alert rule read the newest sample
(`cluster_overview`). A partition is under-replicated when fewer of its replicas are in sync than
it has, offline when it has no leader — during a broker restart both show here until the
restarted broker has caught up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from . import conf
from .flow import floor_minute
from .models import ClusterSample

SHOWN_PARTITIONS = 50  # per list kept in a sample: enough to act on, bounded for a big cluster


@dataclass(slots=True)
class ClusterOverview:
    sampled_at: datetime
    reachable: bool
    error: str = ""
    brokers: list = field(default_factory=list)
    controller: int | None = None
    partitions: int = 0
    under_replicated: list = field(default_factory=list)
    offline: list = field(default_factory=list)
    max_replicas: int = 0

    @property
    def state(self) -> str:
        """down | degraded | healthy."""
        if not self.reachable:
            return "down"
        if self.offline or self.under_replicated:
            return "degraded"
        return "healthy"


def summarise(metadata: dict) -> dict:
    """Probe metadata → the sample's fields."""
    under, offline, partitions, widest = [], [], 0, 0
    for topic, rows in sorted(metadata.get("topics", {}).items()):
        for number, leader, replicas, isrs in rows:
            partitions += 1
            widest = max(widest, len(replicas))
            name = f"{topic}[{number}]"
            if leader is None or leader < 0:
                offline.append(name)
            elif len(isrs) < len(replicas):
                under.append(name)
    return {
        "brokers": metadata.get("brokers", []), "controller": metadata.get("controller"), "partitions": partitions,
        "under_replicated": under, "offline": offline, "max_replicas": widest,
    }


def record_cluster(*, now: datetime, metadata: dict | None, error: str = "") -> None:
    """Store this minute's sample: the cluster as seen, or unreachable with the reason."""
    values = {"sampled_at": now, "reachable": metadata is not None, "error": error[:1000]}
    if metadata is not None:
        summary = summarise(metadata)
        values.update(
            brokers=summary["brokers"], controller=summary["controller"], partitions=summary["partitions"],
            under_replicated=summary["under_replicated"][:SHOWN_PARTITIONS] + (
                [f"… {len(summary['under_replicated']) - SHOWN_PARTITIONS} more"]
                if len(summary["under_replicated"]) > SHOWN_PARTITIONS else []
            ),
            offline=summary["offline"][:SHOWN_PARTITIONS], max_replicas=summary["max_replicas"],
        )
    else:  # keep the last known brokers out of it: unreachable says nothing about them
        values.update(brokers=[], controller=None, partitions=0, under_replicated=[], offline=[], max_replicas=0)
    ClusterSample.objects.update_or_create(minute=floor_minute(now), defaults=values)


def cluster_overview(*, now: datetime) -> ClusterOverview | None:
    """The newest sample, or None if there is none fresh enough to tell."""
    sample = ClusterSample.objects.order_by("-sampled_at").first()
    if sample is None or (now - sample.sampled_at).total_seconds() > conf.get("MONITORING_LAG_STALE_SECONDS"):
        return None
    return ClusterOverview(
        sampled_at=sample.sampled_at, reachable=sample.reachable, error=sample.error, brokers=sample.brokers,
        controller=sample.controller, partitions=sample.partitions, under_replicated=sample.under_replicated,
        offline=sample.offline, max_replicas=sample.max_replicas,
    )
