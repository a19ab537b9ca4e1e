"""Triage services: transitions, history, versions, permissions, notifications, bulk, broadcast."""

import itertools

import pytest
from django.core.exceptions import PermissionDenied

from demands import live, services
from demands.pipeline.persist import persist_batch
from demands.models import CLOSED_STATUSES, TRANSITIONS, Demand, DemandEvent, Notification, Priority, Status, Team
from demands.services import ConflictError, InvalidTransition, TriageError

from .conftest import REFERENCE, record, role

pytestmark = pytest.mark.django_db

_ids = itertools.count(1)


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    # Users are created in almost every test; the real hasher would dominate the run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def make_demand(**fields) -> Demand:
    """A freshly ingested demand; `fields` are set directly afterwards to stage a starting state."""
    n = next(_ids)
    created = persist_batch([record({**REFERENCE, "id": f"t{n}"}, offset=n)]).created
    demand = Demand.objects.get(pk=created[0].pk)
    if fields:
        Demand.objects.filter(pk=demand.pk).update(**fields)
        demand.refresh_from_db()
    return demand


@pytest.fixture
def other_triager(django_user_model):
    user = django_user_model.objects.create_user(username="alice", password="x", is_staff=True, first_name="Alice", last_name="Wang")
    user.groups.add(role("Triagers"))
    return user


@pytest.fixture
def staff_member(django_user_model):
    """Another triager, who is assigned work."""
    user = django_user_model.objects.create_user(username="bob", password="x", is_staff=True)
    user.groups.add(role("Triagers"))
    return user


def events_of(demand) -> list[DemandEvent]:
    return list(DemandEvent.objects.filter(demand=demand).order_by("id"))


# -- status -------------------------------------------------------------------------------------

ALLOWED = sorted((old, new) for old, targets in TRANSITIONS.items() for new in targets if new != Status.DUPLICATE)


@pytest.mark.parametrize(("old", "new"), ALLOWED)
def test_every_allowed_transition_changes_status_bumps_version_and_writes_one_event(old, new, staff_user):
    original = make_demand()
    demand = make_demand(status=old, duplicate_of=original if old == Status.DUPLICATE else None)
    services.demand_change_status(demand=demand, status=new, actor=staff_user)
    demand.refresh_from_db()
    assert demand.status == new
    assert demand.version == 1
    [event] = events_of(demand)
    assert (event.kind, event.actor, event.old_value, event.new_value) == (DemandEvent.Kind.STATUS, staff_user, old, new)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (Status.RESOLVED, Status.IN_PROGRESS),
        (Status.REJECTED, Status.RESOLVED),
        (Status.DUPLICATE, Status.IN_PROGRESS),
        (Status.TRIAGED, Status.NEW),
        (Status.RESOLVED, Status.NEW),
    ],
)
def test_forbidden_transition_is_refused_with_a_clear_message_and_changes_nothing(old, new, staff_user):
    demand = make_demand(status=old)
    with pytest.raises(InvalidTransition) as excinfo:
        services.demand_change_status(demand=demand, status=new, actor=staff_user)
    assert str(excinfo.value) == f"A {Status(old).label} demand cannot become {Status(new).label}."
    demand.refresh_from_db()
    assert (demand.status, demand.version) == (old, 0)
    assert events_of(demand) == []


def test_unknown_status_is_refused(staff_user):
    demand = make_demand()
    with pytest.raises(TriageError, match="Unknown status"):
        services.demand_change_status(demand=demand, status="done", actor=staff_user)


@pytest.mark.parametrize("closed", sorted(CLOSED_STATUSES - {Status.DUPLICATE}))
def test_closing_sets_resolved_at_and_reopening_clears_it(closed, staff_user):
    demand = make_demand()
    services.demand_change_status(demand=demand, status=closed, actor=staff_user)
    demand.refresh_from_db()
    assert demand.resolved_at is not None
    services.demand_change_status(demand=demand, status=Status.TRIAGED, actor=staff_user)
    demand.refresh_from_db()
    assert demand.status == Status.TRIAGED
    assert demand.resolved_at is None
    assert [(e.old_value, e.new_value) for e in events_of(demand)] == [(Status.NEW, closed), (closed, Status.TRIAGED)]


