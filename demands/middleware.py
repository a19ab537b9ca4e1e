"""Activate the signed-in user's language and time zone for the request."""

import zoneinfo

from django.utils import timezone, translation


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
        if preference and preference.time_zone:
            try:
                timezone.activate(zoneinfo.ZoneInfo(preference.time_zone))
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                timezone.deactivate()
        else:
            timezone.deactivate()
        return self.get_response(request)
