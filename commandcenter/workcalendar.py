"""Chinese official work calendar and case-deadline arithmetic.

Case deadlines in grid governance are counted in working hours or working
days on the official calendar (public holidays and make-up workdays, 调休).
The holiday data comes from the maintained ``chinese_calendar`` package
(pip: chinesecalendar), which only knows the years already announced by the
State Council and raises NotImplementedError for any other year.  Deadlines
routinely run into the next year before its schedule is published, so for an
unsupported year we fall back to plain Monday–Friday workdays and log a
warning once per year instead of failing.

Conventions: all "local" datetimes are NAIVE wall-clock times in the
command center's zone (default Asia/Shanghai); the database stores NAIVE UTC.
Use :func:`to_local` / :func:`to_utc` (or :func:`deadline_utc`) at the
boundary.
"""

from __future__ import annotations

import logging
import math
import threading
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from numbers import Real
from time import monotonic as time_now

import chinese_calendar

from .timeutil import from_local, local

logger = logging.getLogger(__name__)

#: Units a time limit may be expressed in.  minutes/hours/days are wall-clock
#: durations; work_hours only counts time inside working periods on workdays;
#: work_days counts whole workdays (see :func:`add_limit`).
LIMIT_UNITS = ("minutes", "hours", "days", "work_hours", "work_days")

Periods = tuple[tuple[time, time], ...]

#: Working periods of a workday: 08:30–12:00 and 13:30–17:30 (7.5 h/day).
DEFAULT_PERIODS: Periods = ((time(8, 30), time(12, 0)), (time(13, 30), time(17, 30)))

# Safety bound for the day-by-day walks (~100 years); only reachable with
# absurd amounts, but it turns a runaway loop into a clear error.
_MAX_DAYS = 366 * 100

_warned_years: set[int] = set()
_warn_lock = threading.Lock()


def _warn_unsupported_year(year: int) -> None:
    """Log the Mon–Fri fallback once per year so logs are not flooded."""
    with _warn_lock:
        if year in _warned_years:
            return
        _warned_years.add(year)
    logger.warning(
        "chinese_calendar has no holiday data for %d; falling back to Monday-Friday workdays for that year",
        year,
    )


def is_workday(d: date) -> bool:
    """True if ``d`` is an official workday (holidays and 调休 make-up days included).

    The year's calendar comes from the database (the State Council's notice imported by the administrator,
    or the library's years seeded by migration 0006) when an application is running, else from the
    chinesecalendar library; a year neither holds is assumed Monday–Friday (see `year_known`)."""
    if isinstance(d, datetime):
        d = d.date()
    held = _held_years().get(d.year)
    if held is not None:
        workday = held.get(d)
        return d.weekday() < 5 if workday is None else workday
    return _is_workday(d)


# --- the years the city holds in its database -----------------------------------------------------------

HELD_REFRESH_S = 30.0  # a process re-reads the calendar tables at most this often (an import resets it at once)
_held: dict[int, dict[date, bool]] = {}
_held_checked = -HELD_REFRESH_S
_held_stamp: object = None
_held_lock = threading.Lock()


def _held_years() -> dict[int, dict[date, bool]]:
    """{year: {day: workday}} of the calendar tables, read once per HELD_REFRESH_S and again only when a
    year was loaded since. Outside an application (pure arithmetic, tests of the rules): nothing."""
    global _held, _held_checked, _held_stamp
    from flask import has_app_context

    if not has_app_context():
        return {}  # outside an application: the library only (never what an earlier application held)
    if time_now() - _held_checked < HELD_REFRESH_S:
        return _held
    with _held_lock:
        if time_now() - _held_checked < HELD_REFRESH_S:
            return _held
        from sqlalchemy import func, select

        from .db import db
        from .models import CalendarDay, CalendarYear

        try:
            stamp = tuple(db.execute(select(func.count(CalendarYear.year), func.max(CalendarYear.loaded_at))).one())
            if stamp != _held_stamp:
                held: dict[int, dict[date, bool]] = {y: {} for y in db.scalars(select(CalendarYear.year))}
                for day, year, workday in db.execute(select(CalendarDay.day, CalendarDay.year, CalendarDay.workday)):
                    held.setdefault(year, {})[day] = workday
                _held, _held_stamp = held, stamp
        except Exception:  # no tables yet (a migration running), or the database is down: keep what we had
            logger.warning("working calendar: could not read the calendar tables; using what this process holds")
        _held_checked = time_now()
        return _held