def test_reopening_a_duplicate_forgets_what_it_duplicated(staff_user):
    original = make_demand()
    demand = make_demand()
    services.demand_mark_duplicate(demand=demand, original=original, actor=staff_user)
    services.demand_change_status(demand=demand, status=Status.TRIAGED, actor=staff_user)
    demand.refresh_from_db()
    assert (demand.status, demand.duplicate_of_id, demand.resolved_at) == (Status.TRIAGED, None, None)


def test_first_action_at_is_set_by_the_first_change_and_kept_after(staff_user):
    demand = make_demand()
    assert demand.first_action_at is None
    services.demand_change_status(demand=demand, status=Status.TRIAGED, actor=staff_user)
    demand.refresh_from_db()
    first = demand.first_action_at
    assert first is not None
    services.demand_set_priority(demand=demand, priority=Priority.URGENT, actor=staff_user)
    services.demand_change_status(demand=demand, status=Status.IN_PROGRESS, actor=staff_user)
    demand.refresh_from_db()
    assert demand.first_action_at == first
    assert demand.updated_at >= first


def test_each_change_increments_the_version_by_one(staff_user, staff_member):
    demand = make_demand()
    versions = []
    for change in (
        lambda: services.demand_change_status(demand=demand, status=Status.TRIAGED, actor=staff_user, expected_version=0),
        lambda: services.demand_set_priority(demand=demand, priority=Priority.HIGH, actor=staff_user, expected_version=1),
        lambda: services.demand_assign(demand=demand, assignee=staff_member, actor=staff_user, expected_version=2),
    ):
        versions.append(change().version)
    assert versions == [1, 2, 3]
    demand.refresh_from_db()
    assert demand.version == 3


# -- conflicts ----------------------------------------------------------------------------------

def test_stale_version_is_refused_naming_who_changed_it_meanwhile(staff_user, other_triager):
    demand = make_demand()
    seen_version = demand.version
    services.demand_set_priority(demand=demand, priority=Priority.URGENT, actor=other_triager, expected_version=seen_version)
    with pytest.raises(ConflictError) as excinfo:
        services.demand_set_priority(demand=demand, priority=Priority.LOW, actor=staff_user, expected_version=seen_version)
    assert "changed meanwhile by Alice Wang" in str(excinfo.value)
    demand.refresh_from_db()
    assert (demand.priority, demand.version) == (Priority.URGENT, 1)
    assert len(events_of(demand)) == 1


@pytest.mark.parametrize(
    "change",
    [
        lambda d, actor: services.demand_change_status(demand=d, status=Status.RESOLVED, actor=actor, expected_version=0),
        lambda d, actor: services.demand_assign(demand=d, assignee=actor, actor=actor, expected_version=0),
        lambda d, actor: services.demand_mark_duplicate(demand=d, original=make_demand(), actor=actor, expected_version=0),
    ],
    ids=["status", "assign", "duplicate"],
)
def test_every_versioned_change_refuses_a_stale_version(change, staff_user, other_triager):
    demand = make_demand()
    services.demand_change_status(demand=demand, status=Status.TRIAGED, actor=other_triager)
    with pytest.raises(ConflictError):
        change(demand, staff_user)
    demand.refresh_from_db()
    assert (demand.status, demand.version, demand.assignee) == (Status.TRIAGED, 1, None)


def test_current_version_is_accepted(staff_user):
    demand = make_demand()
    services.demand_change_status(demand=demand, status=Status.TRIAGED, actor=staff_user, expected_version=0)
    services.demand_change_status(demand=demand, status=Status.RESOLVED, actor=staff_user, expected_version=1)
    demand.refresh_from_db()
    assert (demand.status, demand.version) == (Status.RESOLVED, 2)


# -- no-ops -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "change",
    [
        lambda d, actor: services.demand_change_status(demand=d, status=Status.NEW, actor=actor),
        lambda d, actor: services.demand_set_priority(demand=d, priority=Priority.NORMAL, actor=actor),
        lambda d, actor: services.demand_assign(demand=d, assignee=None, team=None, actor=actor),
    ],
    ids=["same-status", "same-priority", "same-assignment"],
)
def test_a_change_to_the_current_value_writes_no_event_and_keeps_the_version(change, staff_user):
    demand = make_demand()
    assert (demand.status, demand.priority, demand.assignee_id) == (Status.NEW, Priority.NORMAL, None)
    change(demand, staff_user)
    demand.refresh_from_db()
    assert demand.version == 0
    assert demand.first_action_at is None
    assert events_of(demand) == []


