"""The six-step closed loop (commandcenter/cases/loop.py) walked through every path on PostgreSQL.

Each test drives a case with explicit `now=` values (naive UTC; Asia/Shanghai is UTC+8) and checks
the whole timeline — action, from/to state, from/to level, actor, time and the note where it says
something — and the case's fields as PostgreSQL holds them after each commit.

Refusals are checked against a second connection: a refused step must leave the committed row and
its timeline exactly as they were.

Tests whose name starts with `test_bug_` fail on purpose: they pin down a defect in the domain code
that this test file may not fix (see the docstring of each for the proposed change).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from commandcenter.access import Forbidden
from commandcenter.cases import loop
from commandcenter.cases.loop import ReportInput, TransitionError
from commandcenter.db import db, get_engine
from commandcenter.models import Case, CaseStep, Dispute, Outbox
from tests.conftest import report as shared_report
from tests.conftest import shanghai
from tests.world import WorldView

M = timedelta(minutes=1)
H = timedelta(hours=1)
D = timedelta(days=1)
T0 = datetime(2026, 3, 10, 1, 0)  # UTC = local Tue 2026-03-10 09:00, an ordinary workday


# --- helpers -------------------------------------------------------------------------------------

W = WorldView


def report(w: W, who: str | None = "gw0", code: str = "0502", at: datetime = T0, **kw) -> Case:
    return shared_report(w, who, code, at, **{"description": "路灯不亮", **kw})


def steps(case: Case) -> list[CaseStep]:
    return db.execute(select(CaseStep).where(CaseStep.case_id == case.id).order_by(CaseStep.id)).scalars().all()


def timeline(case: Case) -> list[tuple]:
    return [(s.action, s.from_state, s.to_state, s.from_level, s.to_level, s.actor_id, s.at) for s in steps(case)]


def notes(case: Case) -> list[str | None]:
    return [s.note for s in steps(case)]


def sweep(now: datetime) -> dict[str, int]:
    """The deadline sweep's counts of the handling limit and the parking hour (the other stages: their own tests)."""
    counts = loop.sweep_deadlines(now=now)
    return {k: counts[k] for k in ("overdue", "auto_rejected")}


def fresh(case: Case) -> Case:
    """The case as PostgreSQL holds it now."""
    db.expire_all()
    return db.get(Case, case.id)


def committed(case_id: int) -> tuple[dict, int]:
    """Row and step count read over another connection: only what was committed."""
    with get_engine().connect() as conn:
        row = conn.execute(text("SELECT * FROM cases WHERE id = :i"), {"i": case_id}).mappings().one()
        n = conn.execute(text("SELECT count(*) FROM case_steps WHERE case_id = :i"), {"i": case_id}).scalar_one()
    return dict(row), n


def refused(exc_type, fn, case: Case, *args, message: str | None = None, field: str | None = None, **kw):
    """The step is refused with exc_type (and message / field), and nothing of the case changed."""
    before = committed(case.id)
    with pytest.raises(exc_type) as info:
        fn(case, *args, **kw)
    if message is not None:
        assert message in info.value.message, info.value.message
    if field is not None:
        assert info.value.field == field
    assert committed(case.id) == before
    return info.value


def outbox_actions(case: Case) -> list[str]:
    rows = db.execute(select(Outbox).order_by(Outbox.id)).scalars().all()
    return [r.payload["action"] for r in rows if r.payload["case_id"] == case.id]


def state_of(case: Case) -> str:
    return committed(case.id)[0]["state"]


def to_handling(w: W, case: Case, at: datetime) -> None:
    """register (town0_operator) → dispatch to dept0 (town0_admin) → accept (dept0), one minute apart."""
    loop.register(case, w.a("town0_operator"), now=at)
    loop.dispatch(case, w.a("town0_admin"), department_id=w.dept(0), now=at + M)
    loop.accept(case, w.a("dept0"), now=at + 2 * M)


# --- 1. the normal loop -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "registrar, closer", [("town0_operator", "town0_supervisor"), ("village0_admin", "town0_operator")]
)
def test_closed_normally(w, registrar, closer):
    gw0, reg, admin, dept0, clo = w.a("gw0"), w.a(registrar), w.a("town0_admin"), w.a("dept0"), w.a(closer)
    t_report, t_reg, t_dis, t_acc = T0, T0 + H, T0 + 2 * H, T0 + 3 * H  # local 09:00, 10:00, 11:00, 12:00
    t_fb, t_close = T0 + 26 * H, T0 + 27 * H  # next day local 11:00, 12:00

    case = report(w, "gw0", "0502", t_report)
    c = fresh(case)
    assert (c.state, c.level, c.valid, c.kind, c.source) == ("reported", "grid", None, "ordinary", "app")
    assert (c.grid_id, c.village_id, c.town_id, c.reporter_id) == (w.grid(0), w.village(0), w.town(0), gw0.id)
    assert c.discovered_at == c.reported_at == t_report
    assert c.number == f"SJ20260310{c.id:07d}"
    assert (c.registered_at, c.dispatch_due, c.handle_due, c.escalate_due, c.transfer_due, c.closed_at) == (None,) * 6

    loop.register(case, reg, note="情况属实，予以立案", now=t_reg)
    c = fresh(case)
    assert (c.state, c.valid, c.registered_at) == ("registered", True, t_reg)
    assert c.dispatch_due == shanghai(2026, 3, 10, 12, 0)  # 2 working hours from 10:00
    assert c.handle_due == shanghai(2026, 3, 13, 17, 30)  # 路灯不亮: 3 work days from Tue → Fri 17:30
    assert c.escalate_due is None and c.transfer_due is None

    loop.dispatch(case, admin, department_id=w.dept(0), note="请城管局处置", now=t_dis)
    c = fresh(case)
    assert (c.state, c.department_id, c.assignee_id, c.dispatched_at) == ("dispatched", w.dept(0), None, t_dis)

    loop.accept(case, dept0, now=t_acc)
    assert fresh(case).state == "handling"
    loop.feedback(case, dept0, "已更换灯泡，恢复照明", now=t_fb)
    assert fresh(case).state == "feedback"
    loop.close(case, clo, now=t_close)

    c = fresh(case)
    assert (c.state, c.level, c.valid, c.closed_at, c.registered_at) == ("closed", "grid", True, t_close, t_reg)
    assert (c.overdue, c.overdue_at, c.rework_count, c.duplicate_of_id, c.outstanding) == (False, None, 0, None, False)
    assert (c.escalated_to_town, c.escalated_to_city, c.escalated_by_center_id) == (False, False, None)
    assert (c.self_handled, c.paused_at, c.department_id) == (False, None, w.dept(0))
    assert timeline(c) == [
        ("report", None, "reported", None, "grid", gw0.id, t_report),
        ("register", "reported", "registered", "grid", "grid", reg.id, t_reg),
        ("dispatch", "registered", "dispatched", "grid", "grid", admin.id, t_dis),
        ("accept", "dispatched", "handling", "grid", "grid", dept0.id, t_acc),
        ("feedback", "handling", "feedback", "grid", "grid", dept0.id, t_fb),
        ("close", "feedback", "closed", "grid", "grid", clo.id, t_close),
    ]
    assert notes(c) == [
        "网格员上报：路灯不亮",
        "情况属实，予以立案",
        "派遣至 城管局：请城管局处置",
        None,
        "已更换灯泡，恢复照明",
        "核查属实，处置到位，予以结案",
    ]
    # one outbox row per step, written in the step's own transaction
    assert outbox_actions(c) == ["report", "register", "dispatch", "accept", "feedback", "close"]


