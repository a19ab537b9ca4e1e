"""Every read a page, the API, an export or the websocket needs: filters, search, pagination.

Lists never COUNT(*) the whole table and never use OFFSET: a page is "the N newest before id X",
which an index on (filter, -id) answers in constant time however many millions of rows there are.
The same DemandFilters object filters SQL (`apply`) and broadcast rows (`matches`), so a live page
shows exactly what a reload would.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from urllib.parse import urlencode

from django.contrib.auth import get_user_model
from django.db.models import BooleanField, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from . import history
from .archive import scope as archive_scope
from .field_filters import apply_shared
from .sla import selectors as sla_selectors
from .models import (
    PRIORITY_RANK, Demand, DemandEvent, Notification, Priority, SavedView, Status, Team, UserPreference,
)

MAX_FILTER_CHARS = 200
SORTS = ("newest", "oldest", "priority", "due")
# Parameters that make up a list's filters (and a saved view); everything else is navigation.
FILTER_PARAMS = ("status", "priority", "type", "source", "search", "assignee", "team", "tag", "group", "date_from", "date_to", "sort", "archived", "sla")


def _parse_date(value: str) -> date | None:
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class DemandFilters:
    status: str = ""
    priority: str = ""
    type: str = ""
    source: str = ""
    search: str = ""
    assignee: str = ""  # "me", "none" or a user id
    team: str = ""  # "mine", "none" or a team id
    tag: str = ""
    group: str = ""
    date_from: str = ""
    date_to: str = ""
    sort: str = ""
    archived: str = ""  # "" live demands only, "include" or "only" (demands/archive/scope.py)
    sla: str = ""  # "breaching_soon" or "breached" (demands.sla.selectors)
    # Resolved for the requesting user ("me" → their id, "mine" → their teams).
    assignee_id: int | None = field(default=None, compare=False, repr=False)
    team_ids: tuple[int, ...] | None = field(default=None, compare=False, repr=False)
    # Dates mean days in the user's time zone, on pages and on live sockets alike.
    tz: object = field(default=None, compare=False, repr=False)

    @classmethod
    def from_params(cls, params, *, user=None, tz=None) -> "DemandFilters":
        """Build from a QueryDict or dict. Unknown values are dropped (see `errors` for the API)."""

        def get(name: str) -> str:
            value = params.get(name) or ""
            return str(value).strip()[:MAX_FILTER_CHARS]

        values = {name: get(name) for name in FILTER_PARAMS}
        if not values["search"]:
            values["search"] = get("q")
        if values["status"] not in Status.values:
            values["status"] = ""
        if values["priority"] not in Priority.values:
            values["priority"] = ""
        values["sla"] = sla_selectors.clean(values["sla"])
        if values["sort"] not in SORTS or values["sort"] == "newest":
            values["sort"] = ""
        for name in ("date_from", "date_to"):
            if values[name] and _parse_date(values[name]) is None:
                values[name] = ""
        values["archived"] = archive_scope.clean(values["archived"])
        if values["group"] and not values["group"].isdigit():
            values["group"] = ""
        assignee_id = None
        if values["assignee"] == "me":
            assignee_id = user.pk if user is not None and user.is_authenticated else -1
        elif values["assignee"].isdigit():
            assignee_id = int(values["assignee"])
        elif values["assignee"] != "none":
            values["assignee"] = ""
        team_ids = None
        if values["team"] == "mine":
            team_ids = tuple(Team.objects.filter(members=user).values_list("pk", flat=True)) if user is not None and user.is_authenticated else ()
        elif values["team"].isdigit():
            team_ids = (int(values["team"]),)
        elif values["team"] != "none":
            values["team"] = ""
        return cls(**values, assignee_id=assignee_id, team_ids=team_ids, tz=tz or timezone.get_current_timezone())

    @staticmethod
    def errors(params) -> list[str]:
        """What is wrong with the parameters, for the API's 400 (pages just ignore bad values)."""
        problems = []
        if params.get("status") and params["status"] not in Status.values:
            problems.append(f"unknown status {params['status']!r}; allowed: {', '.join(Status.values)}")
        if params.get("priority") and params["priority"] not in Priority.values:
            problems.append(f"unknown priority {params['priority']!r}; allowed: {', '.join(Priority.values)}")
        if params.get("sort") and params["sort"] not in SORTS:
            problems.append(f"unknown sort {params['sort']!r}; allowed: {', '.join(SORTS)}")
        for name in ("date_from", "date_to"):
            if params.get(name) and _parse_date(params[name]) is None:
                problems.append(f"{name} must be a date like 2025-04-05")
        return problems + archive_scope.errors(params) + sla_selectors.errors(params)

    # -- SQL ----------------------------------------------------------------------------------
    def _day_start(self, value: str) -> datetime:
        return timezone.make_aware(datetime.combine(_parse_date(value), time.min), self.tz or timezone.get_current_timezone())

    def apply(self, queryset: QuerySet) -> QuerySet:
        queryset = apply_shared(archive_scope.apply(queryset, self.archived), self)
        if self.tag:
            if _json_contains_supported():
                queryset = queryset.filter(tags__contains=[self.tag])
            else:  # SQLite: exact element match, as on PostgreSQL and on live pages
                queryset = queryset.alias(
                    has_tag=RawSQL(
                        f"EXISTS (SELECT 1 FROM json_each({Demand._meta.db_table}.tags) WHERE json_each.value = %s)",
                        (self.tag,),
                        output_field=BooleanField(),
                    )
                ).filter(has_tag=True)
        if self.group:
            queryset = queryset.filter(group_id=int(self.group))
        if self.date_from:
            queryset = queryset.filter(received_at__gte=self._day_start(self.date_from))
        if self.date_to:
            queryset = queryset.filter(received_at__lt=self._day_start(self.date_to) + timedelta(days=1))
        if self.search:
            # On PostgreSQL a pg_trgm GIN index serves this ILIKE (see lookups.py, migration 0003)
            # for searches of three characters or more, Chinese included; shorter ones have no
            # trigram, so they are matched row by row, newest first, until a page is full.
            queryset = queryset.filter(Q(content__search_contains=self.search) | Q(message_id=self.search))
        return sla_selectors.apply(queryset, self.sla)

    # -- broadcast rows -------------------------------------------------------------------------
    def matches(self, row: dict) -> bool:
        """The same filter, applied to a broadcast row (see live.row_payload) instead of SQL."""
        if not archive_scope.matches(self.archived, row):  # live rows only unless asked
            return False
        for name in ("status", "priority", "type", "source"):
            value = getattr(self, name)
            if value and row[name] != value:
                return False
        if self.assignee == "none" and row["assignee_id"] is not None:
            return False
        if self.assignee_id is not None and row["assignee_id"] != self.assignee_id:
            return False
        if self.team == "none" and row["team_id"] is not None:
            return False
        if self.team_ids is not None and row["team_id"] not in self.team_ids:
            return False
        if self.tag and self.tag not in row["tags"]:
            return False
        if self.group and row["group_id"] != int(self.group):
            return False
        if self.sla and not sla_selectors.row_matches(row, self.sla):
            return False
        if self.date_from or self.date_to:
            received = datetime.fromisoformat(row["received_at"])
            if self.date_from and received < self._day_start(self.date_from):
                return False
            if self.date_to and received >= self._day_start(self.date_to) + timedelta(days=1):
                return False
        if self.search:
            needle = self.search.casefold()
            return needle in row["content"].casefold() or row["message_id"] == self.search
        return True

    @property
    def is_active(self) -> bool:
        return any(getattr(self, name) for name in FILTER_PARAMS if name != "sort")

    def params(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in FILTER_PARAMS if getattr(self, name)}

    def query_string(self, **extra) -> str:
        params = self.params()
        params.update({key: value for key, value in extra.items() if value not in (None, "")})
        return urlencode(params)

    def with_changes(self, **changes) -> "DemandFilters":
        return replace(self, **changes)


