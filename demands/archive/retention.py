"""Retention: archived demands older than RETENTION_DAYS are deleted, but only after they have
been exported — one gzip'd JSON Lines file per batch, each line a demand with its whole history.

Each batch runs in one transaction: lock the batch's rows, write the export to a temporary file,
fsync it, rename it into place (and fsync the directory), then delete the rows and commit. A crash
before the rename leaves a `.tmp` file and every row; a crash after it leaves a complete export and
every row (the next run exports those rows again into a new file, so an export may repeat a demand,
never lack one). Rows are deleted only when the file that holds them is complete on disk.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.db import connection, transaction
from django.utils import timezone

from .. import history
from ..models import Demand, DemandEvent
from . import conf


@dataclass
class PurgeResult:
    due: int = 0  # a dry run: how many would go
    purged: int = 0
    files: list[Path] = field(default_factory=list)


def purge_queryset(*, now: datetime, older_than_days: int):
    return Demand.objects.filter(archived_at__isnull=False, archived_at__lt=now - timedelta(days=older_than_days))


def _value(value):
    return value.isoformat() if isinstance(value, datetime) else value


def demand_record(demand: Demand, events=None) -> dict:
    """One export line: every column of the demand, and its history oldest first (`events`: its
    DemandEvent rows, fetched for a whole batch at once; read here when not given)."""
    record = {f.attname: _value(getattr(demand, f.attname)) for f in Demand._meta.concrete_fields}
    entries = history.entries(demand) if events is None else history.rule_change_events(demand) + events
    record["history"] = [
        {
            "id": event.pk, "kind": event.kind, "actor": event.actor.get_username() if event.actor_id and event.actor else None,
            "actor_id": event.actor_id, "rule": event.rule.name if event.rule_id and event.rule else None,
            "rule_id": event.rule_id, "old": event.old_value, "new": event.new_value, "body": event.body,
            "at": _value(event.created_at),
        }
        for event in entries
    ]
    return record


def _events_by_demand(ids: list[int]) -> dict[int, list[DemandEvent]]:
    by_demand: dict[int, list[DemandEvent]] = {pk: [] for pk in ids}
    for event in DemandEvent.objects.filter(demand_id__in=ids).select_related("actor", "rule").order_by("id"):
        by_demand[event.demand_id].append(event)
    return by_demand


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # a platform without directory handles
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_export(demands: list[Demand], directory: Path, now: datetime) -> Path:
    """Write the batch's export completely and durably; return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    name = f"demands-{now:%Y%m%dT%H%M%S}-{demands[0].pk}-{demands[-1].pk}.jsonl.gz"
    final, temporary = directory / name, directory / (name + ".tmp")
    events = _events_by_demand([demand.pk for demand in demands])
    with open(temporary, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", filename=name[:-3], mtime=0) as out:
            for demand in demands:
                out.write(json.dumps(demand_record(demand, events[demand.pk]), ensure_ascii=False).encode() + b"\n")
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(temporary, final)
    _fsync_dir(directory)
    return final


def _delete(ids: list[int]) -> int:
    # Django's collector: history (CASCADE), notifications, duplicates pointing here (SET NULL).
    deleted, _per_model = Demand.objects.filter(pk__in=ids).delete()
    return deleted


def purge_batch(*, now: datetime, older_than_days: int, batch_size: int, export_dir: Path) -> tuple[int, Path | None]:
    """Export and delete one batch (lowest ids first); returns (demands purged, export file)."""
    with transaction.atomic():
        queryset = purge_queryset(now=now, older_than_days=older_than_days).order_by("id")
        if connection.features.has_select_for_update_skip_locked:
            queryset = queryset.select_for_update(skip_locked=True, of=("self",))
        demands = list(queryset.select_related("assignee", "team")[:batch_size])
        if not demands:
            return 0, None
        path = write_export(demands, export_dir, now)
        _delete([demand.pk for demand in demands])
    return len(demands), path


def purge(
    *, now: datetime | None = None, older_than_days: int | None = None, batch_size: int | None = None,
    export_dir: Path | None = None, dry_run: bool = False, progress: Callable[[PurgeResult], None] | None = None,
    max_batches: int | None = None,
) -> PurgeResult:
    """Purge every archived demand past retention, batch by batch. RETENTION_DAYS 0 (and no
    `older_than_days`) purges nothing. A dry run only counts."""
    now = now or timezone.now()
    days = conf.get("RETENTION_DAYS") if older_than_days is None else older_than_days
    result = PurgeResult()
    if days <= 0 and older_than_days is None:
        return result
    if dry_run:
        result.due = purge_queryset(now=now, older_than_days=days).count()
        return result
    size = batch_size or conf.get("ARCHIVE_BATCH_SIZE")
    directory = Path(export_dir) if export_dir else conf.export_dir()
    batches = 0
    while max_batches is None or batches < max_batches:
        purged, path = purge_batch(now=now, older_than_days=days, batch_size=size, export_dir=directory)
        if not purged:
            break
        batches += 1
        result.purged += purged
        result.files.append(path)
        if progress is not None:
            progress(result)
    return result
