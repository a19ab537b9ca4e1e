"""Archive and restore demands: the automatic step (closed and untouched for ARCHIVE_AFTER_DAYS)
(or the demand's SLA policy's own number of days) and the one-demand services behind the buttons. History is written as for any change; the
automatic step records the system as the actor.

`archive_due` handles at most one bounded batch per call and skips rows another transaction holds
(SKIP LOCKED on PostgreSQL), so two monitors, or a monitor and `archive_demands`, never archive one
demand twice and a person changing a demand is never blocked by it. A restored demand is archived
again only after it has been left alone for ARCHIVE_AFTER_DAYS more (the step keys on
`updated_at` as well as `resolved_at`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import history
from ..models import CLOSED_STATUSES, Demand, DemandEvent
from ..services import TriageError, _after_commit, _check_actor, _locked, _touch
from . import conf

ARCHIVED, RESTORED = "archived", "restored"  # a history entry's new value


@dataclass
class ArchiveResult:
    archived: int = 0
    more: bool = False  # the batch was full: more are due


def _older_than(days: int, now: datetime) -> Q:
    cutoff = now - timedelta(days=days)
    return Q(resolved_at__lt=cutoff, updated_at__lt=cutoff)


def due_condition(*, now: datetime, after_days: int | None = None) -> Q | None:
    """Which closed demands are due: older than `after_days` if given; else the global setting,
    except for demands whose SLA policy sets its own days (0 = never). None: nothing is due."""
    if after_days is not None:
        return _older_than(after_days, now) if after_days > 0 else None
    from ..models import SlaPolicy  # the policies' own retention, a handful of rows

    own = dict(SlaPolicy.objects.filter(archive_after_days__isnull=False).values_list("pk", "archive_after_days"))
    terms = [Q(sla_policy_id=pk) & _older_than(days, now) for pk, days in own.items() if days > 0]
    days = conf.get("ARCHIVE_AFTER_DAYS")
    if days > 0:
        terms.append(~Q(sla_policy_id__in=list(own)) & _older_than(days, now) if own else _older_than(days, now))
    condition = None
    for term in terms:
        condition = term if condition is None else condition | term
    return condition


def archive_due(*, now: datetime | None = None, batch_size: int | None = None, after_days: int | None = None) -> ArchiveResult:
    """Archive one bounded batch of due demands (oldest first); the monitor calls this every tick."""
    now = now or timezone.now()
    condition = due_condition(now=now, after_days=after_days)
    if condition is None:
        return ArchiveResult()
    limit = batch_size or conf.get("ARCHIVE_BATCH_SIZE")
    with transaction.atomic():
        candidates = Demand.objects.filter(condition, status__in=sorted(CLOSED_STATUSES), archived_at__isnull=True).order_by("id")
        if connection.features.has_select_for_update_skip_locked:
            candidates = candidates.select_for_update(skip_locked=True)
        ids = list(candidates.values_list("id", flat=True)[:limit])
        if not ids:
            return ArchiveResult()
        Demand.objects.filter(pk__in=ids).update(archived_at=now, version=F("version") + 1)
        DemandEvent.objects.bulk_create(
            [DemandEvent(demand_id=pk, kind=DemandEvent.Kind.ARCHIVE, actor=None, old_value="", new_value=ARCHIVED,
                         created_at=now) for pk in ids]
        )
    # No broadcast per demand: they closed weeks ago; open pages drop them at their next load.
    return ArchiveResult(archived=len(ids), more=len(ids) == limit)


def archive_all_due(*, now: datetime | None = None, batch_size: int | None = None, progress=None) -> int:
    """Every due demand, batch after batch (the `archive_demands` command); returns how many."""
    total = 0
    while True:
        result = archive_due(now=now, batch_size=batch_size)
        total += result.archived
        if progress is not None and result.archived:
            progress(total)
        if not result.more:
            return total


@transaction.atomic
def demand_archive(*, demand: Demand, actor, expected_version: int | None = None) -> Demand:
    """Archive one closed demand now (a person's button, or the system with actor None)."""
    _check_actor(actor)
    demand = _locked(demand, expected_version)
    if demand.archived_at is not None:
        return demand
    if demand.status not in CLOSED_STATUSES:
        raise TriageError(_("Only resolved, rejected or duplicate demands can be archived."))
    now = timezone.now()
    demand.archived_at = now
    demand.save(update_fields=["archived_at", *_touch(demand, now, actor)])
    event = history.record(demand, DemandEvent.Kind.ARCHIVE, actor, "", ARCHIVED)
    _after_commit(demand, [event])
    return demand


@transaction.atomic
def demand_restore(*, demand: Demand, actor, expected_version: int | None = None) -> Demand:
    """Bring an archived demand back into lists, the live stream and the counts."""
    _check_actor(actor)
    demand = _locked(demand, expected_version)
    if demand.archived_at is None:
        raise TriageError(_("Demand #%(pk)s is not archived.") % {"pk": demand.pk})
    now = timezone.now()
    demand.archived_at = None
    demand.save(update_fields=["archived_at", *_touch(demand, now, actor)])
    event = history.record(demand, DemandEvent.Kind.ARCHIVE, actor, ARCHIVED, RESTORED)
    _after_commit(demand, [event])
    return demand
