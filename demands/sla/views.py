"""The SLA policy pages: the list for staff, create and edit for triagers allowed to change policies."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from ..access import can_triage, staff_required
from . import selectors
from .forms import SlaPolicyForm, StepFormSet
from .models import SlaPolicy

EDIT_PERMISSION = "demands.change_slapolicy"


def can_edit_policies(user) -> bool:
    return can_triage(user) and (user.is_superuser or user.has_perm(EDIT_PERMISSION))


@require_GET
@staff_required
def policy_list(request: HttpRequest) -> HttpResponse:
    return render(request, "demands/sla/policies.html", {
        "policies": selectors.policy_list(), "can_edit": can_edit_policies(request.user), "nav": "sla",
    })


@require_http_methods(["GET", "POST"])
@staff_required
def policy_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    """Create (no pk) or edit a policy with its steps; saving re-times open demands (the tick)."""
    if not can_edit_policies(request.user):
        raise PermissionDenied(_("You may look at SLA policies but not change them."))
    policy = get_object_or_404(SlaPolicy, pk=pk) if pk else SlaPolicy()
    form = SlaPolicyForm(request.POST or None, instance=policy)
    steps = StepFormSet(request.POST or None, instance=policy, prefix="steps")
    if request.method == "POST" and form.is_valid() and steps.is_valid():
        with transaction.atomic():
            policy = form.save()
            steps.instance = policy
            steps.save()
        messages.success(request, _("SLA policy “%(name)s” saved; open demands are re-timed within a minute.") % {"name": policy.name})
        return redirect("demands:sla-policies")
    return render(request, "demands/sla/policy_form.html", {"form": form, "steps": steps, "policy": policy, "nav": "sla"})