# -- history ------------------------------------------------------------------------------------

def test_priority_and_assignment_changes_record_actor_old_and_new(staff_user, staff_member):
    demand = make_demand()
    team = Team.objects.create(name="Payments")
    services.demand_set_priority(demand=demand, priority=Priority.URGENT, actor=staff_user)
    services.demand_assign(demand=demand, assignee=staff_member, team=team, actor=staff_user)
    services.demand_assign(demand=demand, assignee=None, team=team, actor=staff_user)
    assert [(e.kind, e.actor, e.old_value, e.new_value) for e in events_of(demand)] == [
        (DemandEvent.Kind.PRIORITY, staff_user, "normal", "urgent"),
        (DemandEvent.Kind.ASSIGNMENT, staff_user, "", "bob"),
        (DemandEvent.Kind.TEAM, staff_user, "", "Payments"),
        (DemandEvent.Kind.ASSIGNMENT, staff_user, "bob", ""),
    ]
    demand.refresh_from_db()
    assert (demand.assignee, demand.team, demand.version) == (None, team, 3)


def test_unknown_priority_is_refused(staff_user):
    with pytest.raises(TriageError, match="Unknown priority"):
        services.demand_set_priority(demand=make_demand(), priority="p9", actor=staff_user)


# -- permissions --------------------------------------------------------------------------------

