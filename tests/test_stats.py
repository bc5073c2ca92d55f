"""The figures of the drill-down (commandcenter/stats.py) against a small dataset written out by hand.

The cases, patrols, sign-ins, logins, visits, collection counts and party rows are inserted directly (not
through the loop) so that every field has a known value; the expected numbers below are counted by hand from
`build_dataset`, never read from the module under test.
"""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import event

from commandcenter import stats
from commandcenter.db import db, get_engine
from commandcenter.measures import Period, patrol_compliance, patrol_compliance_in_python
from commandcenter.models import (
    Account,
    BaseDataCount,
    Case,
    Dispute,
    LoginRecord,
    PartyActivity,
    PartyOrganization,
    Patrol,
    Person,
    Place,
    SignIn,
    Site,
    Visit,
)
from commandcenter.timeutil import from_local, local_today
from commandcenter.workcalendar import is_workday
from tests.conftest import shanghai
from tests.world import WorldView

pytestmark = [pytest.mark.postgres]

TZ = "Asia/Shanghai"
MON, TUE = date(2026, 11, 2), date(2026, 11, 3)  # two ordinary workdays
PERIOD = Period(MON, TUE)
_numbers = itertools.count(1)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    """Local wall-clock time → naive UTC as stored."""
    return from_local(datetime(day.year, day.month, day.day, hour, minute), TZ)


def add_case(
    w: WorldView,
    grid: int,
    *,
    reporter: str | None = "gw0",
    code: str = "0101",
    state: str = "registered",
    reported: datetime,
    valid: bool | None = True,
    source: str = "app",
    closed_at: datetime | None = None,
    **extra,
) -> Case:
    g = db.get(Place, w.grid(grid))
    cat = w.cat(code)
    case = Case(
        number=f"T{next(_numbers):08d}",
        source=source,
        category_id=cat.id,
        kind=cat.kind,
        description="测试事件",
        grid_id=g.id,
        village_id=g.village_id,
        town_id=g.town_id,
        reporter_id=w.id(reporter) if reporter else None,
        state=state,
        valid=valid,
        discovered_at=reported,
        reported_at=reported,
        closed_at=closed_at or (reported + timedelta(hours=1) if state == "closed" else None),
        **extra,
    )
    db.add(case)
    db.flush()
    return case


