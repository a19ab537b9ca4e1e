"""Rejection reasons in the reader's language. schema.py (no Django) words its reasons in English,
and they are stored so; pages translate them when shown, by the shape of each sentence."""

from __future__ import annotations

import re

from django.utils.translation import gettext_lazy as _

# (the English sentence as schema.py words it, its translatable form); groups become %(name)s.
_REASONS = [
    (r"message has no value \(null/tombstone record\)", _("message has no value (null/tombstone record)")),
    (r"message is (?P<size>\d+) bytes; the limit is (?P<limit>\d+)", _("message is %(size)s bytes; the limit is %(limit)s")),
    (r"message is not valid UTF-8 \((?P<detail>.*)\)", _("message is not valid UTF-8 (%(detail)s)")),
    (r"message is longer than (?P<limit>\d+) characters", _("message is longer than %(limit)s characters")),
    (r"message value must be bytes or text, got (?P<got>.+)", _("message value must be bytes or text, got %(got)s")),
    (r"message is empty", _("message is empty")),
    (r"message is not valid JSON: nested too deeply", _("message is not valid JSON: nested too deeply")),
    (r"message is not valid JSON: (?P<detail>.*)", _("message is not valid JSON: %(detail)s")),
    (r"message must be a JSON object, got (?P<got>.+)", _("message must be a JSON object, got %(got)s")),
    (r"missing required field\(s\): (?P<fields>.*)", _("missing required field(s): %(fields)s")),
    (r"field '(?P<field>[^']*)' must be a string, got (?P<got>.+)", _("field '%(field)s' must be a string, got %(got)s")),
    (r"field '(?P<field>[^']*)' is empty", _("field '%(field)s' is empty")),
    (r"field '(?P<field>[^']*)' has (?P<size>\d+) characters; the limit is (?P<limit>\d+)",
     _("field '%(field)s' has %(size)s characters; the limit is %(limit)s")),
    (r"field '(?P<field>[^']*)' may contain only letters, digits and \. _ - : / \(got (?P<got>.*)\)",
     _("field '%(field)s' may contain only letters, digits and . _ - : / (got %(got)s)")),
    (r"field '(?P<field>[^']*)' contains a NUL character", _("field '%(field)s' contains a NUL character")),
    (r"field '(?P<field>[^']*)' contains an unpaired UTF-16 surrogate", _("field '%(field)s' contains an unpaired UTF-16 surrogate")),
    (r"field '(?P<field>[^']*)' is nested deeper than (?P<limit>\d+) levels", _("field '%(field)s' is nested deeper than %(limit)s levels")),
    (r"field '(?P<field>[^']*)' is not a finite number", _("field '%(field)s' is not a finite number")),
    (r"field 'timestamp' must be an ISO 8601 string, got (?P<got>.+)", _("field 'timestamp' must be an ISO 8601 string, got %(got)s")),
    (r"field 'timestamp' is not an ISO 8601 date-time \(e\.g\. 2025-04-05T10:30:00Z\): (?P<got>.*)",
     _("field 'timestamp' is not an ISO 8601 date-time (e.g. 2025-04-05T10:30:00Z): %(got)s")),
    (r"field 'timestamp' has no time zone; add Z or an offset \(e\.g\. 2025-04-05T10:30:00Z\): (?P<got>.*)",
     _("field 'timestamp' has no time zone; add Z or an offset (e.g. 2025-04-05T10:30:00Z): %(got)s")),
    (r"field 'timestamp' is out of range \(years 0001–9999 in UTC\): (?P<got>.*)",
     _("field 'timestamp' is out of range (years 0001–9999 in UTC): %(got)s")),
]
_COMPILED = [(re.compile(pattern + r"\Z", re.S), text) for pattern, text in _REASONS]


# What schema._json_type says a value was.
_JSON_TYPES = {
    "null": _("null"), "a boolean": _("a boolean"), "a number": _("a number"), "a string": _("a string"),
    "an array": _("an array"), "an object": _("an object"),
}


def reason_text(reason: str) -> str:
    """`reason` in the active language; a reason of another shape is shown as stored."""
    for pattern, text in _COMPILED:
        match = pattern.match(reason or "")
        if match:
            values = match.groupdict()
            if values.get("got") in _JSON_TYPES:
                values["got"] = str(_JSON_TYPES[values["got"]])
            return str(text) % values
    return reason