def test_closed_case_marked_outstanding_by_a_supervisor(w):
    case = report(w, "gw0", "0502", T0)
    to_handling(w, case, T0 + H)
    loop.feedback(case, w.a("dept0"), "已修复", now=T0 + 2 * H)
    refused(
        TransitionError,
        loop.mark_outstanding,
        case,
        w.a("town0_supervisor"),
        "故事",
        now=T0 + 2 * H,
        message="案件当前状态为「待核查」，不能执行「标记优秀事件」",
    )
    loop.close(case, w.a("town0_operator"), note="复核通过", now=T0 + 3 * H)
    refused(
        Forbidden,
        loop.mark_outstanding,
        case,
        w.a("town0_operator"),
        "故事",
        now=T0 + 4 * H,
        message="无权执行「标记优秀事件」",
    )
    refused(TransitionError, loop.mark_outstanding, case, w.a("town0_supervisor"), "  ", now=T0 + 4 * H, field="story")
    story = "3月10日，网格员巡查发现路灯不亮，两小时内修复。"
    loop.mark_outstanding(case, w.a("town0_supervisor"), story, now=T0 + 5 * H)
    c = fresh(case)
    assert (c.state, c.outstanding, c.outstanding_story) == ("closed", True, story)
    assert timeline(c)[-2:] == [
        ("close", "feedback", "closed", "grid", "grid", w.id("town0_operator"), T0 + 3 * H),
        ("outstanding", "closed", "closed", "grid", "grid", w.id("town0_supervisor"), T0 + 5 * H),
    ]
    assert notes(c)[-2:] == ["复核通过", "标记为优秀网格事件"]


def test_case_number_uses_the_local_date(w):
    case = report(w, "gw0", "0502", datetime(2026, 3, 9, 17, 0))  # local 2026-03-10 01:00
    assert fresh(case).number == f"SJ20260310{case.id:07d}"


def test_case_lies_in_the_grid_where_it_was_found(w):
    # gw0 (grid 0) reports what he sees in grid 3 (town 0, village 1): the case belongs to grid 3
    case = report(w, "gw0", "0502", T0, grid=3)
    c = fresh(case)
    assert (c.grid_id, c.village_id, c.town_id, c.reporter_id) == (w.grid(3), w.village(1), w.town(0), w.id("gw0"))


# --- 2. rejected as invalid ---------------------------------------------------------------------


def test_rejected_as_invalid_needs_a_reason(w):
    op = w.a("town0_operator")
    case = report(w, "gw0", "0502", T0)
    for empty in ("", "   ", None):
        refused(TransitionError, loop.reject, case, op, empty, now=T0 + M, field="reason", message="请填写说明")
    loop.reject(case, op, "  现场核实无此情况  ", now=T0 + 10 * M)
    c = fresh(case)
    assert (c.state, c.valid, c.closed_at, c.registered_at) == ("rejected", False, T0 + 10 * M, None)
    assert (c.dispatch_due, c.handle_due) == (None, None)
    assert timeline(c) == [
        ("report", None, "reported", None, "grid", w.id("gw0"), T0),
        ("reject", "reported", "rejected", "grid", "grid", op.id, T0 + 10 * M),
    ]
    assert notes(c)[-1] == "现场核实无此情况"
    # a void case goes nowhere
    refused(TransitionError, loop.register, case, op, now=T0 + H, message="案件当前状态为「无效」，不能执行「立案」")
    refused(TransitionError, loop.reject, case, op, "再次作废", now=T0 + H)


def test_registered_case_can_still_be_rejected(w):
    op = w.a("town0_operator")
    case = report(w, "gw0", "0502", T0)
    loop.register(case, w.a("village0_admin"), now=T0 + M)
    loop.reject(case, w.a("town0_supervisor"), "重复建档，实为测试数据", now=T0 + 2 * M)
    c = fresh(case)
    assert (c.state, c.valid, c.closed_at) == ("rejected", False, T0 + 2 * M)
    assert timeline(c)[-1] == ("reject", "registered", "rejected", "grid", "grid", w.id("town0_supervisor"), T0 + 2 * M)
    refused(TransitionError, loop.dispatch, case, op, department_id=w.dept(0), now=T0 + H)


# --- 3. duplicates ------------------------------------------------------------------------------


def test_duplicate_is_offered_and_merged_keeping_both_timelines(w):
    op = w.a("town0_operator")
    lat, lon = w.point(0)
    north_30m = (lat + 30 / 111_320, lon)
    east_500m = (lat, lon + 500 / (111_320 * math.cos(math.radians(lat))))

    old = report(w, "gw0", "0502", T0 - 30 * H, latlon=(lat, lon))  # more than 24 h earlier
    original = report(w, "gw0", "0502", T0, latlon=(lat, lon), description="路灯不亮")
    loop.register(original, op, now=T0 + 10 * M)
    other_category = report(w, "gw0", "0503", T0 + 20 * M, latlon=(lat, lon), description="道路破损")
    far = report(w, "gw0", "0502", T0 + 30 * M, latlon=east_500m)
    void = report(w, "gw0", "0502", T0 + 35 * M, latlon=(lat, lon))
    loop.reject(void, op, "误报", now=T0 + 36 * M)
    second = report(w, "volunteer0", "0502", T0 + H, latlon=north_30m, source="volunteer", description="这里的路灯坏了")

    found = loop.probable_duplicates(second)
    assert [c.id for c, _ in found] == [original.id]  # not old (>24 h), not far (500 m), not void, not 0503
    assert 25 < found[0][1] < 35
    assert loop.probable_duplicates(other_category) == []  # a different category is never offered
    assert loop.probable_duplicates(far) == []  # 500 m away
    assert loop.probable_duplicates(old) == []  # 30 h before the others

    refused(TransitionError, loop.mark_duplicate, second, op, second, now=T0 + 2 * H, field="original_id")
    refused(TransitionError, loop.mark_duplicate, second, op, void, now=T0 + 2 * H, field="original_id")
    loop.mark_duplicate(second, op, original, note="同一盏路灯", now=T0 + 2 * H)

    s, o = fresh(second), fresh(original)
    assert (s.state, s.valid, s.duplicate_of_id, s.closed_at) == ("duplicate", False, o.id, T0 + 2 * H)
    assert (o.state, o.valid, o.duplicate_of_id, o.closed_at) == ("registered", True, None, None)
    assert timeline(s) == [
        ("report", None, "reported", None, "grid", w.id("volunteer0"), T0 + H),
        ("duplicate", "reported", "duplicate", "grid", "grid", op.id, T0 + 2 * H),
    ]
    assert notes(s)[-1] == f"与 {o.number} 重复：同一盏路灯"
    assert timeline(o) == [
        ("report", None, "reported", None, "grid", w.id("gw0"), T0),
        ("register", "reported", "registered", "grid", "grid", op.id, T0 + 10 * M),
        ("merge", "registered", "registered", "grid", "grid", op.id, T0 + 2 * H),
    ]
    assert s.number in notes(o)[-1]
    assert notes(o)[-1] == f"合并重复案件 {s.number}（其处理记录一并保留）"

    # a duplicate is no longer offered, and cannot itself be an original
    third = report(w, "gw0", "0502", T0 + 3 * H, latlon=north_30m)
    assert [c.id for c, _ in loop.probable_duplicates(third)] == [o.id]
    refused(TransitionError, loop.mark_duplicate, third, op, s, now=T0 + 4 * H, field="original_id")
    refused(TransitionError, loop.register, s, op, now=T0 + 4 * H)


def test_duplicate_of_a_case_outside_the_jurisdiction_is_refused(w):
    case = report(w, "gw0", "0502", T0)
    elsewhere = report(w, "gw4", "0502", T0, grid=4)  # town 1
    refused(
        Forbidden,
        loop.mark_duplicate,
        case,
        w.a("town0_operator"),
        elsewhere,
        now=T0 + H,
        message="原案件不在本账号辖区内",
    )


