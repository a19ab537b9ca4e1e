"""What ingest adds to each stored batch (called by pipeline.persist inside its transaction):

- saved views with "notify me" on: one query per such view over the batch's new pks (the list's
  own filter, `DemandFilters.apply`, as the view's owner sees it) — which views those are is
  cached like the rules (`WatchedViews`: this process at once, others within RELOAD_EVERY), so a
  deployment without any costs ingest nothing — each match a
  `Notification.Kind.SAVED_VIEW` notification saved through `notifications.save` — so the
  owner's subscriptions and flood control apply like any other notification;
- rules that notify a channel directly (`Rule.notify_channel`, the seed's "system modules"): one
  outbox row per matching demand and channel.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from urllib.parse import parse_qsl

from django.utils.translation import gettext_noop

from .. import notifications
from ..models import Demand, Notification, SavedView
from ..selectors import DemandFilters
from . import dispatch

RELOAD_EVERY = 5.0  # seconds: how soon another process's new "notify me" view is seen (as rules)


class WatchedViews:
    """The saved views with "notify me" on, of active staff: cached per process."""

    _lock = threading.Lock()
    _views: list | None = None
    _checked = 0.0

    @classmethod
    def invalidate(cls, **_signal_kwargs) -> None:
        with cls._lock:
            cls._views = None

    @classmethod
    def current(cls) -> list:
        with cls._lock:
            now = time.monotonic()
            if cls._views is None or now - cls._checked >= RELOAD_EVERY:
                cls._views = list(SavedView.objects.filter(
                    notify=True, user__is_active=True, user__is_staff=True).select_related("user"))
                cls._checked = now
            return cls._views


def notify_saved_views(demand_ids: list[int], *, now: datetime) -> list[Notification]:
    if not demand_ids:
        return []
    rows = []
    for view in WatchedViews.current():
        filters = DemandFilters.from_params(dict(parse_qsl(view.query)), user=view.user)
        for demand in filters.apply(Demand.objects.filter(pk__in=demand_ids)).only("pk", "content"):
            rows.append(notifications.build(
                user_id=view.user_id, demand=demand, who=notifications.later(gettext_noop("Saved view “%(name)s”"), name=view.name),
                what=notifications.later(gettext_noop("matched new demand #%(pk)s"), pk=demand.pk), created_at=now,
                kind=Notification.Kind.SAVED_VIEW,
            ))
    return notifications.save(rows)


def post_rule_channels(posts: list[tuple[int, int, str]], *, now: datetime) -> None:
    if posts:
        dispatch.enqueue_rule_posts(posts, now=now)
