"""Archiving: the automatic step (age, statuses, bounded batches), what archived demands are hidden
from (lists, API, live rows, header counts) and still part of (groups, monitoring), the filter that
shows them, restoring, and the rule action that archives known noise on arrival."""

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from demands import live, selectors
from demands.archive import services as archive
from demands.models import Demand, DemandEvent, DemandGroup, Rule, Status
from demands.monitoring.flow import backlog_now
from demands.monitoring.models import FlowBucket
from demands.monitoring.monitor import Monitor

from .conftest import closed, ingest

pytestmark = pytest.mark.django_db


def live_ids(**params) -> list[int]:
    page = selectors.demand_page(filters=selectors.DemandFilters.from_params(params), limit=500)
    return [d.pk for d in page.items]


def test_step_archives_closed_demands_older_than_the_setting_and_nothing_else(settings):
    settings.ARCHIVE_AFTER_DAYS = 30
    old = [*closed(days_ago=31), *closed(days_ago=40, status=Status.REJECTED)]
    original = ingest()[0]
    duplicate = closed(days_ago=45, status=Status.DUPLICATE)[0]
    Demand.objects.filter(pk=duplicate.pk).update(duplicate_of=original)
    recent = closed(days_ago=29)
    open_old = ingest()[0]
    Demand.objects.filter(pk=open_old.pk).update(updated_at=timezone.now() - timedelta(days=90))

    result = archive.archive_due()

    archived = set(Demand.objects.filter(archived_at__isnull=False).values_list("pk", flat=True))
    assert archived == {old[0].pk, old[1].pk, duplicate.pk}
    assert result.archived == 3 and not result.more
    assert recent[0].pk not in archived and open_old.pk not in archived
    entry = DemandEvent.objects.get(demand_id=old[0].pk, kind=DemandEvent.Kind.ARCHIVE)
    assert entry.actor is None and entry.new_value == "archived"  # the system did it
    assert archive.archive_due().archived == 0  # nothing twice


def test_step_handles_one_bounded_batch_per_call_oldest_first(settings):
    settings.ARCHIVE_AFTER_DAYS = 30
    demands = closed(5, days_ago=60)
    first = archive.archive_due(batch_size=2)
    assert first.archived == 2 and first.more
    assert set(Demand.objects.filter(archived_at__isnull=False).values_list("pk", flat=True)) == {demands[0].pk, demands[1].pk}
    assert archive.archive_all_due(batch_size=2) == 3


def test_archiving_off_when_setting_is_zero(settings):
    settings.ARCHIVE_AFTER_DAYS = 0
    closed(days_ago=400)
    assert archive.archive_due().archived == 0


def test_monitor_tick_runs_the_archiving_step(settings):
    settings.ARCHIVE_AFTER_DAYS = 30
    settings.ARCHIVE_BATCH_SIZE = 2
    closed(3, days_ago=31)
    result = Monitor(sample_lag=False, broadcast=False).tick(deliver=False)
    assert result.steps["archive"] == 2
    assert Demand.objects.filter(archived_at__isnull=False).count() == 2


def test_archived_demands_are_hidden_from_lists_and_header_counts_but_kept_in_groups_and_flow(settings):
    settings.ARCHIVE_AFTER_DAYS = 30
    [kept] = ingest()
    [gone] = closed(days_ago=31)
    Demand.objects.filter(pk=gone.pk).update(status=Status.NEW)  # (a reopened-then-archived edge: still hidden)
    Demand.objects.filter(pk=gone.pk).update(archived_at=timezone.now())
    assert live_ids() == [kept.pk]
    assert live_ids(archived="include") == [gone.pk, kept.pk]
    assert live_ids(archived="only") == [gone.pk]
    assert sum(backlog_now().values()) == 1
    assert selectors.demand_count(filters=selectors.DemandFilters.from_params({})) == (1, True)
    group = DemandGroup.objects.get(pk=kept.group_id)
    assert group.count == 2 and gone.group_id == kept.group_id  # groups count archived members
    assert sum(FlowBucket.objects.filter(kind=FlowBucket.Kind.ARRIVAL).values_list("count", flat=True)) == 2