def _json_contains_supported() -> bool:
    from django.db import connection

    return connection.features.supports_json_field_contains


@dataclass
class DemandPage:
    items: list[Demand]
    next_cursor: str | None  # cursor for the next page, None on the last page
    is_first: bool




def demand_page(*, filters: DemandFilters, before: str | int | None = None, limit: int = 50, only=None) -> DemandPage:
    """One page in the filters' sort order. `before` is the cursor from the previous page.
    `only`: the fields the caller reads (the list page: list_rows.FIELDS), the rest not loaded."""
    queryset = filters.apply(Demand.objects.select_related("assignee", "team", *([] if only else ["sla_policy"])))
    if only:
        queryset = queryset.only(*only)
    cursor = str(before) if before not in (None, "") else None
    if filters.sort == "due":
        return DemandPage(*sla_selectors.due_page(queryset, cursor, limit), is_first=cursor is None)
    if filters.sort == "priority":
        return _priority_page(queryset, cursor, limit)
    if filters.sort == "oldest":
        if cursor and cursor.isdigit():
            queryset = queryset.filter(id__gt=int(cursor))
        queryset = queryset.order_by("id")
    else:
        if cursor and cursor.isdigit():
            queryset = queryset.filter(id__lt=int(cursor))
        queryset = queryset.order_by("-id")
    items = list(queryset[: limit + 1])
    has_more = len(items) > limit
    items = items[:limit]
    next_cursor = None
    if has_more:
        last = items[-1]
        next_cursor = str(last.pk)
    return DemandPage(items=items, next_cursor=next_cursor, is_first=cursor is None)


