"""Django admin for every model. Changes to demands go through the same services as the pages."""

import dataclasses
import re

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.utils.functional import lazy
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from . import services
from .pipeline import rules as rules_module
from .intake import admin as _intake_admin  # noqa: F401  (API keys and rejected messages)
from .outbound import admin as _outbound_admin  # noqa: F401  (channels, subscriptions, follows, the outbox)
from .login_throttle import ThrottledAdminAuthenticationForm
from .models import (
    Demand,
    DemandEvent,
    DemandGroup,
    Notification,
    Priority,
    Rule,
    SavedView,
    Status,
    Team,
    UserPreference,
)

PREVIEW_SAMPLE = 10_000
RULE_ACTIONS = ("set_priority", "add_tags", "set_category", "assign_to", "assign_team", "archive_on_arrival", "notify_channel")


class DemandEventInline(admin.TabularInline):
    model = DemandEvent
    extra = 0
    can_delete = False
    fields = ("created_at", "kind", "actor", "rule", "old_value", "new_value", "body")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


def _status_action(status):
    def action(modeladmin, request, queryset):
        _bulk(request, queryset, status=status)

    action.__name__ = f"set_status_{status}"
    # Lazy, so the admin shows it in the reader's language (a % on a lazy string is done at import).
    action.short_description = lazy(lambda: gettext("Set status: %(status)s") % {"status": Status(status).label}, str)()
    return action


def _priority_action(priority):
    def action(modeladmin, request, queryset):
        _bulk(request, queryset, priority=priority)

    action.__name__ = f"set_priority_{priority}"
    action.short_description = lazy(lambda: gettext("Set priority: %(priority)s") % {"priority": Priority(priority).label}, str)()
    return action


def _bulk(request, queryset, **change):
    try:
        result = services.demand_bulk_update(demand_ids=list(queryset.values_list("pk", flat=True)), actor=request.user, **change)
    except (PermissionDenied, services.TriageError) as exc:  # not a triager; too many selected
        messages.error(request, str(exc))
        return
    if result.changed:
        messages.success(request, gettext("Changed %(n)d demand(s).") % {"n": len(result.changed)})
    for pk, reason in list(result.failed.items())[:10]:
        messages.error(request, f"#{pk}: {reason}")


@admin.register(Demand)
class DemandAdmin(admin.ModelAdmin):
    list_display = ("id", "source", "message_id", "type", "priority", "status", "assignee", "team", "short_content", "received_at")
    list_filter = ("status", "priority", "type", "source", "team")
    search_fields = ("message_id", "content")
    list_select_related = ("assignee", "team")
    show_full_result_count = False  # no COUNT(*) over millions of rows on every page
    list_per_page = 50
    inlines = [DemandEventInline]
    actions = [*(_status_action(s) for s in (Status.TRIAGED, Status.IN_PROGRESS, Status.RESOLVED, Status.REJECTED)),
               *(_priority_action(p) for p in Priority.values)]
    # Triage fields change through the services (history, versions, live updates): edit them on
    # the dashboard or with the actions above; the admin shows the record as stored.
    readonly_fields = [field.name for field in Demand._meta.fields]

    def has_add_permission(self, request):
        return False  # demands arrive from Kafka (or HTTP ingest), never typed in

    @admin.display(description=_("content"))
    def short_content(self, obj):
        return obj.content[:80]