# --- 4. rework ----------------------------------------------------------------------------------


def test_reworked_then_closed(w):
    admin, dept0, sup, op = w.a("town0_admin"), w.a("dept0"), w.a("town0_supervisor"), w.a("town0_operator")
    case = report(w, "gw0", "0502", T0)
    loop.register(case, op, now=T0 + 10 * M)
    loop.dispatch(case, admin, department_id=w.dept(0), now=T0 + 20 * M)
    loop.accept(case, dept0, now=T0 + 30 * M)
    loop.feedback(case, dept0, "已修复", now=T0 + 2 * H)
    refused(TransitionError, loop.rework, case, sup, "", now=T0 + 3 * H, field="note")
    loop.rework(case, sup, "现场核查灯仍不亮", now=T0 + 3 * H)
    c = fresh(case)
    assert (c.state, c.rework_count, c.closed_at, c.department_id) == ("handling", 1, None, w.dept(0))
    refused(TransitionError, loop.close, case, sup, now=T0 + 4 * H, message="「处理中」，不能执行「结案」")
    loop.feedback(case, dept0, "更换镇流器后恢复照明", now=T0 + 5 * H)
    loop.close(case, sup, note="复查合格", now=T0 + 6 * H)
    c = fresh(case)
    assert (c.state, c.rework_count, c.closed_at, c.valid) == ("closed", 1, T0 + 6 * H, True)
    assert timeline(c) == [
        ("report", None, "reported", None, "grid", w.id("gw0"), T0),
        ("register", "reported", "registered", "grid", "grid", op.id, T0 + 10 * M),
        ("dispatch", "registered", "dispatched", "grid", "grid", admin.id, T0 + 20 * M),
        ("accept", "dispatched", "handling", "grid", "grid", dept0.id, T0 + 30 * M),
        ("feedback", "handling", "feedback", "grid", "grid", dept0.id, T0 + 2 * H),
        ("rework", "feedback", "handling", "grid", "grid", sup.id, T0 + 3 * H),
        ("feedback", "handling", "feedback", "grid", "grid", dept0.id, T0 + 5 * H),
        ("close", "feedback", "closed", "grid", "grid", sup.id, T0 + 6 * H),
    ]
    assert notes(c)[4:] == ["已修复", "现场核查灯仍不亮", "更换镇流器后恢复照明", "复查合格"]


# --- 5. escalation ------------------------------------------------------------------------------


def test_escalated_grid_village_town_city(w):
    gw0, vadmin, tadmin, dept0 = w.a("gw0"), w.a("village0_admin"), w.a("town0_admin"), w.a("dept0")
    city_op, city_center = w.a("city_operator"), w.a("city_center")
    case = report(w, "gw0", "0503", T0, description="道路塌陷")
    loop.register(case, vadmin, now=T0 + 10 * M)
    handle_due = fresh(case).handle_due
    assert handle_due == shanghai(2026, 3, 17, 17, 30)  # 道路破损: 5 work days from Tue 03-10

    refused(TransitionError, loop.escalate, case, gw0, note="", now=T0 + 20 * M, field="note")
    loop.escalate(case, gw0, note="网格无法处置", now=T0 + 20 * M)
    c = fresh(case)
    assert (c.state, c.level, c.escalated_to_town, c.escalated_to_city, c.escalated_by_center_id) == (
        "registered",
        "village",
        False,
        False,
        None,
    )

    loop.escalate(case, vadmin, note="需镇街协调", now=T0 + 30 * M)
    c = fresh(case)
    assert (c.state, c.level, c.escalated_to_town, c.escalated_to_city, c.escalated_by_center_id) == (
        "registered",
        "town",
        True,
        False,
        None,
    )  # a village center's escalation is not the town's
    refused(
        Forbidden,
        loop.dispatch,
        case,
        vadmin,
        department_id=w.dept(0),
        now=T0 + 35 * M,
        message="该案件不在本账号辖区内",
    )
    refused(
        TransitionError,
        loop.escalate,
        case,
        tadmin,
        to_level="village",
        note="退回",
        now=T0 + 35 * M,
        field="to_level",
        message="只能向上级流转",
    )

    loop.dispatch(case, tadmin, department_id=w.dept(0), now=T0 + 40 * M)
    loop.accept(case, dept0, now=T0 + 50 * M)
    loop.escalate(case, tadmin, note="需市级统筹", now=T0 + H)
    c = fresh(case)
    assert (c.state, c.level, c.department_id, c.assignee_id) == ("registered", "city", None, None)
    assert (c.escalated_to_town, c.escalated_to_city, c.escalated_by_center_id) == (True, True, w.center("town0"))
    refused(
        Forbidden,
        loop.dispatch,
        case,
        tadmin,
        department_id=w.dept(0),
        now=T0 + 70 * M,
        message="该案件不在本账号辖区内",
    )
    refused(
        TransitionError,
        loop.escalate,
        case,
        city_center,
        note="再上报",
        now=T0 + 70 * M,
        field="to_level",
        message="已在市中心",
    )

    loop.dispatch(case, city_op, department_id=w.dept(0), note="市级统筹", now=T0 + 2 * H)
    loop.accept(case, dept0, now=T0 + 3 * H)
    loop.feedback(case, dept0, "已修复路面", now=T0 + 4 * H)
    loop.close(case, city_center, now=T0 + 5 * H)
    c = fresh(case)
    assert (c.state, c.level, c.closed_at, c.handle_due) == ("closed", "city", T0 + 5 * H, handle_due)
    assert (c.escalated_to_town, c.escalated_to_city, c.escalated_by_center_id) == (True, True, w.center("town0"))
    assert timeline(c) == [
        ("report", None, "reported", None, "grid", gw0.id, T0),
        ("register", "reported", "registered", "grid", "grid", vadmin.id, T0 + 10 * M),
        ("escalate", "registered", "registered", "grid", "village", gw0.id, T0 + 20 * M),
        ("escalate", "registered", "registered", "village", "town", vadmin.id, T0 + 30 * M),
        ("dispatch", "registered", "dispatched", "town", "town", tadmin.id, T0 + 40 * M),
        ("accept", "dispatched", "handling", "town", "town", dept0.id, T0 + 50 * M),
        ("escalate", "handling", "registered", "town", "city", tadmin.id, T0 + H),
        ("dispatch", "registered", "dispatched", "city", "city", city_op.id, T0 + 2 * H),
        ("accept", "dispatched", "handling", "city", "city", dept0.id, T0 + 3 * H),
        ("feedback", "handling", "feedback", "city", "city", dept0.id, T0 + 4 * H),
        ("close", "feedback", "closed", "city", "city", city_center.id, T0 + 5 * H),
    ]
    n = notes(c)
    assert n[2] == "由网格流转至村社：网格无法处置"
    assert n[3] == "由村社流转至镇街中心：需镇街协调"
    assert n[6] == "由镇街中心流转至市中心：需市级统筹"


def test_escalating_a_reported_case_keeps_it_reported(w):
    case = report(w, "gw0", "0503", T0)
    loop.escalate(case, w.a("gw0"), to_level="town", note="大事，直接上报镇街", now=T0 + M)
    c = fresh(case)
    assert (c.state, c.level, c.escalated_to_town, c.escalated_to_city) == ("reported", "town", True, False)
    assert timeline(c)[-1] == ("escalate", "reported", "reported", "grid", "town", w.id("gw0"), T0 + M)
    assert notes(c)[-1] == "由网格流转至镇街中心：大事，直接上报镇街"
    refused(Forbidden, loop.register, case, w.a("village0_admin"), now=T0 + 2 * M)
    loop.register(case, w.a("town0_operator"), now=T0 + 3 * M)
    assert fresh(case).state == "registered"


