"""The monthly assessment from the data (PostgreSQL): figures counted by hand on a small month of the test
world, the page, the JSON, closing and freezing a month, the rules page, and who sees what."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from itertools import count

import pytest

from commandcenter.assessment import rules as R
from commandcenter.assessment import service
from commandcenter.db import db
from commandcenter.measures import Period
from commandcenter.models import AssessmentMonth, AuditLog, Case, Category, Patrol, Person, Place, SettingValue, Visit
from commandcenter.timeutil import from_local
from tests.conftest import PASSWORD, csrf_from, logged_in

pytestmark = pytest.mark.postgres

MONTH = "2026-10"
PERIOD = Period.month(2026, 10)
_numbers = count(1)


def html(response) -> str:
    return response.get_data(as_text=True)


def category(kind: str) -> Category:
    return db.query(Category).filter(Category.kind == kind, Category.depth >= 2).order_by(Category.id).first()


def add_case(
    world,
    grid: int,
    *,
    kind: str = "ordinary",
    reporter: str | None = None,
    center: str | None = None,
    at: datetime | None = None,
    state: str = "registered",
    overdue: bool = False,
    escalated_by: str | None = None,
) -> Case:
    """A case straight into the table (the loop is tested elsewhere); `at` is local time."""
    g = world.grids[grid]
    local_at = at or datetime(2026, 10, 15, 10, 0)
    utc = from_local(local_at, "Asia/Shanghai")
    case = Case(
        number=f"T{next(_numbers):07d}",
        source="center" if center else "app",
        category_id=category(kind).id,
        kind=kind,
        description="测试事件",
        grid_id=g.id,
        village_id=g.village_id,
        town_id=g.town_id,
        reporter_id=world.accounts[reporter].id if reporter else None,
        reporter_center_id=world.centers[center].id if center else None,
        escalated_by_center_id=world.centers[escalated_by].id if escalated_by else None,
        state=state,
        valid=state not in ("rejected", "duplicate"),
        overdue=overdue,
        discovered_at=utc,
        reported_at=utc,
    )
    db.add(case)
    return case


def build_month(app, world) -> None:
    """October 2026 in the test world, as listed in the docstring of each figure below."""
    with app.app_context():
        # --- town 0 (东湖街道): grids 0-3, gridworkers gw0-gw3 ---
        for i in range(20):  # gw0: 20 events, 2 of them hazards
            add_case(world, 0, reporter="gw0", kind="hazard" if i < 2 else "ordinary", overdue=i == 5)
        add_case(world, 0, reporter="gw0", state="duplicate")  # not counted
        add_case(world, 0, reporter="gw0", state="rejected")  # not counted
        for i in range(9):  # gw1: 10 events in the month (one at 00:05 on the 1st), 1 hazard
            add_case(world, 1, reporter="gw1", kind="hazard" if i == 0 else "ordinary")
        add_case(world, 1, reporter="gw1", at=datetime(2026, 10, 1, 0, 5))
        add_case(world, 1, reporter="gw1", at=datetime(2026, 9, 30, 23, 55))  # September: not counted
        add_case(world, 1, reporter="gw1", at=datetime(2026, 11, 1, 0, 0))  # November: not counted
        for i in range(12):  # the town center's own reports; it passed 3 of them up to the city
            add_case(world, 2, center="town0", escalated_by="town0" if i < 3 else None, overdue=i == 11)
        add_case(world, 2, center="town0", state="rejected")  # not counted
        add_case(world, 0, center="village0", kind="dispute")  # village centers: 3 disputes, 1 ordinary
        add_case(world, 2, center="village1", kind="dispute")
        add_case(world, 3, center="village1", kind="dispute")
        add_case(world, 3, center="village1", kind="ordinary")
        # patrols: gw0 and gw1 an hour every workday, gw2 59 minutes, gw3 none
        for day in PERIOD.workdays_begun(datetime(2027, 1, 1).date()):
            for worker, minutes in (("gw0", 60), ("gw1", 45), ("gw1", 15), ("gw2", 59)):
                start = from_local(datetime.combine(day, datetime.min.time()) + timedelta(hours=9), "Asia/Shanghai")
                db.add(
                    Patrol(
                        gridworker_id=world.accounts[worker].id,
                        grid_id=world.grids[0].id,
                        town_id=world.towns[0].id,
                        started_at=start,
                        ended_at=start + timedelta(minutes=minutes),
                    )
                )
        # special populations: drug users A and B, mental_risk C count; D (community correction) and an
        # inactive drug user E do not. A is visited twice, C once; B only in September.
        people = {}
        for name, kind, active in (
            ("甲", "drug_user", True),
            ("乙", "drug_user", True),
            ("丙", "mental_risk", True),
            ("丁", "community_correction", True),
            ("戊", "drug_user", False),
        ):
            g = world.grids[0]
            people[name] = Person(
                name=name,
                person_type=kind,
                visit_frequency="monthly",
                grid_id=g.id,
                village_id=g.village_id,
                town_id=g.town_id,
                active=active,
            )
            db.add(people[name])
        db.flush()
        for name, day in (("甲", 3), ("甲", 20), ("丙", 9), ("丁", 9), ("戊", 9)):
            db.add(
                Visit(
                    gridworker_id=world.accounts["gw0"].id,
                    person_id=people[name].id,
                    town_id=world.towns[0].id,
                    at=from_local(datetime(2026, 10, day, 15), "Asia/Shanghai"),
                )
            )
        db.add(
            Visit(
                gridworker_id=world.accounts["gw0"].id,
                person_id=people["乙"].id,
                town_id=world.towns[0].id,
                at=from_local(datetime(2026, 9, 28, 15), "Asia/Shanghai"),
            )
        )
        # --- town 1 (西湖街道): gw4 reports 5 events, 1 overdue: timeliness exactly 80 % ---
        for i in range(5):
            add_case(world, 4, reporter="gw4", overdue=i == 0)
        db.commit()
    db.remove()


# town 0 by hand
T0_REPORTED = 20 + 10 + 12 + 4  # gridworkers, town center, village centers
T0 = {
    "reports_per_10k": 20 * (T0_REPORTED / 20) / 100,  # 200,000 people = 20 units of 10k
    "reports_per_gridworker": 5 * (30 / 4) / 20,
    "gridworkers_meeting_quota": 5 * 1 / 4,  # gw0 only
    "town_center_reports": 10 * 12 / 20,
    "hazard_reporting": 10 * 1 / 4,  # gw0 only (gw1 has 1 hazard)
    "village_disputes": 5.0,  # 3 disputes / 2 centers ≥ 1
    "town_escalations": 5 * 3 / 5,
    "timeliness": (100 * (T0_REPORTED - 2) / T0_REPORTED - 80) / 18 * 20,
    "patrol": 10 * 2 / 4,  # gw0 and gw1 (45 + 15 minutes) comply, gw2 (59) does not
    "special_visits": 10 * 2 / 3,
}
T1 = {
    "reports_per_10k": 20 * (5 / 20) / 100,
    "reports_per_gridworker": 5 * (5 / 4) / 20,
    "gridworkers_meeting_quota": 0.0,
    "town_center_reports": 0.0,
    "hazard_reporting": 0.0,
    "village_disputes": 0.0,
    "town_escalations": 0.0,
    "timeliness": 0.0,
    "patrol": 0.0,
    "special_visits": 10.0,  # nobody to visit: nothing missed
}


def city(world) -> Place:
    return db.get(Place, world.city.id)


def test_figures_counted_by_hand(app, world):
    build_month(app, world)
    with app.app_context():
        figures = service.town_figures(city(world), PERIOD)
    t0, t1 = figures[world.towns[0].id], figures[world.towns[1].id]
    assert t0 == R.TownFigures(
        population=200_000,
        reported=46,
        gridworker_reports=[20, 10, 0, 0],
        gridworker_hazards=[2, 1, 0, 0],
        town_center_reports=[12],
        town_center_escalations=3,
        village_centers=2,
        village_center_disputes=3,
        overdue=2,
        patrol_compliant=2,
        special_assigned=3,
        special_visited=2,
    )
    assert t1 == R.TownFigures(
        population=200_000,
        reported=5,
        gridworker_reports=[5, 0, 0, 0],
        gridworker_hazards=[0, 0, 0, 0],
        town_center_reports=[0],
        town_center_escalations=0,
        village_centers=2,
        village_center_disputes=0,
        overdue=1,
        patrol_compliant=0,
        special_assigned=0,
        special_visited=0,
    )


def test_table_scores_totals_and_ranks(app, world):
    build_month(app, world)
    with app.app_context():
        table = service.month_table(city(world), MONTH)
    assert table["month"] == MONTH and table["closed"] is False and table["closed_at"] is None
    assert [i["key"] for i in table["indicators"]] == list(R.INDICATOR_KEYS)
    first, second = table["rows"]
    assert (first["town_name"], first["rank"], second["town_name"], second["rank"]) == ("东湖街道", 1, "西湖街道", 2)
    for key, expected in T0.items():
        assert first["scores"][key] == R.round2(expected), key
    for key, expected in T1.items():
        assert second["scores"][key] == R.round2(expected), key
    assert first["scores"]["timeliness"] == 17.39 and first["scores"]["special_visits"] == 6.67
    assert first["total"] == R.round2(sum(T0.values())) == 49.14
    assert second["total"] == 10.36  # 0.05 + 0.3125 + 10, the 0.3125 shown as 0.31
    assert second["actuals"]["timeliness"] == 0.8  # exactly the zero line
    assert set(second["weakest"]) >= {"timeliness", "patrol"}
    # shares of weight: 2.3 %, then 25 % twice (quota, hazards); 37.5 % (per gridworker) is not named
    assert first["weakest"] == ["reports_per_10k", "gridworkers_meeting_quota", "hazard_reporting"]


def test_page_shows_the_table_links_and_chart(app, world, client):
    build_month(app, world)
    logged_in(client, "city_supervisor")
    response = client.get(f"/assessment/?month={MONTH}")
    page = html(response)
    assert response.status_code == 200
    assert "2026年10月" in page and "未关账" in page
    rows = re.findall(r'<tr data-town="(\d+)">(.*?)</tr>', page, re.S)
    assert [int(t) for t, _ in rows] == [world.towns[0].id, world.towns[1].id]
    first = rows[0][1]
    assert "东湖街道" in first and "49.14" in first and "17.39" in first and "6.67" in first
    # the weakest indicators are highlighted and named
    assert re.search(r'class="num score weakest" data-key="reports_per_10k"', first)
    assert not re.search(r'class="num score weakest" data-key="village_disputes"', first)
    assert "事项总量</span>" in first
    # each score links to what is behind it
    town0 = world.towns[0].id
    assert f'href="/cases/?town={town0}&amp;date_from=2026-10-01&amp;date_to=2026-10-31&amp;overdue=1"' in first
    assert f'href="/drill/{town0}?period=custom&amp;start=2026-10-01&amp;end=2026-10-31"' in first
    # the zero denominators are explained, the undefined rate shown as a dash
    assert "辖区无吸毒人员及易肇事肇祸精神障碍患者，此项不扣分" in page
    # the chart: data in a JSON element, code in a file, no inline script
    assert '<script type="application/json" id="assessment-data">' in page
    assert "vendor/plotly-basic.min.js" in page and "js/assessment.js" in page
    assert not re.search(r"<script>(?!\s*</script>)", page)
    assert '"totals": [49.14, 10.36]' in page
    assert "关账（冻结2026年10月考核结果）" in page  # a city supervisor may close a past month
    # the JSON of the page: the same body as month_table
    body = client.get(f"/assessment/{MONTH}.json").get_json()
    with app.app_context():
        table = service.month_table(city(world), MONTH)
    assert body["rows"] == table["rows"] and body["indicators"] == table["indicators"]
    assert body["towns"] == 2 and body["closed"] is False


def test_default_month_is_last_month_and_bad_months_are_400(app, world, client):
    logged_in(client, "city_leader")
    page = html(client.get("/assessment/"))
    last = service.Period.parse_month(app_last_month(app))
    assert last.label in page
    assert "关账（" not in page  # a leader may not close
    # the current month is computed so far, and cannot be closed yet
    with app.app_context():
        current = service.Period.parse_month(app_last_month(app)).end + timedelta(days=1)
    now_page = client.get(f"/assessment/?month={current.year:04d}-{current.month:02d}")
    assert now_page.status_code == 200 and "未关账" in html(now_page)
    # an empty month renders: only indicator 10 (nobody to visit) scores
    empty = html(client.get(f"/assessment/?month={MONTH}"))
    assert "10.00" in empty and "本月无新增事件" in empty
    for bad in ("2026-13", "abc", "2026-1", "2999-01"):
        response = client.get(f"/assessment/?month={bad}")
        assert response.status_code == 400, bad
        assert "月份：" in html(response)
    response = client.get("/assessment/2026-13.json")
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == "month"


def app_last_month(app) -> str:
    with app.app_context():
        return service.last_month()


def test_api_with_a_token(app, world, client):
    build_month(app, world)
    token = client.post(
        "/api/v1/tokens", json={"username": "city_leader", "password": PASSWORD, "device_name": "测试"}
    ).get_json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    response = client.get(f"/api/v1/assessment/{MONTH}", headers=headers)
    assert response.status_code == 200
    body = response.get_json()
    assert [r["total"] for r in body["rows"]] == [49.14, 10.36]
    bad = client.get("/api/v1/assessment/2026-00", headers=headers)
    assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "month"
    assert client.get(f"/api/v1/assessment/{MONTH}").status_code == 401
    gw = client.post("/api/v1/tokens", json={"username": "gw0", "password": PASSWORD, "device_name": "x"}).get_json()
    assert (
        client.get(f"/api/v1/assessment/{MONTH}", headers={"Authorization": f"Bearer {gw['token']}"}).status_code == 403
    )
    town = client.post(
        "/api/v1/tokens", json={"username": "town1_supervisor", "password": PASSWORD, "device_name": "x"}
    ).get_json()
    mine = client.get(f"/api/v1/assessment/{MONTH}", headers={"Authorization": f"Bearer {town['token']}"}).get_json()
    assert [(r["town_name"], r["rank"]) for r in mine["rows"]] == [("西湖街道", 2)]


def close(client, month: str):
    token = csrf_from(html(client.get(f"/assessment/?month={MONTH}")))
    return client.post(f"/assessment/{month}/close", data={"csrf_token": token})


def test_close_freezes_the_month_and_keeps_it_reproducible(app, world, client):
    build_month(app, world)
    logged_in(client, "city_supervisor")
    response = close(client, MONTH)
    assert response.status_code == 302
    page = html(client.get(response.headers["Location"]))
    assert "已关账" in page and "49.14" in page and "关账（" not in page
    with app.app_context():
        row = db.query(AssessmentMonth).one()
        assert row.month == MONTH and row.closed_by_id == world.accounts["city_supervisor"].id
        assert row.rules["timeliness"] == {"full": 0.98, "zero": 0.8}
        assert row.figures[str(world.towns[0].id)]["reported"] == 46
        frozen_table = service.month_table(city(world), MONTH)
        assert frozen_table["closed"] is True and frozen_table["closed_at"]
        # recomputing the frozen figures with the frozen rules gives the same table
        again = service.recompute(row)
        assert again["rows"] == frozen_table["rows"] and again["indicators"] == frozen_table["indicators"]
        assert db.query(AuditLog).filter_by(action="assessment.close", object_id=MONTH).count() == 1
    # later corrections of the data and of the rules do not alter a closed month
    with app.app_context():
        for _ in range(30):
            add_case(world, 4, reporter="gw5", kind="hazard")
        db.get(Place, world.towns[0].id).population = 10_000
        db.add(
            SettingValue(
                key="assessment_rules",
                value={
                    "indicators": [{"key": "reports_per_10k", "weight": 10}, {"key": "special_visits", "weight": 20}]
                },
            )
        )
        db.commit()
        live, _ = service.compute(city(world), PERIOD)
        assert live["rows"][0]["total"] != 49.14  # the data did change
        table = service.month_table(city(world), MONTH)
        assert [r["total"] for r in table["rows"]] == [49.14, 10.36]
        assert service.recompute(db.query(AssessmentMonth).one())["rows"] == table["rows"]
    db.remove()
    assert client.get(f"/assessment/{MONTH}.json").get_json()["rows"][0]["total"] == 49.14
    # only once
    again = close(client, MONTH)
    assert again.status_code == 409 and "已关账" in html(again)


def test_who_may_close_and_what(app, world, client):
    logged_in(client, "town0_supervisor")  # has the permission, but not at the city level
    assert close(client, MONTH).status_code == 403
    client.get("/logout")
    client2 = app.test_client()
    logged_in(client2, "city_leader")  # no permission at all
    assert close(client2, MONTH).status_code == 403
    client3 = app.test_client()
    logged_in(client3, "city_supervisor")
    with app.app_context():
        current = service.Period.parse_month(app_last_month(app)).end + timedelta(days=1)
    response = close(client3, f"{current.year:04d}-{current.month:02d}")  # the current month is not over
    assert response.status_code == 400 and "尚未结束" in html(response)
    assert close(client3, "2026-13").status_code == 400
    with app.app_context():
        assert db.query(AssessmentMonth).count() == 0


def test_town_supervisor_sees_only_his_row(app, world, client):
    build_month(app, world)
    logged_in(client, "town1_supervisor")
    page = html(client.get(f"/assessment/?month={MONTH}"))
    rows = re.findall(r'<tr data-town="(\d+)">', page)
    assert rows == [str(world.towns[1].id)]
    assert "西湖街道" in page and "东湖街道" not in page and "49.14" not in page
    assert "全部 2 个镇街" in page  # his rank is among all towns
    assert '"totals": [10.36]' in page
    body = client.get(f"/assessment/{MONTH}.json").get_json()
    assert [(r["town_name"], r["rank"]) for r in body["rows"]] == [("西湖街道", 2)]
    assert "关账（" not in page


def test_village_account_sees_its_town_and_other_roles_are_refused(app, world):
    build_month(app, world)
    village = logged_in(app.test_client(), "village0_admin")
    assert re.findall(r'<tr data-town="(\d+)">', html(village.get(f"/assessment/?month={MONTH}"))) == [
        str(world.towns[0].id)
    ]
    for username in ("gw0", "city_operator", "city_admin", "city_auditor", "dept0"):
        c = logged_in(app.test_client(), username)
        assert c.get(f"/assessment/?month={MONTH}").status_code == 403, username
        assert c.get(f"/assessment/{MONTH}.json").status_code == 403, username


def test_rules_page_edits_weights_with_field_errors(app, world, client):
    build_month(app, world)
    logged_in(client, "city_admin")
    page = html(client.get("/assessment/rules"))
    assert 'name="reports_per_10k.weight" value="20"' in page
    token = csrf_from(page)
    form = {m[0]: m[1] for m in re.findall(r'<input name="([^"]+)" value="([^"]*)"', page)}
    form["csrf_token"] = token
    bad = client.post("/assessment/rules", data={**form, "patrol.weight": "-1", "reports_per_10k.standard": "0"})
    assert bad.status_code == 400
    assert "网格巡查的权重不能为负数" in html(bad) and "事项总量的标准须大于 0" in html(bad)
    assert 'data-field="patrol.weight"' in html(bad)
    bad = client.post("/assessment/rules", data={**form, "timeliness.full": "0.7"})
    assert bad.status_code == 400 and "满分线须高于零分线" in html(bad)
    bad = client.post("/assessment/rules", data={**form, "patrol.weight": "15"})
    assert bad.status_code == 400 and "十项权重之和须为 100，现为 105" in html(bad)
    good = client.post(
        "/assessment/rules",
        data={**form, "patrol.weight": "5", "special_visits.weight": "15", "gridworkers_meeting_quota.quota": "10"},
    )
    assert good.status_code == 302
    assert 'name="patrol.weight" value="5"' in html(client.get(good.headers["Location"]))
    with app.app_context():
        assert db.query(AuditLog).filter_by(action="assessment.rules").count() == 1
        rules = service.current_rules()
        assert R.indicator(rules, "patrol")["weight"] == 5 and R.indicator(rules, "special_visits")["weight"] == 15
        table = service.month_table(city(world), MONTH)
    first = table["rows"][0]
    # patrol 2/4 of 5; visits 2/3 of 15; quota 10: gw0 (20) and gw1 (10) meet it
    assert first["scores"]["patrol"] == 2.5 and first["scores"]["special_visits"] == 10.0
    assert first["scores"]["gridworkers_meeting_quota"] == 2.5
    # the supervisor may not edit the rules
    other = logged_in(app.test_client(), "city_supervisor")
    assert other.get("/assessment/rules").status_code == 403
    # a row edited outside the application and invalid: the defaults apply
    with app.app_context():
        db.get(SettingValue, "assessment_rules").value = {"timeliness": {"full": 2}}
        db.commit()
        assert service.current_rules()["timeliness"] == {"full": 0.98, "zero": 0.8}


@pytest.mark.browser
@pytest.mark.live
def test_supervisor_reads_the_chart_follows_a_score_and_closes_the_month(app, world, live_server, page):
    from tests.conftest import ARTIFACTS

    build_month(app, world)
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    missing: list[str] = []
    page.on(
        "response", lambda r: missing.append(r.url) if r.status >= 400 and not r.url.endswith("/favicon.ico") else None
    )
    page.goto(live_server.url + "/login")
    page.fill("#username", "city_supervisor")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(live_server.url + "/")
    page.click("nav.mainnav >> text=月度考核")
    page.fill("input[name=month]", MONTH)
    page.click("text=查看")
    page.wait_for_selector("#assessment-chart .main-svg")
    assert page.locator("#assessment-chart .bars .point").count() == 2  # one bar per town
    first = page.locator("tr[data-town]").first
    assert first.locator("td.total").inner_text() == "49.14"
    assert first.locator("td.weakest").count() == 3
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "assessment.png"), full_page=True)
    # the overdue events behind indicator 8 of town 0: the 2 overdue cases of the month
    first.locator('td[data-key="timeliness"] a').click()
    page.wait_for_url(re.compile(r".*/cases/\?.*overdue=1"))
    assert "共 2 件" in page.locator(".result-count").inner_text()
    page.go_back()
    page.click("text=关账（冻结2026年10月考核结果）")
    page.wait_for_url(re.compile(r".*/assessment/\?month=2026-10"))
    assert "已关账" in page.locator(".assessment-status").inner_text()
    # a missing favicon is logged as "Failed to load resource": not a problem of this page
    assert missing == [] and page.outside_requests == []
    assert [p for p in problems if not p.startswith("Failed to load resource")] == []


def test_workdays_without_any_patrol_are_flagged_and_closing_names_them(app, world, client):
    """Issue 12 §2g: a month whose workdays hold no data at all is flagged on the screens, and closing it
    asks for a confirmation naming the days."""
    from commandcenter import stats

    build_month(app, world)
    with app.app_context():
        for day in (12, 13):  # Monday and Tuesday: the import of those days was lost
            begin, finish = from_local(datetime(2026, 10, day)), from_local(datetime(2026, 10, day + 1))
            db.query(Patrol).filter(Patrol.started_at >= begin, Patrol.started_at < finish).delete()
        db.commit()
        fig = stats.figures(city(world), PERIOD)
        flag = next(f for f in fig.flags if f.field == "patrol_rate")
        assert "10月12日、10月13日" in flag.message and "数据可能缺失" in flag.message
    logged_in(client, "city_supervisor")
    drill = html(client.get(f"/drill/{world.city.id}?period=custom&start=2026-10-01&end=2026-10-31"))
    assert "10月12日、10月13日" in drill
    page = html(client.get(f"/assessment/?month={MONTH}"))
    assert "10月12日、10月13日" in page and 'name="confirm_missing"' in page
    refused = close(client, MONTH)
    assert refused.status_code == 409
    assert "10月12日、10月13日" in html(refused) and "勾选确认" in html(refused)
    with app.app_context():
        assert db.query(AssessmentMonth).count() == 0
    token = csrf_from(html(client.get(f"/assessment/?month={MONTH}")))
    done = client.post(f"/assessment/{MONTH}/close", data={"csrf_token": token, "confirm_missing": "1"})
    assert done.status_code == 302
    with app.app_context():
        assert db.query(AssessmentMonth).count() == 1
        row = db.query(AuditLog).filter_by(action="assessment.close", object_id=MONTH).one()
        assert "10月12日、10月13日" in row.detail


def test_a_month_with_data_every_workday_has_no_missing_day_flag(app, world):
    from commandcenter import stats

    build_month(app, world)
    with app.app_context():
        assert not [f for f in stats.figures(city(world), PERIOD).flags if "数据可能缺失" in f.message]
        assert service.missing_patrol_days(MONTH) == []