class RuleAdminForm(forms.ModelForm):
    class Meta:
        model = Rule
        fields = "__all__"

    def clean_match_regex(self):
        pattern = self.cleaned_data["match_regex"]
        if pattern:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise forms.ValidationError(_("Not a valid regular expression: %(error)s"), params={"error": str(exc)})
            error = rules_module.validate_regex(pattern)
            if error:
                raise forms.ValidationError(
                    _("Patterns run in linear time (RE2), which has no backreferences and lookarounds; "
                      "this one cannot run: %(error)s"),
                    params={"error": error},
                )
        return pattern

    def clean(self):
        cleaned = super().clean()
        if not any(cleaned.get(name) for name in RULE_ACTIONS):
            raise forms.ValidationError(_("A rule needs at least one action: priority, tags, category, assignment or archive."))
        return cleaned


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin):
    """Rules apply at ingest in `order`. "Preview" shows what a rule would match before saving."""

    form = RuleAdminForm
    list_display = ("name", "order", "enabled", "match_types", "match_sources", "match_keywords", "match_regex", "set_priority", "assign_to", "assign_team", "skipped_because")
    list_editable = ("order", "enabled")
    list_filter = ("enabled",)
    search_fields = ("name",)
    change_form_template = "admin/demands/rule/change_form.html"
    fieldsets = (
        (None, {"fields": ("name", "order", "enabled", "stop_processing")}),
        (_("Match (all given conditions must hold)"), {"fields": ("match_types", "match_sources", "match_keywords", "match_regex")}),
        (_("Actions"), {"fields": RULE_ACTIONS}),
    )

    @admin.display(description=_("skipped at ingest because"))
    def skipped_because(self, obj):
        return obj.match_error[:200]

    def save_model(self, request, obj, form, change):
        # Edited: let ingest try it afresh (it records the error again if there still is one).
        obj.match_error, obj.match_error_at = "", None
        super().save_model(request, obj, form, change)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        if request.method == "POST" and "_preview" in request.POST:
            return self._preview(request, object_id, form_url, extra_context)
        return super().changeform_view(request, object_id, form_url, extra_context)

    def _preview(self, request, object_id, form_url, extra_context):
        instance = self.get_object(request, object_id) if object_id else None
        form_class = self.get_form(request, instance)
        form = form_class(request.POST, instance=instance)
        context = {**(extra_context or {})}
        if form.is_valid():
            rule = form.save(commit=False)
            preview = preview_rule(rule)
            context["rule_preview"] = preview
            messages.info(
                request,
                gettext("Would match %(matched)d of the latest %(sample)d demands.") % {"matched": preview["matched"], "sample": preview["sample"]},
            )
        # Re-render the form with what was typed: nothing is saved.
        request.method = "GET"
        request.GET = request.GET.copy()
        response = super().changeform_view(request, object_id, form_url, context)
        if isinstance(response, TemplateResponse):
            response.context_data["adminform"].form = form
            response.context_data["errors"] = admin.helpers.AdminErrorList(form, [])
        return response


def preview_rule(rule: Rule) -> dict:
    """How many of the latest demands `rule` matches, with a few examples (same matcher as ingest)."""
    # id None: an error met here (the pattern may be unsaved) is not recorded on the stored rule.
    compiled = dataclasses.replace(rules_module.CompiledRule.from_rule(rule), id=None)
    matched, examples, sample = 0, [], 0
    for demand in Demand.objects.order_by("-id").only("id", "type", "source", "content")[:PREVIEW_SAMPLE].iterator(chunk_size=2000):
        sample += 1
        if compiled.matches(type=demand.type, source=demand.source, content=demand.content):
            matched += 1
            if len(examples) < 5:
                examples.append(demand)
    return {"matched": matched, "sample": sample, "examples": examples}


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ("name", "member_count")
    search_fields = ("name",)
    filter_horizontal = ("members",)

    @admin.display(description=_("members"))
    def member_count(self, obj):
        return obj.members.count()


@admin.register(DemandGroup)
class DemandGroupAdmin(admin.ModelAdmin):
    list_display = ("title", "type", "source", "count", "first_seen", "last_seen")
    list_filter = ("type", "source")
    search_fields = ("title", "fingerprint")
    readonly_fields = ("fingerprint", "type", "source", "title", "count", "first_seen", "last_seen")
    show_full_result_count = False


@admin.register(DemandEvent)
class DemandEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "demand", "kind", "actor", "rule", "old_value", "new_value")
    list_filter = ("kind",)
    raw_id_fields = ("demand",)
    readonly_fields = ("demand", "kind", "actor", "rule", "old_value", "new_value", "body", "created_at")
    show_full_result_count = False

    def has_add_permission(self, request):
        return False  # history is written by the services only

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(SavedView)
class SavedViewAdmin(admin.ModelAdmin):
    list_display = ("name", "user", "query", "created_at")
    search_fields = ("name", "user__username")


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ("created_at", "user", "text", "read_at")
    list_filter = ("read_at",)
    raw_id_fields = ("demand",)


@admin.register(UserPreference)
class UserPreferenceAdmin(admin.ModelAdmin):
    list_display = ("user", "language", "time_zone")


from .monitoring import admin as _monitoring_admin  # noqa: E402,F401  (monitoring and alerting, issue 4)
from .sla import admin as _sla_admin  # noqa: E402,F401  (SLA policies and escalation, issue 17)
# The admin has its own login page: throttle it like the dashboard's, with the same counter.
admin.site.login_form = ThrottledAdminAuthenticationForm
# Internal monitoring tables stay off the admin index (demands/config/admin_index.py).
from .config.admin_index import hide_internal_tables  # noqa: E402

hide_internal_tables()