CHANGES = {
    "status": lambda d, actor: services.demand_change_status(demand=d, status=Status.TRIAGED, actor=actor),
    "priority": lambda d, actor: services.demand_set_priority(demand=d, priority=Priority.HIGH, actor=actor),
    "assign": lambda d, actor: services.demand_assign(demand=d, team=Team.objects.create(name="T"), actor=actor),
    "comment": lambda d, actor: services.demand_comment(demand=d, body="hello", actor=actor),
    "duplicate": lambda d, actor: services.demand_mark_duplicate(demand=d, original=make_demand(), actor=actor),
    "bulk": lambda d, actor: services.demand_bulk_update(demand_ids=[d.pk], status=Status.TRIAGED, actor=actor),
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
@pytest.mark.parametrize("who", ["viewer_user", "plain_user"])
def test_viewers_and_non_staff_cannot_change_anything(change, who, request):
    actor = request.getfixturevalue(who)
    demand = make_demand()
    with pytest.raises(PermissionDenied):
        change(demand, actor)
    demand.refresh_from_db()
    assert (demand.status, demand.priority, demand.team, demand.version) == (Status.NEW, Priority.NORMAL, None, 0)
    assert events_of(demand) == []


def test_a_deactivated_triager_cannot_change_anything(staff_user):
    staff_user.is_active = False
    staff_user.save()
    with pytest.raises(PermissionDenied):
        services.demand_change_status(demand=make_demand(), status=Status.TRIAGED, actor=staff_user)


def test_staff_without_the_triage_permission_is_a_viewer(django_user_model):
    staff_only = django_user_model.objects.create_user(username="s", password="x", is_staff=True)
    assert not services.can_triage(staff_only)
    superuser = django_user_model.objects.create_user(username="root", password="x", is_staff=True, is_superuser=True)
    assert services.can_triage(superuser)


@pytest.mark.parametrize("who", ["plain_user", "inactive_staff"])
def test_demands_can_only_be_assigned_to_active_staff(who, staff_user, plain_user, django_user_model):
    assignee = plain_user if who == "plain_user" else django_user_model.objects.create_user(username="gone", password="x", is_staff=True, is_active=False)
    demand = make_demand()
    with pytest.raises(TriageError, match="active staff"):
        services.demand_assign(demand=demand, assignee=assignee, actor=staff_user)
    demand.refresh_from_db()
    assert demand.assignee is None
    assert Notification.objects.count() == 0


def test_a_viewer_can_be_assigned_work(staff_user, viewer_user):
    demand = services.demand_assign(demand=make_demand(), assignee=viewer_user, actor=staff_user)
    assert demand.assignee == viewer_user


# -- notifications ------------------------------------------------------------------------------

def test_assigning_a_person_notifies_them_but_not_when_they_take_it_themselves(staff_user, staff_member):
    demand = make_demand()
    services.demand_assign(demand=demand, assignee=staff_member, actor=staff_user)
    [notification] = Notification.objects.all()
    assert notification.user == staff_member
    assert f"assigned demand #{demand.pk} to you" in notification.text
    assert "triager" in notification.text
    services.demand_assign(demand=make_demand(), assignee=staff_user, actor=staff_user)
    assert Notification.objects.count() == 1


def test_team_assignment_notifies_active_members_except_the_actor(staff_user, staff_member, django_user_model):
    carol = django_user_model.objects.create_user(username="carol", password="x", is_staff=True)
    retired = django_user_model.objects.create_user(username="dave", password="x", is_staff=True, is_active=False)
    team = Team.objects.create(name="Payments")
    team.members.add(staff_user, staff_member, carol, retired)
    demand = make_demand()
    services.demand_assign(demand=demand, team=team, actor=staff_user)
    notified = sorted(n.user.username for n in Notification.objects.all())
    assert notified == ["bob", "carol"]
    assert all("your team Payments" in n.text for n in Notification.objects.all())


def test_a_member_assigned_personally_with_their_team_is_notified_once(staff_user, staff_member, django_user_model):
    carol = django_user_model.objects.create_user(username="carol", password="x", is_staff=True)
    team = Team.objects.create(name="Payments")
    team.members.add(staff_member, carol)
    services.demand_assign(demand=make_demand(), assignee=staff_member, team=team, actor=staff_user)
    texts = {n.user.username: n.text for n in Notification.objects.all()}
    assert Notification.objects.count() == 2
    assert "to you" in texts["bob"] and "your team" in texts["carol"]


# -- comments -----------------------------------------------------------------------------------

def test_a_comment_is_one_event_with_its_body_and_does_not_bump_the_version(staff_user):
    demand = make_demand()
    event = services.demand_comment(demand=demand, body="  Looked at the logs: https://example.com/x  ", actor=staff_user)
    demand.refresh_from_db()
    assert demand.version == 0
    assert demand.first_action_at is not None
    assert events_of(demand) == [event]
    assert (event.kind, event.actor, event.body) == (DemandEvent.Kind.COMMENT, staff_user, "Looked at the logs: https://example.com/x")


@pytest.mark.parametrize("body", ["", "   \n\t ", None])
def test_an_empty_comment_is_refused(body, staff_user):
    demand = make_demand()
    with pytest.raises(TriageError, match="cannot be empty"):
        services.demand_comment(demand=demand, body=body, actor=staff_user)
    assert events_of(demand) == []


def test_a_comment_longer_than_the_limit_is_refused_and_one_at_the_limit_accepted(staff_user):
    demand = make_demand()
    with pytest.raises(TriageError, match="at most"):
        services.demand_comment(demand=demand, body="长" * (services.MAX_COMMENT_CHARS + 1), actor=staff_user)
    assert events_of(demand) == []
    services.demand_comment(demand=demand, body="长" * services.MAX_COMMENT_CHARS, actor=staff_user)
    assert len(events_of(demand)) == 1


def test_a_comment_does_not_conflict_with_a_concurrent_change(staff_user, other_triager):
    demand = make_demand()
    services.demand_set_priority(demand=demand, priority=Priority.HIGH, actor=other_triager)
    services.demand_comment(demand=demand, body="still fine", actor=staff_user)  # the stale object is enough
    assert [e.kind for e in events_of(demand)] == [DemandEvent.Kind.PRIORITY, DemandEvent.Kind.COMMENT]


def test_a_comment_notifies_the_assignee_unless_they_wrote_it(staff_user, staff_member):
    demand = make_demand(assignee=staff_member)
    services.demand_comment(demand=demand, body="please look", actor=staff_user)
    [notification] = Notification.objects.all()
    assert notification.user == staff_member and "commented on" in notification.text
    services.demand_comment(demand=demand, body="on it", actor=staff_member)
    # the assignee is not told of their own comment; the first commenter now follows the demand
    assert [n.user for n in Notification.objects.order_by("id")] == [staff_member, staff_user]


# -- duplicates ---------------------------------------------------------------------------------

def test_marking_a_duplicate_closes_it_and_records_both_changes(staff_user):
    original, demand = make_demand(), make_demand()
    services.demand_mark_duplicate(demand=demand, original=original, actor=staff_user, expected_version=0)
    demand.refresh_from_db()
    assert (demand.status, demand.duplicate_of, demand.version) == (Status.DUPLICATE, original, 1)
    assert demand.resolved_at is not None
    assert [(e.kind, e.old_value, e.new_value) for e in events_of(demand)] == [
        (DemandEvent.Kind.DUPLICATE, "", f"#{original.pk}"),
        (DemandEvent.Kind.STATUS, Status.NEW, Status.DUPLICATE),
    ]


def test_a_duplicate_can_be_pointed_at_another_original(staff_user):
    first, second, demand = make_demand(), make_demand(), make_demand()
    services.demand_mark_duplicate(demand=demand, original=first, actor=staff_user)
    services.demand_mark_duplicate(demand=demand, original=second, actor=staff_user)
    demand.refresh_from_db()
    assert demand.duplicate_of == second
    assert [(e.kind, e.old_value, e.new_value) for e in events_of(demand)][-1] == (DemandEvent.Kind.DUPLICATE, f"#{first.pk}", f"#{second.pk}")


def test_a_demand_cannot_duplicate_itself(staff_user):
    demand = make_demand()
    with pytest.raises(TriageError, match="itself"):
        services.demand_mark_duplicate(demand=demand, original=demand, actor=staff_user)
    demand.refresh_from_db()
    assert demand.status == Status.NEW


def test_two_demands_cannot_duplicate_each_other(staff_user):
    a, b = make_demand(), make_demand()
    services.demand_mark_duplicate(demand=b, original=a, actor=staff_user)
    b.refresh_from_db()
    with pytest.raises(TriageError, match="already a duplicate"):
        services.demand_mark_duplicate(demand=a, original=b, actor=staff_user)
    a.refresh_from_db()
    assert (a.status, a.duplicate_of) == (Status.NEW, None)


def test_a_longer_duplicate_cycle_is_refused(staff_user):
    a, b, c = make_demand(), make_demand(), make_demand()
    services.demand_mark_duplicate(demand=a, original=b, actor=staff_user)
    services.demand_mark_duplicate(demand=b, original=c, actor=staff_user)
    c.refresh_from_db()
    with pytest.raises(TriageError):
        services.demand_mark_duplicate(demand=c, original=Demand.objects.get(pk=a.pk), actor=staff_user)


@pytest.mark.parametrize("closed", [Status.RESOLVED, Status.REJECTED])
def test_a_closed_demand_must_be_reopened_before_it_is_marked_duplicate(closed, staff_user):
    original, demand = make_demand(), make_demand(status=closed)
    with pytest.raises(InvalidTransition, match="Reopen"):
        services.demand_mark_duplicate(demand=demand, original=original, actor=staff_user)
    demand.refresh_from_db()
    assert (demand.status, demand.duplicate_of) == (closed, None)


def test_status_duplicate_without_naming_the_original_is_refused(staff_user):
    demand = make_demand()
    with pytest.raises(InvalidTransition, match="naming the demand it duplicates"):
        services.demand_change_status(demand=demand, status=Status.DUPLICATE, actor=staff_user)
    demand.refresh_from_db()
    assert demand.status == Status.NEW


# -- bulk ---------------------------------------------------------------------------------------

def test_bulk_update_changes_what_it_can_and_reports_each_failure(staff_user):
    fresh, closed, also_fresh = make_demand(), make_demand(status=Status.RESOLVED), make_demand()
    result = services.demand_bulk_update(
        demand_ids=[fresh.pk, closed.pk, also_fresh.pk], status=Status.IN_PROGRESS, priority=Priority.HIGH, actor=staff_user
    )
    assert result.changed == [fresh.pk, also_fresh.pk]
    assert list(result.failed) == [closed.pk]
    assert "cannot become" in result.failed[closed.pk]
    statuses = dict(Demand.objects.values_list("pk", "status"))
    priorities = dict(Demand.objects.values_list("pk", "priority"))
    assert statuses == {fresh.pk: Status.IN_PROGRESS, closed.pk: Status.RESOLVED, also_fresh.pk: Status.IN_PROGRESS}
    assert priorities[fresh.pk] == Priority.HIGH and priorities[closed.pk] == Priority.NORMAL
    assert DemandEvent.objects.filter(demand=closed).count() == 0
    assert DemandEvent.objects.filter(demand=fresh).count() == 2


def test_bulk_assignment_assigns_each_demand_through_the_service(staff_user, staff_member):
    demands = [make_demand(), make_demand()]
    result = services.demand_bulk_update(demand_ids=[d.pk for d in demands], assign=True, assignee=staff_member, actor=staff_user)
    assert sorted(result.changed) == sorted(d.pk for d in demands)
    assert set(Demand.objects.values_list("assignee", flat=True)) == {staff_member.pk}
    assert Notification.objects.filter(user=staff_member).count() == 2


# -- broadcast ----------------------------------------------------------------------------------

@pytest.fixture
def broadcasts(monkeypatch):
    calls = []
    monkeypatch.setattr(live, "broadcast_demand_changed", lambda pk, **kwargs: calls.append((pk, kwargs)))
    return calls


def test_a_change_is_broadcast_only_after_the_transaction_commits(staff_user, staff_member, broadcasts, django_capture_on_commit_callbacks):
    demand = make_demand()
    with django_capture_on_commit_callbacks() as callbacks:
        services.demand_assign(demand=demand, assignee=staff_member, actor=staff_user)
    assert broadcasts == []  # nothing left the database yet
    assert len(callbacks) == 1
    callbacks[0]()
    event = DemandEvent.objects.get(demand=demand)
    notification = Notification.objects.get()
    assert broadcasts == [(demand.pk, {"event_ids": [event.pk], "notification_ids": [notification.pk]})]


@pytest.mark.parametrize(
    "change",
    [
        lambda d, actor: services.demand_change_status(demand=d, status=Status.TRIAGED, actor=actor),
        lambda d, actor: services.demand_set_priority(demand=d, priority=Priority.LOW, actor=actor),
        lambda d, actor: services.demand_comment(demand=d, body="x", actor=actor),
        lambda d, actor: services.demand_mark_duplicate(demand=d, original=make_demand(), actor=actor),
    ],
    ids=["status", "priority", "comment", "duplicate"],
)
def test_every_change_broadcasts_once_after_commit(change, staff_user, broadcasts, django_capture_on_commit_callbacks):
    demand = make_demand()
    with django_capture_on_commit_callbacks(execute=True):
        change(demand, staff_user)
    assert [pk for pk, _ in broadcasts] == [demand.pk]
    assert broadcasts[0][1]["event_ids"] == [e.pk for e in events_of(demand)]


def test_a_refused_change_broadcasts_nothing(staff_user, other_triager, broadcasts, django_capture_on_commit_callbacks):
    demand, closed = make_demand(), make_demand(status=Status.RESOLVED)
    services.demand_set_priority(demand=demand, priority=Priority.HIGH, actor=other_triager)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(ConflictError):
            services.demand_set_priority(demand=demand, priority=Priority.LOW, actor=staff_user, expected_version=0)
        with pytest.raises(InvalidTransition):
            services.demand_change_status(demand=closed, status=Status.IN_PROGRESS, actor=staff_user)
    assert callbacks == []
    assert broadcasts == []


# -- notifications read -------------------------------------------------------------------------

def test_marking_notifications_read_touches_only_the_users_own(staff_user, staff_member):
    demand = make_demand()
    mine = Notification.objects.create(user=staff_user, demand=demand, text="a")
    also_mine = Notification.objects.create(user=staff_user, demand=demand, text="b")
    theirs = Notification.objects.create(user=staff_member, demand=demand, text="c")
    assert services.notification_mark_read(user=staff_user, notification_ids=[mine.pk, theirs.pk]) == 1
    assert services.notification_mark_read(user=staff_user) == 1
    unread = set(Notification.objects.filter(read_at__isnull=True).values_list("pk", flat=True))
    assert unread == {theirs.pk}
    assert also_mine.pk not in unread
