"""Forms of the configuration pages. The rule form is the admin's (same RE2 checks and "needs an
action" rule), laid out for the dashboard."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model
from django.utils.translation import gettext_lazy as _

from ..admin import RuleAdminForm
from ..models import Rule, SourceApiKey


class RuleForm(RuleAdminForm):
    order = forms.IntegerField(label=_("order"), min_value=0, required=False, help_text=_("Lower runs first; blank: last."))

    class Meta:
        model = Rule
        fields = ("name", "order", "enabled", "stop_processing", "match_types", "match_sources", "match_keywords",
                  "match_regex", "set_priority", "add_tags", "set_category", "assign_to", "assign_team", "archive_on_arrival", "notify_channel")

    MATCH_FIELDS = ("match_types", "match_sources", "match_keywords", "match_regex")
    ACTION_FIELDS = ("set_priority", "add_tags", "set_category", "assign_to", "assign_team", "archive_on_arrival", "notify_channel")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["assign_to"].queryset = get_user_model().objects.filter(is_active=True, is_staff=True).order_by("username")


class ApiKeyForm(forms.ModelForm):
    class Meta:
        model = SourceApiKey
        fields = ("name", "source", "allowed_origins", "rate_per_minute", "burst")
        widgets = {"allowed_origins": forms.Textarea(attrs={"rows": 2})}