def build_dataset(world) -> WorldView:
    """The known month: see the module docstring and the expectations in the tests."""
    w = WorldView(world)
    # --- town 0 (grids 0-3) -------------------------------------------------------------------------
    add_case(w, 0, state="closed", reported=at(MON, 9), closed_at=at(MON, 18))  # c1
    add_case(
        w, 0, code="1001", state="closed", reported=at(MON, 10), escalated_to_town=True, closed_at=at(TUE, 9)
    )  # c2
    c3 = add_case(w, 0, code="2001", reported=at(TUE, 23, 59), overdue=True)  # c3
    db.add(Dispute(case_id=c3.id, screening_level="grid", outcome="resolved"))
    add_case(w, 0, state="rejected", valid=False, reported=at(MON, 11))  # c4
    add_case(
        w,
        1,
        reporter="gw1",
        code="1002",
        state="closed",
        reported=at(TUE, 8),
        escalated_to_town=True,
        escalated_to_city=True,
        closed_at=at(TUE + timedelta(days=2), 9),
    )  # c5
    add_case(w, 0, state="duplicate", valid=False, reported=at(MON, 12))  # c6
    add_case(w, 2, reporter=None, source="hotline", state="dispatched", reported=at(TUE, 14))  # c7
    add_case(w, 0, state="closed", reported=at(TUE + timedelta(days=1), 0, 30))  # c8: after
    add_case(w, 0, state="closed", reported=at(MON - timedelta(days=1), 23, 59))  # c9: before
    c10 = add_case(w, 3, reporter="gw3", code="2002", state="reported", valid=None, reported=at(MON, 15))
    db.add(Dispute(case_id=c10.id, screening_level="village", outcome="pending"))
    # --- town 1 (grids 4-7) -------------------------------------------------------------------------
    add_case(w, 4, reporter="gw4", state="closed", reported=at(MON, 9))
    add_case(w, 4, reporter="gw4", state="closed", reported=at(TUE, 9))
    # --- patrols: gw0 and gw2 meet the hour on both days, gw1 misses a minute, gw3 never ends his --------
    patrols = [
        ("gw0", at(MON, 9), at(MON, 10)),
        ("gw0", at(TUE, 9), at(TUE, 9, 30)),
        ("gw0", at(TUE, 14), at(TUE, 14, 30)),
        ("gw1", at(MON, 9), at(MON, 10)),
        ("gw1", at(TUE, 9), at(TUE, 9, 59)),
        ("gw2", at(MON, 8), at(MON, 9)),
        ("gw2", at(TUE, 23, 30), at(TUE + timedelta(days=1), 0, 40)),
        ("gw3", at(MON, 8), None),
    ]
    for user, start, end in patrols:
        acc = w.a(user)
        db.add(Patrol(gridworker_id=acc.id, grid_id=acc.place_id, town_id=acc.town_id, started_at=start, ended_at=end))
    # --- sign-ins: gw0 both days, gw1 on Tuesday, gw3 only after the period --------------------------
    for user, day in (("gw0", MON), ("gw0", TUE), ("gw1", TUE), ("gw3", TUE + timedelta(days=2))):
        db.add(SignIn(account_id=w.id(user), town_id=w.a(user).town_id, day=day, at=at(day, 8)))
    # --- admin logins: town0_admin succeeds, village0_admin fails, village1_admin only before -------
    for user, success, when in (
        ("town0_admin", True, at(MON, 9)),
        ("village0_admin", False, at(MON, 9)),
        ("village1_admin", True, at(MON - timedelta(days=3), 9)),
    ):
        db.add(LoginRecord(account_id=w.id(user), username=user, success=success, at=when))
    # --- persons and sites of town 0, and their visits --------------------------------------------------
    g0, g1, g2 = (db.get(Place, w.grid(i)) for i in (0, 1, 2))

    def person(name: str, kind: str, g: Place, active: bool = True) -> Person:
        p = Person(
            name=name,
            person_type=kind,
            visit_frequency="monthly",
            grid_id=g.id,
            village_id=g.village_id,
            town_id=g.town_id,
            active=active,
        )
        db.add(p)
        return p

    drug_a, _drug_b = person("甲", "drug_user", g0), person("乙", "drug_user", g0)
    mental = person("丙", "mental_risk", g1)
    person("丁", "empty_nest_elderly", g0, active=False)
    site = Site(
        name="网吧",
        site_type="key_place",
        visit_frequency="monthly",
        grid_id=g2.id,
        village_id=g2.village_id,
        town_id=g2.town_id,
    )
    db.add(site)
    db.flush()
    for target, when in (
        (dict(person_id=drug_a.id), at(MON, 10)),
        (dict(person_id=drug_a.id), at(TUE, 10)),
        (dict(person_id=mental.id), at(MON - timedelta(days=1), 10)),
        (dict(site_id=site.id), at(TUE, 16)),
    ):
        db.add(Visit(gridworker_id=w.id("gw0"), town_id=g0.town_id, at=when, **target))
    # --- information collection: village 1 prints the impossible 101.88 % -------------------------------
    v0, v1 = w.village(0), w.village(1)
    for place_id, month, registered, linked in (
        (v0, "2026-10", 1000, 900),
        (v0, "2026-11", 1000, 950),
        (v0, "2026-12", 1000, 2000),
        (v1, "2026-11", 2500, 2547),
    ):
        db.add(
            BaseDataCount(
                place_id=place_id,
                town_id=w.town(0),
                month=month,
                registered_population=registered,
                linked_persons=linked,
            )
        )
    # --- party building -------------------------------------------------------------------------------
    org1 = PartyOrganization(name="第一网格党支部", place_id=w.grid(0), town_id=w.town(0), members=30)
    org2 = PartyOrganization(name="北社区党委", place_id=v1, town_id=w.town(0), members=20)
    db.add_all([org1, org2])
    db.flush()
    db.add_all(
        [
            PartyActivity(organization_id=org1.id, held_on=MON, title="主题党日"),
            PartyActivity(organization_id=org1.id, held_on=date(2026, 11, 10), title="学习会"),
            PartyActivity(organization_id=org2.id, held_on=TUE, title="志愿服务"),
        ]
    )
    db.commit()
    return w


