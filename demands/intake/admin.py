"""Admin for HTTP ingest: source API keys (the plain key shown once, on creation) and DLQ actions."""

from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.urls import reverse

from . import dlq, keys
from .models import RejectedMessage, SourceApiKey


@admin.register(SourceApiKey)
class SourceApiKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "source", "key_prefix", "rate_per_minute", "burst", "created_at", "last_used_at", "active")
    list_filter = ("source", ("revoked_at", admin.EmptyFieldListFilter))
    search_fields = ("name", "source", "prefix")
    actions = ["revoke_selected"]
    fields = (
        "name", "source", "allowed_origins", "rate_per_minute", "burst",
        "key_prefix", "created_by", "created_at", "last_used_at", "revoked_at", "revoked_by",
    )

    def get_readonly_fields(self, request, obj=None):
        readonly = ["key_prefix", "created_by", "created_at", "last_used_at", "revoked_at", "revoked_by"]
        if obj is not None:
            readonly.append("source")  # a key is bound to its source for life: make a new key instead
        return readonly

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("name", "source", "allowed_origins", "rate_per_minute", "burst")
        return self.fields

    @admin.display(description="key")
    def key_prefix(self, obj):
        return f"{keys.KEY_SCHEME}{obj.prefix}_…" if obj.prefix else "—"

    @admin.display(boolean=True, description="active")
    def active(self, obj):
        return obj.is_active

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
            obj._plain_key = keys.api_key_set_secret(api_key=obj)
        super().save_model(request, obj, form, change)

    def response_add(self, request, obj, post_url_continue=None):
        # Shown here, once, and never stored: not in a message cookie, not in the session.
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "api_key": obj,
            "plain_key": obj._plain_key,
            "endpoint": request.build_absolute_uri(reverse("demands:api-ingest")),
            "change_url": reverse("admin:demands_sourceapikey_change", args=[obj.pk]),
            "title": "API key created",
        }
        return TemplateResponse(request, "admin/demands/sourceapikey/key_created.html", context)

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke_selected(self, request, queryset):
        count = 0
        for api_key in queryset.filter(revoked_at__isnull=True):
            keys.api_key_revoke(api_key=api_key, actor=request.user)
            count += 1
        self.message_user(request, f"Revoked {count} key(s). Requests with them now get 401.", messages.SUCCESS)


@admin.action(description="Replay selected (payload unchanged), e.g. after fixing a consumer bug", permissions=["change"])
def replay_selected(modeladmin, request, queryset):
    replayed, problems = 0, []
    for rejected in queryset.filter(status=RejectedMessage.Status.OPEN).order_by("id"):
        try:
            dlq.rejected_message_replay(rejected=rejected, actor=request.user, note="bulk replay from the admin")
            replayed += 1
        except (dlq.AlreadyHandled, dlq.DeliveryFailed) as exc:
            problems.append(f"#{rejected.pk}: {exc}")
    modeladmin.message_user(request, f"Replayed {replayed} message(s).", messages.SUCCESS)
    if problems:
        modeladmin.message_user(request, "Not replayed: " + "; ".join(problems[:10]), messages.ERROR)


@admin.action(description="Discard selected", permissions=["change"])
def discard_selected(modeladmin, request, queryset):
    count = 0
    for rejected in queryset.filter(status=RejectedMessage.Status.OPEN):
        try:
            dlq.rejected_message_discard(rejected=rejected, actor=request.user, note="discarded from the admin")
            count += 1
        except dlq.AlreadyHandled:
            pass
    modeladmin.message_user(request, f"Discarded {count} message(s).", messages.SUCCESS)


@admin.register(RejectedMessage)
class RejectedMessageAdmin(admin.ModelAdmin):
    list_display = ("id", "topic", "partition", "offset", "reason", "received_at", "status", "handled_by")
    list_filter = ("status",)
    search_fields = ("reason",)
    readonly_fields = ("topic", "partition", "offset", "kafka_timestamp", "key", "payload_text", "reason", "received_at",
                       "status", "handled_by", "handled_at", "replay_payload", "replay_topic", "replay_partition", "replay_offset")
    exclude = ("payload",)
    actions = [replay_selected, discard_selected]
    show_full_result_count = False
