"""Business-time arithmetic, pure Python (no Django): weekly opening hours in a time zone, minus holidays.

A `BusinessCalendar` answers three questions for the SLA timers: what moment is N seconds of open
time after a start (`add`), how much open time lies between two moments (`between`), and whether
— or from when — it is open (`is_open`, `next_open`). Hours are wall-clock times of each local day,
so a day that gains or loses an hour to daylight saving still opens and closes at its usual local
times; open time is real elapsed time inside those hours. A calendar without weekly hours is open
around the clock (holidays still closed); `ALWAYS` is open always, in UTC.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone as dt_timezone
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_DAYS = 3 * 366  # a calendar open less than this often (hours all on holidays…) is treated as never open
_SPAN = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_END_OF_DAY = time(23, 59, 59, 999999)


class CalendarError(ValueError):
    """Weekly hours or holidays that cannot be read; the message says which part."""


Hours = dict[int, tuple[tuple[time, time], ...]]  # weekday (0 = Monday) → (opens, closes) spans


def parse_weekly(text: str) -> Hours:
    """"mon-fri 09:00-18:00; sat 10:00-14:00" (days, then one or more comma-separated spans; parts
    separated by ";" or new lines; "24:00" closes at midnight). Empty text: open around the clock."""
    hours: dict[int, list[tuple[time, time]]] = {}
    for part in re.split(r"[;\n]", text or ""):
        part = part.strip().lower()
        if not part:
            continue
        split = re.match(r"^([a-z][a-z,\-\s]*?)\s*(\d.*)?$", part)
        if not split:
            raise CalendarError(f"“{part}”: start with the days, like mon-fri 09:00-18:00")
        days_text, spans_text = split.group(1).replace(" ", ""), split.group(2) or ""
        days = _parse_days(days_text)
        if not spans_text.strip():
            raise CalendarError(f"“{part}”: give hours after the days, like mon-fri 09:00-18:00")
        for span in spans_text.split(","):
            opens, closes = _parse_span(span)
            for day in days:
                hours.setdefault(day, []).append((opens, closes))
    for day, spans in hours.items():
        spans.sort()
        for (_, first_end), (second_start, _) in zip(spans, spans[1:]):
            if second_start < first_end:
                raise CalendarError(f"{DAYS[day]}: hours overlap")
    return {day: tuple(spans) for day, spans in hours.items()}


def _parse_days(text: str) -> list[int]:
    days: list[int] = []
    for item in text.split(","):
        first, _, last = item.partition("-")
        try:
            start = DAYS.index(first[:3])
            end = DAYS.index(last[:3]) if last else start
        except ValueError:
            raise CalendarError(f"“{text}”: days are mon, tue, wed, thu, fri, sat, sun (ranges like mon-fri)") from None
        days.extend((start + i) % 7 for i in range((end - start) % 7 + 1))
    return days


def _parse_span(text: str) -> tuple[time, time]:
    match = _SPAN.match(text)
    if not match:
        raise CalendarError(f"“{text.strip()}”: hours are like 09:00-18:00")
    h1, m1, h2, m2 = (int(group) for group in match.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
        raise CalendarError(f"“{text.strip()}”: not a time of day")
    opens, closes = time(h1, m1), (_END_OF_DAY if h2 == 24 else time(h2, m2))
    if closes <= opens:
        raise CalendarError(f"“{text.strip()}”: closes before it opens (split a night shift at midnight)")
    return opens, closes


def parse_holidays(text: str) -> frozenset[date]:
    """Dates (2026-10-01), separated by commas, spaces or new lines."""
    days = set()
    for item in re.split(r"[\s,;]+", text or ""):
        if item:
            try:
                days.add(date.fromisoformat(item))
            except ValueError:
                raise CalendarError(f"“{item}”: holidays are dates like 2026-10-01") from None
    return frozenset(days)


@dataclass(frozen=True)
class BusinessCalendar:
    tz: ZoneInfo | dt_timezone = dt_timezone.utc
    hours: Hours = field(default_factory=dict)  # empty: every day around the clock
    holidays: frozenset[date] = frozenset()

    @classmethod
    def from_text(cls, *, time_zone: str = "", weekly: str = "", holidays: str = "") -> "BusinessCalendar":
        try:
            tz = ZoneInfo(time_zone) if time_zone else dt_timezone.utc
        except (KeyError, ValueError):
            raise CalendarError(f"“{time_zone}”: unknown time zone") from None
        return cls(tz=tz, hours=parse_weekly(weekly), holidays=parse_holidays(holidays))

    @property
    def always_open(self) -> bool:
        return not self.hours and not self.holidays

    def _day_spans(self, day: date) -> Iterable[tuple[datetime, datetime]]:
        """The day's open spans as UTC moments (a span's wall-clock times, in the day's offsets)."""
        if day in self.holidays:
            return ()
        spans = self.hours.get(day.weekday()) if self.hours else ((time.min, _END_OF_DAY),)
        out = []
        for opens, closes in spans or ():
            start = datetime.combine(day, opens, tzinfo=self.tz).astimezone(dt_timezone.utc)
            if closes == _END_OF_DAY:
                end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=self.tz).astimezone(dt_timezone.utc)
            else:
                end = datetime.combine(day, closes, tzinfo=self.tz).astimezone(dt_timezone.utc)
            if end > start:
                out.append((start, end))
        return out

    def _spans_from(self, moment: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Open spans that end after `moment`, in order, clipped to start no earlier than it."""
        moment = moment.astimezone(dt_timezone.utc)
        day = moment.astimezone(self.tz).date() - timedelta(days=1)  # yesterday's span may run past midnight
        for offset in range(MAX_DAYS):
            for start, end in self._day_spans(day + timedelta(days=offset)):
                if end > moment:
                    yield max(start, moment), end

    def add(self, start: datetime, seconds: float) -> datetime:
        """The moment `seconds` of open time after `start` (a start outside hours counts from the
        next opening). Zero seconds from a closed moment is the next opening."""
        if self.always_open:
            return start + timedelta(seconds=seconds)
        remaining = timedelta(seconds=max(0.0, seconds))
        for span_start, span_end in self._spans_from(start):
            if span_start + remaining <= span_end:
                return (span_start + remaining).astimezone(start.tzinfo or dt_timezone.utc)
            remaining -= span_end - span_start
        raise CalendarError("the calendar has no open hours")

    def between(self, first: datetime, second: datetime) -> float:
        """Seconds of open time from `first` to `second` (0 when second is not later)."""
        if second <= first:
            return 0.0
        if self.always_open:
            return (second - first).total_seconds()
        total = timedelta()
        second = second.astimezone(dt_timezone.utc)
        for span_start, span_end in self._spans_from(first):
            if span_start >= second:
                break
            total += min(span_end, second) - span_start
        return total.total_seconds()

    def is_open(self, moment: datetime) -> bool:
        if self.always_open:
            return True
        for span_start, _ in self._spans_from(moment):
            return span_start <= moment.astimezone(dt_timezone.utc)
        return False

    def next_open(self, moment: datetime) -> datetime:
        """`moment` when open, else when it next opens."""
        return self.add(moment, 0)


ALWAYS = BusinessCalendar()
