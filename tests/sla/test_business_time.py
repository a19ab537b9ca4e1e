"""Business-time arithmetic: weekly hours in a time zone, weekends, holidays, nights, DST."""

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from demands.sla.business_time import ALWAYS, BusinessCalendar, CalendarError, parse_holidays, parse_weekly

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
HOUR = 3600


def office(tz=SHANGHAI, holidays="") -> BusinessCalendar:
    return BusinessCalendar.from_text(time_zone=str(tz), weekly="mon-fri 09:00-18:00", holidays=holidays)


def at(tz, *args) -> datetime:
    return datetime(*args, tzinfo=tz)


def test_weekly_hours_are_read_with_ranges_lists_and_several_spans():
    hours = parse_weekly("mon-fri 09:00-12:00, 13:00-18:00; sat 10:00-14:00\nsun 00:00-24:00")
    assert hours[0] == ((time(9), time(12)), (time(13), time(18)))
    assert hours[5] == ((time(10), time(14)),)
    assert hours[6][0][0] == time(0)
    assert 4 in hours and 5 in hours and set(hours) == set(range(7))


def test_day_lists_with_spaces_and_wrapping_ranges():
    assert set(parse_weekly("mon, wed 09:00-10:00")) == {0, 2}
    assert set(parse_weekly("fri-mon 09:00-10:00")) == {4, 5, 6, 0}


@pytest.mark.parametrize("text", ["mon-fri", "funday 09:00-10:00", "mon 18:00-09:00", "mon 09:00-25:00", "mon 09-18",
                                  "mon 09:00-12:00, 11:00-13:00"])
def test_unreadable_hours_are_refused_with_the_reason(text):
    with pytest.raises(CalendarError):
        parse_weekly(text)


def test_holidays_are_dates_and_anything_else_is_refused():
    assert parse_holidays("2026-10-01, 2026-10-02\n2026-10-03") == {date(2026, 10, 1), date(2026, 10, 2), date(2026, 10, 3)}
    with pytest.raises(CalendarError):
        parse_holidays("Oct 1")


def test_unknown_time_zone_is_refused():
    with pytest.raises(CalendarError):
        BusinessCalendar.from_text(time_zone="Mars/Olympus")


def test_around_the_clock_is_plain_arithmetic():
    start = datetime(2026, 3, 7, 23, 0, tzinfo=timezone.utc)
    assert ALWAYS.add(start, 2 * HOUR) == start + timedelta(hours=2)
    assert ALWAYS.between(start, start + timedelta(hours=5)) == 5 * HOUR
    assert ALWAYS.is_open(start)


def test_within_one_day():
    cal = office()
    assert cal.add(at(SHANGHAI, 2026, 12, 1, 10, 0), 2 * HOUR) == at(SHANGHAI, 2026, 12, 1, 12, 0)


def test_a_demand_arriving_at_night_starts_counting_at_opening():
    cal = office()
    night = at(SHANGHAI, 2026, 12, 1, 23, 30)  # Tuesday night
    assert cal.add(night, HOUR) == at(SHANGHAI, 2026, 12, 2, 10, 0)
    assert not cal.is_open(night)
    assert cal.next_open(night) == at(SHANGHAI, 2026, 12, 2, 9, 0)
    assert cal.between(night, at(SHANGHAI, 2026, 12, 2, 9, 0)) == 0


def test_time_left_at_closing_carries_over_to_the_next_morning():
    cal = office()
    assert cal.add(at(SHANGHAI, 2026, 12, 1, 17, 0), 2 * HOUR) == at(SHANGHAI, 2026, 12, 2, 10, 0)


def test_across_the_weekend():
    cal = office()
    friday = at(SHANGHAI, 2026, 12, 4, 17, 0)
    assert cal.add(friday, 2 * HOUR) == at(SHANGHAI, 2026, 12, 7, 10, 0)  # Monday 10:00
    assert cal.between(friday, at(SHANGHAI, 2026, 12, 7, 10, 0)) == 2 * HOUR
    assert not cal.is_open(at(SHANGHAI, 2026, 12, 5, 11, 0))  # Saturday


def test_holidays_are_skipped():
    cal = office(holidays="2026-10-01, 2026-10-02")
    before = at(SHANGHAI, 2026, 9, 30, 17, 0)  # Wednesday; Thursday and Friday are holidays
    assert cal.add(before, 2 * HOUR) == at(SHANGHAI, 2026, 10, 5, 10, 0)
    assert not cal.is_open(at(SHANGHAI, 2026, 10, 1, 10, 0))


def test_an_exact_fill_ends_at_closing_time():
    cal = office()
    assert cal.add(at(SHANGHAI, 2026, 12, 1, 9, 0), 9 * HOUR) == at(SHANGHAI, 2026, 12, 1, 18, 0)


def test_between_is_the_inverse_of_add():
    cal = office(BERLIN, holidays="2026-12-25")
    start = at(BERLIN, 2026, 12, 23, 15, 17)
    for seconds in (0, 60, 3 * HOUR, 9 * HOUR, 40 * HOUR + 123):
        assert cal.between(start, cal.add(start, seconds)) == pytest.approx(max(seconds, 0))


def test_office_hours_keep_their_wall_clock_times_across_spring_forward():
    cal = office(BERLIN)  # 2026-03-29 is a Sunday; Monday 30th is the first summer-time day
    friday = at(BERLIN, 2026, 3, 27, 17, 0)
    due = cal.add(friday, 2 * HOUR)
    assert due.astimezone(BERLIN).replace(tzinfo=None) == datetime(2026, 3, 30, 10, 0)
    assert due.utcoffset() is None or due.astimezone(BERLIN).utcoffset() == timedelta(hours=2)


def test_a_day_open_around_the_clock_has_23_hours_when_the_clocks_go_forward():
    cal = BusinessCalendar.from_text(time_zone="America/New_York", weekly="sun 00:00-24:00")
    sunday = at(NEW_YORK, 2026, 3, 8, 0, 0)
    assert cal.between(sunday, at(NEW_YORK, 2026, 3, 9, 0, 0)) == 23 * HOUR
    # 3 h of open time from midnight: the 02:00-03:00 hour does not exist, so it is 04:00 local
    assert cal.add(sunday, 3 * HOUR).astimezone(NEW_YORK).hour == 4


def test_a_day_open_around_the_clock_has_25_hours_when_the_clocks_go_back():
    cal = BusinessCalendar.from_text(time_zone="America/New_York", weekly="sun 00:00-24:00")
    assert cal.between(at(NEW_YORK, 2026, 11, 1, 0, 0), at(NEW_YORK, 2026, 11, 2, 0, 0)) == 25 * HOUR


def test_a_calendar_with_no_open_hours_says_so():
    cal = BusinessCalendar.from_text(weekly="mon 09:00-10:00", holidays=" ".join(
        (date(2026, 1, 5) + timedelta(weeks=n)).isoformat() for n in range(200)))
    with pytest.raises(CalendarError):
        cal.add(datetime(2026, 1, 1, tzinfo=timezone.utc), HOUR)


def test_utc_inputs_give_the_same_moment_as_local_ones():
    cal = office()
    local = at(SHANGHAI, 2026, 12, 1, 17, 0)
    assert cal.add(local.astimezone(timezone.utc), 2 * HOUR) == cal.add(local, 2 * HOUR)
