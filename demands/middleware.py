"""Activate the signed-in user's language and time zone for the request."""

import zoneinfo

from django.utils import timezone, translation


def preference_zone(name: str | None):
    """The ZoneInfo a preference names, or None (unset, or not a zone this machine knows)."""
    if not name:
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


class UserPreferenceMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        preference = None
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            from .models import UserPreference

            preference = UserPreference.objects.filter(user=user).first()
        if preference and preference.language:
            translation.activate(preference.language)
            request.LANGUAGE_CODE = preference.language
        zone = preference_zone(preference.time_zone) if preference else None
        if zone is not None:
            timezone.activate(zone)
        else:
            timezone.deactivate()
        return self.get_response(request)