def test_gas_hazard_must_reach_the_town_and_escalating_clears_the_due(w):
    vadmin = w.a("village0_admin")
    case = report(w, "gw0", "1002", T0, description="楼道闻到燃气味")
    assert fresh(case).kind == "hazard"
    loop.register(case, vadmin, now=T0 + 5 * M)
    c = fresh(case)
    assert c.escalate_due == T0 + 5 * M + 2 * H
    assert (c.dispatch_due, c.handle_due) == (T0 + 35 * M, T0 + 4 * H + 5 * M)

    loop.escalate(case, vadmin, to_level="village", note="村社先行处置", now=T0 + 10 * M)
    c = fresh(case)
    assert (c.level, c.escalate_due, c.escalated_to_town) == ("village", T0 + 5 * M + 2 * H, False)

    loop.escalate(case, vadmin, note="燃气隐患须镇街处置", now=T0 + 20 * M)
    c = fresh(case)
    assert (c.level, c.escalate_due, c.escalated_to_town, c.escalated_to_city) == ("town", None, True, False)
    assert c.escalated_by_center_id is None
    assert (c.dispatch_due, c.handle_due) == (T0 + 35 * M, T0 + 4 * H + 5 * M)  # other limits untouched
    assert timeline(c) == [
        ("report", None, "reported", None, "grid", w.id("gw0"), T0),
        ("register", "reported", "registered", "grid", "grid", vadmin.id, T0 + 5 * M),
        ("escalate", "registered", "registered", "grid", "village", vadmin.id, T0 + 10 * M),
        ("escalate", "registered", "registered", "village", "town", vadmin.id, T0 + 20 * M),
    ]


def test_hazardous_chemicals_due_clears_only_at_the_city(w):
    tadmin = w.a("town0_admin")
    case = report(w, "gw0", "1006", T0, description="疑似危化品违规存放")
    loop.register(case, w.a("town0_operator"), now=T0)  # local Tue 09:00
    due = fresh(case).escalate_due
    assert due == shanghai(2026, 3, 10, 14, 30)  # 4 working hours: 09:00–12:00 (3 h) + 13:30–14:30 (1 h)
    loop.escalate(case, tadmin, to_level="town", note="镇街先行核查", now=T0 + M)
    c = fresh(case)
    # taking a case up to its own level is not a 流转 *by* the town center (indicator 7)
    assert (c.level, c.escalate_due, c.escalated_by_center_id) == ("town", due, None)
    loop.escalate(case, tadmin, to_level="city", note="须市级处置", now=T0 + 2 * M)
    c = fresh(case)
    assert c.escalated_by_center_id == w.center("town0")
    assert (c.level, c.escalate_due, c.escalated_to_town, c.escalated_to_city) == ("city", None, True, True)
    assert timeline(c)[-2:] == [
        ("escalate", "registered", "registered", "grid", "town", tadmin.id, T0 + M),
        ("escalate", "registered", "registered", "town", "city", tadmin.id, T0 + 2 * M),
    ]


# --- 6. self-handled (自办自结) -------------------------------------------------------------------


def test_self_handled_closed_the_same_day(w):
    gw0 = w.a("gw0")
    t_report, t_close = shanghai(2026, 3, 10, 10, 0), shanghai(2026, 3, 10, 15, 0)
    case = report(w, "gw0", "0201", t_report, description="电线杆上有小广告", self_handled=True)
    assert fresh(case).self_handled is True
    refused(TransitionError, loop.self_close, case, gw0, " ", now=t_close, field="note")
    refused(Forbidden, loop.self_close, case, w.a("gw1"), "清除", now=t_close, message="该案件不在本账号辖区内")
    refused(
        Forbidden,
        loop.self_close,
        case,
        w.a("village0_admin"),
        "清除",
        now=t_close,
        message="只有上报人本人可以自办自结",
    )
    loop.self_close(case, gw0, "已当场清除", now=t_close)
    c = fresh(case)
    assert (c.state, c.valid, c.self_handled, c.closed_at, c.registered_at) == ("closed", True, True, t_close, t_close)
    # due by the end of its day (set at the report), closed before it: not overdue
    assert (c.level, c.handle_due, c.dispatch_due, c.overdue) == ("grid", shanghai(2026, 3, 11, 0, 0), None, False)
    assert loop.self_closed_same_day(c) is True
    assert timeline(c) == [
        ("report", None, "reported", None, "grid", gw0.id, t_report),
        ("self_close", "reported", "closed", "grid", "grid", gw0.id, t_close),
    ]
    assert notes(c)[-1] == "已当场清除"


def test_self_close_without_the_flag_at_report_sets_it(w):
    case = report(w, "gw0", "0201", T0)
    assert fresh(case).self_handled is False
    loop.self_close(case, w.a("gw0"), "顺手清理", now=T0 + H)
    c = fresh(case)
    assert (c.state, c.self_handled) == ("closed", True)
    assert loop.self_closed_same_day(c) is True


def test_self_handled_closed_after_local_midnight_earns_no_points(w):
    # local 23:00 → local 01:00 next day; both are on 2026-03-10 in UTC (15:00 and 17:00)
    t_report, t_close = shanghai(2026, 3, 10, 23, 0), shanghai(2026, 3, 11, 1, 0)
    assert t_report.date() == t_close.date()
    case = report(w, "gw0", "0201", t_report, self_handled=True)
    loop.self_close(case, w.a("gw0"), "已清除", now=t_close)
    c = fresh(case)
    assert (c.state, c.closed_at) == ("closed", t_close)
    assert loop.self_closed_same_day(c) is False
    assert "不计积分" in notes(c)[-1]
    assert notes(c)[-1] == "已清除（超过当日办结，不计积分）"
    assert timeline(c)[-1] == ("self_close", "reported", "closed", "grid", "grid", w.id("gw0"), t_close)


def test_self_handled_early_morning_is_the_same_local_day(w):
    # local 07:00 and 09:00 on 03-11 straddle midnight UTC (03-10 23:00 and 03-11 01:00)
    t_report, t_close = shanghai(2026, 3, 11, 7, 0), shanghai(2026, 3, 11, 9, 0)
    assert t_report.date() != t_close.date()
    case = report(w, "gw0", "0201", t_report, self_handled=True)
    loop.self_close(case, w.a("gw0"), "已清除", now=t_close)
    c = fresh(case)
    assert loop.self_closed_same_day(c) is True
    assert notes(c)[-1] == "已清除"


@pytest.mark.parametrize("code", ["1002", "0301"])
def test_must_escalate_category_refuses_self_handling(w, code):
    gw0 = w.a("gw0")
    lat, lon = w.point(0)
    with pytest.raises(TransitionError) as info:
        loop.report_case(
            ReportInput(category_id=w.cat(code).id, description="x", lat=lat, lon=lon, self_handled=True),
            actor=gw0,
            source="app",
            client_key=None,
            now=T0,
        )
    assert info.value.field == "self_handled" and "不能自办自结" in info.value.message
    assert db.scalar(select(func.count(Case.id))) == 0
    case = report(w, "gw0", code, T0)
    refused(
        TransitionError,
        loop.self_close,
        case,
        gw0,
        "自行处理",
        now=T0 + H,
        field="self_handled",
        message="须流转上级处置",
    )
    assert fresh(case).self_handled is False


# --- 7. 乱停车: the one-hour rule ------------------------------------------------------------------


