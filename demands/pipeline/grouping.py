"""Groups: demands with the same type, source and normalised content are one group (Sentry-style).

`fingerprint` says which group a demand belongs to; at ingest `assign_groups` finds or creates the
batch's groups (known ids are cached per process: `KnownGroups`; a merged group's fingerprint
resolves to the group it was merged into), `count_group_members` adds the new members in one
UPDATE that also reopens resolved groups and returns each group's triage (demands/groups/arrivals.py
passes it on), and `count_group_hours` adds them to the hourly counts behind the sparklines.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, transaction

from ..models import DemandGroup, GroupHour

# How precisely a group's last_seen follows its newest member (see count_group_members).
LAST_SEEN_STEP = timedelta(seconds=10)

_NUMBERS = re.compile(r"\d+")
# Hex ids and UUIDs, also when glued to Chinese text (where \b never matches).
_HEX = re.compile(r"(?<![0-9a-z])(?:0x)?(?:[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}|[0-9a-f]{8,})(?![0-9a-z])")


def normalise_content(content: str) -> str:
    """Content with the parts that vary between occurrences of one problem taken out:
    numbers (ids, line numbers, durations), long hex strings (hashes, uuids), case, spacing."""
    text = content.casefold()
    text = _HEX.sub("#", text)
    text = _NUMBERS.sub("0", text)
    return " ".join(text.split())[:500]  # runs of whitespace → one space, none at the ends


def fingerprint(*, type: str, source: str, content: str) -> str:
    return hashlib.sha256(f"{type}\x1f{source}\x1f{normalise_content(content)}".encode()).hexdigest()


class KnownGroups:
    """fingerprint → id of groups this process has seen committed, so a batch asks the database
    only about fingerprints it has not met before (most batches: none).

    Entries are learned after the commit that made or read them (a rolled-back batch teaches
    nothing). A group deleted in this process is forgotten through a signal (apps.py); one deleted
    elsewhere makes the next batch that names it fail its foreign-key check at commit, and every
    failed batch forgets everything (ConsumeLoop), so the retry reads the database again.
    """

    def __init__(self, limit: int = 100_000):
        self.limit = limit
        self.ids: dict[str, int] = {}

    def learn(self, learned: dict[str, int]) -> None:
        if len(self.ids) + len(learned) > self.limit:
            self.ids.clear()  # a crude bound: the busy groups come back within a batch or two
        self.ids.update(learned)

    def forget(self, *_args, **_kwargs) -> None:
        self.ids.clear()


known_groups = KnownGroups()
NEW_GROUP_ROW = "(%s, %s, %s, %s, 0, %s, %s, 'new', '')"  # status new, priority not set


def assign_groups(demands: list, fingerprints: dict[int, str], now: datetime) -> None:
    """Put each demand in the group of its fingerprint. Existing groups are only read (no row
    written twice per batch); missing ones are inserted. Counts are added after the demands'
    insert, for the demands that were new."""
    by_fingerprint: dict[str, list] = defaultdict(list)
    for demand in demands:
        by_fingerprint[fingerprints[id(demand)]].append(demand)
    known = known_groups.ids
    group_ids = {fp: known[fp] for fp in by_fingerprint if fp in known}
    unknown = [fp for fp in by_fingerprint if fp not in group_ids]
    if unknown:
        # A merged group is its fingerprint's alias: arrivals go to the group it was merged into.
        group_ids.update(
            (fp, target or pk)
            for fp, pk, target in DemandGroup.objects.filter(fingerprint__in=unknown).values_list("fingerprint", "id", "merged_into_id")
        )
    missing = sorted(fp for fp in unknown if fp not in group_ids)  # one lock order for every consumer
    if missing:
        table = DemandGroup._meta.db_table
        stamp = connection.ops.adapt_datetimefield_value(now)
        params = []
        for fp in missing:
            first = by_fingerprint[fp][0]
            params += [fp, first.type, first.source, first.content[:200], stamp, stamp]
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (fingerprint, type, source, title, count, first_seen, last_seen, status, priority) "
                f"VALUES {', '.join([NEW_GROUP_ROW] * len(missing))} ON CONFLICT (fingerprint) DO NOTHING",
                params,
            )
        # Ours, or a concurrent consumer's that won the race: read them back either way.
        group_ids.update(
            (fp, target or pk)
            for fp, pk, target in DemandGroup.objects.filter(fingerprint__in=missing).values_list("fingerprint", "id", "merged_into_id")
        )
    if unknown:
        learned = {fp: group_ids[fp] for fp in unknown}
        transaction.on_commit(lambda: known_groups.learn(learned))
    for fp, members in by_fingerprint.items():
        for demand in members:
            demand.group_id = group_ids[fp]


@dataclass(slots=True)
class GroupState:
    """What a batch's count UPDATE read back of a group: its triage, to pass on to new members."""

    id: int
    status: str
    priority: str
    assignee_id: int | None
    team_id: int | None
    merged_into_id: int | None
    regressed: bool  # this batch reopened it (it was resolved)


