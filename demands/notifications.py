"""In-page notifications: who is told about a change, and what they read. One builder for people,
rules and the system.

`services` (a person's change) and `pipeline.persist` (a rule's change at ingest) both build their
notifications here, so the recipients of an assignment (the assignee, or the team's active members
but the assignee and the actor) and the text are the same whoever made it. Callers save the rows
(one at a time in a request, in bulk at ingest) and broadcast them after commit (`live`).

Texts are put together lazily (`later`) and translated when they are saved, in each recipient's
language (`UserPreference.language`, else `LANGUAGE_CODE`), not in the actor's or the process's:
an English reader assigned by a Chinese colleague, or reminded by the SLA timer, reads English —
in the page and in the outbound messages that quote the text.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager

from django.conf import settings
from django.utils import timezone, translation
from django.utils.functional import lazy
from django.utils.translation import gettext, gettext_noop, ngettext

from .models import Notification, Team
from .outbound import dispatch

PREVIEW_CHARS = 120  # of the demand's content, after the sentence


def _translated(message: str, params: dict) -> str:
    return gettext(message) % {key: str(value) for key, value in params.items()}


_later = lazy(_translated, str)


def later(message: str, **params):
    """`gettext(message) % params`, translated when it is turned into text (see save): mark the
    msgid with gettext_noop so makemessages finds it. Parameters may be `later` texts too."""
    return _later(message, params)


_compose = lazy(lambda who, what, preview: f"{who} {what}: {preview}", str)


def display_name(user) -> str:
    """How a person is named in history and notifications."""
    if user is None:
        return ""
    return user.get_full_name() or user.get_username()


# The SLA policy the system is acting for (its escalation steps), as (id, name): history entries
# and notifications made meanwhile by the services name it instead of "a rule".
_acting_policy: contextvars.ContextVar[tuple[int, str] | None] = contextvars.ContextVar("acting_sla_policy", default=None)


@contextmanager
def acting_for_sla_policy(policy_id: int, name: str):
    token = _acting_policy.set((policy_id, name))
    try:
        yield
    finally:
        _acting_policy.reset(token)


def acting_sla_policy_id() -> int | None:
    acting = _acting_policy.get()
    return acting[0] if acting else None


def sla_policy_label(name: str):
    return later(gettext_noop("SLA policy “%(name)s”"), name=name)


def actor_label(*, actor=None, rule_name: str | None = None):
    """Who did it: a person, a named rule, an SLA policy, or the system (a rule or an alert without a name)."""
    if actor is not None:
        return display_name(actor)
    if rule_name:
        return later(gettext_noop("Rule “%(name)s”"), name=rule_name)
    acting = _acting_policy.get()
    if acting:
        return sla_policy_label(acting[1])
    return later(gettext_noop("A rule"))


def build(*, user_id: int, demand, who, what, created_at=None,
          kind: str = Notification.Kind.ASSIGNED) -> Notification:
    """One unsaved notification: "<who> <what>: <the demand's first words>" (`who` and `what`
    are `later` texts or plain strings; `save` translates them for the recipient)."""
    return Notification(
        user_id=user_id, demand_id=demand.pk, text=_compose(who, what, demand.content[:PREVIEW_CHARS]),
        created_at=created_at or timezone.now(), kind=kind,
    )


def recipient_languages(user_ids) -> dict[int, str]:
    """Each user's language: their preference, else the site's (one query)."""
    from .models import UserPreference

    chosen = dict(UserPreference.objects.filter(user_id__in=set(user_ids)).exclude(language="").values_list("user_id", "language"))
    return {pk: chosen.get(pk, settings.LANGUAGE_CODE) for pk in user_ids}


def _translate_for_recipients(rows: list[Notification]) -> None:
    languages = recipient_languages({row.user_id for row in rows})
    max_length = Notification._meta.get_field("text").max_length
    for language in set(languages.values()):
        with translation.override(language):
            for row in rows:
                if languages[row.user_id] == language:
                    row.text = str(row.text)[:max_length]


def save(rows: list[Notification]) -> list[Notification]:
    """Save notifications (one statement), their texts translated for each recipient. Every
    caller — a person's change, a rule at ingest, an SLA timer — saves through here, so what else
    a notification sets off is added in one place: the outbox rows of the recipients' subscribed
    channels (outbound.dispatch), in the same transaction, sent by the delivery worker after commit."""
    if not rows:
        return []
    _translate_for_recipients(rows)
    saved = Notification.objects.bulk_create(rows)
    dispatch.enqueue(saved)
    return saved


def assigned_to_you(pk: int):
    return later(gettext_noop("assigned demand #%(pk)s to you"), pk=pk)


def assigned_to_team(pk: int, team_name: str):
    return later(gettext_noop("assigned demand #%(pk)s to your team %(team)s"), pk=pk, team=team_name)


def commented(pk: int):
    return later(gettext_noop("commented on demand #%(pk)s"), pk=pk)


def team_recipients(team: Team, *, skip: set[int | None]) -> list[int]:
    """The team's active members that an assignment to the team tells (not the assignee, not the actor)."""
    return [pk for pk in team.members.filter(is_active=True).values_list("pk", flat=True) if pk not in skip]