def test_parking_reported_more_than_an_hour_after_discovery_is_void_at_intake(w):
    discovered = T0 - 70 * M
    case = report(w, "gw0", "0401", T0, discovered_at=discovered, description="机动车占道停放")
    c = fresh(case)
    assert (c.state, c.valid, c.closed_at, c.registered_at) == ("rejected", False, T0, None)
    assert (c.discovered_at, c.transfer_due, c.transferred_at) == (discovered, discovered + H, None)
    assert timeline(c) == [
        ("report", None, "reported", None, "grid", w.id("gw0"), T0),
        ("auto_reject", "reported", "rejected", "grid", "grid", None, T0),
    ]
    assert "60 分钟" in notes(c)[-1] and "自动作废" in notes(c)[-1]
    assert outbox_actions(c) == ["report", "auto_reject"]
    refused(TransitionError, loop.transfer_to_city, case, w.a("town0_operator"), now=T0)
    refused(TransitionError, loop.register, case, w.a("town0_operator"), now=T0)


def test_parking_reported_exactly_at_the_hour_is_still_valid(w):
    discovered = T0 - 60 * M
    case = report(w, "gw0", "0401", T0, discovered_at=discovered)
    assert fresh(case).state == "reported"
    loop.transfer_to_city(case, w.a("town0_operator"), now=T0)
    assert fresh(case).transferred_at == T0


def test_parking_not_transferred_within_the_hour_is_voided_by_the_sweep(w):
    op = w.a("town0_operator")
    found = T0
    reported_only = report(w, "gw0", "0401", found + 10 * M, discovered_at=found)
    registered = report(w, "gw1", "0401", found + 12 * M, discovered_at=found, grid=1)
    loop.register(registered, op, now=found + 15 * M)
    ordinary = report(w, "gw0", "0502", found + 12 * M)

    assert sweep(now=found + 59 * M) == {"overdue": 0, "auto_rejected": 0}
    assert sweep(now=found + 60 * M) == {"overdue": 0, "auto_rejected": 0}
    assert (state_of(reported_only), state_of(registered)) == ("reported", "registered")

    assert sweep(now=found + 61 * M) == {"overdue": 0, "auto_rejected": 2}
    for case, from_state in ((reported_only, "reported"), (registered, "registered")):
        c = fresh(case)
        assert (c.state, c.valid, c.closed_at, c.transferred_at) == ("rejected", False, found + 61 * M, None)
        assert timeline(c)[-1] == ("auto_reject", from_state, "rejected", "grid", "grid", None, found + 61 * M)
        assert "一小时" in notes(c)[-1]
    # the registered one also passed its 30-minute dispatch limit (registered at 15, due at 45): 派遣超时
    assert [s.action for s in steps(registered)] == ["report", "register", "dispatch_overdue", "auto_reject"]
    assert len(steps(reported_only)) == 2 and fresh(registered).dispatch_late is True
    assert fresh(ordinary).state == "reported" and len(steps(ordinary)) == 1

    assert sweep(now=found + 90 * M) == {"overdue": 0, "auto_rejected": 0}
    assert len(steps(reported_only)) == 2 and len(steps(registered)) == 4


def test_parking_transferred_in_time_is_left_alone_and_late_transfer_is_refused(w):
    op = w.a("town0_operator")
    found = T0
    on_time = report(w, "gw0", "0401", found + 10 * M, discovered_at=found)
    late = report(w, "gw0", "0401", found + 30 * M, discovered_at=found)
    ordinary = report(w, "gw0", "0502", found)

    refused(Forbidden, loop.transfer_to_city, on_time, w.a("gw0"), now=found + 40 * M)
    loop.transfer_to_city(on_time, op, now=found + 40 * M)
    c = fresh(on_time)
    assert (c.state, c.transferred_at, c.transfer_due) == ("reported", found + 40 * M, found + H)
    assert timeline(c) == [
        ("report", None, "reported", None, "grid", w.id("gw0"), found + 10 * M),
        ("transfer", "reported", "reported", "grid", "grid", op.id, found + 40 * M),
    ]
    assert notes(c)[-1] == "已转报市平台"
    refused(TransitionError, loop.transfer_to_city, on_time, op, now=found + 45 * M, message="已转报市平台")
    refused(TransitionError, loop.transfer_to_city, ordinary, op, now=found + 45 * M, message="只有乱停车类事件")

    refused(TransitionError, loop.transfer_to_city, late, op, now=found + 61 * M, message="一小时")
    assert sweep(now=found + 2 * H) == {"overdue": 0, "auto_rejected": 1}
    assert fresh(late).state == "rejected"
    c = fresh(on_time)
    assert (c.state, c.valid, c.closed_at) == ("reported", None, None)
    assert len(steps(on_time)) == 2
    refused(TransitionError, loop.transfer_to_city, late, op, now=found + 2 * H + M, message="「无效」")


# --- 8. overdue -----------------------------------------------------------------------------------


def test_overdue_is_marked_once(w):
    op = w.a("town0_operator")
    case = report(w, "gw0", "0403", T0, description="露天烧烤")  # handle limit 4 hours
    loop.register(case, op, now=T0 + 10 * M)
    due = T0 + 4 * H + 10 * M
    assert fresh(case).handle_due == due
    gone = report(w, "gw0", "0403", T0)
    loop.register(gone, op, now=T0 + 10 * M)
    loop.reject(gone, op, "现场已无烧烤", now=T0 + H)

    assert sweep(now=due) == {"overdue": 0, "auto_rejected": 0}
    assert fresh(case).overdue is False
    assert sweep(now=due + M) == {"overdue": 1, "auto_rejected": 0}
    c = fresh(case)
    assert (c.state, c.overdue, c.overdue_at) == ("registered", True, due + M)
    assert timeline(c)[-1] == ("overdue", "registered", "registered", "grid", "grid", None, due + M)
    assert notes(c)[-1] == "超过办理时限（2026-03-10 13:10）"  # local time of the due
    assert fresh(gone).overdue is False

    assert sweep(now=due + 2 * H) == {"overdue": 0, "auto_rejected": 0}
    assert [s.action for s in steps(case)].count("overdue") == 1
    assert fresh(case).overdue_at == due + M

    # it stays overdue to the end (the timeliness indicator counts it)
    loop.dispatch(case, w.a("town0_admin"), department_id=w.dept(0), now=due + 3 * H)
    loop.accept(case, w.a("dept0"), now=due + 3 * H + M)
    loop.feedback(case, w.a("dept0"), "已劝离", now=due + 4 * H)
    loop.close(case, op, now=due + 5 * H)
    loop.sweep_deadlines(now=due + 6 * H)
    c = fresh(case)
    assert (c.state, c.overdue, c.overdue_at) == ("closed", True, due + M)
    assert [s.action for s in steps(case)].count("overdue") == 1


@pytest.mark.parametrize("state", ["dispatched", "handling", "feedback"])
def test_overdue_in_every_open_state_after_registration(w, state):
    case = report(w, "gw0", "0403", T0)
    loop.register(case, w.a("town0_operator"), now=T0)
    loop.dispatch(case, w.a("town0_admin"), department_id=w.dept(0), now=T0 + M)
    if state in ("handling", "feedback"):
        loop.accept(case, w.a("dept0"), now=T0 + 2 * M)
    if state == "feedback":
        loop.feedback(case, w.a("dept0"), "已处理", now=T0 + 3 * M)
    assert sweep(now=T0 + 4 * H + M) == {"overdue": 1, "auto_rejected": 0}
    assert timeline(case)[-1] == ("overdue", state, state, "grid", "grid", None, T0 + 4 * H + M)


def test_unregistered_case_has_no_handle_due_and_is_never_overdue(w):
    case = report(w, "gw0", "0403", T0)
    assert sweep(now=T0 + 30 * D) == {"overdue": 0, "auto_rejected": 0}
    assert fresh(case).overdue is False


# --- 9. pause / resume ----------------------------------------------------------------------------


