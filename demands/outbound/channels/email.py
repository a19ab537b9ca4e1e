"""E-mail through Django's mail (EMAIL_* settings): a plain-text message with the demand's link
and the one-click action links."""

from django.conf import settings
from django.core.mail import EmailMessage

from ...monitoring.notify import one_line
from .message import Message


def send(addresses: list[str], message: Message) -> None:
    body = [message.title, "", *message.lines, "", f"{message.link_label}: {message.url}"]
    body += [f"{label}: {url}" for label, url in message.actions]
    sender = getattr(settings, "OUTBOUND_EMAIL_FROM", "") or settings.DEFAULT_FROM_EMAIL
    EmailMessage(one_line(f"[UMSG] {message.title}")[:250], "\n".join(body), sender, addresses).send(fail_silently=False)