@pytest.fixture
def data(ctx, world):
    return build_dataset(world)


def place(pid: int) -> Place:
    return db.get(Place, pid)


# --- every field -------------------------------------------------------------------------------------


def test_town_figures_field_by_field(data):
    f = stats.figures(place(data.town(0)), PERIOD)
    assert (f.place_name, f.level, f.period) == ("东湖街道", "town", PERIOD)
    assert f.reported == 7  # c1 c2 c3 c4 c5 c7 c10: not the duplicate, not the two outside the days
    assert f.by_kind == {"ordinary": 3, "hazard": 2, "dispute": 2}
    assert f.by_source["app"] == 6 and f.by_source["hotline"] == 1 and sum(f.by_source.values()) == 7
    assert (f.closed, f.closure_rate) == (3, pytest.approx(3 / 7))
    assert (f.valid, f.invalid, f.valid_rate) == (5, 1, pytest.approx(5 / 6))
    # 上报至镇级 / 上报至市级 are disjoint (domain.md §6): c2 ended at the town; c5 passed the town on to the city
    assert (f.reported_to_town, f.reported_to_town_closed) == (1, 1)
    assert f.reported_to_town_share == pytest.approx(1 / 7) and f.reported_to_town_closure_rate == 1.0
    assert (f.reported_to_city, f.reported_to_city_closed, f.reported_to_city_closure_rate) == (1, 1, 1.0)
    assert f.reported_to_city_share == pytest.approx(1 / 7)
    # 处理及时率 is indicator 8: of the 6 assessed events (c4 is invalid, left out), 1 overdue
    assert (f.assessed, f.overdue, f.timeliness) == (6, 1, pytest.approx(5 / 6))
    assert f.hazard_share == pytest.approx(2 / 7) and f.dispute_share == pytest.approx(2 / 7)
    assert f.duplicates == 1
    assert f.disputes_screened == {"grid": 1, "village": 1, "town": 0}
    assert f.disputes_resolved == {"grid": 1, "village": 0, "town": 0}
    assert f.dispute_success_rate == 0.5
    assert (f.gridworkers, f.gridworker_reports, f.reports_per_gridworker) == (4, 6, 1.5)
    assert (f.patrol_compliant, f.patrol_rate) == (2, 0.5)  # gw0 and gw2 (his night patrol counts on Tuesday)
    assert (f.attended, f.attendance_rate) == (2, 0.5)
    assert (f.admins, f.admins_logged_in) == (3, 1) and f.login_rate == pytest.approx(1 / 3)
    assert f.visits["drug_user"] == (2, 1, 0.5)
    # visited only on Sunday 1 November, the day before the period: monthly, so his November window (1–3 Nov, the
    # period being over) counts it — the visit rate is over each population's own frequency (issue 12 §i)
    assert f.visits["mental_risk"] == (1, 1, 1.0)
    assert f.visits["key_place"] == (1, 1, 1.0)
    assert f.visits["empty_nest_elderly"] == (0, 0, None)  # the only one is inactive
    assert f.visits["community_correction"] == (0, 0, None)
    assert (f.special_assigned, f.special_visited) == (3, 2) and f.special_visit_rate == pytest.approx(2 / 3)
    assert f.population == 200_000
    # newest month not after November: village 0's November (not December), village 1's November
    assert (f.registered_population, f.linked_persons) == (3500, 3497)
    assert f.linkage_rate == pytest.approx(3497 / 3500)
    assert (f.party_organizations, f.party_members, f.party_activities) == (2, 50, 2)
    # its total adds up village 1's impossible figure (2547 linked of 2500 registered): suspect too
    assert [(fl.field, fl.message) for fl in f.flags] == [
        ("linkage_rate", "合计含东湖北社区的存疑数据（人房关联率超过 100%）")
    ]


