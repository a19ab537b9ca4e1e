"""What Django's debug pages and error e-mails may show: its own filter, plus the password inside
any connection URL (redis://user:pass@host), whatever the setting or header holding it is called."""

import re

from django.views.debug import SafeExceptionReporterFilter

# scheme://user:password@  or  scheme://:password@  — the user and host stay visible.
_URL_CREDENTIALS = re.compile(r"(?P<prefix>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@/\s]+@", re.I)


def mask_url_credentials(text: str) -> str:
    return _URL_CREDENTIALS.sub(lambda m: m["prefix"] + SafeExceptionReporterFilter.cleansed_substitute + "@", text)


class CredentialMaskingFilter(SafeExceptionReporterFilter):
    # Django's names plus librdkafka's JAAS config (it embeds a password) and DSNs.
    hidden_settings = re.compile("API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|JAAS|DSN", flags=re.I)

    def cleanse_setting(self, key, value):
        cleansed = super().cleanse_setting(key, value)
        if isinstance(cleansed, str):
            cleansed = mask_url_credentials(cleansed)
        return cleansed
