"""Case deadlines set at registration, from the category's limits, on the Chinese official calendar.

Every expected value below is worked out by hand (not by calling the calendar code) from the 2026
official schedule: Mid-Autumn 09-25..09-27 off; National Day 10-01..10-07 off; make-up workdays
Sun 09-20 and Sat 10-10; Spring Festival 02-15..02-23 off with make-up Sat 02-14 and Sat 02-28.
Working periods are 08:30–12:00 and 13:30–17:30 local. `now=` values are naive UTC and the
command center's zone is Asia/Shanghai (UTC+8, no DST): local 09:00 is 01:00 UTC.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from commandcenter.cases import loop
from commandcenter.db import db
from commandcenter.models import Case
from tests.conftest import report as shared_report
from tests.conftest import shanghai
from tests.world import WorldView


def utc(y, mo, d, h=0, mi=0):
    return datetime(y, mo, d, h, mi)


W = WorldView


def report(w: W, code: str, at: datetime, discovered_at: datetime | None = None, who: str = "gw0") -> Case:
    return shared_report(w, who, code, at, description=f"测试 {code}", discovered_at=discovered_at)


def reported_and_registered(w: W, code: str, registered_at: datetime) -> Case:
    case = report(w, code, registered_at - timedelta(minutes=5))
    assert (case.dispatch_due, case.handle_due, case.escalate_due) == (None, None, None)
    loop.register(case, w.a("town0_operator"), now=registered_at)
    db.expire_all()
    case = db.get(Case, case.id)
    assert case.registered_at == registered_at
    return case


# --- 违法建设 0301: handle 15 work_days, dispatch 2 work_hours, escalate to town within 1 work_day ---


def test_illegal_construction_registered_before_national_day_lands_after_the_holiday(w):
    # local Mon 2026-09-28 10:00. 15 workdays after 09-28:
    # 09-29(1) 09-30(2) [10-01..10-07 off] 10-08(3) 10-09(4) 10-10 Sat make-up(5) [10-11 Sun off]
    # 10-12(6) 13(7) 14(8) 15(9) 16(10) [17, 18 weekend] 19(11) 20(12) 21(13) 22(14) 23(15)
    case = reported_and_registered(w, "0301", shanghai(2026, 9, 28, 10, 0))
    assert case.handle_due == shanghai(2026, 10, 23, 17, 30) == utc(2026, 10, 23, 9, 30)
    # 2 working hours from 10:00 → 12:00 the same morning
    assert case.dispatch_due == shanghai(2026, 9, 28, 12, 0) == utc(2026, 9, 28, 4, 0)
    # must reach the town within 1 work day → end of Tue 09-29
    assert case.escalate_due == shanghai(2026, 9, 29, 17, 30) == utc(2026, 9, 29, 9, 30)
    assert case.transfer_due is None


def test_illegal_construction_counts_from_the_local_date_not_the_utc_date(w):
    # local Tue 2026-09-29 07:00 is still Mon 09-28 23:00 in UTC: day 0 is the local 09-29.
    # 09-30(1) 10-08(2) 09(3) 10(4) 12(5) 13(6) 14(7) 15(8) 16(9) 19(10) 20(11) 21(12) 22(13) 23(14) 26(15)
    case = reported_and_registered(w, "0301", utc(2026, 9, 28, 23, 0))
    assert case.handle_due == shanghai(2026, 10, 26, 17, 30) == utc(2026, 10, 26, 9, 30)
    assert case.escalate_due == shanghai(2026, 9, 30, 17, 30)
    # before office hours: 08:30 + 2 h
    assert case.dispatch_due == shanghai(2026, 9, 29, 10, 30)


def test_illegal_construction_registered_on_a_holiday(w):
    # local Sat 2026-10-03 (National Day): the first workday after it, Thu 10-08, is day 1.
    # 10-08(1) 09(2) 10(3) 12(4) 13(5) 14(6) 15(7) 16(8) 19(9) 20(10) 21(11) 22(12) 23(13) 26(14) 27(15)
    case = reported_and_registered(w, "0301", shanghai(2026, 10, 3, 10, 0))
    assert case.handle_due == shanghai(2026, 10, 27, 17, 30)
    assert case.escalate_due == shanghai(2026, 10, 8, 17, 30)
    assert case.dispatch_due == shanghai(2026, 10, 8, 10, 30)


def test_illegal_construction_registered_on_a_weekend_before_a_make_up_sunday(w):
    # local Sat 2026-09-19 (off); Sun 09-20 is a make-up workday, Mid-Autumn 09-25..27 off.
    # 09-20(1) 21(2) 22(3) 23(4) 24(5) 28(6) 29(7) 30(8) 10-08(9) 09(10) 10(11) 12(12) 13(13) 14(14) 15(15)
    case = reported_and_registered(w, "0301", shanghai(2026, 9, 19, 10, 0))
    assert case.handle_due == shanghai(2026, 10, 15, 17, 30)
    assert case.escalate_due == shanghai(2026, 9, 20, 17, 30)
    assert case.dispatch_due == shanghai(2026, 9, 20, 10, 30)


# --- 道路不洁 0103: 5 work_hours --------------------------------------------------------------------


@pytest.mark.parametrize(
    "registered_local, due_local",
    [
        # Fri 15:00: 2.5 h on Friday, weekend off, Mon 08:30 + 2.5 h
        ((2026, 3, 13, 15, 0), (2026, 3, 16, 11, 0)),
        # Wed 09-30 16:00: 1.5 h, National Day off, Thu 10-08 08:30 + 3.5 h = exactly the end of the morning
        ((2026, 9, 30, 16, 0), (2026, 10, 8, 12, 0)),
        # Sat 09-19 (off) → make-up Sun 09-20: 08:30–12:00 (3.5 h) + 13:30–15:00 (1.5 h)
        ((2026, 9, 19, 10, 0), (2026, 9, 20, 15, 0)),
        # Fri 10-09 17:00: 0.5 h, make-up Sat 10-10 08:30 + 3.5 h + 13:30 + 1 h
        ((2026, 10, 9, 17, 0), (2026, 10, 10, 14, 30)),
        # in the lunch break: 13:30–17:30 (4 h), next day 08:30 + 1 h
        ((2026, 3, 10, 12, 30), (2026, 3, 11, 9, 30)),
        # local Sat 03-14 07:00 = UTC Fri 23:00: nothing counts until Mon 08:30, then 3.5 h + 1.5 h
        ((2026, 3, 14, 7, 0), (2026, 3, 16, 15, 0)),
        # Spring Festival: Fri 02-13 16:00 1.5 h, make-up Sat 02-14 08:30 + 3.5 h
        ((2026, 2, 13, 16, 0), (2026, 2, 14, 12, 0)),
    ],
)
def test_dirty_road_five_working_hours(w, registered_local, due_local):
    case = reported_and_registered(w, "0103", shanghai(*registered_local))
    assert case.handle_due == shanghai(*due_local)
    assert case.escalate_due is None and case.transfer_due is None


def test_dispute_five_work_days_across_spring_festival(w):
    # 邻里纠纷 2001: Fri 02-13; Sat 02-14 make-up (1), 02-15..02-23 off, 24(2) 25(3) 26(4) 27(5)
    case = reported_and_registered(w, "2001", shanghai(2026, 2, 13, 10, 0))
    assert case.handle_due == shanghai(2026, 2, 27, 17, 30)


def test_deadlines_count_from_registration_not_from_the_report(w):
    # reported Fri 03-06, registered Tue 03-10 10:00: 5 work hours = 10:00–12:00 (2 h) + 13:30–16:30 (3 h)
    case = report(w, "0103", shanghai(2026, 3, 6, 10, 0))
    loop.register(case, w.a("town0_operator"), now=shanghai(2026, 3, 10, 10, 0))
    db.expire_all()
    case = db.get(Case, case.id)
    assert case.handle_due == shanghai(2026, 3, 10, 16, 30)
    assert case.dispatch_due == shanghai(2026, 3, 10, 12, 0)


def test_category_item_inherits_the_limits_of_its_small_class(w):
    # 010101 道路暴露垃圾 inherits 暴露垃圾's 1 work day: Fri → Mon 17:30
    case = reported_and_registered(w, "010101", shanghai(2026, 3, 13, 16, 0))
    assert case.handle_due == shanghai(2026, 3, 16, 17, 30)


# --- wall-clock limits: 乱停车 and 燃气 -------------------------------------------------------------


def test_parking_transfer_due_is_one_hour_after_discovery(w):
    discovered = utc(2026, 3, 10, 2, 0)
    case = report(w, "0401", discovered + timedelta(minutes=10), discovered_at=discovered)
    assert case.discovered_at == discovered
    assert case.transfer_due == discovered + timedelta(minutes=60) == utc(2026, 3, 10, 3, 0)
    # wall-clock limits on registration: dispatch 30 minutes, handle 2 hours
    loop.register(case, w.a("town0_operator"), now=discovered + timedelta(minutes=20))
    db.expire_all()
    case = db.get(Case, case.id)
    assert case.dispatch_due == discovered + timedelta(minutes=50)
    assert case.handle_due == discovered + timedelta(minutes=140)
    assert case.transfer_due == discovered + timedelta(minutes=60)  # registration does not move it


def test_parking_without_discovery_time_counts_from_the_report(w):
    now = utc(2026, 3, 14, 20, 0)  # a Saturday night: wall-clock minutes, the calendar is irrelevant
    case = report(w, "0401", now)
    assert case.discovered_at == now
    assert case.transfer_due == now + timedelta(hours=1)


def test_parking_item_carries_the_one_hour_rule(w):
    discovered = utc(2026, 3, 10, 2, 0)
    case = report(w, "040103", discovered + timedelta(minutes=5), discovered_at=discovered)  # 占用消防通道停车
    assert case.transfer_due == discovered + timedelta(hours=1)


def test_other_categories_have_no_transfer_due(w):
    case = report(w, "0502", utc(2026, 3, 10, 2, 0))
    assert case.transfer_due is None


def test_gas_hazard_limits_are_wall_clock_even_at_night_and_on_holidays(w):
    registered = shanghai(2026, 10, 3, 23, 0)  # National Day, 23:00
    case = reported_and_registered(w, "1002", registered)
    assert case.dispatch_due == registered + timedelta(minutes=30)
    assert case.handle_due == registered + timedelta(hours=4)
    assert case.escalate_due == registered + timedelta(hours=2)


def test_hazardous_chemicals_must_reach_the_city_within_four_working_hours(w):
    # 1006 escalate to city in 4 work_hours: Fri 16:00 → 1.5 h, Mon 08:30 + 2.5 h
    case = reported_and_registered(w, "1006", shanghai(2026, 3, 13, 16, 0))
    assert case.escalate_due == shanghai(2026, 3, 16, 11, 0)


def test_no_escalation_deadline_when_the_case_already_sits_at_the_required_level(w):
    case = report(w, "1002", utc(2026, 3, 10, 1, 0))
    loop.escalate(case, w.a("town0_admin"), to_level="town", note="燃气泄漏，直接上报镇街", now=utc(2026, 3, 10, 1, 5))
    loop.register(case, w.a("town0_operator"), now=utc(2026, 3, 10, 1, 10))
    db.expire_all()
    case = db.get(Case, case.id)
    assert case.level == "town"
    assert case.escalate_due is None
    assert case.handle_due == utc(2026, 3, 10, 5, 10)


# --- counting work days: the registration day is day 0 at any hour, unless WORK_DAY_SAME_DAY_BEFORE --------


def test_registration_day_is_day_zero_at_any_hour_by_default(w):
    # 违法建设 escalates within 1 work day: registered Monday 09:00 or 16:00, due Tuesday 17:30 either way
    early = reported_and_registered(w, "0301", shanghai(2026, 3, 9, 9, 0))
    late = reported_and_registered(w, "0301", shanghai(2026, 3, 9, 16, 0))
    assert early.escalate_due == late.escalate_due == shanghai(2026, 3, 10, 17, 30)


def test_a_morning_registration_counts_its_own_day_with_the_setting(w, app):
    from datetime import time

    from commandcenter import workcalendar as wc

    app.config["SETTINGS"].work_day_same_day_before = time(12, 0)
    try:
        morning = reported_and_registered(w, "0301", shanghai(2026, 3, 9, 9, 0))
        afternoon = reported_and_registered(w, "0301", shanghai(2026, 3, 9, 13, 0))
        weekend = reported_and_registered(w, "0301", shanghai(2026, 3, 7, 9, 0))  # Saturday: not a workday
        assert morning.escalate_due == shanghai(2026, 3, 9, 17, 30)  # its own day is day 1
        assert afternoon.escalate_due == shanghai(2026, 3, 10, 17, 30)  # after 12:00: day 0 as by default
        assert weekend.escalate_due == shanghai(2026, 3, 9, 17, 30)  # the first workday after it is day 1
        # 15 work days from a morning: the 15th workday counting the day itself
        assert morning.handle_due == shanghai(2026, 3, 27, 17, 30)
    finally:
        app.config["SETTINGS"].work_day_same_day_before = None
    assert wc.add_limit(datetime(2026, 3, 9, 9, 0), 1, "work_days") == datetime(2026, 3, 10, 17, 30)


def test_a_bad_work_day_setting_stops_the_start(monkeypatch, tmp_path):
    from commandcenter.settings import Settings

    monkeypatch.setenv("WORK_DAY_SAME_DAY_BEFORE", "noon")
    with pytest.raises(RuntimeError, match="WORK_DAY_SAME_DAY_BEFORE"):
        Settings.from_env(instance_path=tmp_path, database_url="sqlite://")
    monkeypatch.setenv("WORK_DAY_SAME_DAY_BEFORE", "12:00")
    assert (
        str(Settings.from_env(instance_path=tmp_path, database_url="sqlite://").work_day_same_day_before) == "12:00:00"
    )


# --- the other stage limits (issue 12 §3b): dispatch and escalation, flagged, with a step, counted ---------


def test_a_case_undispatched_past_its_dispatch_limit_is_dispatch_late(w):
    from commandcenter.cases import loop as case_loop

    # 违法建设 0301: dispatch within 2 work hours of registration (Mon 10:00 → 12:00)
    case = reported_and_registered(w, "0301", shanghai(2026, 3, 9, 10, 0))
    assert case.dispatch_due == shanghai(2026, 3, 9, 12, 0) and case.dispatch_late is False
    assert case_loop.sweep_deadlines(now=shanghai(2026, 3, 9, 11, 59))["dispatch_late"] == 0
    assert case_loop.sweep_deadlines(now=shanghai(2026, 3, 9, 12, 1))["dispatch_late"] == 1
    case = db.get(Case, case.id)
    assert case.dispatch_late is True
    assert [s.action for s in case.steps][-1] == "dispatch_overdue" and "仍未派遣" in case.steps[-1].note
    assert case_loop.sweep_deadlines(now=shanghai(2026, 3, 9, 13, 0))["dispatch_late"] == 0  # once


def test_a_late_dispatch_and_an_in_time_one(w):
    from commandcenter.cases import loop as case_loop

    late = reported_and_registered(w, "0301", shanghai(2026, 3, 9, 10, 0))
    case_loop.dispatch(late, w.a("town0_operator"), department_id=w.dept(0), now=shanghai(2026, 3, 9, 14, 0))
    in_time = reported_and_registered(w, "0301", shanghai(2026, 3, 10, 10, 0))
    case_loop.dispatch(in_time, w.a("town0_operator"), department_id=w.dept(0), now=shanghai(2026, 3, 10, 11, 0))
    assert db.get(Case, late.id).dispatch_late is True
    assert db.get(Case, in_time.id).dispatch_late is False


def test_escalation_past_its_limit_is_escalate_late_and_stays_so(w):
    from commandcenter.cases import loop as case_loop

    # 违法建设 must reach the town within 1 work day of registration (Mon 10:00 → Tue 17:30)
    case = reported_and_registered(w, "0301", shanghai(2026, 3, 9, 10, 0))
    assert case.escalate_due == shanghai(2026, 3, 10, 17, 30)
    assert case_loop.sweep_deadlines(now=shanghai(2026, 3, 10, 17, 31))["escalate_late"] == 1
    case = db.get(Case, case.id)
    assert case.escalate_late is True and case.steps[-1].action == "escalate_overdue"
    # escalated later: the limit is cleared, the lateness stays
    case_loop.escalate(
        case, w.a("village0_admin"), to_level="town", note="村级无法处置", now=shanghai(2026, 3, 11, 9, 0)
    )
    case = db.get(Case, case.id)
    assert case.escalate_due is None and case.escalate_late is True
    # one escalated in time is not late
    other = reported_and_registered(w, "0301", shanghai(2026, 3, 9, 10, 0))
    case_loop.escalate(other, w.a("village0_admin"), to_level="town", note="上报镇街", now=shanghai(2026, 3, 9, 15, 0))
    assert db.get(Case, other.id).escalate_late is False
    assert case_loop.sweep_deadlines(now=shanghai(2026, 3, 12, 9, 0))["escalate_late"] == 0


def test_stage_lateness_is_counted_on_the_drill_and_the_api(w, app):
    """The counts of 派遣超时 and 流转超时 come from the same query as the drill's other event figures."""
    from datetime import date

    from commandcenter import stats
    from commandcenter.cases import loop as case_loop
    from commandcenter.measures import Period
    from commandcenter.models import Place

    late = reported_and_registered(w, "0301", shanghai(2026, 3, 9, 10, 0))
    reported_and_registered(w, "0301", shanghai(2026, 3, 9, 10, 30))
    case_loop.dispatch(late, w.a("town0_operator"), department_id=w.dept(0), now=shanghai(2026, 3, 9, 14, 0))
    case_loop.sweep_deadlines(now=shanghai(2026, 3, 11, 9, 0))  # the second: undispatched; both: not escalated
    city = db.get(Place, w.world.city.id)
    fig = stats.figures(city, Period(date(2026, 3, 9), date(2026, 3, 9), "day"))
    assert (fig.dispatch_late, fig.escalate_late, fig.transfer_late) == (2, 2, 0)
    from commandcenter.figures.catalogue import label

    assert label("dispatch_late") == "派遣超时" and label("escalate_late") == "流转超时"