def test_city_figures_and_children_add_up(data):
    city = place(data.city)
    f = stats.figures(city, PERIOD)
    assert f.reported == 9 and f.gridworkers == 8 and f.admins == 7  # 3 per town + the city center's
    towns = stats.children(city, PERIOD)
    assert [t.place_name for t in towns] == ["东湖街道", "西湖街道"]
    assert [t.reported for t in towns] == [7, 2]
    assert [t.closed for t in towns] == [3, 2]
    assert [t.gridworkers for t in towns] == [4, 4]
    assert towns[0] == stats.figures(place(data.town(0)), PERIOD)
    villages = stats.children(place(data.town(0)), PERIOD)
    assert [v.place_id for v in villages] == [data.village(0), data.village(1)]
    assert [v.reported for v in villages] == [5, 2]
    assert [v.registered_population for v in villages] == [1000, 2500]
    assert [v.party_members for v in villages] == [30, 20]
    assert [v.admins for v in villages] == [1, 1]  # the town's own admin belongs to no village
    grids = stats.children(place(data.village(0)), PERIOD)
    assert [(g.place_id, g.reported, g.gridworkers, g.patrol_compliant) for g in grids] == [
        (data.grid(0), 4, 1, 1),
        (data.grid(1), 1, 1, 0),
    ]
    assert stats.children(place(data.grid(0)), PERIOD) == []


def test_children_use_one_query_per_measure_whatever_the_number_of_children(data):
    """Three more towns: children(city) runs exactly as many statements as with two."""
    city = place(data.city)

    def statements() -> int:
        seen: list[str] = []
        engine = get_engine()
        listener = lambda *args: seen.append(args[2])  # noqa: E731
        event.listen(engine, "before_cursor_execute", listener)
        try:
            rows = stats.children(city, PERIOD)
        finally:
            event.remove(engine, "before_cursor_execute", listener)
        return len(rows), len(seen)

    statements()  # the first call also fills this process's caches (the working calendar's years)
    two = statements()
    for i in range(3):
        town = Place(code=f"EXTRA{i}", name=f"新镇{i}", level="town", parent_id=city.id, city_id=city.id)
        db.add(town)
        db.flush()
        town.town_id = town.id
    db.commit()
    five = statements()
    assert (two[0], five[0]) == (2, 5)
    assert five[1] == two[1] and five[1] <= 20


def test_filters_narrow_only_the_case_figures(data):
    town = place(data.town(0))
    hazards = stats.figures(town, PERIOD, stats.Filters(kind="hazard"))
    assert (hazards.reported, hazards.closed, hazards.reported_to_town, hazards.reported_to_city) == (2, 2, 1, 1)
    assert hazards.by_kind == {"ordinary": 0, "hazard": 2, "dispute": 0}
    assert hazards.gridworkers == 4 and hazards.attended == 2  # people figures untouched
    assert stats.figures(town, PERIOD, stats.Filters(source="hotline")).reported == 1
    assert stats.figures(town, PERIOD, stats.Filters(state="closed")).reported == 3
    disputes_big_class = data.cat("20").id  # 矛盾纠纷 big class: its small classes match
    f = stats.figures(town, PERIOD, stats.Filters(category_id=disputes_big_class))
    assert f.reported == 2 and f.disputes_screened["grid"] == 1
    assert stats.figures(town, PERIOD, stats.Filters(category_id=data.cat("2002").id)).reported == 1


