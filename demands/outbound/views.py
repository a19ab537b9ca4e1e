"""Pages of outbound notifications: the one-click action link (GET confirms, POST acts as the
recipient), Follow, the notification settings (one's own subscriptions; teams' channels for
those allowed) and the delivery log. Thin: they call outbound.subscriptions, follows and the
demand services."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from .. import services
from ..access import staff_required
from ..models import Demand, Notification, OutboundChannel, SavedView, Status, Team
from . import follows, links, subscriptions


@staff_required
@require_http_methods(["GET", "POST"])
def action(request: HttpRequest, token: str) -> HttpResponse:
    """GET: what the link would do, and a button. POST (from that page): do it, as the user."""
    try:
        link = links.read(token)
    except links.LinkError as exc:
        return render(request, "outbound/action.html", {"error": str(exc)}, status=410 if isinstance(exc, links.LinkExpired) else 400)
    if link.user_id is not None and link.user_id != request.user.pk:
        return render(request, "outbound/action.html", {
            "error": _("This link was sent to someone else. Sign in as that person, or open the demand and act there."),
            "demand_id": link.demand_id,
        }, status=403)
    demand = get_object_or_404(Demand, pk=link.demand_id)
    context = {"demand": demand, "action": link.action, "label": links.ACTIONS[link.action], "token": token}
    if request.method != "POST":
        return render(request, "outbound/action.html", context)
    try:
        _act(link.action, demand, request.user)
    except (services.TriageError, PermissionDenied) as exc:
        context["error"] = str(exc) or _("You can look at demands but not change them.")
        return render(request, "outbound/action.html", context, status=409 if isinstance(exc, services.TriageError) else 403)
    messages.success(request, _("Done: %(action)s demand #%(pk)s.") % {"action": links.ACTIONS[link.action], "pk": demand.pk})
    return redirect("demands:detail", pk=demand.pk)


def _act(name: str, demand: Demand, user) -> None:
    if name == "claim":
        services.demand_assign(demand=demand, assignee=user, team=demand.team, actor=user)
    elif name == "acknowledge":
        if demand.status == Status.NEW:
            services.demand_change_status(demand=demand, status=Status.TRIAGED, actor=user)
    elif name == "resolve":
        services.demand_change_status(demand=demand, status=Status.RESOLVED, actor=user)


@staff_required
@require_POST
def follow(request: HttpRequest, pk: int) -> HttpResponse:
    demand = get_object_or_404(Demand, pk=pk)
    if request.POST.get("follow") == "0":
        follows.unfollow(user=request.user, demand=demand)
    else:
        follows.follow(user=request.user, demand=demand)
    return redirect("demands:detail", pk=pk)


@staff_required
@require_http_methods(["GET", "POST"])
def settings_page(request: HttpRequest) -> HttpResponse:
    user, manage = request.user, subscriptions.can_manage_channels(request.user)
    if request.method == "POST":
        try:
            _save_settings(request, manage)
        except subscriptions.SubscriptionError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, _("Notification settings saved."))
        return redirect("demands:outbound-settings")
    routes = subscriptions.user_routes(user=user)
    channels = list(subscriptions.my_channels(user=user))
    kinds = [{"value": value, "label": label, "email": (value, None) in routes,
              "channels": [{"channel": channel, "on": (value, channel.pk) in routes} for channel in channels]}
             for value, label in Notification.Kind.choices]
    context = {"kinds": kinds, "channels": channels, "saved_views": SavedView.objects.filter(user=user), "manage": manage, "has_email": bool(user.email), "nav": "preferences"}
    if manage:
        context["team_channels"] = [
            {"channel": channel, "kinds": subscriptions.channel_kinds(channel=channel),
             "target": channel.target if user.is_superuser else subscriptions.mask_target(channel.target)}
            for channel in subscriptions.team_channels()
        ]
        context.update(teams=Team.objects.all(), platforms=OutboundChannel.Kind.choices, all_kinds=Notification.Kind.choices)
    return render(request, "outbound/settings.html", context)


def _save_settings(request: HttpRequest, manage: bool) -> None:
    section = request.POST.get("section")
    if section == "mine":
        routes = set()
        for value in request.POST.getlist("route"):
            kind, _sep, channel = value.partition(":")
            routes.add((kind, int(channel) if channel.isdigit() else None))
        subscriptions.user_routes_set(user=request.user, routes=routes)
        subscriptions.saved_view_notify_set(user=request.user, view_ids={
            int(pk) for pk in request.POST.getlist("saved_view") if pk.isdigit()})
    elif section == "channel" and manage:
        channel = get_object_or_404(OutboundChannel, pk=request.POST.get("channel"))
        subscriptions.channel_kinds_set(actor=request.user, channel=channel, kinds=set(request.POST.getlist("kind")))
    elif section == "new-channel" and manage:
        team_id = request.POST.get("team")
        subscriptions.channel_create(
            actor=request.user, name=request.POST.get("name", ""), kind=request.POST.get("kind", ""),
            target=request.POST.get("target", ""), secret=request.POST.get("secret", ""),
            team=Team.objects.filter(pk=team_id).first() if team_id and team_id.isdigit() else None,
            language=request.POST.get("language", ""),
        )
    else:
        raise PermissionDenied


@staff_required
@require_GET
def delivery_log(request: HttpRequest) -> HttpResponse:
    rows = list(subscriptions.delivery_log(user=request.user))
    for row in rows:
        row.shown_target = row.target if request.user.is_superuser else subscriptions.mask_target(row.target)
    return render(request, "outbound/deliveries.html", {"rows": rows, "nav": "preferences"})
