"""Retention: archived demands past RETENTION_DAYS are purged only after an export (JSON Lines +
history, gzip, fsync'd) of their batch exists; dry runs count; batches are bounded; a crash
between export and delete leaves every row."""

import gzip
import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from demands import services
from demands.archive import retention
from demands.models import Demand, DemandEvent

from .conftest import closed, ingest

pytestmark = pytest.mark.django_db


def archived(n: int = 1, *, days_ago: float) -> list[Demand]:
    demands = closed(n, days_ago=days_ago + 30)
    Demand.objects.filter(pk__in=[d.pk for d in demands]).update(archived_at=timezone.now() - timedelta(days=days_ago))
    return demands


def read_export(path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def test_dry_run_counts_and_deletes_nothing(tmp_path):
    archived(3, days_ago=100)
    archived(1, days_ago=10)
    result = retention.purge(older_than_days=90, dry_run=True, export_dir=tmp_path)
    assert result.due == 3 and result.purged == 0
    assert Demand.objects.count() == 4 and not list(tmp_path.iterdir())


def test_purge_exports_each_demand_with_its_history_before_deleting_it(tmp_path, staff_user):
    [old] = archived(days_ago=100)
    services.demand_comment(demand=old, body="看过了, fixed in 2.3", actor=staff_user)
    [young] = archived(days_ago=10)
    [live] = ingest()
    result = retention.purge(older_than_days=90, export_dir=tmp_path)
    assert result.purged == 1 and len(result.files) == 1
    assert not Demand.objects.filter(pk=old.pk).exists() and not DemandEvent.objects.filter(demand_id=old.pk).exists()
    assert Demand.objects.filter(pk__in=[young.pk, live.pk]).count() == 2
    [line] = read_export(result.files[0])
    assert line["id"] == old.pk and line["content"] == old.content and line["source"] == old.source
    assert line["archived_at"] and line["status"] == "resolved"
    assert [entry["body"] for entry in line["history"] if entry["kind"] == "comment"] == ["看过了, fixed in 2.3"]
    assert line["history"][-1]["actor"] == staff_user.username
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_purge_runs_in_bounded_batches_one_file_each(tmp_path):
    demands = archived(5, days_ago=100)
    result = retention.purge(older_than_days=90, batch_size=2, export_dir=tmp_path)
    assert result.purged == 5 and len(result.files) == 3
    assert [len(read_export(path)) for path in result.files] == [2, 2, 1]
    assert sorted(line["id"] for path in result.files for line in read_export(path)) == [d.pk for d in demands]


def test_a_crash_between_export_and_delete_leaves_every_row(tmp_path, monkeypatch):
    demands = archived(2, days_ago=100)

    def crash(ids):
        raise RuntimeError("killed after the export was written")

    monkeypatch.setattr(retention, "_delete", crash)
    with pytest.raises(RuntimeError):
        retention.purge(older_than_days=90, export_dir=tmp_path)
    assert Demand.objects.filter(pk__in=[d.pk for d in demands]).count() == 2
    [export] = list(tmp_path.iterdir())  # complete (renamed into place) before the delete was tried
    assert [line["id"] for line in read_export(export)] == [d.pk for d in demands]
    monkeypatch.undo()
    assert retention.purge(older_than_days=90, export_dir=tmp_path).purged == 2  # the next run finishes


def test_a_failed_export_deletes_nothing(tmp_path, monkeypatch):
    archived(2, days_ago=100)
    monkeypatch.setattr(retention.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        retention.purge(older_than_days=90, export_dir=tmp_path)
    assert Demand.objects.count() == 2


def test_retention_zero_means_never(settings, tmp_path):
    settings.RETENTION_DAYS = 0
    archived(2, days_ago=1000)
    assert retention.purge(export_dir=tmp_path).purged == 0
    out = StringIO()
    call_command("purge_archived", f"--export-dir={tmp_path}", stdout=out)
    assert "nothing to do" in out.getvalue() and Demand.objects.count() == 2


def test_command_prints_progress_and_honours_its_options(settings, tmp_path):
    settings.RETENTION_DAYS = 90
    archived(3, days_ago=100)
    archived(1, days_ago=50)
    out = StringIO()
    call_command("purge_archived", "--dry-run", stdout=out)
    assert "3 archived demand(s) would be" in out.getvalue()
    out = StringIO()
    call_command("purge_archived", "--batch-size=2", f"--export-dir={tmp_path}", stdout=out)
    assert out.getvalue().count("purged ") == 2 and "Purged 3 archived demand(s) in 2 batch(es)" in out.getvalue()
    out = StringIO()
    call_command("purge_archived", "--older-than-days=40", f"--export-dir={tmp_path}", stdout=out)
    assert Demand.objects.count() == 0 and len(list(tmp_path.iterdir())) == 3


def test_archive_demands_command_archives_in_batches(settings):
    settings.ARCHIVE_AFTER_DAYS = 30
    closed(3, days_ago=40)
    out = StringIO()
    call_command("archive_demands", "--batch-size=2", stdout=out)
    assert "Archived 3 demand(s)." in out.getvalue()
    assert Demand.objects.filter(archived_at__isnull=True).count() == 0
