"""The policy page's forms: a policy, and its escalation steps as an inline formset."""

from django import forms
from django.utils.translation import gettext_lazy as _, pgettext_lazy

from ..models import Priority
from .models import EscalationStep, SlaPolicy


class SlaPolicyForm(forms.ModelForm):
    priorities = forms.MultipleChoiceField(
        label=pgettext_lazy("sla", "Priorities"), choices=Priority.choices, widget=forms.CheckboxSelectMultiple,
        help_text=_("The policy applies to demands of these priorities."),
    )

    class Meta:
        model = SlaPolicy
        fields = ["name", "order", "enabled", "priorities", "match_types", "match_sources", "match_team",
                  "respond_minutes", "resolve_minutes", "at_risk_percent", "time_zone", "business_hours", "holidays",
                  "archive_after_days"]
        widgets = {"holidays": forms.Textarea(attrs={"rows": 3})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["priorities"].initial = self.instance.priorities if self.instance.pk else [Priority.URGENT]

    def _post_clean(self):
        self.instance.match_priorities = ",".join(self.cleaned_data.get("priorities") or [])
        super()._post_clean()
        if "match_priorities" in self._errors:  # shown on the checkboxes, the field people see
            self._errors["priorities"] = self._errors.pop("match_priorities")


StepFormSet = forms.inlineformset_factory(
    SlaPolicy, EscalationStep,
    fields=["after_minutes", "condition", "notify_user", "notify_team", "raise_priority", "assign_user", "assign_team"],
    extra=1, can_delete=True,
)