def _priority_page(queryset: QuerySet, cursor: str | None, limit: int) -> DemandPage:
    """Urgent first, newest first within a priority: one keyset query per priority level, each
    served by the (priority, -id) index — not one ORDER BY over a CASE, which sorts every match
    (870 ms at 1,000,000 rows in bench/list_page.py)."""
    start_rank, before_id = 0, None
    if cursor:
        rank, _, pk = cursor.partition(":")
        if rank.isdigit() and pk.isdigit():
            start_rank, before_id = int(rank), int(pk)
    ranked = sorted(PRIORITY_RANK.items(), key=lambda item: item[1])
    items: list[Demand] = []
    for value, rank in ranked:
        if rank < start_rank:
            continue
        level = queryset.filter(priority=value)
        if rank == start_rank and before_id is not None:
            level = level.filter(id__lt=before_id)
        items += list(level.order_by("-id")[: limit + 1 - len(items)])
        if len(items) > limit:
            break
    has_more = len(items) > limit
    items = items[:limit]
    next_cursor = f"{PRIORITY_RANK[items[-1].priority]}:{items[-1].pk}" if has_more else None
    return DemandPage(items=items, next_cursor=next_cursor, is_first=cursor is None)


def demands_after(*, filters: DemandFilters, after: int, limit: int) -> list[Demand]:
    """Demands newer than `after`, newest first: what a reconnecting page missed."""
    return list(filters.apply(Demand.objects.filter(id__gt=after).select_related("assignee", "team")).order_by("-id")[:limit])


EXPORT_CHUNK_SIZE = 2000
# The export's columns, in order. Tuples, not models: building 1,000,000 Demand instances (and
# decoding their extra/rule_changes JSON, which the CSV never shows) was most of the export's time.
EXPORT_COLUMNS = ("pk", "message_id", "source", "type", "priority", "status", "assignee__<USERNAME_FIELD>", "team__name",
                  "tags", "occurred_at", "received_at", "content")


def demand_iter(*, filters: DemandFilters, chunk_size: int = EXPORT_CHUNK_SIZE):
    """Every matching demand, newest first, fetched in keyset chunks."""
    before = None
    while True:
        queryset = filters.apply(Demand.objects.select_related("assignee", "team"))
        if before is not None:
            queryset = queryset.filter(id__lt=before)
        chunk = list(queryset.order_by("-id")[:chunk_size])
        if not chunk:
            return
        yield from chunk
        before = chunk[-1].pk


def demand_export_chunk(*, filters: DemandFilters, before: int | None = None, limit: int = EXPORT_CHUNK_SIZE) -> list[tuple]:
    """One keyset chunk of the CSV export: the `limit` newest matches below id `before`, as
    EXPORT_COLUMNS tuples (pk first, so the last row's pk is the next chunk's `before`)."""
    queryset = filters.apply(Demand.objects.all())
    if before is not None:
        queryset = queryset.filter(id__lt=before)
    username = f"assignee__{get_user_model().USERNAME_FIELD}"
    columns = [username if name == "assignee__<USERNAME_FIELD>" else name for name in EXPORT_COLUMNS]
    return list(queryset.order_by("-id").values_list(*columns)[:limit])


def demand_count(*, filters: DemandFilters, cap: int = 10_000) -> tuple[int, bool]:
    """Count matching demands, but stop at `cap` so a request never scans millions of rows.

    Returns (count, exact): exact is False when there are more than `cap`.
    """
    count = filters.apply(Demand.objects.all()).order_by()[: cap + 1].count()
    return (min(count, cap), count <= cap)


def demand_get(*, pk: int) -> Demand:
    return Demand.objects.select_related("assignee", "team", "group", "duplicate_of", "sla_policy").get(pk=pk)


def demand_find(*, pk) -> Demand | None:
    """The demand with this number, or None (a number typed into a form or a URL)."""
    pk = str(pk)
    return Demand.objects.filter(pk=int(pk)).first() if pk.isdigit() else None


def demand_history(*, demand: Demand) -> list[DemandEvent]:
    """Everything that happened to the demand, oldest first (see `history.entries`)."""
    return history.entries(demand)


def staff_users():
    return get_user_model().objects.filter(is_active=True, is_staff=True).order_by("username")


def staff_user_find(*, value) -> object | None:
    """An active staff member by id (int or digits) or username; None when there is none."""
    if value is None or value == "":
        return None
    users = staff_users()
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        return users.filter(pk=int(value)).first()
    return users.filter(username=str(value)).first()


def team_list():
    return Team.objects.all()


def team_find(*, value) -> Team | None:
    """A team by id (int or digits) or name; None when there is none."""
    if value is None or value == "":
        return None
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        return Team.objects.filter(pk=int(value)).first()
    return Team.objects.filter(name=str(value)).first()


def saved_views(*, user) -> list[SavedView]:
    return list(SavedView.objects.filter(user=user))


def notification_list(*, user, limit: int = 100) -> list[Notification]:
    return list(Notification.objects.filter(user=user).select_related("demand")[:limit])


def preference_get(*, user) -> UserPreference:
    """The user's preferences, or unsaved defaults: looking at the page writes nothing."""
    return UserPreference.objects.filter(user=user).first() or UserPreference(user=user)


def notifications_unread(*, user, limit: int = 50) -> list[Notification]:
    return list(Notification.objects.filter(user=user, read_at__isnull=True).select_related("demand")[:limit])


def notifications_unread_count(*, user) -> int:
    return Notification.objects.filter(user=user, read_at__isnull=True).count()