def for_assignment(*, demand, who: str, assignee_id: int | None = None, team: Team | None = None,
                   actor_id: int | None = None, created_at=None) -> list[Notification]:
    """Unsaved notifications for assigning `demand` to a person and/or a team."""
    notifications = []
    if assignee_id is not None and assignee_id != actor_id:
        notifications.append(build(user_id=assignee_id, demand=demand, who=who, what=assigned_to_you(demand.pk),
                                   created_at=created_at, kind=Notification.Kind.ASSIGNED))
    if team is not None:
        what = assigned_to_team(demand.pk, team.name)
        notifications.extend(
            build(user_id=pk, demand=demand, who=who, what=what, created_at=created_at, kind=Notification.Kind.TEAM)
            for pk in team_recipients(team, skip={actor_id, assignee_id, demand.assignee_id})
        )
    return notifications


def _group_assigned_to_you(group_pk: int, count: int, title: str) -> str:
    return ngettext("assigned group #%(group)s (%(count)s open demand) to you: %(title)s",
                    "assigned group #%(group)s (%(count)s open demands) to you: %(title)s", count) % {
        "group": group_pk, "count": count, "title": title}


def _group_assigned_to_team(group_pk: int, count: int, title: str, team_name: str) -> str:
    return ngettext("assigned group #%(group)s (%(count)s open demand) to your team %(team)s: %(title)s",
                    "assigned group #%(group)s (%(count)s open demands) to your team %(team)s: %(title)s", count) % {
        "group": group_pk, "count": count, "title": title, "team": team_name}


_group_you, _group_team = lazy(_group_assigned_to_you, str), lazy(_group_assigned_to_team, str)
_compose_group = lazy(lambda who, what: f"{who} {what}", str)


def for_group_assignment(*, group, demand, count: int, who, assignee_id: int | None = None, team: Team | None = None,
                         actor_id: int | None = None, skip=()) -> list[Notification]:
    """Unsaved notifications for assigning a group's `count` open demands at once: one per person,
    on `demand` (one of them), naming the group instead of quoting the demand."""
    title = group.title[:PREVIEW_CHARS]
    rows: list[Notification] = []
    if assignee_id is not None and assignee_id != actor_id:
        rows.append(Notification(user_id=assignee_id, demand_id=demand.pk, kind=Notification.Kind.ASSIGNED,
                                 text=_compose_group(who, _group_you(group.pk, count, title)), created_at=timezone.now()))
    if team is not None:
        what = _group_team(group.pk, count, title, team.name)
        rows.extend(Notification(user_id=pk, demand_id=demand.pk, kind=Notification.Kind.TEAM, text=_compose_group(who, what),
                                 created_at=timezone.now())
                    for pk in team_recipients(team, skip={actor_id, assignee_id, *skip}))
    for row in rows:  # not stored on the row: what outbound.dispatch puts in the message's summary
        row.outbound_summary = {"group": group.pk, "count": count}
    return rows
