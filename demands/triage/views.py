"""The one triage form of a demand: every changed field and the comment in one post.

htmx posts get the triage panel back, with the summary, the history and a confirmation toast
swapped out of band (a post from the list, `from=list`, gets only the toast: its row updates
live); a plain post (no JavaScript) redirects to the demand with the same words as a message.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from .. import selectors
from ..models import TRANSITIONS, Priority, Status
from ..access import can_triage, staff_required
from ..services import TriageError
from . import services as triage

FIELD_LABELS = {"status": _("Status"), "priority": _("Priority"), "assignee": _("Assignee"), "team": _("Team")}


class BadInput(TriageError):
    pass


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def _wanted(request: HttpRequest) -> dict:
    """The fields this post changes: those sent whose value differs from the `was_` value the form
    was rendered with (a post without `was_<field>`, from a menu or the list, changes what it sends)."""
    post, wanted = request.POST, {}
    for name in triage.FIELDS:
        if name not in post or post.get(f"was_{name}") == post[name]:
            continue
        value = post[name].strip()
        if name == "assignee":
            if value == "me":
                wanted[name] = request.user
            elif value in ("", "none"):
                wanted[name] = None
            elif (person := selectors.staff_user_find(value=value) if value.isdigit() else None) is None:
                raise BadInput(gettext("No such staff member."))
            else:
                wanted[name] = person
        elif name == "team":
            if value in ("", "none"):
                wanted[name] = None
            elif (team := selectors.team_find(value=value) if value.isdigit() else None) is None:
                raise BadInput(gettext("No such team."))
            else:
                wanted[name] = team
        elif value:
            wanted[name] = value
    return wanted


def confirmation(outcome: triage.TriageOutcome) -> str:
    """ "Status → In progress · Priority → Urgent · Comment added" """
    parts = [gettext("%(field)s → %(value)s") % {"field": FIELD_LABELS[name], "value": value} for name, value in outcome.changed]
    if outcome.comment is not None:
        parts.append(gettext("Comment added"))
    return " · ".join(parts)


def panel_context(request: HttpRequest, demand, *, outcome: triage.TriageOutcome | None = None, error: str = "") -> dict:
    events = selectors.demand_history(demand=demand)
    conflicts = outcome.conflicts if outcome else {}
    context = {
        "demand": demand,
        "events": events,
        "statuses": [(v, label) for v, label in Status.choices if v in TRANSITIONS[demand.status] and v != Status.DUPLICATE],
        "priorities": Priority.choices,
        "staff": selectors.staff_users(),
        "teams": selectors.team_list(),
        "can_triage": can_triage(request.user),
        "triage_error": error,
        "meanwhile": outcome.meanwhile if outcome else [],
        "conflict_fields": ", ".join(str(FIELD_LABELS[name]) for name in conflicts),
    }
    # A conflicting choice is pre-filled, so one click on Save applies it over the other change.
    if "status" in conflicts and conflicts["status"] in TRANSITIONS[demand.status]:
        context["chosen_status"] = conflicts["status"]
    if "priority" in conflicts:
        context["chosen_priority"] = conflicts["priority"]
    if "assignee" in conflicts:
        context["chosen_assignee"] = getattr(conflicts["assignee"], "pk", "")
    if "team" in conflicts:
        context["chosen_team"] = getattr(conflicts["team"], "pk", "")
    return context


@require_POST
@staff_required
def demand_triage(request: HttpRequest, pk: int) -> HttpResponse:
    demand = selectors.demand_find(pk=pk)
    if demand is None:
        raise Http404("No such demand")
    outcome, error = None, ""
    try:
        outcome = triage.demand_triage(
            demand=demand, actor=request.user, expected_version=_int(request.POST.get("version")),
            seen_event=_int(request.POST.get("seen")), comment=request.POST.get("body", ""), **_wanted(request),
        )
    except PermissionDenied as exc:
        error = str(exc) or gettext("You cannot change demands.")
    except TriageError as exc:
        error = str(exc)
    said = confirmation(outcome) if outcome else ""
    if outcome and not said and not outcome.conflicts:
        said = gettext("Nothing to change.")
    if not request.htmx:
        if error:
            messages.error(request, error)
        if outcome and outcome.meanwhile:
            messages.warning(request, gettext("Changed meanwhile: %(what)s.") % {"what": "; ".join(outcome.meanwhile)})
        if outcome and outcome.conflicts:
            messages.warning(request, gettext("Not applied, because someone else changed it: %(fields)s.") % {
                "fields": ", ".join(str(FIELD_LABELS[name]) for name in outcome.conflicts)})
        if said:
            messages.success(request, said)
        return redirect("demands:detail", pk=pk)
    if request.POST.get("from") == "list":
        return render(request, "demands/_triage_response.html", {"toast": error or said, "toast_error": bool(error), "list": True})
    demand = selectors.demand_get(pk=pk)
    context = panel_context(request, demand, outcome=outcome, error=error)
    context.update({"toast": said, "oob": True})
    return render(request, "demands/_triage_response.html", context)

