"""Who may see and change configuration: staff with Django's model permissions (superusers have
them all). Seeing a page needs `view_<model>` or `change_<model>`; changing needs `change_` (or
`add_` to create).

The Settings tabs (`tabs`) also lead to the configuration pages that live elsewhere — SLA policies,
alert rules, notification channels and subscriptions — each shown to whoever may look at it there,
so configuration is one place in the product."""

from __future__ import annotations

from functools import wraps

from django.core.exceptions import PermissionDenied
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from ..access import is_staff, staff_required

SECTIONS = ("rule", "team", "sourceapikey")


def can_see(user, model: str) -> bool:
    return is_staff(user) and (user.has_perm(f"demands.view_{model}") or user.has_perm(f"demands.change_{model}"))


def can_change(user, model: str) -> bool:
    return is_staff(user) and user.has_perm(f"demands.change_{model}")


def can_add(user, model: str) -> bool:
    return is_staff(user) and user.has_perm(f"demands.add_{model}")


def visible_sections(user) -> list[str]:
    return [model for model in SECTIONS if can_see(user, model)]


# (key, URL name, label, who sees the tab): the config sections first, then pages of other modules.
_TABS = (
    ("rule", "demands:config:rules", _("Rules"), lambda user: can_see(user, "rule")),
    ("team", "demands:config:teams", _("Teams"), lambda user: can_see(user, "team")),
    ("sourceapikey", "demands:config:api-keys", _("API keys"), lambda user: can_see(user, "sourceapikey")),
    ("slapolicy", "demands:sla-policies", _("SLA policies"), lambda user: can_see(user, "slapolicy")),
    ("alertrule", "demands:monitoring:rules", _("Alert rules"), lambda user: can_see(user, "alertrule")),
    # Every staff member chooses their own notifications there; channel managers also the teams'.
    ("notifications", "demands:outbound-settings", _("Notifications"), is_staff),
)


def tabs(user) -> list[tuple[str, str, str]]:
    """The Settings tabs this user may open: [(key, URL, label)], in order."""
    return [(key, reverse(name), str(label)) for key, name, label, visible in _TABS if visible(user)]


def check(user, model: str, action: str = "change") -> None:
    allowed = {"see": can_see, "change": can_change, "add": can_add}[action](user, model)
    if not allowed:
        raise PermissionDenied


def config_view(model: str):
    """A page of one section: staff only (else the login page), and allowed to see it (else 403)."""

    def decorator(view):
        @staff_required
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            check(request.user, model, "see")
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