def reset_held_years() -> None:
    """Forget the calendar tables read so far (after an import, or when a test empties the tables)."""
    global _held, _held_checked, _held_stamp
    with _held_lock:
        _held, _held_checked, _held_stamp = {}, -HELD_REFRESH_S, None


def library_years() -> range:
    """The years the chinesecalendar library knows."""
    from chinese_calendar import constants

    return range(min(constants.holidays).year, max(constants.holidays).year + 1)


def year_known(year: int) -> bool:
    """Does the city hold this year's holidays (in its database or from the library)? Deadlines that run
    through a year it does not are counted Monday–Friday and marked as assumed (Case.deadline_assumed)."""
    return year in _held_years() or year in library_years()


def assumed_between(start: date, end: date) -> bool:
    """Was a deadline from `start` to `end` counted over a year whose calendar is unknown?"""
    return not all(year_known(y) for y in range(start.year, end.year + 1))


@lru_cache(maxsize=4096)
def _is_workday(d: date) -> bool:
    """Cached: chinese_calendar scans its whole table on every call (~45 µs)."""
    try:
        return bool(chinese_calendar.is_workday(d))
    except NotImplementedError:
        _warn_unsupported_year(d.year)
        return d.weekday() < 5


def _validate_periods(periods: Periods) -> Periods:
    """Reject empty/unordered/overlapping periods: the walks below rely on
    each workday offering a positive, ordered amount of working time."""
    periods = tuple(tuple(p) for p in periods)
    if not periods:
        raise ValueError("periods must contain at least one (start, end) pair")
    prev_end: time | None = None
    for p in periods:
        if len(p) != 2 or not all(isinstance(t, time) for t in p):
            raise ValueError(f"each period must be a (time, time) pair, got {p!r}")
        s, e = p
        if s.tzinfo is not None or e.tzinfo is not None:
            raise ValueError("period times must be naive local times")
        if not s < e:
            raise ValueError(f"period start must be before its end, got {s}–{e}")
        if prev_end is not None and s < prev_end:
            raise ValueError("periods must be sorted and non-overlapping")
        prev_end = e
    return periods  # type: ignore[return-value]


def _validate_amount(amount: int | float) -> None:
    """Limits must be positive finite numbers (bool is rejected explicitly)."""
    if isinstance(amount, bool) or not isinstance(amount, Real):
        raise ValueError(f"amount must be a number, got {amount!r}")
    if not math.isfinite(amount) or amount <= 0:
        raise ValueError(f"amount must be a finite number > 0, got {amount!r}")


def _validate_unit(unit: str) -> None:
    if unit not in LIMIT_UNITS:
        raise ValueError(f"unknown limit unit {unit!r}; allowed units: {', '.join(LIMIT_UNITS)}")


def _require_naive(dt: datetime, name: str) -> None:
    """Local-time arithmetic is done on naive wall-clock values only; an aware
    value here almost certainly means a UTC/local mix-up upstream."""
    if not isinstance(dt, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(dt).__name__}")
    if dt.tzinfo is not None:
        raise ValueError(f"{name} must be a naive local datetime (use to_local first)")


