"""Configuration pages: thin — permission, form, one service or preview call, render."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from .. import selectors
from ..access import staff_required
from ..models import Rule, SourceApiKey, Team
from ..services import TriageError
from . import access, preview, services
from .access import config_view
from .forms import ApiKeyForm, RuleForm


def _context(request: HttpRequest, section: str, **extra) -> dict:
    return {"nav": "config", "section": section, "sections": access.visible_sections(request.user),
            "can_change": access.can_change(request.user, section), "can_add": access.can_add(request.user, section), **extra}


@require_GET
@staff_required
def index(request: HttpRequest) -> HttpResponse:
    tabs = access.tabs(request.user)
    if not tabs:
        raise PermissionDenied
    return redirect(tabs[0][1])


# -- rules -----------------------------------------------------------------------------------------

@require_GET
@config_view("rule")
def rule_list(request: HttpRequest) -> HttpResponse:
    rules = Rule.objects.select_related("assign_to", "assign_team").order_by("order", "id")
    return render(request, "config/rules.html", _context(request, "rule", rules=rules))


def _sample(request: HttpRequest) -> int:
    value = request.POST.get("sample") or request.GET.get("sample") or ""
    return int(value) if value.isdigit() else preview.PREVIEW_DEFAULT


@config_view("rule")
@require_http_methods(["GET", "POST"])
def rule_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    """Create or edit a rule. "Preview" and "Test on a demand" evaluate the form as typed and save nothing."""
    rule = get_object_or_404(Rule, pk=pk) if pk else None
    form = RuleForm(request.POST or None, instance=rule)
    context = _context(request, "rule", rule=rule, form=form, sample=_sample(request), demand_id=request.POST.get("demand", ""))
    if request.method == "POST":
        if not form.is_valid():
            return render(request, "config/rule_form.html", context, status=400)
        unsaved = form.save(commit=False)
        if "_preview" in request.POST:
            context["preview"] = preview.preview_rule(unsaved, sample=context["sample"])
        elif "_test" in request.POST:
            demand = selectors.demand_find(pk=request.POST.get("demand", ""))
            if demand is None:
                context["test_error"] = gettext("No demand with that number.")
            else:
                context["test"] = preview.rule_try_on(unsaved, demand)
        else:
            services.rule_save(rule=unsaved, actor=request.user)
            messages.success(request, gettext("Rule “%(name)s” saved; it applies to the next demands.") % {"name": unsaved.name})
            return redirect("demands:config:rules")
    elif not (access.can_change(request.user, "rule") or (rule is None and access.can_add(request.user, "rule"))):
        context["read_only"] = True
    return render(request, "config/rule_form.html", context)


@require_POST
@config_view("rule")
def rule_toggle(request: HttpRequest, pk: int) -> HttpResponse:
    rule = get_object_or_404(Rule, pk=pk)
    services.rule_set_enabled(rule=rule, enabled=request.POST.get("enabled") == "1", actor=request.user)
    return redirect("demands:config:rules")


@require_POST
@config_view("rule")
def rule_move(request: HttpRequest, pk: int) -> HttpResponse:
    rule = get_object_or_404(Rule, pk=pk)
    direction = request.POST.get("direction")
    if direction not in ("up", "down"):
        raise Http404
    services.rule_move(rule=rule, direction=direction, actor=request.user)
    return redirect("demands:config:rules")


# -- teams -----------------------------------------------------------------------------------------

@config_view("team")
@require_http_methods(["GET", "POST"])
def team_list(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        try:
            team = services.team_create(name=request.POST.get("name", ""), actor=request.user)
        except TriageError as exc:
            messages.error(request, str(exc))
        else:
            return redirect("demands:config:team", pk=team.pk)
    teams = Team.objects.prefetch_related("members").order_by("name")
    return render(request, "config/teams.html", _context(request, "team", teams=teams))


@config_view("team")
@require_http_methods(["GET", "POST"])
def team_detail(request: HttpRequest, pk: int) -> HttpResponse:
    team = get_object_or_404(Team, pk=pk)
    if request.method == "POST":
        user_id = request.POST.get("user", "")
        try:
            if not user_id.isdigit():
                raise TriageError(gettext("Choose a person."))
            if request.POST.get("action") == "remove":
                services.team_member_remove(team=team, user_id=int(user_id), actor=request.user)
            else:
                services.team_member_add(team=team, user_id=int(user_id), actor=request.user)
        except TriageError as exc:
            messages.error(request, str(exc))
        return redirect("demands:config:team", pk=team.pk)
    members = list(team.members.order_by("username"))
    candidates = selectors.staff_users().exclude(pk__in=[m.pk for m in members])
    return render(request, "config/team.html", _context(request, "team", team=team, members=members, candidates=candidates))


# -- API keys --------------------------------------------------------------------------------------

@config_view("sourceapikey")
@require_http_methods(["GET", "POST"])
def api_key_list(request: HttpRequest) -> HttpResponse:
    form = ApiKeyForm(request.POST or None)
    context = _context(request, "sourceapikey", form=form)
    if request.method == "POST" and form.is_valid():
        api_key, plain = services.api_key_create(actor=request.user, **form.cleaned_data)
        # Shown in this response only: never stored, never put in a message or the session.
        context.update(created=api_key, plain_key=plain, endpoint=request.build_absolute_uri(reverse("demands:api-ingest")),
                       form=ApiKeyForm())
    context["keys"] = SourceApiKey.objects.select_related("created_by", "revoked_by").order_by("revoked_at", "-created_at")
    response = render(request, "config/api_keys.html", context, status=400 if form.errors else 200)
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@config_view("sourceapikey")
def api_key_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    api_key = get_object_or_404(SourceApiKey, pk=pk)
    services.api_key_revoke(api_key=api_key, actor=request.user)
    messages.success(request, gettext("Key “%(name)s” revoked: requests with it now get 401.") % {"name": api_key.name})
    return redirect("demands:config:api-keys")
