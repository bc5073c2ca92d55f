"""Tests for commandcenter.workcalendar against the real 2026 official calendar.

2026 facts used (from chinese_calendar's data):
- Spring Festival holiday 2026-02-15..23 (Mon 16 - Fri 20 and Mon 23 are off),
  make-up workdays Sat 2026-02-14 and Sat 2026-02-28.
- Mid-autumn Fri 2026-09-25 off, make-up workday Sun 2026-09-20.
- National Day 2026-10-01..07 off, make-up workday Sat 2026-10-10.
- March 2026 has no holidays (used as "ordinary" weeks).
2027 is not covered by chinese_calendar 1.11.0 -> Mon-Fri fallback.
"""

import logging
import math
from datetime import UTC, date, datetime, time, timedelta

import pytest

from commandcenter import workcalendar as wc

# --- is_workday -------------------------------------------------------------


def test_national_day_week_is_holiday():
    for day in range(1, 8):
        assert wc.is_workday(date(2026, 10, day)) is False, day


def test_makeup_weekend_days_are_workdays():
    assert date(2026, 10, 10).weekday() == 5  # Saturday
    assert wc.is_workday(date(2026, 10, 10)) is True
    assert date(2026, 9, 20).weekday() == 6  # Sunday
    assert wc.is_workday(date(2026, 9, 20)) is True
    assert wc.is_workday(date(2026, 2, 14)) is True  # Saturday before Spring Festival


def test_ordinary_days():
    assert wc.is_workday(date(2026, 3, 10)) is True  # Tuesday
    assert wc.is_workday(date(2026, 3, 14)) is False  # Saturday
    assert wc.is_workday(datetime(2026, 3, 10, 9, 0)) is True  # datetime accepted


