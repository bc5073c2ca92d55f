"""The demo district: its geography, the loader (SQLite and PostgreSQL) and the simulator's ticks."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from datetime import datetime, timedelta

import pytest
import shapely
from shapely.geometry import Point, shape
from sqlalchemy import func, select

from commandcenter.demo.geography import build_geography

SEED = 20261123
SMALL = 0.05
# a fixed "now" keeps the loaded history independent of the wall clock: Friday 2026-11-20, 11:00 local
NOW = datetime(2026, 11, 20, 3, 0, 0)
NOW_LOCAL_MONTH, NOW_LOCAL_PREVIOUS_MONTH = "2026-11", "2026-10"
OPEN = ("reported", "registered", "dispatched", "handling", "feedback")


# --- geography (pure) ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def geo():
    return build_geography(SEED, SMALL)


def _max_overlap(polys) -> float:
    tree = shapely.STRtree(polys)
    worst = 0.0
    for i, p in enumerate(polys):
        for j in tree.query(p, predicate="intersects"):
            if j > i:
                worst = max(worst, p.intersection(polys[int(j)]).area)
    return worst


def test_geography_sizes(geo):
    assert len(geo.towns) >= 2
    assert len(geo.villages) >= 2 * len(geo.towns)
    assert 4 <= len(geo.grids) / len(geo.villages) <= 7
    assert {t.kind for t in geo.towns} <= {"town", "street", "township"}
    assert {v.kind for v in geo.villages} == {"community", "village"}
    assert {g.kind for g in geo.grids} == {"comprehensive", "dedicated"}
    dedicated = [g for g in geo.grids if g.kind == "dedicated"]
    assert all(g.name.endswith("专属网格") and g.subject for g in dedicated)
    assert len({p.name for p in geo.towns + geo.villages}) == len(geo.towns) + len(geo.villages)
    assert sum(t.population for t in geo.towns) == geo.district.population
    for t in geo.towns:
        assert sum(v.population for v in geo.villages_of(t.index)) == t.population
    for v in geo.villages:
        assert sum(g.population for g in geo.grids_of(v.index)) == v.population


@pytest.mark.slow
def test_full_scale_sizes():
    full = build_geography(SEED, 1.0)
    assert len(full.towns) == 17
    assert 235 <= len(full.villages) <= 245
    assert len(full.grids) >= 1300
    share = sum(v.kind == "community" for v in full.villages) / len(full.villages)
    assert 0.45 <= share <= 0.65
    dedicated = sum(g.kind == "dedicated" for g in full.grids) / len(full.grids)
    assert 0.10 <= dedicated <= 0.20
    linked = sum(g.beat is not None for g in full.grids) / len(full.grids)
    assert 0.85 <= linked <= 0.95
    assert 600_000 <= full.district.population <= 700_000


def test_polygons_valid_and_disjoint(geo):
    for level in (geo.towns, geo.villages, geo.grids):
        polys = [a.polygon for a in level]
        assert all(p.geom_type == "Polygon" and p.is_valid and p.area > 0 for p in polys)
        assert _max_overlap(polys) < 1e-12
    # the pieces tile the district
    assert abs(sum(g.polygon.area for g in geo.grids) - geo.district.polygon.area) < 1e-9


def test_children_inside_parents(geo):
    for g in geo.grids:
        assert g.polygon.difference(geo.villages[g.village].polygon).area < 1e-12
        assert g.town == geo.villages[g.village].town
    for v in geo.villages:
        assert v.polygon.difference(geo.towns[v.town].polygon).area < 1e-12


def test_geojson_is_what_was_checked(geo):
    for g in geo.grids:
        gj = g.geojson()
        assert gj["type"] == "Polygon"
        ring = gj["coordinates"][0]
        assert ring[0] == ring[-1]
        assert all(len(str(c).split(".")[-1]) <= 6 for pt in ring for c in pt)
        assert shape(gj).equals(g.polygon)
        lat, lon = g.center
        assert g.polygon.contains(Point(lon, lat)) or g.polygon.distance(Point(lon, lat)) < 1e-6


def test_codes(geo):
    codes = [g.code for g in geo.grids]
    assert len(set(codes)) == len(codes)
    assert all(re.fullmatch(r"\d{15}", c) for c in codes)
    for g in geo.grids:
        assert g.code.startswith(geo.villages[g.village].code)
    for v in geo.villages:
        assert re.fullmatch(r"\d{12}", v.code) and v.code.startswith(geo.towns[v.town].code)
        assert int(v.code[-3:]) < 200 if v.kind == "community" else int(v.code[-3:]) > 200
        serials = sorted(int(g.code[-3:]) for g in geo.grids_of(v.index))
        assert serials == list(range(1, len(serials) + 1))
    for t in geo.towns:
        assert re.fullmatch(r"\d{9}", t.code) and t.code.startswith(geo.district.code)


def test_grid_numbering_reads_north_to_south(geo):
    """Within a village, the first grid lies north of (or level with) the last."""
    for v in geo.villages:
        grids = sorted(geo.grids_of(v.index), key=lambda g: g.code)
        if len(grids) >= 4:
            assert grids[0].center[0] >= grids[-1].center[0] - 1e-9


def test_police_beats(geo):
    for b in geo.beats:
        assert b.grids, b
        assert len(b.grids) <= 4
        assert all(geo.grids[gi].town == b.town for gi in b.grids)
        assert all(geo.grids[gi].beat == b.index for gi in b.grids)


def test_deterministic(geo):
    again = build_geography(SEED, SMALL)
    assert [g.code for g in again.grids] == [g.code for g in geo.grids]
    assert [g.name for g in again.grids] == [g.name for g in geo.grids]
    assert all(a.polygon.equals_exact(b.polygon, 0) for a, b in zip(again.grids, geo.grids, strict=False))
    other = build_geography(SEED + 1, SMALL)
    assert [g.polygon.wkt for g in other.grids] != [g.polygon.wkt for g in geo.grids]


# --- the loader on SQLite -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sqlite_app(tmp_path_factory):
    from commandcenter import create_app
    from commandcenter.db import Base, db, get_engine
    from commandcenter.settings import Settings

    tmp = tmp_path_factory.mktemp("demo")
    settings = Settings.from_env(
        database_url=f"sqlite:///{tmp / 'demo.db'}",
        testing=True,
        instance_path=tmp,
        upload_dir=tmp / "uploads",
        redis_url=None,
    )
    app = create_app(settings)
    with app.app_context():
        Base.metadata.create_all(get_engine())
        from commandcenter.demo.loader import load_demo

        summary = load_demo(seed=SEED, scale=SMALL, now=NOW)
        db.remove()
    app.config["DEMO_SUMMARY"] = summary
    yield app
    from commandcenter import db as dbmod

    db.remove()
    if dbmod._engine is not None and str(dbmod._engine.url) == settings.database_url:
        dbmod._engine.dispose()


@pytest.fixture
def sctx(sqlite_app):
    from commandcenter.db import db, init_engine

    init_engine(sqlite_app.config["SETTINGS"].database_url)  # other tests may have bound another database
    with sqlite_app.app_context():
        yield sqlite_app
        db.rollback()
        db.remove()


def _check_loaded(summary: dict) -> None:
    """Consistency checks shared by the SQLite and PostgreSQL runs."""
    from commandcenter.db import db
    from commandcenter.models import (
        Account,
        BaseDataCount,
        Case,
        CaseStep,
        Center,
        Dispute,
        Patrol,
        Person,
        Place,
        SignIn,
        Visit,
    )

    count = lambda model: db.execute(select(func.count()).select_from(model)).scalar()  # noqa: E731
    assert count(Case) == summary["事件"] > 0
    assert count(CaseStep) == summary["处理步骤"]
    assert count(Place) == 1 + summary["镇街"] + summary["村社"] + summary["网格"]

    places = {p.id: p for p in db.execute(select(Place)).scalars()}
    city = next(p for p in places.values() if p.level == "city")
    for p in places.values():
        assert p.city_id == city.id
        if p.level == "town":
            assert p.town_id == p.id and p.parent_id == city.id and p.village_id is None
        elif p.level == "village":
            assert p.village_id == p.id and p.town_id == p.parent.id == places[p.parent_id].town_id
        elif p.level == "grid":
            parent = places[p.parent_id]
            assert parent.level == "village" and p.village_id == parent.id and p.town_id == parent.town_id
            assert len(p.code) == 15 and p.geometry["type"] == "Polygon"
    shapes = {pid: shape(p.geometry) for pid, p in places.items() if p.level == "grid"}

    # accounts copy their place's ancestors; all demo accounts share the password and need no change
    from commandcenter.security import verify_password

    accounts = db.execute(select(Account)).scalars().all()
    by_name = {a.username: a for a in accounts}
    for username in (
        "admin",
        "secadmin",
        "auditor",
        "duty",
        "operator1",
        "operator2",
        "supervisor",
        "leader",
        "town01_admin",
        "town01_sup",
        "town01_duty",
        "v001_admin",
        "dept01",
        "gw0001",
        "vol001",
    ):
        assert username in by_name, username
    assert verify_password(by_name["gw0001"].password_hash, "Demo@2026")
    assert len({a.password_hash for a in accounts}) == 1
    assert not any(a.must_change_password for a in accounts)
    for a in accounts:
        place = places[a.place_id]
        assert (a.town_id, a.village_id) == (place.town_id, place.village_id), a.username
    assert by_name["gw0001"].role == "gridworker" and places[by_name["gw0001"].place_id].level == "grid"
    assert {"grid_chief", "full_time", "part_time"} <= {a.post for a in accounts if a.role == "gridworker"}

    # cases: inside their grid, copies of the grid's ancestors, a number each
    cases = db.execute(select(Case)).scalars().all()
    assert len({c.number for c in cases}) == len(cases)
    for c in cases:
        grid = places[c.grid_id]
        assert grid.level == "grid" and (c.village_id, c.town_id) == (grid.village_id, grid.town_id)
        assert shapes[c.grid_id].contains(Point(c.lon, c.lat)), c.number
        assert re.fullmatch(r"SJ\d{15}", c.number)
        assert c.discovered_at <= c.reported_at
    kinds = Counter(c.kind for c in cases)
    assert kinds["ordinary"] > kinds["hazard"] > kinds["dispute"] > 0
    assert {"app", "hotline", "center"} <= {c.source for c in cases}
    assert all(c.external_ref for c in cases if c.source == "hotline")
    assert all(c.reporter_center_id for c in cases if c.source == "center")
    closed = sum(c.state == "closed" for c in cases)
    assert closed / len(cases) > 0.8
    assert 0 < sum(c.overdue for c in cases) / len(cases) < 0.1
    centers = {c.id: c for c in db.execute(select(Center)).scalars()}
    for c in cases:
        if c.escalated_by_center_id:
            assert c.escalated_to_city and centers[c.escalated_by_center_id].place_id == c.town_id
        if c.state == "duplicate":
            original = db.get(Case, c.duplicate_of_id)
            assert original.reported_at < c.reported_at and original.state not in ("rejected", "duplicate")
        if c.self_handled:
            assert c.state == "closed" and c.closed_at.date() >= c.reported_at.date()
        if c.outstanding:
            assert c.state == "closed" and len(c.outstanding_story) > 30

    # every timeline starts with the report and ends in the case's state, each step from where the last left
    steps = defaultdict(list)
    for s in db.execute(select(CaseStep).order_by(CaseStep.id)).scalars():
        steps[s.case_id].append(s)
    for c in cases:
        chain = steps[c.id]
        assert chain and chain[0].action == "report" and chain[0].from_state is None, c.number
        state, level, at = "reported", "grid", chain[0].at
        for s in chain[1:]:
            assert s.at >= at, (c.number, s.action)
            assert s.from_state == state, (c.number, s.action, s.from_state, state)
            if s.from_level is not None:
                assert s.from_level == level, (c.number, s.action)
            state, level, at = s.to_state, s.to_level or level, s.at
        assert state == c.state and level == c.level, c.number
        if c.overdue:
            assert any(s.action == "overdue" for s in chain)

    disputes = {d.case_id: d for d in db.execute(select(Dispute)).scalars()}
    dispute_cases = [c for c in cases if c.kind == "dispute"]
    assert set(disputes) == {c.id for c in dispute_cases}
    assert all(d.screening_level in ("grid", "village", "town") for d in disputes.values())
    assert all(
        d.outcome in ("resolved", "unresolved")
        for d in disputes.values()
        if next(c for c in dispute_cases if c.id == d.case_id).state == "closed"
    )

    # patrols lie in their grid; sign-ins once a day
    for p in db.execute(select(Patrol).limit(300)).scalars():
        assert p.track and all(shapes[p.grid_id].contains(Point(x, y)) for x, y, _ in p.track)
        assert p.ended_at is None or p.ended_at > p.started_at
    pairs = db.execute(select(SignIn.account_id, SignIn.day)).all()
    assert len(pairs) == len(set(pairs))
    assert count(Person) > 0 and count(Visit) > 0

    # person-house linkage: exactly one village is above 100 % (the data-quality flag has something to flag)
    over = [b for b in db.execute(select(BaseDataCount)).scalars() if b.linked_persons > b.registered_population]
    assert len({b.place_id for b in over}) == 1
    assert all(1.0 < b.linked_persons / b.registered_population < 1.03 for b in over)
    # registered population is not the census figure
    census = {p.id: p.population for p in places.values()}
    rows = db.execute(select(BaseDataCount)).scalars().all()
    assert {b.month for b in rows} == {NOW_LOCAL_PREVIOUS_MONTH, NOW_LOCAL_MONTH}
    assert sum(b.registered_population != census[b.place_id] for b in rows) > len(rows) * 0.9

    # every generated step is one the loop allows from the state it leaves (ALLOWED_FROM)
    from commandcenter.cases.loop import ALLOWED_FROM

    for c in cases:
        for s in steps[c.id][1:]:
            if s.action in ALLOWED_FROM:
                assert s.from_state in ALLOWED_FROM[s.action], (c.number, s.action, s.from_state)
            else:
                assert s.action in ("overdue", "dispatch_overdue", "escalate_overdue", "auto_reject", "merge"), (
                    c.number,
                    s.action,
                )

    # alerts were raised at their own moments through the history, not all at once when the server started
    from commandcenter.alerts import due_alerts
    from commandcenter.models import Alert

    alerts = db.execute(select(Alert)).scalars().all()
    assert alerts and len({a.raised_at.date() for a in alerts}) > 10
    by_case = {c.id: c for c in cases}
    for a in alerts:
        case = by_case[a.case_id]
        assert case.reported_at <= a.raised_at <= NOW, a.kind
        if a.kind == "overdue":
            assert case.overdue and a.raised_at >= case.overdue_at
        if a.cleared_at is not None:
            assert a.cleared_at >= a.raised_at
    # what the sweep would raise now exists already (nothing new when the server starts)
    have = {(a.case_id, a.kind) for a in alerts}
    for c in cases:
        for kind, _ in due_alerts(c, NOW):
            assert (c.id, kind) in have, (c.number, kind)
    # open alerts belong to open cases
    assert all(by_case[a.case_id].state in OPEN for a in alerts if a.cleared_at is None)


def test_load_on_sqlite(sctx):
    summary = sctx.config["DEMO_SUMMARY"]
    assert summary["镇街"] >= 2 and summary["网格"] > 0 and "Demo@2026" in summary["演示登录"]
    _check_loaded(summary)


def test_login_rates_differ_between_towns(sctx):
    from commandcenter.db import db
    from commandcenter.models import Account, LoginRecord, Place
    from commandcenter.timeutil import month_bounds_utc

    start, _ = month_bounds_utc(2026, 11)
    rates = []
    for town in db.execute(select(Place).where(Place.level == "town")).scalars():
        admins = (
            db.execute(select(Account.id).where(Account.role == "center_admin", Account.town_id == town.id))
            .scalars()
            .all()
        )
        logged = db.execute(
            select(func.count(func.distinct(LoginRecord.account_id))).where(
                LoginRecord.account_id.in_(admins), LoginRecord.success.is_(True), LoginRecord.at >= start
            )
        ).scalar()
        rates.append(logged / len(admins))
    assert max(rates) == 1.0
    assert min(rates) < 0.5


def test_online_now_and_heartbeats(sctx):
    from commandcenter.db import db
    from commandcenter.models import Account, Heartbeat

    online = db.execute(
        select(func.count())
        .select_from(Account)
        .where(Account.role == "gridworker", Account.last_seen_at >= NOW - timedelta(minutes=5))
    ).scalar()
    total = db.execute(select(func.count()).select_from(Account).where(Account.role == "gridworker")).scalar()
    assert 0.5 < online / total < 1.0  # 11 o'clock on a Friday: most are out in their grids
    oldest = db.execute(select(func.min(Heartbeat.at))).scalar()
    assert oldest >= NOW - timedelta(hours=2, minutes=1)


def test_second_load_refused_and_force_reloads(sctx):
    from commandcenter.db import db
    from commandcenter.demo.loader import DemoError, load_demo
    from commandcenter.models import Case, Category

    with pytest.raises(DemoError):
        load_demo(seed=SEED, scale=0.02, now=NOW)
    categories = db.execute(select(func.count()).select_from(Category)).scalar()
    summary = load_demo(seed=SEED + 1, scale=0.02, force=True, now=NOW)
    assert db.execute(select(func.count()).select_from(Case)).scalar() == summary["事件"]
    assert db.execute(select(func.count()).select_from(Category)).scalar() == categories
    _check_loaded(summary)


# --- the simulator's ticks ---------------------------------------------------------------------------


def test_simulator_ticks(sctx):
    from commandcenter.db import db
    from commandcenter.demo.simulator import Simulator
    from commandcenter.models import Case, CaseStep, Heartbeat, Patrol, SignIn
    from commandcenter.timeutil import from_local

    sim = Simulator(seed=7, speed=1.0)
    assert sim.load()
    morning = from_local(datetime(2026, 11, 23, 8, 50))  # a Monday, after the loaded history
    before = db.execute(select(func.count()).select_from(Case)).scalar()

    counts = sim.tick_sign_ins(morning, 3600)
    assert counts.sign_ins > 0
    again = sim.tick_sign_ins(morning + timedelta(minutes=1), 3600)
    assert counts.sign_ins + again.sign_ins <= len(sim.workers)
    signed = db.execute(select(SignIn.account_id, SignIn.day)).all()
    assert len(signed) == len(set(signed))

    from commandcenter import heartbeats

    assert sim.tick_heartbeats(morning, 600).heartbeats > 0
    # through the app's path: to the live state, and to the database at the next persist run (issue 15 §2)
    heartbeats.persist(now=morning + timedelta(minutes=5))
    assert db.execute(select(func.max(Heartbeat.at))).scalar() == morning

    started = sim.tick_patrols(morning + timedelta(hours=1), 4 * 3600).patrols_started
    assert started > 0
    # while they patrol, their heartbeats (through fieldwork.heartbeat, as the app's) follow their route: the
    # points move on the wall's map
    walker = next(iter(sim.routes))
    here = sim.position(walker, morning + timedelta(hours=1, minutes=10))
    there = sim.position(walker, morning + timedelta(hours=1, minutes=40))
    assert here != there and all(v is not None for v in (*here, *there))
    sim.online = set(sim.routes)
    assert sim.tick_heartbeats(morning + timedelta(hours=1, minutes=10), 3600).heartbeats > 0
    from commandcenter import counters, jobs

    walked = counters.live_trails(jobs.counters_redis(), [walker], morning + timedelta(hours=1))
    assert walked and walked[walker][0][1:] == pytest.approx(here[::-1])  # (lat, lon) of his route
    ended = sim.tick_patrols(morning + timedelta(hours=4), 60).patrols_ended
    assert ended >= started
    done = db.execute(select(Patrol).where(Patrol.started_at == morning + timedelta(hours=1))).scalars().all()
    assert done and all(p.ended_at and len(p.track) >= 8 for p in done)

    assert sim.tick_logins(morning, 3600).logins >= 0

    reports = 0
    for i in range(4):
        reports += sim.tick_reports(morning + timedelta(hours=1, minutes=i), 3 * 3600).reports
    assert reports > 0
    new = db.execute(select(Case).where(Case.reported_at >= morning)).scalars().all()
    assert len(new) == db.execute(select(func.count()).select_from(Case)).scalar() - before
    for c in new:
        first = db.execute(select(CaseStep).where(CaseStep.case_id == c.id).order_by(CaseStep.id)).scalars().first()
        assert first.action == "report"
    moved = 0
    for i in range(6):
        moved += sim.tick_advance(morning + timedelta(hours=2, minutes=10 * i), 3600).steps
    assert moved > 0
    db.remove()


def test_run_simulator_stops(sctx):
    import threading

    from commandcenter.demo.simulator import run_simulator

    stop = threading.Event()
    stop.set()
    totals = run_simulator(sctx, speed=10, stop_event=stop)
    assert totals.reports == 0
    totals = run_simulator(sctx, speed=60, duration=1.5, tick_seconds=0.2)
    assert totals.total() >= 0


# --- the loader on PostgreSQL (the conftest's migrated database) -------------------------------------------


@pytest.mark.postgres
def test_load_on_postgresql(ctx):
    from commandcenter.db import db
    from commandcenter.demo.loader import load_demo
    from commandcenter.models import Place

    summary = load_demo(seed=SEED, scale=0.03, now=NOW)
    _check_loaded(summary)
    # the id sequences were moved past the ids the loader chose
    top = db.execute(select(func.max(Place.id))).scalar()
    extra = Place(code="999999", name="新增测试地点", level="town", kind="town")
    db.add(extra)
    db.flush()
    assert extra.id > top
    db.rollback()


def test_last_month_is_whole_and_no_indicator_is_zero_for_every_town(sctx):
    """Issue 12 §5: the demo's history starts on the first of last month, so the default assessment month is
    complete: no indicator scores 0 in every town, and the figures the bulletin prints for it are there."""
    from commandcenter.assessment import service
    from commandcenter.db import db
    from commandcenter.measures import Period
    from commandcenter.models import PartyActivity, Patrol, Place

    october = Period.month(2026, 10)
    from commandcenter.timeutil import local
    from commandcenter.workcalendar import is_workday

    first_patrol = local(db.execute(select(func.min(Patrol.started_at))).scalar()).date()
    assert first_patrol == next(d for d in october.days() if is_workday(d))  # 10-08: after the National Day week
    city = db.execute(select(Place).where(Place.level == "city")).scalar_one()
    table, figures = service.compute(city, october)
    keys = table["rows"][0]["scores"].keys()
    for key in keys:
        assert any(row["scores"][key] > 0 for row in table["rows"]), f"indicator {key} is 0 in every town"
    for town_id, fig in figures.items():
        assert fig.gridworkers > 0 and fig.patrol_compliant > 0, town_id
    # party activities fall in every month of the history, not only this one
    held = {d.strftime("%Y-%m") for (d,) in db.execute(select(PartyActivity.held_on))}
    assert {"2026-10", "2026-11"} <= held
    from commandcenter import stats

    october_city = stats.figures(city, october)
    assert october_city.registered_population > 0
    assert 0.5 < october_city.special_visit_rate <= 1.0 and october_city.special_visit_rate != 0.4


def test_disputes_come_in_the_published_proportions(sctx):
    """One district screened 590 disputes in a month of ~33,000 events (about 1.8 %) and resolved 98.8 %."""
    from commandcenter.db import db
    from commandcenter.models import Case, Dispute

    # the gridworkers' reports (at this small scale the centers' own reports, mostly disputes, weigh more than in
    # the full district, where they add about 150 to the month's ~460)
    kinds = [k for (k,) in db.execute(select(Case.kind).where(Case.source == "app"))]
    share = sum(k == "dispute" for k in kinds) / len(kinds)
    assert 0.008 < share < 0.025, share
    outcomes = [o for (o,) in db.execute(select(Dispute.outcome).join(Case, Case.id == Dispute.case_id))]
    settled = [o for o in outcomes if o in ("resolved", "unresolved")]
    assert settled and sum(o == "resolved" for o in settled) / len(settled) > 0.95