def test_zero_denominators_are_none_never_a_crash(data):
    empty_grid = place(data.grid(7))  # gw7 only: no case, no patrol, no person, no admin
    f = stats.figures(empty_grid, PERIOD)
    assert f.reported == 0
    for name in (
        "closure_rate",
        "valid_rate",
        "reported_to_town_share",
        "reported_to_town_closure_rate",
        "reported_to_city_share",
        "reported_to_city_closure_rate",
        "timeliness",
        "hazard_share",
        "dispute_share",
        "dispute_success_rate",
        "login_rate",
        "special_visit_rate",
        "linkage_rate",
    ):
        assert getattr(f, name) is None, name
    assert (f.gridworkers, f.patrol_rate, f.attendance_rate, f.reports_per_gridworker) == (1, 0.0, 0.0, 0.0)
    assert f.visits["drug_user"] == (0, 0, None)
    # a grid without any gridworker: the per-gridworker figures are undefined too
    lonely = Place(
        code="LONELY",
        name="空网格",
        level="grid",
        parent_id=data.village(0),
        city_id=data.city,
        town_id=data.town(0),
        village_id=data.village(0),
    )
    db.add(lonely)
    db.commit()
    f = stats.figures(lonely, PERIOD)
    assert (f.gridworkers, f.reports_per_gridworker, f.patrol_rate, f.attendance_rate) == (0, None, None, None)
    # a period whose workdays have not begun: compliance undefined, not 100 % and not 0 %
    future = Period(date(2099, 3, 2), date(2099, 3, 3))
    f = stats.figures(place(data.town(0)), future)
    assert f.gridworkers == 4 and f.patrol_compliant == 0 and f.patrol_rate is None


def test_patrol_compliance_in_sql_matches_measures(data):
    ids = [data.id(f"gw{i}") for i in range(8)]
    for period in (
        PERIOD,
        Period(MON, MON),
        Period(TUE, TUE + timedelta(days=6)),
        Period(date(2026, 10, 1), date(2026, 10, 8)),
    ):
        today = local_today(TZ)
        begun = period.workdays_begun(today)
        over, running = [d for d in begun if d < today], today if today in begun else None
        if begun:
            assert patrol_compliance(ids, period, TZ) == patrol_compliance_in_python(ids, period, TZ, over, running)
    assert stats.compliance_of(ids, PERIOD, TZ) == {**{i: False for i in ids}, ids[0]: True, ids[2]: True}


# --- data-quality flags --------------------------------------------------------------------------


def test_linkage_above_100_percent_is_flagged_not_printed_as_a_fact(data):
    village = stats.figures(place(data.village(1)), PERIOD)
    assert village.linkage_rate == pytest.approx(2547 / 2500)
    assert [(f.field, f.message) for f in village.flags] == [
        ("linked_persons", "已关联人数 2547 多于登记人口 2500，数据可能有误"),
        ("linkage_rate", "人房关联率 101.88% 超过 100%，登记数据可能有误"),
    ]
    assert village.flag_for("linkage_rate").message.startswith("人房关联率 101.88%")
    assert "linkage_rate" in village.flagged
    town = stats.children(place(data.town(0)), PERIOD)
    assert [bool(t.flag_for("linkage_rate")) for t in town] == [False, True]


