"""Admin for outbound notifications: channels (targets masked but for superusers), subscriptions,
follows, and the outbox as a delivery log with "send again"."""

from django.contrib import admin
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..models import Follow, OutboundChannel, OutboundMessage, Subscription
from .subscriptions import mask_target


def _with_target(columns, request, label):
    """The list's target column for this request: whole for superusers, masked for the rest."""
    superuser = request.user.is_superuser

    @admin.display(description=label)
    def shown_target(obj):
        return obj.target if superuser else mask_target(obj.target)

    return [shown_target if column == "shown_target" else column for column in columns]


class _MaskedTarget:
    """`shown_target` as the system checks see it; `_with_target` swaps in the per-request column."""

    @admin.display(description=_("target"))
    def shown_target(self, obj):
        return mask_target(obj.target)


@admin.register(OutboundChannel)
class OutboundChannelAdmin(_MaskedTarget, admin.ModelAdmin):
    list_display = ("name", "kind", "team", "shown_target", "language", "enabled")
    list_filter = ("kind", "enabled", "team")
    search_fields = ("name",)

    def get_list_display(self, request):
        return _with_target(super().get_list_display(request), request, _("URL or addresses"))

    def get_fields(self, request, obj=None):
        fields = list(super().get_fields(request, obj))
        if obj is not None and not request.user.is_superuser:  # a robot URL is a credential
            fields = [f for f in fields if f not in ("target", "secret")]
        return fields


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ("user", "team", "kind", "channel")
    list_filter = ("kind",)


@admin.register(Follow)
class FollowAdmin(admin.ModelAdmin):
    list_display = ("user", "demand", "created_at")
    raw_id_fields = ("demand",)


@admin.register(OutboundMessage)
class OutboundMessageAdmin(_MaskedTarget, admin.ModelAdmin):
    list_display = ("id", "created_at", "kind", "route", "shown_target", "status", "attempts", "response_status", "last_error")
    list_filter = ("status", "kind")
    actions = ["send_again"]
    readonly_fields = [f.name for f in OutboundMessage._meta.fields]
    exclude = ("target",)

    def has_add_permission(self, request):
        return False

    def get_list_display(self, request):
        return _with_target(super().get_list_display(request), request, _("to"))

    @admin.action(description=_("Send again at the next tick"))
    def send_again(self, request, queryset):
        queryset.filter(status__in=[OutboundMessage.Status.FAILED, OutboundMessage.Status.PENDING]).update(
            status=OutboundMessage.Status.PENDING, next_attempt_at=timezone.now(), attempts=0)
