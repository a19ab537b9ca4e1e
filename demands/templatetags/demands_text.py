"""Template filters for stored English text shown in the reader's language."""

from django import template

from ..rejection_reasons import reason_text

register = template.Library()


@register.filter(name="reason_text")
def reason_text_filter(reason: str) -> str:
    return reason_text(reason)
