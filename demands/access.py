"""Who may look and who may triage: the one place those checks are written.

- *Staff* (active, `is_staff`) may look at everything in the dashboard; anyone else gets the login
  page (pages), 401/403 (API), or a closed websocket.
- *Triagers* (staff with the "Can triage demands" permission, and superusers) may change demands.

Pages, the API, websockets, the context processor and services all ask here; templates get
`is_dashboard_staff` / `can_triage` from the context processor.
"""

from __future__ import annotations

from functools import wraps

from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import redirect_to_login
from django.http import JsonResponse
from django.utils.translation import gettext_lazy as _

from .login_throttle import ThrottledLoginMixin

TRIAGE_PERMISSION = "demands.triage_demand"


def is_staff(user) -> bool:
    """May use the dashboard at all (look)."""
    return bool(user is not None and user.is_authenticated and user.is_active and user.is_staff)


def can_triage(user) -> bool:
    """May change demands."""
    return is_staff(user) and (user.is_superuser or user.has_perm(TRIAGE_PERMISSION))


def staff_required(view):
    """Pages: anyone but active staff is sent to the login page."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not is_staff(request.user):
            return redirect_to_login(request.get_full_path(), settings.LOGIN_URL)
        return view(request, *args, **kwargs)

    return wrapper


def api_staff_required(view):
    """API: a JSON 401/403 instead of a redirect, so clients see what went wrong."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return JsonResponse({"error": "authentication required"}, status=401)
        if not is_staff(request.user):
            return JsonResponse({"error": "staff access required"}, status=403)
        return view(request, *args, **kwargs)

    return wrapper


class StaffAuthenticationForm(ThrottledLoginMixin, AuthenticationForm):
    """Only staff may sign in: the dashboard holds other people's feedback and system internals.
    Repeated failures for one username from one address are throttled (demands.login_throttle).

    A wrong password, an unknown user, an inactive account and a customer's right password all get
    one message: a distinct "not staff" answer would tell a guesser that the password was right."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": _(
            "Wrong %(username)s or password, or the account has no access to the dashboard. Both fields may be "
            "case-sensitive; ask an administrator if you need staff access."
        ),
    }

    def confirm_login_allowed(self, user):
        if not (user.is_active and user.is_staff):
            raise self.get_invalid_login_error()
