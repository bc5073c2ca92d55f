"""Points (积分) from the data, the ranking pages and the rulebook, on the test world (PostgreSQL).

October 2026, Asia/Shanghai. The dataset below is small enough to count by hand; the expected points are
written out from the default rulebook (sign-in 1/day, valid report 2, escalation bonus 3, hazard 2,
dispute 2, visit 1, collection 0.01 per record), never read from the module under test.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import date, datetime
from itertools import count

import pytest

from commandcenter.db import db
from commandcenter.measures import Period
from commandcenter.models import AuditLog, BaseDataCount, Case, Person, Place, SettingValue, SignIn, Site, Visit
from commandcenter.points import service
from commandcenter.timeutil import from_local
from tests.conftest import PASSWORD, csrf_from, logged_in
from tests.world import WorldView

pytestmark = [pytest.mark.postgres]

TZ = "Asia/Shanghai"
OCTOBER = Period.month(2026, 10)
_numbers = count(1)


def at(month: int, day: int, hour: int = 10, minute: int = 0) -> datetime:
    """A local time in 2026, as the naive UTC the database stores."""
    return from_local(datetime(2026, month, day, hour, minute), TZ)


def add_case(
    w: WorldView,
    reporter: str,
    *,
    reported: datetime,
    kind: str = "ordinary",
    valid: bool | None = True,
    state: str = "registered",
    closed: datetime | None = None,
    self_handled: bool = False,
    level: str = "grid",
    to_town: bool = False,
    to_city: bool = False,
) -> Case:
    account = w.a(reporter)
    case = Case(
        number=f"PT{next(_numbers):06d}",
        source="app",
        category_id=w.cat("0502").id,
        kind=kind,
        description="测试",
        grid_id=account.place_id,
        village_id=account.village_id,
        town_id=account.town_id,
        reporter_id=account.id,
        state=state,
        level=level,
        valid=valid,
        self_handled=self_handled,
        discovered_at=reported,
        reported_at=reported,
        closed_at=closed,
        escalated_to_town=to_town or to_city,
        escalated_to_city=to_city,
    )
    db.add(case)
    return case


def sign_in(w: WorldView, username: str, *days: date) -> None:
    account = w.a(username)
    for day in days:
        db.add(SignIn(account_id=account.id, town_id=account.town_id, day=day, at=at(day.month, day.day, 8)))


def visit(w: WorldView, username: str, when: datetime, *, person: Person | None = None, site: Site | None = None):
    account = w.a(username)
    db.add(
        Visit(
            gridworker_id=account.id,
            person_id=person.id if person else None,
            site_id=site.id if site else None,
            town_id=account.town_id,
            at=when,
        )
    )


def registry(w: WorldView, village: int, month: str, persons: int, houses: int) -> None:
    place = db.get(Place, w.village(village))
    db.add(
        BaseDataCount(
            place_id=place.id,
            town_id=place.town_id,
            month=month,
            registered_population=persons,
            houses=houses,
            linked_persons=persons // 2,
        )
    )


@pytest.fixture
def w(app, world):
    """The world plus the month of work of `build_month`."""
    view = WorldView(world)
    with app.app_context():
        build_month(view)
        db.remove()
    return view


def build_month(view: WorldView) -> None:
    """The work of October 2026 (and a little around it) whose points EXPECTED_WORKERS counts by hand."""
    d = date
    # sign-ins: gw0 three days in October (and one each in September and November, not counted)
    sign_in(view, "gw0", d(2026, 10, 1), d(2026, 10, 2), d(2026, 10, 31), d(2026, 9, 30), d(2026, 11, 1))
    sign_in(view, "gw2", d(2026, 10, 15))
    sign_in(view, "gw4", d(2026, 10, 8), d(2026, 10, 9))

    # gw0: valid ordinary, hazard and dispute reports → 3 × 2 event + 2 hazard + 2 dispute
    add_case(view, "gw0", reported=at(10, 5))
    add_case(view, "gw0", reported=at(10, 6), kind="hazard")
    add_case(view, "gw0", reported=at(10, 7), kind="dispute", state="closed", closed=at(10, 7, 16))
    # not valid: rejected, not yet registered, duplicate → nothing
    add_case(view, "gw0", reported=at(10, 11), valid=False, state="rejected")
    add_case(view, "gw0", reported=at(10, 12), valid=None, state="reported")
    add_case(view, "gw0", reported=at(10, 13), valid=False, state="duplicate", kind="hazard")
    # self-handled, closed the same local day → 2; closed after midnight local (the same UTC day!) → 0
    add_case(view, "gw0", reported=at(10, 8, 10), state="closed", closed=at(10, 8, 18), self_handled=True)
    add_case(
        view, "gw0", reported=at(10, 9, 23), state="closed", closed=at(10, 10, 0, 30), self_handled=True, kind="hazard"
    )
    # reported in September, escalated to the town and closed there in October → bonus 3, no event points
    add_case(view, "gw0", reported=at(9, 20), state="closed", closed=at(10, 3), level="town", to_town=True)

    # gw1: escalated to the town and closed there → 2 + bonus 3; escalated but still open → 2;
    # escalated only to the village and closed there → 2, no bonus
    add_case(view, "gw1", reported=at(10, 2), state="closed", closed=at(10, 20), level="town", to_town=True)
    add_case(view, "gw1", reported=at(10, 3), state="handling", level="city", to_city=True)
    add_case(view, "gw1", reported=at(10, 4), state="closed", closed=at(10, 5), level="village")
    # escalated to the city, closed in November: no bonus in October (the report itself counts: 2)
    add_case(view, "gw1", reported=at(10, 25), state="closed", closed=at(11, 2), level="city", to_city=True)

    # gw2: a hazard at 23:30 local on 31 October counts; one at 00:30 on 1 November does not
    add_case(view, "gw2", reported=at(10, 31, 23, 30), kind="hazard")
    add_case(view, "gw2", reported=at(11, 1, 0, 30), kind="hazard")
    # gw4 (the other town): one valid report
    add_case(view, "gw4", reported=at(10, 10))

    # visits: gw0 a person and a site, gw3 one person; a visit in November does not count
    grid0, grid3 = db.get(Place, view.grid(0)), db.get(Place, view.grid(3))
    person = Person(
        name="张某",
        person_type="empty_nest_elderly",
        visit_frequency="weekly",
        grid_id=grid0.id,
        village_id=grid0.village_id,
        town_id=grid0.town_id,
    )
    other = Person(
        name="李某",
        person_type="key_youth",
        visit_frequency="monthly",
        grid_id=grid3.id,
        village_id=grid3.village_id,
        town_id=grid3.town_id,
    )
    site = Site(
        name="某出租屋",
        site_type="rental_house",
        visit_frequency="quarterly",
        grid_id=grid0.id,
        village_id=grid0.village_id,
        town_id=grid0.town_id,
    )
    db.add_all([person, other, site])
    db.flush()
    visit(view, "gw0", at(10, 14), person=person)
    visit(view, "gw0", at(10, 15), site=site)
    visit(view, "gw3", at(10, 16), person=other)
    visit(view, "gw3", at(11, 1, 9), person=other)

    # registry: t0v0 grows by 150 persons + 50 houses → 2.00; t0v1 has no September baseline → 0;
    # t1v0 shrinks → 0
    registry(view, 0, "2026-09", 1000, 400)
    registry(view, 0, "2026-10", 1150, 450)
    registry(view, 1, "2026-10", 900, 300)
    registry(view, 2, "2026-09", 500, 200)
    registry(view, 2, "2026-10", 480, 190)
    db.commit()


EXPECTED_WORKERS = {  # (signin, event, escalation_bonus, hazard, dispute, visit) → total
    "gw0": ((3, 8, 3, 2, 2, 2), 20.0),
    "gw1": ((0, 8, 3, 0, 0, 0), 11.0),
    "gw2": ((1, 2, 0, 2, 0, 0), 5.0),
    "gw3": ((0, 0, 0, 0, 0, 1), 1.0),
    "gw4": ((2, 2, 0, 0, 0, 0), 4.0),
    "gw5": ((0, 0, 0, 0, 0, 0), 0.0),
    "gw6": ((0, 0, 0, 0, 0, 0), 0.0),
    "gw7": ((0, 0, 0, 0, 0, 0), 0.0),
}
KINDS = ("signin", "event", "escalation_bonus", "hazard", "dispute", "visit")


def table_rows(html: str, section: str) -> list[dict]:
    """Rows of one ranking table: name, rank, tied, top/bottom mark, the numbers of the cells."""
    match = re.search(rf'<section class="card points-table" id="{section}">(.*?)</section>', html, re.S)
    assert match, f"no table {section}"
    out = []
    for cls, rank, body in re.findall(
        r'<tr class="(\w*)" data-id="\d+" data-rank="(\d+)">(.*?)</tr>', match.group(1), re.S
    ):
        cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", body, re.S)]
        out.append({"where": cls, "rank": int(rank), "tied": "并列" in cells[0], "name": cells[1], "cells": cells})
    return out


# --- the service ---------------------------------------------------------------------------------


def test_gridworker_points_counted_by_hand(app, w):
    with app.app_context():
        result = service.compute(db.get(Place, w.city), OCTOBER)
        by_name = {row["name"]: row for row in result["gridworkers"]}
        assert set(by_name) == set(EXPECTED_WORKERS)
        for name, (values, expected_total) in EXPECTED_WORKERS.items():
            row = by_name[name]
            assert tuple(row["points"][k] for k in KINDS) == values, name
            assert row["points"]["collection"] == 0.0  # gridworkers earn no collection points
            assert row["total"] == expected_total, name
        assert by_name["gw0"]["grid_name"] == db.get(Place, w.grid(0)).name


def test_points_add_up_per_grid_village_and_town(app, w):
    with app.app_context():
        result = service.compute(db.get(Place, w.city), OCTOBER)
        grids = {row["id"]: row["total"] for row in result["grids"]}
        assert [grids[w.grid(i)] for i in range(8)] == [20.0, 11.0, 5.0, 1.0, 4.0, 0.0, 0.0, 0.0]
        villages = {row["id"]: row for row in result["villages"]}
        # t0v0: gw0 + gw1 = 31 plus collection (150 + 50) × 0.01 = 2
        assert villages[w.village(0)]["points"]["collection"] == 2.0
        assert [villages[w.village(i)]["total"] for i in range(4)] == [33.0, 6.0, 4.0, 0.0]
        assert [villages[w.village(i)]["kind"] for i in range(4)] == ["community", "village", "community", "village"]
        towns = {row["id"]: row for row in result["towns"]}
        assert towns[w.town(0)]["total"] == 39.0 and towns[w.town(1)]["total"] == 4.0
        assert towns[w.town(0)]["points"]["collection"] == 2.0
        assert towns[w.town(0)]["points"]["escalation_bonus"] == 6.0
        assert [k["key"] for k in result["kinds"]] == [*KINDS, "collection"]


def test_a_town_sees_only_its_own(app, w):
    with app.app_context():
        result = service.compute(db.get(Place, w.town(1)), OCTOBER)
        assert {row["name"] for row in result["gridworkers"]} == {"gw4", "gw5", "gw6", "gw7"}
        assert {row["id"] for row in result["villages"]} == {w.village(2), w.village(3)}
        assert [row["id"] for row in result["towns"]] == [w.town(1)]


def test_points_of_another_month(app, w):
    with app.app_context():
        result = service.compute(db.get(Place, w.town(0)), Period.month(2026, 11))
        by_name = {row["name"]: row for row in result["gridworkers"]}
        # November: gw0 signed in once; gw1's city case was closed (bonus 3); gw2's hazard (2 + 2); gw3 one visit
        assert by_name["gw0"]["total"] == 1.0
        assert by_name["gw1"]["total"] == 3.0
        assert by_name["gw2"]["total"] == 4.0
        assert by_name["gw3"]["total"] == 1.0


def test_rankings_keep_communities_and_villages_apart(app, w):
    with app.app_context():
        tables = service.rankings(service.compute(db.get(Place, w.city), OCTOBER))
    assert [(r["id"], r["rank"]) for r in tables["community"]["rows"]] == [(w.village(0), 1), (w.village(2), 2)]
    assert [(r["id"], r["rank"]) for r in tables["village"]["rows"]] == [(w.village(1), 1), (w.village(3), 2)]
    # gridworkers: gw5..gw7 share the last place
    workers = tables["gridworkers"]["rows"]
    assert [(r["name"], r["rank"], r["tied"]) for r in workers][-3:] == [
        ("gw5", 6, True),
        ("gw6", 6, True),
        ("gw7", 6, True),
    ]


def test_a_changed_rulebook_changes_the_points(app, w):
    with app.app_context():
        db.add(SettingValue(key="points_rules", value={"event": 5, "visit": 0}))
        db.commit()
        assert service.rulebook()["event"] == 5.0
        result = service.compute(db.get(Place, w.town(0)), OCTOBER)
        by_name = {row["name"]: row for row in result["gridworkers"]}
        assert by_name["gw1"]["points"]["event"] == 20.0  # 4 valid reports × 5
        assert by_name["gw3"]["total"] == 0.0  # visits are worth nothing now


def test_a_bad_stored_rulebook_is_ignored_with_a_warning(app, w, caplog):
    with app.app_context():
        db.add(SettingValue(key="points_rules", value={"event": "很多", "hazard": -3, "visit": 4}))
        db.commit()
        with caplog.at_level(logging.WARNING, logger="commandcenter.points.service"):
            rules = service.rulebook()
        assert rules["event"] == 2.0 and rules["hazard"] == 2.0 and rules["visit"] == 4.0
        assert "event" in caplog.text and "hazard" in caplog.text
        db.get(SettingValue, "points_rules").value = ["not", "an", "object"]
        db.commit()
        assert service.rulebook()["event"] == 2.0


# --- the page ------------------------------------------------------------------------------------


def test_city_page_shows_rankings_with_ties(client, w):
    logged_in(client, "city_supervisor")
    response = client.get("/points/?month=2026-10")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "积分排名 · 测试市 · 2026年10月" in html
    towns = table_rows(html, "rank-towns")
    assert [(r["name"], r["rank"], r["cells"][-2]) for r in towns] == [
        ("东湖街道", 1, "39.00"),
        ("西湖街道", 2, "4.00"),
    ]
    community = table_rows(html, "rank-community")
    assert [r["name"] for r in community] == ["东湖南社区", "西湖南社区"]
    assert community[0]["cells"][2] == "东湖街道"  # the town column of the city view
    assert table_rows(html, "rank-village")[0]["name"] == "东湖北社区"
    workers = table_rows(html, "rank-gridworkers")
    # the city view lists only the top and bottom three gridworkers; gw5..gw7 tie for 6th
    assert [(r["name"], r["rank"], r["where"]) for r in workers] == [
        ("gw0", 1, "top"),
        ("gw1", 2, "top"),
        ("gw2", 3, "top"),
        ("gw5", 6, "bottom"),
        ("gw6", 6, "bottom"),
        ("gw7", 6, "bottom"),
    ]
    assert all(r["tied"] for r in workers[3:]) and not any(r["tied"] for r in workers[:3])
    # the chart: one stacked bar per town, its data in a JSON block, drawn by points.js (no inline script)
    data = json.loads(
        re.search(r'<script type="application/json" id="points-chart-data">(.*?)</script>', html, re.S).group(1)
    )
    assert data["names"] == ["东湖街道", "西湖街道"] and data["totals"] == [39.0, 4.0]
    assert len(data["kinds"]) == 7
    assert "js/points.js" in html and "vendor/plotly-basic.min.js" in html
    assert "<script>" not in html


def test_town_page_lists_its_villages_grids_and_gridworkers(client, w):
    logged_in(client, "town0_supervisor")
    html = client.get("/points/?month=2026-10").get_data(as_text=True)
    assert "西湖" not in html
    assert 'id="rank-towns"' not in html
    assert [(r["name"], r["cells"][-2]) for r in table_rows(html, "rank-community")] == [("东湖南社区", "33.00")]
    assert [(r["name"], r["cells"][-2]) for r in table_rows(html, "rank-village")] == [("东湖北社区", "6.00")]
    workers = table_rows(html, "rank-gridworkers")
    assert [(r["name"], r["rank"], r["where"]) for r in workers] == [
        ("gw0", 1, "top"),
        ("gw1", 2, "top"),
        ("gw2", 3, "top"),
        ("gw3", 4, "bottom"),
    ]
    gw0 = workers[0]["cells"]
    # rank, name, grid, signin, event, escalation, hazard, dispute, visit, collection, total, mark
    assert gw0[3:11] == ["3.00", "8.00", "3.00", "2.00", "2.00", "2.00", "0.00", "20.00"]
    assert "前三名" in workers[0]["cells"][-1] and "后三名" in workers[3]["cells"][-1]
    assert len(table_rows(html, "rank-grids")) == 4


def test_ranking_by_one_kind_of_points(client, w):
    logged_in(client, "town0_supervisor")
    html = client.get("/points/?month=2026-10&kind=visit").get_data(as_text=True)
    workers = table_rows(html, "rank-gridworkers")
    assert [(r["name"], r["rank"], r["tied"]) for r in workers] == [
        ("gw0", 1, False),
        ("gw3", 2, False),
        ("gw1", 3, True),
        ("gw2", 3, True),
    ]
    assert "按走访积分排名" in html


def test_a_city_account_narrows_to_a_town_but_a_town_cannot_reach_another(client, w):
    logged_in(client, "city_leader")
    html = client.get(f"/points/?month=2026-10&place={w.town(1)}").get_data(as_text=True)
    assert [r["name"] for r in table_rows(html, "rank-gridworkers")] == ["gw4", "gw5", "gw6", "gw7"]
    client2 = client.application.test_client()
    logged_in(client2, "town0_admin")
    assert client2.get(f"/points/?month=2026-10&place={w.town(1)}").status_code == 404
    assert client2.get(f"/points/?month=2026-10&place={w.village(2)}").status_code == 404
    assert client2.get(f"/points/?month=2026-10&place={w.village(1)}").status_code == 200


def test_a_village_account_sees_its_village(client, w):
    logged_in(client, "village0_admin")
    html = client.get("/points/?month=2026-10").get_data(as_text=True)
    assert [r["name"] for r in table_rows(html, "rank-gridworkers")] == ["gw0", "gw1"]
    assert 'id="rank-community"' not in html


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("month=2026-13", "month"),
        ("month=26-10", "month"),
        ("month=abc", "month"),
        ("kind=bonus", "kind"),
        ("place=x", "place"),
    ],
)
def test_a_bad_query_answers_400_naming_the_field(client, w, query, field):
    logged_in(client, "city_supervisor")
    response = client.get(f"/points/?{query}")
    assert response.status_code == 400
    assert f"参数 {field}" in response.get_data(as_text=True)


def test_a_grid_is_not_a_ranking_scope(client, w):
    logged_in(client, "city_supervisor")
    response = client.get(f"/points/?place={w.grid(0)}")
    assert response.status_code == 400 and "参数 place" in response.get_data(as_text=True)


def test_an_empty_month_shows_empty_tables(client, w):
    logged_in(client, "city_supervisor")
    html = client.get("/points/?month=2025-01").get_data(as_text=True)
    towns = table_rows(html, "rank-towns")
    assert [(r["rank"], r["tied"], r["cells"][-2]) for r in towns] == [(1, True, "0.00"), (1, True, "0.00")]


@pytest.mark.parametrize("username", ["gw0", "city_admin", "city_operator", "dept0", "city_auditor"])
def test_other_roles_are_refused(client, w, username):
    logged_in(client, username)
    assert client.get("/points/").status_code == 403


# --- the rulebook page ---------------------------------------------------------------------------


def test_admin_edits_the_rulebook(app, client, w):
    logged_in(client, "city_admin")
    page = client.get("/points/rules")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "积分规则" in html and "流转办结加分" in html and 'value="0.01"' in html
    form = {
        "signin": "1",
        "event": "5",
        "escalation_bonus": "3",
        "hazard": "2",
        "dispute": "2",
        "visit": "1.5",
        "collection": "0.02",
        "csrf_token": csrf_from(html),
    }
    response = client.post("/points/rules", data=form)
    assert response.status_code == 302
    assert "积分规则已保存" in client.get("/points/rules").get_data(as_text=True)
    with app.app_context():
        stored = db.get(SettingValue, "points_rules")
        assert stored.value["event"] == 5.0 and stored.value["visit"] == 1.5
        assert stored.updated_by_id == w.id("city_admin")
        assert db.query(AuditLog).filter_by(action="points.rules", success=True).count() == 1
        rules = service.rulebook()
        by_name = {r["name"]: r for r in service.compute(db.get(Place, w.town(0)), OCTOBER, rules)["gridworkers"]}
        assert by_name["gw0"]["points"]["event"] == 20.0 and by_name["gw0"]["points"]["visit"] == 3.0
        db.remove()
    # the supervisor's page now counts with the new values
    client2 = app.test_client()
    logged_in(client2, "town0_supervisor")
    workers = table_rows(client2.get("/points/?month=2026-10").get_data(as_text=True), "rank-gridworkers")
    assert workers[0]["name"] == "gw0" and workers[0]["cells"][4] == "20.00"


def test_rulebook_errors_name_the_field_and_store_nothing(app, client, w):
    logged_in(client, "city_admin")
    token = csrf_from(client.get("/points/rules").get_data(as_text=True))
    form = {
        "signin": "1",
        "event": "-1",
        "escalation_bonus": "abc",
        "hazard": "2",
        "dispute": "2",
        "visit": "",
        "collection": "0.01",
        "csrf_token": token,
    }
    response = client.post("/points/rules", data=form)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "事件积分：不能为负数" in html and "流转办结加分：须为数字" in html and "走访积分：请填写数值" in html
    assert re.search(r'id="rule-event" name="event"[^>]*value="-1"', html)  # kept as typed
    assert re.search(r'id="rule-event"[^>]*aria-invalid="true"', html)
    with app.app_context():
        assert db.get(SettingValue, "points_rules") is None


def test_rulebook_reset_to_defaults(app, client, w):
    with app.app_context():
        db.add(SettingValue(key="points_rules", value={"event": 9}))
        db.commit()
        db.remove()
    logged_in(client, "city_admin")
    token = csrf_from(client.get("/points/rules").get_data(as_text=True))
    assert client.post("/points/rules", data={"reset": "1", "csrf_token": token}).status_code == 302
    with app.app_context():
        assert db.get(SettingValue, "points_rules").value["event"] == 2.0


def test_rulebook_needs_csrf_and_the_admin(client, w):
    logged_in(client, "city_admin")
    assert client.post("/points/rules", data={"event": "5"}).status_code == 400
    other = client.application.test_client()
    logged_in(other, "city_supervisor")
    assert other.get("/points/rules").status_code == 403
    token = csrf_from(other.get("/points/?month=2026-10").get_data(as_text=True))
    assert other.post("/points/rules", data={"event": "5", "csrf_token": token}).status_code == 403


@pytest.mark.browser
@pytest.mark.live
def test_the_chart_draws_under_the_csp(w, live_server, page):
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto(live_server.url + "/login")
    page.fill("#username", "town0_supervisor")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(live_server.url + "/")
    page.click("nav.mainnav >> text=积分排名")
    page.wait_for_url(re.compile(r".*/points/$"))
    page.goto(live_server.url + "/points/?month=2026-10")
    page.wait_for_selector("#points-chart .main-svg")
    # one bar per village and kind of points with a value: 东湖南社区 and 东湖北社区 on the y axis
    labels = page.locator("#points-chart .ytick text").all_text_contents()
    assert sorted(labels) == ["东湖北社区", "东湖南社区"]
    assert page.locator("#points-chart .legendtext").count() == 7
    page.select_option("select[name=kind]", "visit")
    page.click("text=查询")
    page.wait_for_url(re.compile(r".*kind=visit.*"))
    first = page.locator("#rank-gridworkers tbody tr").first
    assert "gw0" in first.inner_text() and "前三名" in first.inner_text()
    assert problems == [] and page.outside_requests == []


def test_a_tie_as_wide_as_the_city_is_not_printed_name_by_name(client, w):
    """Early in a month every gridworker has 0 points: all of them are "the top three". The city page
    shows ten of them and says how many more share that place, instead of a table of every gridworker."""
    from commandcenter.accounts import create_account
    from commandcenter.models import Account

    grid = db.get(Place, w.grid(0))
    password_hash = db.query(Account).filter_by(username="gw0").one().password_hash
    for i in range(14):
        create_account(
            username=f"tiegw{i:02d}",
            display_name=f"并列网格员{i}",
            password="",
            role="gridworker",
            place=grid,
            password_hash=password_hash,
            post="full_time",
        )
    db.commit()
    db.remove()
    logged_in(client, "city_supervisor")
    html = client.get("/points/?month=2026-01").get_data(as_text=True)  # a month without any data: 22 tied
    workers = table_rows(html, "rank-gridworkers")
    assert len(workers) == 10 and all(r["rank"] == 1 and r["tied"] and r["where"] == "top" for r in workers)
    assert "另有 12 名与上一行并列，未逐一列出" in html