def test_pause_and_resume_extend_every_deadline_by_the_paused_time(w):
    op, tadmin = w.a("town0_operator"), w.a("town0_admin")
    case = report(w, "gw0", "1002", T0)  # dispatch 30 min, handle 4 h, escalate 2 h
    loop.register(case, w.a("village0_admin"), now=T0)
    assert (fresh(case).dispatch_due, fresh(case).handle_due, fresh(case).escalate_due) == (
        T0 + 30 * M,
        T0 + 4 * H,
        T0 + 2 * H,
    )

    for who, role in (("town0_supervisor", "督导人员"), ("gw0", "网格员"), ("dept0", "职能部门")):
        refused(
            Forbidden,
            loop.pause,
            case,
            w.a(who),
            "等待",
            now=T0 + 10 * M,
            message=f"角色「{role}」无权执行「暂停计时」",
        )
    refused(TransitionError, loop.pause, case, op, "", now=T0 + 10 * M, field="reason")
    refused(TransitionError, loop.resume, case, op, now=T0 + 10 * M, message="计时未暂停")

    loop.pause(case, op, "等待燃气公司到场检测", now=T0 + 10 * M)
    c = fresh(case)
    assert (c.paused_at, c.pause_reason, c.state) == (T0 + 10 * M, "等待燃气公司到场检测", "registered")
    refused(TransitionError, loop.pause, case, tadmin, "再暂停", now=T0 + 20 * M, message="计时已暂停")
    refused(Forbidden, loop.resume, case, w.a("town0_supervisor"), now=T0 + 20 * M)

    # while paused the case is not overdue, even past its original limit
    assert sweep(now=T0 + 4 * H + 30 * M) == {"overdue": 0, "auto_rejected": 0}
    assert fresh(case).overdue is False

    loop.resume(case, tadmin, now=T0 + 4 * H + 40 * M)  # paused 4 h 30 min = 270 minutes
    c = fresh(case)
    shift = 4 * H + 30 * M
    assert (c.paused_at, c.state) == (None, "registered")
    assert (c.dispatch_due, c.handle_due, c.escalate_due) == (
        T0 + 30 * M + shift,
        T0 + 4 * H + shift,
        T0 + 2 * H + shift,
    )
    assert timeline(c)[-2:] == [
        ("pause", "registered", "registered", "grid", "grid", op.id, T0 + 10 * M),
        ("resume", "registered", "registered", "grid", "grid", tadmin.id, T0 + 4 * H + 40 * M),
    ]
    assert notes(c)[-2:] == ["等待燃气公司到场检测", "恢复计时，暂停 270 分钟，时限相应顺延"]

    assert sweep(now=T0 + 4 * H + shift) == {"overdue": 0, "auto_rejected": 0}
    assert sweep(now=T0 + 4 * H + shift + M) == {"overdue": 1, "auto_rejected": 0}
    assert fresh(case).overdue is True


def test_pause_is_refused_outside_registered_dispatched_handling(w):
    op = w.a("town0_operator")
    case = report(w, "gw0", "0502", T0)
    refused(TransitionError, loop.pause, case, op, "等待", now=T0 + M, message="「待立案」，不能执行「暂停计时」")
    to_handling(w, case, T0 + M)
    loop.pause(case, op, "等待配件", now=T0 + H)
    loop.resume(case, op, now=T0 + 2 * H)
    assert [s.action for s in steps(case)][-2:] == ["pause", "resume"]
    assert fresh(case).state == "handling"


# --- 10. illegal transitions ------------------------------------------------------------------------


def test_illegal_transitions_are_refused_in_plain_chinese(w):
    op, tadmin, dept0, sup, gw0 = (
        w.a("town0_operator"),
        w.a("town0_admin"),
        w.a("dept0"),
        w.a("town0_supervisor"),
        w.a("gw0"),
    )
    reported = report(w, "gw0", "0502", T0)
    refused(
        TransitionError, loop.close, reported, sup, now=T0 + M, message="案件当前状态为「待立案」，不能执行「结案」"
    )
    refused(
        TransitionError,
        loop.dispatch,
        reported,
        tadmin,
        department_id=w.dept(0),
        now=T0 + M,
        message="案件当前状态为「待立案」，不能执行「派遣」",
    )
    refused(TransitionError, loop.accept, reported, dept0, now=T0 + M, message="不能执行「签收处理」")
    refused(TransitionError, loop.feedback, reported, dept0, "好了", now=T0 + M, message="不能执行「处理反馈」")
    refused(TransitionError, loop.rework, reported, sup, "重做", now=T0 + M, message="不能执行「退回返工」")
    refused(TransitionError, loop.resume, reported, op, now=T0 + M, message="不能执行「恢复计时」")

    registered = report(w, "gw0", "0502", T0)
    loop.register(registered, op, now=T0 + M)
    refused(TransitionError, loop.register, registered, op, now=T0 + 2 * M, message="「已立案」，不能执行「立案」")
    refused(TransitionError, loop.accept, registered, dept0, now=T0 + 2 * M, message="「已立案」，不能执行「签收处理」")
    refused(
        TransitionError, loop.self_close, registered, gw0, "自己弄好了", now=T0 + 2 * M, message="不能执行「自办自结」"
    )
    refused(
        TransitionError,
        loop.dispatch,
        registered,
        tadmin,
        now=T0 + 2 * M,
        field="department_id",
        message="请选择处置部门或处置人",
    )
    refused(
        TransitionError,
        loop.dispatch,
        registered,
        tadmin,
        department_id=999_999,
        now=T0 + 2 * M,
        field="department_id",
        message="处置部门不存在",
    )
    refused(
        TransitionError,
        loop.dispatch,
        registered,
        tadmin,
        assignee_id=w.id("gw4"),
        now=T0 + 2 * M,
        field="assignee_id",
        message="不在该案件辖区",
    )

    dispatched = report(w, "gw0", "0502", T0)
    loop.register(dispatched, op, now=T0 + M)
    loop.dispatch(dispatched, tadmin, department_id=w.dept(0), now=T0 + 2 * M)
    refused(Forbidden, loop.accept, dispatched, w.a("gw4"), now=T0 + 3 * M, message="该案件不在本账号辖区内")
    refused(
        TransitionError,
        loop.feedback,
        dispatched,
        dept0,
        "已处理",
        now=T0 + 3 * M,
        message="「已派遣」，不能执行「处理反馈」",
    )
    loop.accept(dispatched, dept0, now=T0 + 3 * M)
    refused(TransitionError, loop.feedback, dispatched, dept0, "   ", now=T0 + 4 * M, field="note")
    refused(
        TransitionError,
        loop.feedback,
        dispatched,
        dept0,
        "长" * 2001,
        now=T0 + 4 * M,
        field="note",
        message="不能超过 2000 个字",
    )
    loop.feedback(dispatched, dept0, "已处理", now=T0 + 5 * M)
    refused(
        TransitionError,
        loop.escalate,
        dispatched,
        tadmin,
        note="上报",
        now=T0 + 6 * M,
        message="「待核查」，不能执行「流转」",
    )
    loop.close(dispatched, sup, now=T0 + 7 * M)
    closed = dispatched
    refused(
        TransitionError,
        loop.dispatch,
        closed,
        tadmin,
        department_id=w.dept(0),
        now=T0 + 8 * M,
        message="案件当前状态为「已结案」，不能执行「派遣」",
    )
    for fn, args in (
        (loop.register, ()),
        (loop.reject, ("作废",)),
        (loop.close, ()),
        (loop.rework, ("返工",)),
        (loop.pause, ("暂停",)),
        (loop.escalate, ()),
    ):
        refused(TransitionError, fn, closed, op, *args, now=T0 + 8 * M, message="「已结案」")

    # a role that does not hold the permission
    fresh_case = report(w, "gw0", "0502", T0)
    refused(Forbidden, loop.register, fresh_case, gw0, now=T0 + M, message="角色「网格员」无权执行「立案」")
    refused(Forbidden, loop.reject, fresh_case, dept0, "无效", now=T0 + M, message="角色「职能部门」无权执行「作废」")
    loop.register(fresh_case, op, now=T0 + M)
    refused(
        Forbidden,
        loop.dispatch,
        fresh_case,
        sup,
        department_id=w.dept(0),
        now=T0 + 2 * M,
        message="角色「督导人员」无权执行「派遣」",
    )
    refused(Forbidden, loop.dispatch, fresh_case, w.a("city_leader"), department_id=w.dept(0), now=T0 + 2 * M)