def test_a_gridworker_with_more_than_50_reports_in_one_hour_is_flagged(data):
    for i in range(stats.BURST_PER_HOUR):  # gw5: exactly 50 inside 10:00-11:00: not flagged
        add_case(data, 5, reporter="gw5", reported=at(MON, 10) + timedelta(seconds=60 * i + 5))
    for i in range(stats.BURST_PER_HOUR + 1):  # gw6: 51 inside 14:00-15:00: flagged
        add_case(data, 6, reporter="gw6", reported=at(TUE, 14) + timedelta(seconds=60 * i + 5))
    db.commit()
    town = stats.figures(place(data.town(1)), PERIOD)
    messages = [(f.field, f.message) for f in town.flags]
    assert messages == [
        (
            "reported",
            "网格员 gw6 在 2026-11-03 14:00 起的一小时内上报 51 件（超过 50 件），疑似批量或虚假上报，上报数不宜直接采信",
        ),
        ("gridworker_reports", messages[0][1]),
    ]
    villages = stats.children(place(data.town(1)), PERIOD)
    assert [bool(v.flag_for("reported")) for v in villages] == [False, True]  # gw6's grid lies in the 2nd village
    rows = {r["username"]: r for r in stats.gridworker_rows(place(data.town(1)), PERIOD)}
    assert rows["gw5"]["flags"] == [] and rows["gw5"]["reports"] == 50
    assert [f.field for f in rows["gw6"]["flags"]] == ["reports"] and rows["gw6"]["reports"] == 51
    assert [fl.field for fl in stats.figures(place(data.town(0)), PERIOD).flags] == ["linkage_rate"]  # no burst


def test_bulk_duplicates_are_flagged(data):
    def reports(user: str, grid: int, total: int, dups: int) -> None:
        for i in range(total):
            add_case(
                data,
                grid,
                reporter=user,
                state="duplicate" if i < dups else "registered",
                reported=at(MON, 8) + timedelta(minutes=7 * i),
            )

    reports("gw5", 5, 40, 10)  # 10 of 40 = 25 %: flagged
    reports("gw6", 6, 40, 9)  # 9 duplicates: too few
    reports("gw7", 7, 60, 10)  # 10 of 60 = 16.7 %: too small a share
    db.commit()
    town = stats.figures(place(data.town(1)), PERIOD)
    assert town.duplicates == 29
    assert [(f.field, f.message) for f in town.flags] == [
        ("duplicates", "gw5 本期有 10 件被判为重复，占其上报的 25.00%，疑似批量重复上报"),
        ("reported", "gw5 本期有 10 件被判为重复，占其上报的 25.00%，疑似批量重复上报"),
    ]
    rows = {r["username"]: r for r in stats.gridworker_rows(place(data.town(1)), PERIOD)}
    assert [f.field for f in rows["gw5"]["flags"]] == ["duplicates"]
    assert rows["gw6"]["flags"] == rows["gw7"]["flags"] == []


def test_more_attended_than_gridworkers_is_flagged():
    f = stats.Figures(
        place_id=1, place_name="x", level="town", period=PERIOD, gridworkers=2, attended=3, patrol_compliant=3
    )
    stats._derive(f)
    fields = [flag.field for flag in f.flags]
    assert fields == ["patrol_compliant", "attended", "patrol_rate", "attendance_rate"]
    assert f.flag_for("attended").message == "出勤人数 3 多于网格员总数 2，数据可能有误"
    assert f.flag_for("patrol_rate").message == "巡查达标率 150.00% 超过 100%，数据可能有误"


# --- the gridworker level and the trend --------------------------------------------------------------


def test_gridworker_rows(data):
    rows = stats.gridworker_rows(place(data.town(0)), PERIOD)
    assert [r["username"] for r in rows] == ["gw0", "gw1", "gw2", "gw3"]
    gw0 = rows[0]
    assert gw0["grid_id"] == data.grid(0) and gw0["grid"] == db.get(Place, data.grid(0)).name
    assert {
        k: gw0[k]
        for k in (
            "reports",
            "closed",
            "hazard",
            "dispute",
            "duplicates",
            "overdue",
            "patrol_compliant",
            "sign_in_days",
            "visits",
            "visited",
        )
    } == dict(
        reports=4,
        closed=2,
        hazard=1,
        dispute=1,
        duplicates=1,
        overdue=1,
        patrol_compliant=True,
        sign_in_days=2,
        visits=3,
        visited=2,
    )
    assert gw0["closure_rate"] == 0.5
    assert [r["patrol_compliant"] for r in rows] == [True, False, True, False]
    assert rows[2]["reports"] == 0 and rows[2]["closure_rate"] is None
    only = stats.gridworker_rows(place(data.town(0)), PERIOD, account_id=data.id("gw1"))
    assert [r["username"] for r in only] == ["gw1"]
    assert stats.gridworker_rows(place(data.town(1)), PERIOD, account_id=data.id("gw1")) == []
    assert [r["username"] for r in stats.gridworker_rows(place(data.grid(3)), PERIOD)] == ["gw3"]