def test_live_rows_of_archived_demands_match_only_archived_pages():
    [demand] = ingest()
    demand.archived_at = timezone.now()
    row = live.row_payload(demand, language="en")
    assert not selectors.DemandFilters.from_params({}).matches(row)
    assert selectors.DemandFilters.from_params({"archived": "include"}).matches(row)
    assert selectors.DemandFilters.from_params({"archived": "only"}).matches(row)
    demand.archived_at = None
    assert not selectors.DemandFilters.from_params({"archived": "only"}).matches(live.row_payload(demand, language="en"))


def test_api_filters_by_archived_and_refuses_unknown_values(staff_client):
    [kept] = ingest()
    [gone] = closed(days_ago=1)
    Demand.objects.filter(pk=gone.pk).update(archived_at=timezone.now())
    url = reverse("demands:api-list")
    assert [d["pk"] for d in staff_client.get(url).json()["results"]] == [kept.pk]
    included = staff_client.get(url, {"archived": "include"}).json()["results"]
    assert [d["pk"] for d in included] == [gone.pk, kept.pk] and included[0]["archived_at"]
    assert [d["pk"] for d in staff_client.get(url, {"archived": "only"}).json()["results"]] == [gone.pk]
    response = staff_client.get(url, {"archived": "yes"})
    assert response.status_code == 400 and "archived" in response.json()["error"]


def test_list_page_has_the_archived_filter(staff_client):
    [kept] = ingest()
    [gone] = closed(days_ago=1)
    Demand.objects.filter(pk=gone.pk).update(archived_at=timezone.now())
    page = staff_client.get(reverse("demands:list")).content.decode()
    assert f'id="demand-{kept.pk}"' in page and f'id="demand-{gone.pk}"' not in page and 'name="archived"' in page
    page = staff_client.get(reverse("demands:list"), {"archived": "only"}).content.decode()
    assert f'id="demand-{gone.pk}"' in page and f'id="demand-{kept.pk}"' not in page


def test_restore_brings_a_demand_back_with_a_history_entry_and_it_is_not_archived_again_at_once(staff_client, staff_user, settings):
    settings.ARCHIVE_AFTER_DAYS = 30
    [demand] = closed(days_ago=60)
    archive.archive_due()
    demand.refresh_from_db()
    page = staff_client.get(reverse("demands:detail", args=[demand.pk])).content.decode()
    assert "Restore from the archive" in page
    response = staff_client.post(reverse("demands:restore", args=[demand.pk]), {"version": demand.version})
    assert response.status_code == 302
    demand.refresh_from_db()
    assert demand.archived_at is None and demand.pk in live_ids()
    entry = DemandEvent.objects.filter(demand=demand, kind=DemandEvent.Kind.ARCHIVE).last()
    assert entry.actor == staff_user and entry.new_value == "restored"
    assert archive.archive_due().archived == 0  # restored means "keep it": untouched for 30 more days first


def test_viewers_cannot_restore_and_open_demands_cannot_be_archived(client, viewer_user, staff_user):
    [demand] = closed(days_ago=1)
    Demand.objects.filter(pk=demand.pk).update(archived_at=timezone.now())
    client.force_login(viewer_user)
    client.post(reverse("demands:restore", args=[demand.pk]))
    demand.refresh_from_db()
    assert demand.archived_at is not None
    [open_demand] = ingest()
    with pytest.raises(archive.TriageError):
        archive.demand_archive(demand=open_demand, actor=staff_user)
    with pytest.raises(archive.TriageError):
        archive.demand_restore(demand=open_demand, actor=staff_user)


def _patch(client, demand, body):
    return client.patch(f"/api/demands/{demand.pk}/", data=json.dumps(body), content_type="application/json")


def test_api_archives_and_restores_with_history_and_version(staff_client, staff_user):
    [demand] = closed(days_ago=1)
    response = _patch(staff_client, demand, {"archived": True, "version": demand.version})
    assert response.status_code == 200 and response.json()["archived_at"] is not None
    assert demand.pk not in live_ids()
    stale = _patch(staff_client, demand, {"archived": False, "version": demand.version})
    assert stale.status_code == 409  # archiving made a new version
    restored = _patch(staff_client, demand, {"archived": False, "version": response.json()["version"]})
    assert restored.status_code == 200 and restored.json()["archived_at"] is None and demand.pk in live_ids()
    assert _patch(staff_client, demand, {"archived": False}).status_code == 200  # already live: nothing to do
    entries = list(DemandEvent.objects.filter(demand=demand, kind=DemandEvent.Kind.ARCHIVE).order_by("id"))
    assert [(e.new_value, e.actor) for e in entries] == [("archived", staff_user), ("restored", staff_user)]