def test_report_input_is_checked(w):
    gw0 = w.a("gw0")
    lat, lon = w.point(0)

    def attempt(**kw):
        data = dict(category_id=w.cat("0502").id, description="x", lat=lat, lon=lon)
        data.update(kw)
        with pytest.raises(TransitionError) as info:
            loop.report_case(ReportInput(**data), actor=gw0, source="app", client_key=None, now=T0)
        return info.value

    assert attempt(category_id=w.cat("05").id).field == "category_id"  # a big class is not specific enough
    assert attempt(category_id=999_999).field == "category_id"
    assert attempt(lat=None, lon=None).field == "grid_id"
    assert attempt(lat=40.0, lon=116.4).field == "lat"  # outside every grid
    assert attempt(lat=None, lon=None, grid_id=w.village(0)).field == "grid_id"  # not a grid
    assert attempt(discovered_at=T0 + 10 * M).field == "discovered_at"
    assert db.scalar(select(func.count(Case.id))) == 0


# --- 11. jurisdiction -------------------------------------------------------------------------------


def test_other_town_cannot_act_on_a_town0_case(w):
    case = report(w, "gw0", "0502", T0)
    for who in ("town1_supervisor", "town1_admin", "town1_operator", "village2_admin", "village1_admin"):
        refused(Forbidden, loop.register, case, w.a(who), now=T0 + M, message="该案件不在本账号辖区内")
        refused(Forbidden, loop.reject, case, w.a(who), "无效", now=T0 + M, message="该案件不在本账号辖区内")
    loop.register(case, w.a("town0_operator"), now=T0 + M)
    for who in ("town1_admin", "town1_operator", "village1_admin"):
        refused(Forbidden, loop.dispatch, case, w.a(who), department_id=w.dept(0), now=T0 + 2 * M)
        refused(Forbidden, loop.escalate, case, w.a(who), note="上报", now=T0 + 2 * M)
        refused(Forbidden, loop.pause, case, w.a(who), "暂停", now=T0 + 2 * M)
    refused(Forbidden, loop.escalate, case, w.a("gw4"), note="上报", now=T0 + 2 * M)
    loop.dispatch(case, w.a("town0_admin"), department_id=w.dept(0), now=T0 + 2 * M)
    refused(Forbidden, loop.accept, case, w.a("dept1"), now=T0 + 3 * M, message="该案件不在本账号辖区内")
    loop.accept(case, w.a("dept0"), now=T0 + 3 * M)
    refused(Forbidden, loop.feedback, case, w.a("dept1"), "已处理", now=T0 + 4 * M)
    loop.feedback(case, w.a("dept0"), "已处理", now=T0 + 4 * M)
    for who in ("town1_supervisor", "town1_admin", "town1_operator"):
        refused(Forbidden, loop.close, case, w.a(who), now=T0 + 5 * M, message="该案件不在本账号辖区内")
        refused(Forbidden, loop.rework, case, w.a(who), "返工", now=T0 + 5 * M)
    loop.close(case, w.a("city_supervisor"), now=T0 + 5 * M)  # the city sees every town
    refused(Forbidden, loop.mark_outstanding, case, w.a("town1_supervisor"), "故事", now=T0 + 6 * M)
    assert fresh(case).state == "closed"


def test_village_center_cannot_dispatch_a_case_escalated_to_the_town(w):
    vadmin = w.a("village0_admin")
    case = report(w, "gw0", "0502", T0)
    loop.register(case, vadmin, now=T0 + M)
    loop.escalate(case, vadmin, to_level="town", note="需镇街协调", now=T0 + 2 * M)
    msg = "该案件不在本账号辖区内"
    refused(Forbidden, loop.dispatch, case, vadmin, department_id=w.dept(0), now=T0 + 3 * M, message=msg)
    refused(Forbidden, loop.escalate, case, vadmin, note="再上报", now=T0 + 3 * M, message=msg)
    refused(Forbidden, loop.reject, case, vadmin, "作废", now=T0 + 3 * M, message=msg)
    refused(Forbidden, loop.pause, case, vadmin, "暂停", now=T0 + 3 * M, message=msg)
    loop.dispatch(case, w.a("town0_admin"), department_id=w.dept(1), now=T0 + 4 * M)
    refused(Forbidden, loop.accept, case, w.a("dept0"), now=T0 + 5 * M)
    loop.accept(case, w.a("dept1"), now=T0 + 5 * M)
    assert fresh(case).state == "handling"


# --- 12. idempotent intake --------------------------------------------------------------------------


def _data(w: W, code: str = "0502") -> ReportInput:
    lat, lon = w.point(0)
    return ReportInput(category_id=w.cat(code).id, description="路灯不亮", lat=lat, lon=lon)


def test_same_client_key_gives_one_case(w):
    first, created = loop.report_case(_data(w), actor=w.a("gw0"), source="app", client_key="app-0001", now=T0)
    assert created is True
    again, created = loop.report_case(_data(w), actor=w.a("gw0"), source="app", client_key="app-0001", now=T0 + M)
    assert created is False and again.id == first.id
    assert fresh(again).reported_at == T0
    assert db.scalar(select(func.count(Case.id))) == 1
    assert len(steps(first)) == 1 and outbox_actions(first) == ["report"]

    with pytest.raises(TransitionError) as info:
        loop.report_case(_data(w), actor=w.a("gw1"), source="app", client_key="app-0001", now=T0 + 2 * M)
    assert info.value.field == "client_key"
    assert db.scalar(select(func.count(Case.id))) == 1

    # the key is scoped by source
    other, created = loop.report_case(
        _data(w), actor=w.a("volunteer0"), source="volunteer", client_key="app-0001", now=T0 + 3 * M
    )
    assert created is True and other.id != first.id


def test_retry_after_a_crash_between_commit_and_response_finds_the_case(w):
    case, created = loop.report_case(_data(w), actor=w.a("gw0"), source="app", client_key="app-crash-1", now=T0)
    assert created
    case_id = case.id
    db.remove()  # the worker died before answering: its session is gone
    again, created = loop.report_case(
        _data(w), actor=w.a("gw0"), source="app", client_key="app-crash-1", now=T0 + 2 * M
    )
    assert created is False and again.id == case_id
    assert db.scalar(select(func.count(Case.id))) == 1
    assert db.scalar(select(func.count(CaseStep.id))) == 1
    # and the loop goes on from there
    loop.register(again, w.a("town0_operator"), now=T0 + 3 * M)
    assert fresh(again).state == "registered"


def test_concurrent_insert_with_the_same_key_returns_the_winner(w, monkeypatch):
    """On PostgreSQL the key is not looked up before the INSERT: the INSERT finds it (ON CONFLICT DO NOTHING,
    waiting for a concurrent winner to commit), and only then is the winner's case read and returned."""
    first, _ = loop.report_case(_data(w), actor=w.a("gw0"), source="app", client_key="app-race-1", now=T0)
    real, calls = loop._find_by_key, []

    def counted(source, key):
        calls.append(key)
        return real(source, key)

    monkeypatch.setattr(loop, "_find_by_key", counted)
    again, created = loop.report_case(_data(w), actor=w.a("gw0"), source="app", client_key="app-race-1", now=T0 + M)
    assert created is False and again.id == first.id and calls == ["app-race-1"]
    assert db.scalar(select(func.count(Case.id))) == 1
    loop.register(again, w.a("town0_operator"), now=T0 + 2 * M)  # the session is usable afterwards
    assert fresh(again).state == "registered"


