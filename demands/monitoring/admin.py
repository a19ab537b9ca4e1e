"""Admin for alert rules, alerts, silences and deliveries; monitoring data read-only."""

from django.contrib import admin, messages
from django.db import models
from django.utils import timezone

from .alerts import alert_acknowledge
from .models import (
    Alert,
    AlertDelivery,
    AlertRule,
    BacklogSample,
    ConsumerHeartbeat,
    FlowBucket,
    LagSample,
    LatencyBucket,
    Silence,
)
from .notify import delivery_retry_now


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "severity", "threshold", "window_minutes", "enabled", "renotify_minutes", "channels")
    list_filter = ("enabled", "kind", "severity")
    list_editable = ("enabled",)
    search_fields = ("name",)
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    fieldsets = (
        (None, {"fields": ("name", "enabled", "kind", "severity")}),
        ("Condition", {"fields": ("threshold", "window_minutes", "min_messages", "consumer_group", "match_type", "match_source", "group_by")}),
        ("Notify", {"fields": ("notify_browser", "email_to", "webhook_url", "webhook_secret", "renotify_minutes", "notify_on_resolve")}),
        ("Act on demands (urgent-unassigned and spike rules)", {"fields": ("action_set_priority", "action_assign_to", "action_assign_team")}),
    )

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if request.user.is_superuser:
            return fieldsets
        # Webhook URLs and secrets are credentials: others see scheme://host/… and cannot change
        # them (so they cannot swap in their own receiver either).
        shown = {"webhook_url": "masked_webhook_url", "webhook_secret": "webhook_secret_set"}
        return [(name, {**options, "fields": [shown.get(f, f) for f in options["fields"]]}) for name, options in fieldsets]

    def get_readonly_fields(self, request, obj=None):
        if request.user.is_superuser:
            return super().get_readonly_fields(request, obj)
        return [*super().get_readonly_fields(request, obj), "masked_webhook_url", "webhook_secret_set"]

    @admin.display(description="webhook URL")
    def masked_webhook_url(self, obj):
        return obj.masked_webhook_url if obj else ""

    @admin.display(description="webhook secret", boolean=True)
    def webhook_secret_set(self, obj):
        return bool(obj and obj.webhook_secret)

    @admin.display(description="channels")
    def channels(self, obj):
        names = [name for name, on in (("browser", obj.notify_browser), ("e-mail", obj.email_to), ("webhook", obj.webhook_url)) if on]
        return ", ".join(names) or "—"


class MaskedTargetMixin:
    """Delivery targets: webhook URLs (credentials) whole for superusers only."""

    def _masked(self, request, names):
        if request.user.is_superuser:
            return names
        return [("masked_target" if name == "target" else name) for name in names]

    def get_fields(self, request, obj=None):
        return self._masked(request, super().get_fields(request, obj))

    def get_readonly_fields(self, request, obj=None):
        return self._masked(request, super().get_readonly_fields(request, obj))

    def get_list_display(self, request):
        return self._masked(request, super().get_list_display(request))

    @admin.display(description="to")
    def masked_target(self, obj):
        return obj.masked_target


class AlertDeliveryInline(MaskedTargetMixin, admin.TabularInline):
    model = AlertDelivery
    extra = 0
    can_delete = False
    fields = ("channel", "event", "target", "status", "attempts", "next_attempt_at", "sent_at", "response_status", "last_error")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ("id", "severity", "title", "rule_name", "key", "opened_at", "resolved_at", "notify_count", "silenced", "acknowledged_at")
    list_filter = ("severity", "kind", ("resolved_at", admin.EmptyFieldListFilter), "silenced")
    search_fields = ("title", "key", "rule_name")
    readonly_fields = [field.name for field in Alert._meta.fields]
    inlines = [AlertDeliveryInline]
    actions = ["acknowledge"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    @admin.action(description="Acknowledge (stop reminders)", permissions=["change"])
    def acknowledge(self, request, queryset):
        for alert in queryset.filter(resolved_at__isnull=True):
            alert_acknowledge(alert=alert, actor=request.user)
        messages.success(request, "Acknowledged.")


@admin.register(Silence)
class SilenceAdmin(admin.ModelAdmin):
    list_display = ("__str__", "rule", "key_pattern", "starts_at", "ends_at", "active", "created_by", "comment")
    list_filter = ("rule",)
    readonly_fields = ("created_by", "created_at")

    @admin.display(boolean=True)
    def active(self, obj):
        return obj.is_active(timezone.now())

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(MaskedTargetMixin, admin.ModelAdmin):
    list_display = ("id", "alert", "channel", "event", "target", "status", "attempts", "next_attempt_at", "sent_at")
    list_filter = ("channel", "status", "event")
    readonly_fields = [field.name for field in AlertDelivery._meta.fields]
    actions = ["retry_now"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Retry at the next monitor tick", permissions=["change"])
    def retry_now(self, request, queryset):
        now = timezone.now()
        for delivery in queryset:
            delivery_retry_now(delivery=delivery, now=now)
        messages.success(request, "Queued.")


class ReadOnlyAdmin(admin.ModelAdmin):
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ConsumerHeartbeat)
class ConsumerHeartbeatAdmin(ReadOnlyAdmin):
    list_display = ("name", "group", "started_at", "last_seen_at", "stopped_at", "batches", "messages")
    list_filter = ("group",)


@admin.register(FlowBucket)
class FlowBucketAdmin(ReadOnlyAdmin):
    list_display = ("minute", "kind", "type", "source", "count")
    list_filter = ("kind",)
    date_hierarchy = "minute"


@admin.register(LatencyBucket)
class LatencyBucketAdmin(ReadOnlyAdmin):
    list_display = ("minute", "metric", "le_ms", "count", "sum_ms")
    list_filter = ("metric",)


@admin.register(BacklogSample)
class BacklogSampleAdmin(ReadOnlyAdmin):
    list_display = ("minute", "status", "priority", "count")


@admin.register(LagSample)
class LagSampleAdmin(ReadOnlyAdmin):
    list_display = ("minute", "group", "topic", "partition", "committed", "high", "lag")
    list_filter = ("group", "topic")
