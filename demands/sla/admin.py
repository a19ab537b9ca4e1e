"""SLA policies in the admin: the same model validation as the product's page; saving re-times open demands."""

from django.contrib import admin
from django.utils.translation import pgettext_lazy

from .forms import SlaPolicyForm
from .models import EscalationFiring, EscalationStep, SlaPolicy


class EscalationStepInline(admin.TabularInline):
    model = EscalationStep
    extra = 0


@admin.register(SlaPolicy)
class SlaPolicyAdmin(admin.ModelAdmin):
    form = SlaPolicyForm
    list_display = ("name", "order", "enabled", "match_priorities", "respond_minutes", "resolve_minutes", "time_zone")
    list_editable = ("order", "enabled")
    list_filter = ("enabled",)
    search_fields = ("name",)
    inlines = [EscalationStepInline]
    fieldsets = (
        (None, {"fields": ("name", "order", "enabled")}),
        (pgettext_lazy("sla", "Match"), {"fields": ("priorities", "match_types", "match_sources", "match_team")}),
        (pgettext_lazy("sla", "Targets"), {"fields": ("respond_minutes", "resolve_minutes", "at_risk_percent")}),
        (pgettext_lazy("sla", "Business hours"), {"fields": ("time_zone", "business_hours", "holidays")}),
    )


@admin.register(EscalationFiring)
class EscalationFiringAdmin(admin.ModelAdmin):
    """What the timers did: read only (a row is a claim; deleting one would let its step fire again)."""

    list_display = ("demand", "step", "outcome", "at")
    list_filter = ("outcome",)
    raw_id_fields = ("demand",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
