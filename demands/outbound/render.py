"""An outbox row → the `Message` every channel renders, in the recipient's language.

Rendered when sent, not when queued: the ingest transaction only writes rows, and the text shows
the demand as it is when the message leaves (a claimed demand offers no Claim link any more).
"""

from __future__ import annotations

from datetime import datetime

from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from ..models import Demand, OutboundMessage, Priority, Status
from . import links
from .channels.message import Message

PREVIEW_CHARS = 200
DIGEST_SAMPLE = 10  # demands listed by name in a digest


def _group_title(row: OutboundMessage, demand: Demand) -> str:
    group, count = row.summary["group"], row.summary.get("count", 1)
    if row.kind == "team":
        return ngettext("Group #%(group)s (%(count)s open demand) is assigned to your team %(team)s",
                        "Group #%(group)s (%(count)s open demands) is assigned to your team %(team)s", count) % {
            "group": group, "count": count, "team": demand.team.name if demand.team_id else ""}
    return ngettext("Group #%(group)s (%(count)s open demand) is assigned to you",
                    "Group #%(group)s (%(count)s open demands) is assigned to you", count) % {"group": group, "count": count}


def _title(row: OutboundMessage, demand: Demand) -> str:
    if row.kind in ("assigned", "team") and row.summary.get("group"):
        return _group_title(row, demand)
    pk = demand.pk
    titles = {
        "assigned": _("Demand #%(pk)s is assigned to you"),
        "team": _("Demand #%(pk)s is assigned to your team %(team)s"),
        "comment": _("New comment on demand #%(pk)s"),
        "sla": _("SLA at risk or breached: demand #%(pk)s"),
        "escalation": _("Escalation: demand #%(pk)s"),
        "saved_view": _("New demand #%(pk)s in one of your saved views"),
        "rule": _("Demand #%(pk)s matched the rule “%(rule)s”"),
    }
    template = titles.get(row.kind, _("Demand #%(pk)s"))
    return template % {"pk": pk, "team": demand.team.name if demand.team_id else "", "rule": row.summary.get("rule", "")}


def demand_url(pk: int) -> str:
    return links.absolute(reverse("demands:detail", args=[pk]))


def _actions(row: OutboundMessage, demand: Demand, now: datetime) -> list[tuple[str, str]]:
    if demand.is_closed or row.kind == "rule" and row.channel and row.channel.kind == "webhook":
        return []
    wanted = ["acknowledge", "resolve"] if demand.assignee_id else ["claim", "acknowledge", "resolve"]
    if demand.status != Status.NEW:
        wanted.remove("acknowledge")
    user_id = row.user_id if row.channel_id is None else None
    return [(str(links.ACTIONS[action]), links.action_url(user_id=user_id, demand_id=demand.pk, action=action, now=now))
            for action in wanted]


def message_for(row: OutboundMessage, *, now: datetime) -> Message:
    with translation.override(row.language or None):
        if row.kind == "digest":
            return _digest(row)
        demand = Demand.objects.select_related("team", "assignee").get(pk=row.demand_id)
        lines = [
            _("Priority: %(priority)s · Status: %(status)s · Source: %(source)s · Type: %(type)s") % {
                "priority": Priority(demand.priority).label, "status": Status(demand.status).label,
                "source": demand.source, "type": demand.type},
            demand.content[:PREVIEW_CHARS],
        ]
        if row.summary.get("text"):  # SLA and escalation: the timer's own words
            lines.append(row.summary["text"])
        title = _title(row, demand)
        return Message(
            title=title, lines=lines, url=demand_url(demand.pk), link_label=_("Open the demand"),
            actions=_actions(row, demand, now), urgent=demand.priority == Priority.URGENT,
            event=f"notification.{row.kind}",
            data={"demand": {"id": demand.pk, "source": demand.source, "message_id": demand.message_id, "type": demand.type,
                             "priority": demand.priority, "status": demand.status, "team_id": demand.team_id,
                             "assignee_id": demand.assignee_id}, "kind": row.kind, "delivery_id": row.pk},
        )


def _digest(row: OutboundMessage) -> Message:
    count, urgent = row.summary.get("count", 0), row.summary.get("urgent", 0)
    title = ngettext(
        "%(count)s notification arrived while the consumer was catching up; %(urgent)s urgent",
        "%(count)s notifications arrived while the consumer was catching up; %(urgent)s urgent", count,
    ) % {"count": f"{count:,}", "urgent": f"{urgent:,}"}
    sample = Demand.objects.filter(pk__in=row.summary.get("sample", [])).order_by("-id")
    lines = [f"#{demand.pk} [{Priority(demand.priority).label}] {demand.content[:80]}" for demand in sample]
    if count > len(lines):
        lines.append(_("… and %(n)s more.") % {"n": f"{count - len(lines):,}"})
    personal = row.channel_id is None
    return Message(title=title, lines=lines, url=links.absolute(reverse("demands:notifications" if personal else "demands:list")),
                   link_label=_("Open my notifications") if personal else _("Open the demands"), urgent=urgent > 0, event="notification.digest",
                   data={"kind": "digest", "count": count, "urgent": urgent, "sample": row.summary.get("sample", []),
                         "delivery_id": row.pk})
