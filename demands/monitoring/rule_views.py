"""The alert-rules pages (staff): the list, create / edit / enable / disable, "test now" and the
24-hour back-test. Looking is for staff; changing needs the model permission (add / change
alert rule; superusers have both). Webhook URL and secret are credentials: superusers only. Thin:
rules.py does the work."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from demands.access import staff_required

from .models import Alert, AlertRule
from .rules import alert_rule_backtest, alert_rule_save, alert_rule_set_enabled, alert_rule_test

FIELDS = [
    "name", "enabled", "kind", "severity", "threshold", "window_minutes", "min_messages", "consumer_group",
    "match_type", "match_source", "group_by", "renotify_minutes", "notify_browser", "notify_on_resolve", "email_to",
    "action_set_priority", "action_assign_to", "action_assign_team",
]
SECRET_FIELDS = ["webhook_url", "webhook_secret"]


def may_change(user, rule: AlertRule | None = None) -> bool:
    return user.has_perm("demands.change_alertrule" if rule is not None and rule.pk else "demands.add_alertrule")


class AlertRuleForm(forms.ModelForm):
    class Meta:
        model = AlertRule
        fields = FIELDS + SECRET_FIELDS
        widgets = {"webhook_secret": forms.PasswordInput(render_value=False)}

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        if not user.is_superuser:  # credentials: neither shown nor changed by others
            for name in SECRET_FIELDS:
                self.fields.pop(name)
        elif self.instance.pk and self.instance.webhook_secret:
            self.fields["webhook_secret"].help_text = _("Set. Leave empty to keep it.")

    def clean_webhook_secret(self):
        secret = self.cleaned_data.get("webhook_secret", "")
        return secret or (self.instance.webhook_secret if self.instance.pk else "")


@require_GET
@staff_required
def rule_list(request: HttpRequest) -> HttpResponse:
    rules = list(AlertRule.objects.order_by("-enabled", "name", "id"))
    open_counts: dict[int, int] = {}
    for rule_id in Alert.objects.filter(resolved_at__isnull=True, rule__isnull=False).values_list("rule_id", flat=True):
        open_counts[rule_id] = open_counts.get(rule_id, 0) + 1
    for rule in rules:
        rule.open_alerts = open_counts.get(rule.pk, 0)
    return render(request, "monitoring/rules.html", {
        "rules": rules, "may_add": may_change(request.user), "may_edit": request.user.has_perm("demands.change_alertrule"),
        "nav": "monitoring",
    })


@require_http_methods(["GET", "POST"])
@staff_required
def rule_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    rule = get_object_or_404(AlertRule, pk=pk) if pk is not None else AlertRule()
    allowed = may_change(request.user, rule)
    if request.method == "POST" and "test" not in request.POST and not allowed:  # testing changes nothing
        return HttpResponse(_("You may not change alert rules."), status=403)
    form = AlertRuleForm(request.POST or None, instance=rule, user=request.user)
    tested = backtest = None
    if request.method == "POST" and form.is_valid():
        candidate = form.save(commit=False)
        if "test" in request.POST:  # try the rule as typed, saving nothing
            tested, backtest = alert_rule_test(rule=candidate), alert_rule_backtest(rule=candidate)
        else:
            alert_rule_save(rule=candidate, actor=request.user)
            messages.success(request, _("Alert rule saved: the monitor evaluates it from its next tick."))
            return redirect("demands:monitoring:rule", pk=candidate.pk)
    elif request.method == "GET" and rule.pk:
        tested, backtest = alert_rule_test(rule=rule), alert_rule_backtest(rule=rule)
    return render(request, "monitoring/rule_form.html", {
        "form": form, "rule": rule, "may_change": allowed, "tested": tested, "backtest": backtest, "nav": "monitoring",
    })


@require_POST
@staff_required
def rule_toggle(request: HttpRequest, pk: int) -> HttpResponse:
    rule = get_object_or_404(AlertRule, pk=pk)
    if not request.user.has_perm("demands.change_alertrule"):
        return HttpResponse(_("You may not change alert rules."), status=403)
    rule = alert_rule_set_enabled(rule=rule, enabled=request.POST.get("enabled") == "1", actor=request.user)
    messages.success(request, _("Rule enabled.") if rule.enabled else _("Rule disabled: its open alerts resolve at the next tick."))
    return redirect("demands:monitoring:rules")