def add_limit(
    start: datetime,
    amount: int | float,
    unit: str,
    periods: Periods = DEFAULT_PERIODS,
    same_day_before: time | None = None,
) -> datetime:
    """Return the deadline for a limit of ``amount`` ``unit`` starting at ``start``.

    ``start`` is a naive local (Asia/Shanghai) datetime; the result is naive
    local time too.

    * ``minutes`` / ``hours`` / ``days``: plain wall-clock addition.
    * ``work_hours``: walk forward through the working periods of workdays,
      consuming ``amount`` hours of working time.  Time outside the periods
      (nights, lunch break, weekends, holidays) does not count.  If the amount
      is used up exactly at the end of a period, the deadline is that period's
      end (e.g. 12:00), not the start of the next one.
    * ``work_days`` (integer amount): the day of registration is day 0 if it
      is a workday, whatever the time of day; if it is not a workday, the
      first workday after it is day 1.  Both cases amount to: the deadline is
      the end of the last working period (17:30 by default) of the N-th
      workday strictly after ``start``'s date.  E.g. 1 work day from a Friday
      afternoon ends Monday 17:30.  With ``same_day_before`` (the setting
      WORK_DAY_SAME_DAY_BEFORE), a start on a workday before that time of day
      counts its own day as day 1: 1 work day from Monday 09:00 with 12:00
      ends Monday 17:30.
    """
    _validate_unit(unit)
    _validate_amount(amount)
    _require_naive(start, "start")

    if unit == "minutes":
        return start + timedelta(minutes=amount)
    if unit == "hours":
        return start + timedelta(hours=amount)
    if unit == "days":
        return start + timedelta(days=amount)

    periods = _validate_periods(periods)

    if unit == "work_days":
        if amount != int(amount):
            raise ValueError(f"work_days amount must be a whole number, got {amount!r}")
        remaining = int(amount)
        day = start.date()
        if same_day_before is not None and start.time() < same_day_before and is_workday(day) and remaining > 0:
            remaining -= 1
            if remaining == 0:
                return datetime.combine(day, periods[-1][1])
        for _ in range(_MAX_DAYS):
            day += timedelta(days=1)
            if is_workday(day):
                remaining -= 1
                if remaining == 0:
                    return datetime.combine(day, periods[-1][1])
        raise ValueError(f"work_days amount too large: {amount!r}")

    # work_hours
    remaining_td = timedelta(hours=amount)
    day = start.date()
    for _ in range(_MAX_DAYS):
        if is_workday(day):
            for p_start, p_end in periods:
                seg_start = max(start, datetime.combine(day, p_start))
                seg_end = datetime.combine(day, p_end)
                if seg_start >= seg_end:
                    continue
                available = seg_end - seg_start
                if remaining_td <= available:
                    return seg_start + remaining_td
                remaining_td -= available
        day += timedelta(days=1)
    raise ValueError(f"work_hours amount too large: {amount!r}")


def working_time_between(
    start: datetime,
    end: datetime,
    periods: Periods = DEFAULT_PERIODS,
) -> timedelta:
    """Working time (inside working periods of workdays) elapsed between two
    naive local datetimes; used to show how much of a work_hours limit is
    used.  Returns zero if ``end <= start``."""
    _require_naive(start, "start")
    _require_naive(end, "end")
    periods = _validate_periods(periods)
    total = timedelta(0)
    if end <= start:
        return total
    day = start.date()
    last = end.date()
    while day <= last:
        if is_workday(day):
            for p_start, p_end in periods:
                seg_start = max(start, datetime.combine(day, p_start))
                seg_end = min(end, datetime.combine(day, p_end))
                if seg_end > seg_start:
                    total += seg_end - seg_start
        day += timedelta(days=1)
    return total


def workdays_in_month(year: int, month: int) -> list[date]:
    """All official workdays of a month in order (make-up days included,
    holidays excluded); the patrol-compliance indicator ("patrolled ≥1 h
    every workday") is evaluated against this list."""
    day = date(year, month, 1)
    result: list[date] = []
    while day.month == month:
        if is_workday(day):
            result.append(day)
        day += timedelta(days=1)
    return result


# the boundary conversions live in timeutil; these names are kept for the calendar's callers
to_local = local
to_utc = from_local


def deadline_utc(
    start_utc: datetime,
    amount: int | float,
    unit: str,
    tz: str | None = None,
    periods: Periods = DEFAULT_PERIODS,
) -> datetime:
    """Deadline as naive UTC for a start stored as naive UTC: the calendar
    rules apply to local time (the city's, timeutil.current_tz, unless `tz` is given), so convert, add the
    limit, convert back."""
    return to_utc(add_limit(to_local(start_utc, tz), amount, unit, periods, same_day_before()), tz)


def same_day_before() -> time | None:
    """The setting WORK_DAY_SAME_DAY_BEFORE of the running application (None: day 0 at any hour)."""
    from flask import current_app, has_app_context

    if has_app_context() and "SETTINGS" in current_app.config:
        return current_app.config["SETTINGS"].work_day_same_day_before
    return None