def test_trend_per_local_day(data):
    t = stats.trend(place(data.town(0)), PERIOD)
    # closures count by the day they happened: c9 (reported the evening before) closed on Monday 00:59
    assert t == {"days": ["2026-11-02", "2026-11-03"], "reported": [4, 3], "closed": [2, 1]}
    assert stats.trend(place(data.town(0)), PERIOD, stats.Filters(kind="hazard"))["reported"] == [1, 1]
    assert stats.trend(place(data.town(0)), PERIOD, stats.Filters(state="reported"))["closed"] == [0, 0]
    # a period running into the future stops at today instead of drawing a fall to zero
    today = local_today(TZ)
    ahead = stats.trend(place(data.town(0)), Period(today - timedelta(days=2), today + timedelta(days=5)))
    assert ahead["days"][-1] == today.isoformat() and len(ahead["days"]) == 3


def test_accounts_outside_the_role_are_not_gridworkers(data):
    acc = data.a("gw1")
    acc.active = False
    db.commit()
    f = stats.figures(place(data.town(0)), PERIOD)
    assert f.gridworkers == 3 and f.attended == 1  # gw1's sign-in no longer counts
    assert db.query(Account).filter_by(role="gridworker", active=True).count() == 7


def test_patrol_compliance_judges_only_the_workdays_that_are_over(w):
    """Issue 12 §2g: at 06:00 nobody fails the month for the day that has not been worked yet; an hour already
    patrolled today counts; a missed day that is over fails. Both paths (SQL on PostgreSQL, Python) agree."""
    from commandcenter.models import Patrol

    # 2026-11-02 and 03 are a Monday and a Tuesday, both workdays
    mon, tue = date(2026, 11, 2), date(2026, 11, 3)
    assert is_workday(mon) and is_workday(tue)
    gw = {name: w.id(name) for name in ("gw0", "gw1", "gw2", "gw3")}

    def patrol(name: str, day: date, hour: int, minutes: int) -> None:
        start = shanghai(day.year, day.month, day.day, hour)
        db.add(Patrol(gridworker_id=gw[name], started_at=start, ended_at=start + timedelta(minutes=minutes)))

    patrol("gw0", mon, 9, 70)  # Monday done
    patrol("gw1", mon, 9, 70)  # Monday done, and already an hour on Tuesday morning
    patrol("gw1", tue, 5, 65)
    patrol("gw2", mon, 9, 30)  # Monday short
    db.commit()  # gw3: nothing
    ids = list(gw.values())
    month = Period(date(2026, 11, 1), date(2026, 11, 30), "month")

    def both(today: date) -> dict:
        result = patrol_compliance(ids, month, TZ, today)
        begun = month.workdays_begun(today)
        over = [d for d in begun if d < today]
        assert result == patrol_compliance_in_python(ids, month, TZ, over, today if today in begun else None)
        return {name: result[gw[name]] for name in gw}

    # Tuesday 06:00: Monday is over and judged; Tuesday is not over
    assert both(tue) == {"gw0": True, "gw1": True, "gw2": False, "gw3": False}
    # Monday 06:00, the month's first workday: nothing is over; only an hour already patrolled counts
    assert both(mon) == {"gw0": True, "gw1": True, "gw2": None, "gw3": None}
