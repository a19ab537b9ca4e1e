"""Configuration writes from the product's pages: rules (save, enable/disable, reorder), teams and
their members, API keys. Each checks the actor's permission (config.access) itself, so a crafted
request cannot skip it; rule changes reach every consumer through the RuleBook's reload."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils.translation import gettext as _

from ..intake import keys
from ..models import Rule, SourceApiKey, Team
from ..services import TriageError
from .access import check

ORDER_STEP = 10


def rule_save(*, rule: Rule, actor) -> Rule:
    """Create or update a rule from a validated form's instance; ingest tries it afresh."""
    check(actor, "rule", "change" if rule.pk else "add")
    rule.match_error, rule.match_error_at = "", None
    if rule.order is None:  # left blank: runs after every other rule
        last = Rule.objects.order_by("-order").values_list("order", flat=True).first()
        rule.order = (last or 0) + ORDER_STEP
    rule.save()
    return rule


def rule_set_enabled(*, rule: Rule, enabled: bool, actor) -> Rule:
    check(actor, "rule")
    rule.enabled = enabled
    rule.save(update_fields=["enabled", "updated_at"])
    return rule


@transaction.atomic
def rule_move(*, rule: Rule, direction: str, actor) -> list[Rule]:
    """Move a rule one place up (runs earlier) or down; orders are renumbered 10, 20, 30…"""
    check(actor, "rule")
    ordered = list(Rule.objects.select_for_update().order_by("order", "id"))
    index = next(i for i, r in enumerate(ordered) if r.pk == rule.pk)
    target = index - 1 if direction == "up" else index + 1
    if 0 <= target < len(ordered):
        ordered[index], ordered[target] = ordered[target], ordered[index]
    for position, item in enumerate(ordered, start=1):
        if item.order != position * ORDER_STEP:
            item.order = position * ORDER_STEP
            item.save(update_fields=["order", "updated_at"])
    return ordered


def team_create(*, name: str, actor) -> Team:
    check(actor, "team", "add")
    name = (name or "").strip()
    if not name:
        raise TriageError(_("Give the team a name."))
    if Team.objects.filter(name=name).exists():
        raise TriageError(_("There is a team “%(name)s” already.") % {"name": name})
    return Team.objects.create(name=name[:100])


def team_member_add(*, team: Team, user_id: int, actor) -> None:
    check(actor, "team")
    user = get_user_model().objects.filter(pk=user_id, is_active=True, is_staff=True).first()
    if user is None:
        raise TriageError(_("Only active staff members can join a team."))
    team.members.add(user)


def team_member_remove(*, team: Team, user_id: int, actor) -> None:
    check(actor, "team")
    team.members.remove(user_id)


def api_key_create(*, actor, **fields) -> tuple[SourceApiKey, str]:
    """A new key; the plain key is returned once, to be shown once (intake.keys)."""
    check(actor, "sourceapikey", "add")
    return keys.api_key_create(created_by=actor, **fields)


def api_key_revoke(*, api_key: SourceApiKey, actor) -> SourceApiKey:
    check(actor, "sourceapikey")
    return keys.api_key_revoke(api_key=api_key, actor=actor)
