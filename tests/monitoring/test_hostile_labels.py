"""Labels and reasons come from messages anyone can send: a line break in them must not stop an
alert e-mail (an invalid header) nor forge a line in the server log."""

import copy
import logging
import logging.config

import pytest
from django.conf import settings
from django.core import mail
from django.utils import timezone

from demands.monitoring.flow import _storable_label
from demands.monitoring.models import Alert, AlertDelivery, AlertRule
from demands.monitoring.notify import _email, alert_payload, process_deliveries

from .conftest import make_rule

HOSTILE = "web_app\r\nBcc: everyone@example.com\x1b[31m\x07"


def test_an_alert_subject_has_no_line_breaks_or_control_characters():
    subject, _body = _email({
        "severity": "critical", "title": f"Rejections from {HOSTILE}", "detail": "", "rule": "r", "key": HOSTILE,
        "opened_at": "2025-04-05T10:30:00+00:00", "resolved_at": None, "url": "/",
    }, "firing")
    assert not any(ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0 for ch in subject)
    assert "Bcc: everyone@example.com" in subject  # kept, but as text on the one line


@pytest.mark.django_db
def test_an_alert_whose_title_holds_a_newline_is_still_e_mailed(now):
    rule = make_rule(AlertRule.Kind.REJECTION_RATIO, threshold=0.5, email_to="ops@example.com", notify_browser=False)
    alert = Alert.objects.create(rule=rule, rule_name=rule.name, kind=rule.kind, key=HOSTILE, severity=rule.severity,
                                 title=f"Rejections from {HOSTILE}", opened_at=now, last_seen_at=now)
    AlertDelivery.objects.create(alert=alert, channel="email", event="firing", target="ops@example.com",
                                 payload=alert_payload(alert, "firing", now), next_attempt_at=now)
    run = process_deliveries(now=timezone.now())
    assert run.sent == 1 and len(mail.outbox) == 1
    assert "\n" not in mail.outbox[0].subject and "\r" not in mail.outbox[0].subject


def test_a_rejected_messages_source_label_keeps_no_control_characters():
    label = _storable_label(HOSTILE)
    assert "\n" not in label and "\r" not in label and "\x1b" not in label and "\x07" not in label
    assert label.startswith("web_app")


def test_log_lines_escape_line_breaks_so_a_reason_cannot_forge_a_line():
    config = copy.deepcopy(settings.LOGGING)  # the configurator rewrites what it is given
    formatter = logging.config.DictConfigurator(config).configure_formatter(config["formatters"]["plain"])
    record = logging.LogRecord("demands.pipeline.loop", logging.WARNING, __file__, 1,
                               "rejected: %s", ("bad type\r\n2025-01-01 00:00:00 INFO demands: forged",), None)
    line = formatter.format(record)
    assert "\n" not in line and "\r" not in line
    assert "bad type\\r\\n2025-01-01" in line