def test_unsupported_year_falls_back_to_weekdays_and_warns_once(caplog):
    wc._warned_years.discard(2027)
    wc._is_workday.cache_clear()  # earlier tests may have asked about these days already
    with caplog.at_level(logging.WARNING, logger="commandcenter.workcalendar"):
        assert wc.is_workday(date(2027, 1, 1)) is True  # Friday (weekday rule)
        assert wc.is_workday(date(2027, 1, 2)) is False  # Saturday
        assert wc.is_workday(date(2027, 1, 4)) is True  # Monday
    warnings = [r for r in caplog.records if "2027" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING


# --- add_limit: work_days -------------------------------------------------------


def test_one_work_day_from_friday_afternoon_is_monday_close():
    assert wc.add_limit(datetime(2026, 3, 13, 15, 0), 1, "work_days") == datetime(2026, 3, 16, 17, 30)


def test_work_days_registration_day_is_day_zero():
    # Tuesday morning (even before opening time) -> day 0; 1 work day = Wednesday close.
    assert wc.add_limit(datetime(2026, 3, 10, 7, 0), 1, "work_days") == datetime(2026, 3, 11, 17, 30)
    assert wc.add_limit(datetime(2026, 3, 10, 20, 0), 3, "work_days") == datetime(2026, 3, 13, 17, 30)
    assert wc.add_limit(datetime(2026, 3, 10, 10, 0), 5.0, "work_days") == datetime(2026, 3, 17, 17, 30)


def test_work_days_across_spring_festival():
    start = datetime(2026, 2, 13, 10, 0)  # Friday before the holiday
    # Day 1 is the make-up Saturday 02-14.
    assert wc.add_limit(start, 1, "work_days") == datetime(2026, 2, 14, 17, 30)
    # 02-15..02-23 all off (incl. Sat 21, Sun 22, Mon 23) -> day 2 is Tue 02-24.
    assert wc.add_limit(start, 2, "work_days") == datetime(2026, 2, 24, 17, 30)
    assert wc.add_limit(start, 3, "work_days") == datetime(2026, 2, 25, 17, 30)


def test_work_days_registered_on_holiday():
    # Sat 10-03 (holiday): Sun 10-04 off, 10-05..07 off -> first workday Thu 10-08 is day 1.
    assert wc.add_limit(datetime(2026, 10, 3, 10, 0), 1, "work_days") == datetime(2026, 10, 8, 17, 30)
    # Day 2 Fri 10-09, day 3 the make-up Saturday 10-10.
    assert wc.add_limit(datetime(2026, 10, 3, 10, 0), 3, "work_days") == datetime(2026, 10, 10, 17, 30)


def test_work_days_into_2027_fallback():
    # Thu 2026-12-31: day 1 = Fri 2027-01-01 (weekday fallback), day 2 = Mon 2027-01-04.
    assert wc.add_limit(datetime(2026, 12, 31, 10, 0), 2, "work_days") == datetime(2027, 1, 4, 17, 30)
    assert wc.add_limit(datetime(2027, 1, 8, 15, 0), 1, "work_days") == datetime(2027, 1, 11, 17, 30)


def test_work_days_rejects_fraction():
    with pytest.raises(ValueError):
        wc.add_limit(datetime(2026, 3, 10, 10, 0), 1.5, "work_days")


# --- add_limit: work_hours ------------------------------------------------------


def test_five_work_hours_from_1600():
    # Tue 16:00-17:30 = 1.5 h, remaining 3.5 h = Wed 08:30-12:00 exactly -> 12:00.
    assert wc.add_limit(datetime(2026, 3, 10, 16, 0), 5, "work_hours") == datetime(2026, 3, 11, 12, 0)
    # 5.5 h: the extra half hour falls after lunch -> 14:00.
    assert wc.add_limit(datetime(2026, 3, 10, 16, 0), 5.5, "work_hours") == datetime(2026, 3, 11, 14, 0)


def test_work_hours_within_same_period():
    assert wc.add_limit(datetime(2026, 3, 10, 9, 0), 2, "work_hours") == datetime(2026, 3, 10, 11, 0)


def test_work_hours_start_during_lunch():
    # 12:30 -> clock starts at 13:30.
    assert wc.add_limit(datetime(2026, 3, 10, 12, 30), 2, "work_hours") == datetime(2026, 3, 10, 15, 30)
    # 4.5 h: 13:30-17:30 = 4 h, 0.5 h next morning -> Wed 09:00.
    assert wc.add_limit(datetime(2026, 3, 10, 12, 30), 4.5, "work_hours") == datetime(2026, 3, 11, 9, 0)


def test_work_hours_start_before_opening_and_after_closing():
    assert wc.add_limit(datetime(2026, 3, 10, 6, 0), 1, "work_hours") == datetime(2026, 3, 10, 9, 30)
    assert wc.add_limit(datetime(2026, 3, 10, 17, 30), 1, "work_hours") == datetime(2026, 3, 11, 9, 30)
    assert wc.add_limit(datetime(2026, 3, 10, 22, 0), 1, "work_hours") == datetime(2026, 3, 11, 9, 30)


def test_work_hours_start_on_holiday():
    # 10-01..07 off; Thu 10-08 full day = 7.5 h, 0.5 h on Fri 10-09 -> 09:00.
    assert wc.add_limit(datetime(2026, 10, 1, 9, 0), 8, "work_hours") == datetime(2026, 10, 9, 9, 0)


def test_work_hours_run_into_makeup_saturday():
    # Fri 10-09 16:00-17:30 = 1.5 h, 0.5 h on make-up Saturday 10-10 -> 09:00.
    assert wc.add_limit(datetime(2026, 10, 9, 16, 0), 2, "work_hours") == datetime(2026, 10, 10, 9, 0)


def test_work_hours_over_weekend_in_2027_fallback():
    # Fri 2027-01-08 16:00: 1.5 h Friday, 0.5 h Monday 01-11 -> 09:00.
    assert wc.add_limit(datetime(2027, 1, 8, 16, 0), 2, "work_hours") == datetime(2027, 1, 11, 9, 0)


def test_custom_periods():
    periods = ((time(9, 0), time(17, 0)),)
    assert wc.add_limit(datetime(2026, 3, 10, 16, 30), 1, "work_hours", periods) == datetime(2026, 3, 11, 9, 30)
    assert wc.add_limit(datetime(2026, 3, 13, 10, 0), 1, "work_days", periods) == datetime(2026, 3, 16, 17, 0)


def test_invalid_periods():
    with pytest.raises(ValueError):
        wc.add_limit(datetime(2026, 3, 10, 9), 1, "work_hours", ())
    with pytest.raises(ValueError):
        wc.add_limit(datetime(2026, 3, 10, 9), 1, "work_hours", ((time(12), time(9)),))
    with pytest.raises(ValueError):
        wc.add_limit(
            datetime(2026, 3, 10, 9),
            1,
            "work_hours",
            ((time(8), time(12)), (time(11), time(17))),
        )


# --- add_limit: wall-clock units -------------------------------------------------


def test_plain_units_ignore_calendar():
    start = datetime(2026, 10, 1, 9, 0)  # National Day, irrelevant for wall-clock units
    assert wc.add_limit(start, 90, "minutes") == datetime(2026, 10, 1, 10, 30)
    assert wc.add_limit(start, 1.5, "hours") == datetime(2026, 10, 1, 10, 30)
    assert wc.add_limit(start, 25, "hours") == datetime(2026, 10, 2, 10, 0)
    assert wc.add_limit(start, 3, "days") == datetime(2026, 10, 4, 9, 0)


# --- validation ---------------------------------------------------------------


def test_invalid_unit_names_allowed_units():
    with pytest.raises(ValueError) as exc:
        wc.add_limit(datetime(2026, 3, 10, 9), 1, "weeks")
    for unit in wc.LIMIT_UNITS:
        assert unit in str(exc.value)


@pytest.mark.parametrize("amount", [0, -1, -0.5, math.nan, math.inf, True, "3", None])
def test_invalid_amount(amount):
    with pytest.raises(ValueError):
        wc.add_limit(datetime(2026, 3, 10, 9), amount, "hours")


def test_aware_start_rejected():
    with pytest.raises(ValueError):
        wc.add_limit(datetime(2026, 3, 10, 9, tzinfo=UTC), 1, "work_hours")


# --- working_time_between -----------------------------------------------------


def test_working_time_between_matches_add_limit():
    assert wc.working_time_between(datetime(2026, 3, 10, 16, 0), datetime(2026, 3, 11, 12, 0)) == timedelta(hours=5)


def test_working_time_between_lunch_and_partial():
    assert wc.working_time_between(datetime(2026, 3, 10, 12, 0), datetime(2026, 3, 10, 13, 30)) == timedelta(0)
    # 11:00-12:00 = 1 h, 13:30-14:15 = 45 min.
    assert wc.working_time_between(datetime(2026, 3, 10, 11, 0), datetime(2026, 3, 10, 14, 15)) == timedelta(
        hours=1, minutes=45
    )


def test_working_time_between_over_national_day():
    # Wed 09-30 (7.5 h) + Thu 10-08 (7.5 h); 10-01..07 are off.
    assert wc.working_time_between(datetime(2026, 9, 30, 0, 0), datetime(2026, 10, 9, 0, 0)) == timedelta(hours=15)


def test_working_time_between_reversed_is_zero():
    assert wc.working_time_between(datetime(2026, 3, 11, 9), datetime(2026, 3, 10, 9)) == timedelta(0)


# --- workdays_in_month --------------------------------------------------------


def test_workdays_in_october_2026():
    expected = [date(2026, 10, d) for d in (8, 9, 10, 12, 13, 14, 15, 16, 19, 20, 21, 22, 23, 26, 27, 28, 29, 30)]
    assert wc.workdays_in_month(2026, 10) == expected


def test_workdays_in_september_2026():
    days = wc.workdays_in_month(2026, 9)
    assert len(days) == 22  # 22 weekdays - Fri 25 (Mid-autumn) + Sun 20 (make-up)
    assert date(2026, 9, 20) in days
    assert date(2026, 9, 25) not in days


def test_workdays_in_month_2027_fallback():
    # February 2027 starts on a Monday and has exactly 4 weeks.
    assert len(wc.workdays_in_month(2027, 2)) == 20
    assert wc.workdays_in_month(2027, 12)[-1] == date(2027, 12, 31)  # Friday


# --- time zones ---------------------------------------------------------------


def test_to_utc_and_to_local_round_trip():
    local = datetime(2026, 10, 1, 8, 0)
    utc = wc.to_utc(local)
    assert utc == datetime(2026, 10, 1, 0, 0)
    assert utc.tzinfo is None
    back = wc.to_local(utc)
    assert back == local
    assert back.tzinfo is None
    assert wc.to_local(datetime(2026, 12, 31, 20, 0)) == datetime(2027, 1, 1, 4, 0)


def test_deadline_utc():
    # 07:00 UTC = Fri 15:00 local -> Mon 17:30 local = 09:30 UTC.
    assert wc.deadline_utc(datetime(2026, 3, 13, 7, 0), 1, "work_days") == datetime(2026, 3, 16, 9, 30)
    # 08:00 UTC = Tue 16:00 local -> Wed 12:00 local = 04:00 UTC.
    assert wc.deadline_utc(datetime(2026, 3, 10, 8, 0), 5, "work_hours") == datetime(2026, 3, 11, 4, 0)
    # 17:00 UTC Tue = 01:00 local Wed -> work day starts Wed 08:30 -> 09:30 local = 01:30 UTC.
    assert wc.deadline_utc(datetime(2026, 3, 10, 17, 0), 1, "work_hours") == datetime(2026, 3, 11, 1, 30)
