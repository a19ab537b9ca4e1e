"""Who may see and change configuration: staff with Django's model permissions (superusers have
them all). Seeing a page needs `view_<model>` or `change_<model>`; changing needs `change_` (or
`add_` to create)."""

from __future__ import annotations

from functools import wraps

from django.core.exceptions import PermissionDenied

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