def test_api_resolves_and_archives_in_one_patch_or_changes_nothing(staff_client):
    [demand] = ingest()
    refused = _patch(staff_client, demand, {"priority": "low", "archived": True})
    assert refused.status_code == 400 and "archived" in refused.json()["error"]
    demand.refresh_from_db()
    assert demand.priority != "low", "an archive that fails must undo the fields of the same PATCH"
    both = _patch(staff_client, demand, {"status": "resolved", "archived": True})
    assert both.status_code == 200 and both.json()["status"] == "resolved" and both.json()["archived_at"] is not None
    assert _patch(staff_client, demand, {"archived": "yes"}).status_code == 400


def test_api_viewers_cannot_archive(client, viewer_user):
    [demand] = closed(days_ago=1)
    client.force_login(viewer_user)
    assert _patch(client, demand, {"archived": True}).status_code == 403
    demand.refresh_from_db()
    assert demand.archived_at is None


def test_archive_now_button_archives_a_closed_demand(staff_client):
    [demand] = closed(days_ago=1)
    staff_client.post(reverse("demands:archive", args=[demand.pk]), {"version": demand.version})
    demand.refresh_from_db()
    assert demand.archived_at is not None and demand.pk not in live_ids()


def test_rule_archives_known_noise_on_arrival_through_the_real_ingest_path(staff_client):
    Rule.objects.create(name="health checks", match_keywords="healthcheck", archive_on_arrival=True, add_tags="noise")
    [noise] = ingest(content="healthcheck ok 200")
    [noise_again] = ingest(content="healthcheck ok 201")
    [real] = ingest(content="checkout is broken")
    assert noise.archived_at is not None and noise.tags == ["noise"] and real.archived_at is None
    assert live_ids() == [real.pk]
    assert DemandGroup.objects.get(pk=noise.group_id).count == 2  # the noise is still counted
    assert sum(backlog_now().values()) == 1
    entries = selectors.demand_history(demand=noise)
    assert [e.kind for e in entries] == [DemandEvent.Kind.TAGS, DemandEvent.Kind.ARCHIVE]
    assert entries[-1].rule.name == "health checks"
    page = staff_client.get(reverse("demands:detail", args=[noise.pk])).content.decode()
    assert "archived it" in page and noise_again.pk in live_ids(archived="only")


def test_an_sla_policy_archives_its_demands_after_its_own_days_and_zero_keeps_them(settings):
    from demands.models import SlaPolicy

    settings.ARCHIVE_AFTER_DAYS = 30
    quick = SlaPolicy.objects.create(name="Noise", match_priorities="low", respond_minutes=60, archive_after_days=7)
    keep = SlaPolicy.objects.create(name="Audit", match_priorities="urgent", respond_minutes=30, archive_after_days=0)
    global_ = SlaPolicy.objects.create(name="Normal", match_priorities="normal", respond_minutes=60)
    quick_old, quick_new, kept, by_global, plain = (closed(days_ago=days)[0] for days in (8, 6, 400, 31, 31))
    for demand, policy in ((quick_old, quick), (quick_new, quick), (kept, keep), (by_global, global_)):
        Demand.objects.filter(pk=demand.pk).update(sla_policy=policy)

    archive.archive_due()

    archived = set(Demand.objects.filter(archived_at__isnull=False).values_list("pk", flat=True))
    assert archived == {quick_old.pk, by_global.pk, plain.pk}


def test_a_policy_with_its_own_days_archives_even_when_the_global_setting_is_off(settings):
    from demands.models import SlaPolicy

    settings.ARCHIVE_AFTER_DAYS = 0
    quick = SlaPolicy.objects.create(name="Noise", match_priorities="low", respond_minutes=60, archive_after_days=7)
    mine, other = closed(days_ago=8)[0], closed(days_ago=800)[0]
    Demand.objects.filter(pk=mine.pk).update(sla_policy=quick)

    assert archive.archive_due().archived == 1
    assert set(Demand.objects.filter(archived_at__isnull=False).values_list("pk", flat=True)) == {mine.pk}
