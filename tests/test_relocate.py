"""重新定位 (issue 14 §3): the rules of `relocate` (cases/relocate.py, through cases.actions.perform) and the live
counters following the case to its new places, exactly once, in agreement with `reconcile`."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import select

from commandcenter import counters
from commandcenter.access import Forbidden
from commandcenter.cases import actions, loop
from commandcenter.db import db
from commandcenter.models import Case, CaseStep, Outbox, StandardAddress
from tests.conftest import report

pytestmark = [pytest.mark.postgres]

T0 = datetime(2026, 3, 10, 1, 0)  # UTC = local Tue 2026-03-10 09:00
DAY0 = date(2026, 3, 10)


def relocate(w, who: str, case: Case, **data) -> Case:
    return actions.perform(w.a(who), db.get(Case, case.id), "relocate", actions.ActionInput(**data))


def places(case: Case) -> tuple:
    db.expire_all()
    case = db.get(Case, case.id)
    return case.grid_id, case.village_id, case.town_id


def standard_address(w, grid: int, text: str, code: str) -> StandardAddress:
    g = w.world.grids[grid]
    entry = StandardAddress(
        code=code,
        address=text,
        grid_id=g.id,
        village_id=g.village_id,
        town_id=g.town_id,
        lat=g.center_lat + 0.001,
        lon=g.center_lon + 0.001,
    )
    db.add(entry)
    db.commit()
    return entry


# --- the rules ------------------------------------------------------------------------------------------


def test_a_tap_on_the_map_moves_the_case_to_the_grid_of_the_point(w):
    case = report(w, "gw0", grid=0, address="人民路 1 号")
    lat, lon = w.point(3)  # town 0, the other village
    relocate(w, "town0_operator", case, lat=lat, lon=lon, note="上报位置有误")
    assert places(case) == (w.grid(3), w.village(1), w.town(0))
    case = db.get(Case, case.id)
    assert (case.lat, case.lon, case.address) == (lat, lon, "人民路 1 号")  # no address typed: kept
    step = (
        db.execute(select(CaseStep).where(CaseStep.case_id == case.id).order_by(CaseStep.id.desc())).scalars().first()
    )
    assert (step.action, step.from_state, step.to_state) == ("relocate", "reported", "reported")
    old, new = w.world.grids[0].name, w.world.grids[3].name
    assert step.note == f"由「人民路 1 号」（{old}）改为「人民路 1 号」（{new}）：上报位置有误"
    row = db.execute(select(Outbox).order_by(Outbox.id.desc())).scalars().first()
    assert row.payload["action"] == "relocate"
    assert row.payload["from"] == {"grid_id": w.grid(0), "village_id": w.village(0), "town_id": w.town(0)}
    assert (row.payload["grid_id"], row.payload["village_id"]) == (w.grid(3), w.village(1))
    assert [m["action"] for m in row.payload["moved"]] == ["report"]


def test_a_standard_address_gives_its_point_grid_and_text(w):
    case = report(w, "gw0", grid=0)
    loop.register(db.get(Case, case.id), w.a("town0_operator"))
    entry = standard_address(w, 2, "东湖北社区幸福路 8 号", "A-1")
    relocate(w, "town0_operator", case, address_id=entry.id, lat=1.0, lon=1.0)  # the entry wins over the point
    case = db.get(Case, case.id)
    assert places(case) == (w.grid(2), w.village(1), w.town(0))
    assert (case.address, case.lat, case.lon, case.state) == (entry.address, entry.lat, entry.lon, "registered")


@pytest.mark.parametrize(
    ("who", "data", "field"),
    [
        ("town0_operator", {}, "lat"),
        ("town0_operator", {"lat": 31.02}, "lon"),
        ("town0_operator", {"lat": 30.5, "lon": 120.02}, "lat"),  # in no grid
        ("town0_operator", {"lat": 31.02, "lon": 120.12}, "lat"),  # town 1: not this operator's
        ("town0_operator", {"lat": 131.0, "lon": 120.0}, "lat"),
        ("town0_operator", {"address_id": 999999}, "address"),
        ("town0_operator", {"address_id": "TOWN1"}, "address"),  # a standard address of town 1
        ("town0_operator", {"lat": 31.02, "lon": 120.02, "address": "路" * 201}, "address"),
    ],
)
def test_a_new_place_outside_every_grid_or_the_jurisdiction_is_refused_naming_the_field(w, who, data, field):
    case = report(w, "gw0", grid=0)
    if data.get("address_id") == "TOWN1":
        data["address_id"] = standard_address(w, 5, "西湖南社区某路 1 号", "B-1").id
    with pytest.raises(loop.TransitionError) as exc:
        relocate(w, who, case, **data)
    assert exc.value.field == field, exc.value.message
    db.rollback()
    assert places(case) == (w.grid(0), w.village(0), w.town(0))


def test_who_and_when(w):
    case = report(w, "gw0", grid=0)
    lat, lon = w.point(1)
    for who in ("gw0", "town0_duty", "city_leader", "dept0"):  # no case.register
        with pytest.raises(Forbidden):
            relocate(w, who, case, lat=lat, lon=lon)
    with pytest.raises(Forbidden):  # not a case of its town
        relocate(w, "town1_operator", case, lat=lat, lon=lon)
    # a city center may move a case to another town; a town center only inside its own
    relocate(w, "city_operator", case, lat=w.point(6)[0], lon=w.point(6)[1])
    assert places(case) == (w.grid(6), w.village(3), w.town(1))
    with pytest.raises(Forbidden):
        relocate(w, "town0_operator", case, lat=lat, lon=lon)
    # not once dispatched (nor closed): the handler was chosen for the place
    dispatched = report(w, "gw0", grid=0)
    loop.register(db.get(Case, dispatched.id), w.a("town0_operator"))
    loop.dispatch(db.get(Case, dispatched.id), w.a("town0_operator"), department_id=w.world.departments[0].id)
    with pytest.raises(loop.TransitionError) as exc:
        relocate(w, "town0_operator", dispatched, lat=lat, lon=lon)
    assert exc.value.field is None and "不能执行「重新定位」" in exc.value.message
    assert not actions.can_take(w.a("town0_operator"), db.get(Case, dispatched.id), "relocate")
    assert actions.can_take(w.a("town0_operator"), report(w, "gw0", grid=0), "relocate")


# --- the counters follow the case --------------------------------------------------------------------------


def drain_all(r, w) -> None:
    while counters.drain_outbox(r, db, w.city):
        pass


def counts(r, place_id: int, **when) -> dict:
    return {k: v for k, v in counters.case_counts(r, place_id, **when).items() if v}


def assert_reconciled(r, w) -> None:
    rep = counters.reconcile(r, db, DAY0, DAY0 + timedelta(days=1), w.city)
    assert (rep["keys_fixed"], rep["drift"]) == (0, []), rep


@pytest.mark.redis
def test_counted_steps_move_to_the_new_village_once_and_reconcile_agrees(w, redis_conn):
    r = redis_conn
    case = report(w, "gw0", code="0502", at=T0, grid=0)
    loop.register(db.get(Case, case.id), w.a("town0_operator"), now=T0 + timedelta(minutes=5))
    other = report(w, "gw0", code="0502", at=T0, grid=0)  # stays where it is
    drain_all(r, w)
    assert counts(r, w.grid(0), day=DAY0)["reported"] == 2
    assert_reconciled(r, w)

    relocate(w, "town0_operator", case, lat=w.point(3)[0], lon=w.point(3)[1])
    row = db.execute(select(Outbox).order_by(Outbox.id.desc())).scalars().first()
    drain_all(r, w)
    moved = {"reported": 1, "reported:ordinary": 1, "registered": 1}
    stays = {"reported": 1, "reported:ordinary": 1}
    for when in ({"day": DAY0}, {"month": "202603"}):
        assert counts(r, w.grid(0), **when) == stays
        assert counts(r, w.village(0), **when) == stays
        assert counts(r, w.grid(3), **when) == moved
        assert counts(r, w.village(1), **when) == moved
        both = {"reported": 2, "reported:ordinary": 2, "registered": 1}
        assert counts(r, w.town(0), **when) == both and counts(r, w.city, **when) == both
    # the same outbox row again (a crashed drain taken up again) moves nothing
    assert counters.apply_case_event(r, row.id, row.payload, w.city) is False
    assert counts(r, w.grid(3), day=DAY0) == moved
    assert_reconciled(r, w)
    assert other.grid_id == w.grid(0)


@pytest.mark.redis
def test_a_relocation_across_towns_not_yet_drained_during_a_reconcile(w, redis_conn):
    r = redis_conn
    case = report(w, "gw0", code="0502", at=T0, grid=0)
    loop.register(db.get(Case, case.id), w.a("city_operator"), now=T0 + timedelta(minutes=5))
    loop.escalate(db.get(Case, case.id), w.a("gw0"), to_level="town", note="需镇街协调", now=T0 + timedelta(minutes=9))
    drain_all(r, w)
    relocate(w, "city_operator", case, lat=w.point(5)[0], lon=w.point(5)[1])
    # the relocation is committed, not drained: the reconcile leaves it to the drain
    rep = counters.reconcile(r, db, DAY0, DAY0 + timedelta(days=1), w.city)
    assert rep["pending"] == 1 and rep["keys_fixed"] == 0, rep
    drain_all(r, w)
    assert_reconciled(r, w)
    want = {"reported": 1, "reported:ordinary": 1, "registered": 1, "escalated:town": 1}
    assert counts(r, w.town(1), day=DAY0) == want and counts(r, w.grid(5), month="202603") == want
    assert counts(r, w.town(0), day=DAY0) == {} and counts(r, w.village(0), month="202603") == {}
    assert counts(r, w.city, day=DAY0) == want
    # and after Redis lost everything, the reconcile alone rebuilds the same figures
    before = {pid: counts(r, pid, day=DAY0) for pid in (w.grid(0), w.grid(5), w.town(0), w.town(1), w.city)}
    r.flushdb()
    counters.reconcile(r, db, DAY0, DAY0 + timedelta(days=1), w.city)
    assert {pid: counts(r, pid, day=DAY0) for pid in before} == before
