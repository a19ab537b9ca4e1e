"""What ingest adds to each stored batch (called by pipeline.persist inside its transaction):

- saved views with "notify me" on: one query per such view over the batch's new pks (the list's
  own filter, `DemandFilters.apply`, as the view's owner sees it), each match a
  `Notification.Kind.SAVED_VIEW` notification saved through `notifications.save` — so the
  owner's subscriptions and flood control apply like any other notification;
- rules that notify a channel directly (`Rule.notify_channel`, the seed's "system modules"): one
  outbox row per matching demand and channel.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import parse_qsl

from django.utils.translation import gettext as _

from .. import notifications
from ..models import Demand, Notification, SavedView
from ..selectors import DemandFilters
from . import dispatch


def notify_saved_views(demand_ids: list[int], *, now: datetime) -> list[Notification]:
    if not demand_ids:
        return []
    rows = []
    for view in SavedView.objects.filter(notify=True, user__is_active=True, user__is_staff=True).select_related("user"):
        filters = DemandFilters.from_params(dict(parse_qsl(view.query)), user=view.user)
        for demand in filters.apply(Demand.objects.filter(pk__in=demand_ids)).only("pk", "content"):
            rows.append(notifications.build(
                user_id=view.user_id, demand=demand, who=_("Saved view “%(name)s”") % {"name": view.name},
                what=_("matched new demand #%(pk)s") % {"pk": demand.pk}, created_at=now, kind=Notification.Kind.SAVED_VIEW,
            ))
    return notifications.save(rows)


def post_rule_channels(posts: list[tuple[int, int, str]], *, now: datetime) -> None:
    if posts:
        dispatch.enqueue_rule_posts(posts, now=now)