def count_group_members(created: list, now: datetime, per_group: dict[int, int] | None = None) -> dict[int, GroupState]:
    """Add each group's new members in one UPDATE: FROM unnest(ids, counts) on PostgreSQL, FROM
    (VALUES …) on SQLite (≥ 3.35). The same statement reopens a resolved group (a regression) and
    returns every touched group's triage (RETURNING), so ingest learns it without another query."""
    if per_group is None:
        per_group = defaultdict(int)
        for demand in created:
            per_group[demand.group_id] += 1
    if not per_group:
        return {}
    table = DemandGroup._meta.db_table
    ids = sorted(per_group)  # one lock order for every consumer
    adapt = connection.ops.adapt_datetimefield_value
    stamp = adapt(now)
    resolved = f"{table}.status = 'resolved' AND {table}.merged_into_id IS NULL"
    # last_seen moves in steps of LAST_SEEN_STEP: between steps the indexed column keeps its value,
    # so PostgreSQL rewrites a busy group's row in place (a HOT update) instead of adding an entry
    # to each of its indexes every batch.
    update = (
        f"UPDATE {table} SET count = {table}.count + v.n, "
        f"last_seen = CASE WHEN {table}.last_seen < %s THEN %s ELSE {table}.last_seen END, "
        f"status = CASE WHEN {resolved} THEN 'triaged' ELSE {table}.status END, "
        f"regressed_at = CASE WHEN {resolved} THEN %s ELSE {table}.regressed_at END "
    )
    returning = (f" RETURNING {table}.id, {table}.status, {table}.priority, {table}.assignee_id, {table}.team_id, "
                 f"{table}.merged_into_id, CASE WHEN {table}.regressed_at = %s THEN 1 ELSE 0 END")
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Two array parameters: the statement's text is the same every batch, and binding
            # stays two values however many groups the batch touched.
            cursor.execute(
                update + f"FROM unnest(%s::bigint[], %s::integer[]) AS v(id, n) WHERE {table}.id = v.id" + returning,
                [adapt(now - LAST_SEEN_STEP), stamp, stamp, ids, [per_group[group_id] for group_id in ids], stamp],
            )
        else:
            values = ", ".join(["(%s, %s)"] * len(ids))
            cursor.execute(
                # VALUES columns are column1, column2 (SQLite has no column aliases here).
                update + f"FROM (SELECT column1 AS id, column2 AS n FROM (VALUES {values}) AS t) AS v WHERE {table}.id = v.id"
                + returning,
                [adapt(now - LAST_SEEN_STEP), stamp, stamp, *[value for group_id in ids for value in (group_id, per_group[group_id])], stamp],
            )
        rows = cursor.fetchall()
    return {
        row[0]: GroupState(*row[:6], regressed=bool(row[6])) for row in rows
    }


HOURS_KEPT = timedelta(hours=48)
_pruned = {"hour": None}


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def count_group_hours(created: list, now: datetime) -> None:
    """Add the batch's members to their groups' arrivals this hour (GroupHour: the sparklines), in
    one upsert; once an hour per process, drop rows older than HOURS_KEPT."""
    per_group: dict[int, int] = defaultdict(int)
    for demand in created:
        per_group[demand.group_id] += 1
    if not per_group:
        return
    table = GroupHour._meta.db_table
    ids = sorted(per_group)
    hour = connection.ops.adapt_datetimefield_value(hour_of(now))
    upsert = f"ON CONFLICT (group_id, hour) DO UPDATE SET count = {table}.count + excluded.count"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"INSERT INTO {table} (group_id, hour, count) SELECT v.id, %s, v.n "
                f"FROM unnest(%s::bigint[], %s::integer[]) AS v(id, n) {upsert}",
                [hour, ids, [per_group[group_id] for group_id in ids]],
            )
        else:
            cursor.execute(
                f"INSERT INTO {table} (group_id, hour, count) VALUES {', '.join(['(%s, %s, %s)'] * len(ids))} "
                f"{upsert}",  # a VALUES insert has no parsing ambiguity before ON CONFLICT in SQLite
                [value for group_id in ids for value in (group_id, hour, per_group[group_id])],
            )
        if _pruned["hour"] != hour:
            cursor.execute(f"DELETE FROM {table} WHERE hour < %s", [connection.ops.adapt_datetimefield_value(now - HOURS_KEPT)])
            _pruned["hour"] = hour