# --- 13. disputes -----------------------------------------------------------------------------------


def test_dispute_screening_level_follows_the_reporter(w):
    by_grid = report(w, "gw0", "2001", T0, description="楼上漏水引发邻里纠纷")
    by_village = report(w, "village0_admin", "2001", T0, source="center", reporter_center_id=w.center("village0"))
    by_town = report(w, "town0_operator", "2001", T0, source="center")
    by_city = report(w, "city_operator", "2001", T0, source="hotline", caller_phone="13900000000")
    ordinary = report(w, "gw0", "0502", T0)
    levels = {c.id: db.get(Dispute, c.id) for c in (by_grid, by_village, by_town, by_city)}
    assert {cid: (d.screening_level, d.outcome, d.mediation_level, d.mediated_at) for cid, d in levels.items()} == {
        by_grid.id: ("grid", "pending", None, None),
        by_village.id: ("village", "pending", None, None),
        by_town.id: ("town", "pending", None, None),
        by_city.id: ("town", "pending", None, None),  # no city-level screening: the city's own go to the town count
    }
    assert fresh(by_grid).kind == "dispute"
    assert fresh(by_village).reporter_center_id == w.center("village0")
    assert db.get(Dispute, ordinary.id) is None


def test_dispute_resolved_when_closed_at_the_grid_by_its_gridworker(w):
    gw0, admin = w.a("gw0"), w.a("town0_admin")
    case = report(w, "gw0", "2001", T0, description="邻里噪音纠纷")
    loop.register(case, w.a("town0_operator"), now=T0 + M)
    loop.dispatch(case, admin, assignee_id=gw0.id, note="请网格员调解", now=T0 + 2 * M)
    c = fresh(case)
    assert (c.state, c.assignee_id, c.department_id) == ("dispatched", gw0.id, None)
    refused(Forbidden, loop.accept, case, w.a("gw4"), now=T0 + 3 * M)
    loop.accept(case, gw0, now=T0 + 3 * M)
    loop.feedback(case, gw0, "双方达成调解协议", now=T0 + 2 * H)
    assert db.get(Dispute, case.id).outcome == "pending"
    loop.close(case, w.a("town0_supervisor"), now=T0 + 3 * H)
    db.expire_all()
    d = db.get(Dispute, case.id)
    assert (d.screening_level, d.outcome, d.mediation_level, d.mediated_at) == ("grid", "resolved", "grid", T0 + 3 * H)
    assert timeline(case)[2:] == [
        ("dispatch", "registered", "dispatched", "grid", "grid", admin.id, T0 + 2 * M),
        ("accept", "dispatched", "handling", "grid", "grid", gw0.id, T0 + 3 * M),
        ("feedback", "handling", "feedback", "grid", "grid", gw0.id, T0 + 2 * H),
        ("close", "feedback", "closed", "grid", "grid", w.id("town0_supervisor"), T0 + 3 * H),
    ]
    assert notes(case)[2] == "派遣至 gw0：请网格员调解"


def test_dispute_escalated_to_the_town_is_mediated_there(w):
    vadmin = w.a("village0_admin")
    case = report(w, "village0_admin", "2001", T0, source="center", reporter_center_id=w.center("village0"))
    loop.register(case, vadmin, now=T0 + M)
    loop.escalate(case, vadmin, to_level="town", note="村社调解不成", now=T0 + 2 * M)
    loop.dispatch(case, w.a("town0_admin"), department_id=w.dept(1), now=T0 + 3 * M)
    loop.accept(case, w.a("dept1"), now=T0 + 4 * M)
    loop.feedback(case, w.a("dept1"), "派出所联合调解成功", now=T0 + D)
    loop.close(case, w.a("town0_operator"), now=T0 + D + H)
    db.expire_all()
    d = db.get(Dispute, case.id)
    assert (d.screening_level, d.outcome, d.mediation_level, d.mediated_at) == (
        "village",
        "resolved",
        "town",
        T0 + D + H,
    )
    c = fresh(case)
    assert (c.state, c.level, c.escalated_to_town, c.escalated_by_center_id) == ("closed", "town", True, None)


# --- regressions: defects found once, and the rule that now holds --------------------------------


def test_regression_self_closed_dispute_is_resolved(w):
    """A dispute mediated on the spot (自办自结) is resolved at the grid, as a closed one is: otherwise it
    stayed 'pending' for ever and the mediation-success rate by level undercounted the grid."""
    case = report(w, "gw0", "2001", T0, description="两户因晾衣发生口角", self_handled=True)
    loop.self_close(case, w.a("gw0"), "当场调解，双方和解", now=T0 + H)
    assert fresh(case).state == "closed"
    db.expire_all()
    d = db.get(Dispute, case.id)
    assert (d.outcome, d.mediation_level, d.mediated_at) == ("resolved", "grid", T0 + H), (
        "a self-closed dispute must be marked resolved"
    )


def test_regression_long_pause_reason_is_refused_cleanly(w):
    """A pause reason longer than Case.pause_reason's 200 characters is refused naming the field, in every
    door (it once reached PostgreSQL and raised a DataError: a 500 from the API)."""
    op = w.a("town0_operator")
    case = report(w, "gw0", "0502", T0)
    loop.register(case, op, now=T0 + M)
    reason = "等待燃气公司派员到场检测并出具书面意见，" * 12  # 240 characters
    assert len(reason) > 200
    refused(TransitionError, loop.pause, case, op, reason, now=T0 + 2 * M, field="reason")
    assert fresh(case).paused_at is None


def test_regression_only_the_dispatched_handler_may_accept_and_feed_back(w):
    """Only the handler the case was dispatched to (its department, or its assignee) accepts it and feeds
    back: a gridworker of the grid, even its reporter, may not take over a department's case."""
    case = report(w, "gw0", "0502", T0)
    loop.register(case, w.a("town0_operator"), now=T0 + M)
    loop.dispatch(case, w.a("town0_admin"), department_id=w.dept(0), now=T0 + 2 * M)
    problems = []
    try:
        loop.accept(case, w.a("gw0"), now=T0 + 3 * M)
        problems.append("gw0 (a gridworker of the grid) accepted a case dispatched to 城管局")
    except Forbidden:
        pass
    if state_of(case) == "dispatched":
        loop.accept(case, w.a("dept0"), now=T0 + 4 * M)
    try:
        loop.feedback(case, w.a("gw0"), "我处理完了", now=T0 + 5 * M)
        problems.append("gw0 fed back on a case that 城管局 is handling")
    except Forbidden:
        pass
    assert not problems, "; ".join(problems)


def test_regression_refused_dispatch_leaves_no_half_change(w):
    """A refused dispatch changes nothing: the department of a refused dispatch must not reach the next
    commit of the session (it once did, after which that department could see and accept the case)."""
    op, tadmin = w.a("town0_operator"), w.a("town0_admin")
    case = report(w, "gw0", "0502", T0)
    loop.register(case, op, now=T0 + M)
    refused(
        TransitionError,
        loop.dispatch,
        case,
        tadmin,
        department_id=w.dept(0),
        assignee_id=w.id("gw4"),
        now=T0 + 2 * M,
        field="assignee_id",
    )
    loop.pause(case, op, "等待现场核实", now=T0 + 3 * M)  # an unrelated, legitimate step
    row, _ = committed(case.id)
    assert (row["state"], row["department_id"]) == ("registered", None), (
        "a refused dispatch leaked department_id into the next commit"
    )
