"""`{% config_tabs section %}`: the Settings tabs (demands.config.access.tabs) on every configuration
page — the config section pages and the SLA, alert-rule and notification settings pages."""

from django import template

from ..config import access

register = template.Library()


@register.inclusion_tag("config/_tabs.html", takes_context=True)
def config_tabs(context, section: str = ""):
    request = context.get("request")
    user = getattr(request, "user", None) or context.get("user")
    return {"tabs": access.tabs(user) if user is not None else [], "section": section}
