"""One truth for every figure (issue 12 §1, §2 a b c e f): the catalogue, the page /figures/, and the same
figure giving the same number on the wall, the drill-down, /m/ and the API for the same place and period.

The expected numbers are written out from the scenario, never read from the code under test."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest

from commandcenter import alerts, jobs
from commandcenter.cases import loop
from commandcenter.db import db
from commandcenter.figures import catalogue
from commandcenter.models import Account, Alert, Place
from commandcenter.timeutil import day_bounds_utc, local, utcnow
from commandcenter.wall import polygons, priming
from tests.conftest import PASSWORD, csrf_from, logged_in, token_for
from tests.conftest import report as shared_report

pytestmark = [pytest.mark.postgres]
TZ = "Asia/Shanghai"


@pytest.fixture(autouse=True)
def fresh_counters():
    jobs._fake_redis = None
    priming._last_probe.clear()
    polygons._geo_cache.clear()
    yield
    jobs._fake_redis = None


def account(username: str) -> Account:
    return db.query(Account).filter_by(username=username).one()


def report(world, username: str, code: str, grid: int, now):
    return shared_report(
        world, username, code, now, grid=grid, key=f"fig-{uuid.uuid4().hex[:12]}", description=f"测试事件 {code}"
    )


def today_moment(now):
    """A moment of today a little before `now` (never yesterday, even just after local midnight)."""
    start, _ = day_bounds_utc(local(now, TZ).date(), TZ)
    return max(start + timedelta(seconds=1), now - timedelta(minutes=1))


def make_leader(username: str, place_id: int) -> None:
    from commandcenter.accounts import create_account
    from commandcenter.security import hash_password

    create_account(
        username=username,
        display_name=username,
        password="",
        role="leader",
        place=db.get(Place, place_id),
        password_hash=hash_password(PASSWORD),
    )


def logout(client) -> None:
    client.post("/logout", data={"csrf_token": csrf_from(client.get("/").get_data(as_text=True))})


# --- page scraping ---------------------------------------------------------------------------------------


def wall_tile(html: str, key: str) -> str:
    match = re.search(rf'data-key="{key}">\s*<span class="v">([^<]*)</span>', html)
    assert match, f"no wall tile {key}"
    return match.group(1).strip()


def drill_figure(html: str, name: str) -> str:
    match = re.search(rf'data-figure="{re.escape(name)}"[^>]*>(.*?)</(dd|td|span|strong)>', html, re.S)
    assert match, f"no drill figure {name}"
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


def mobile_tile(html: str, key: str, section: str = "today") -> str:
    block = html.split(f'id="h-{section}"', 1)[1].split("</section>", 1)[0]
    match = re.search(r'data-figure="' + re.escape(key) + r'"><span class="v">(.*?)</span>', block)
    assert match, f"no /m/ tile {key}"
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


def panel(client, name: str) -> str:
    response = client.get(f"/wall/panel/{name}")
    assert response.status_code == 200, (name, response.status_code)
    return response.get_data(as_text=True)


def pct(value: float) -> str:
    return f"{value * 100:.2f}%"


def label_keys(html: str) -> set[str]:
    """The catalogue keys the page's labels link to; each link must point at its own anchor."""
    keys = set()
    for href, key in re.findall(r'<a class="figure-(?:label|help)" href="([^"]+)"[^>]*data-figure-key="([^"]+)"', html):
        assert href == f"/figures/#{key}"
        keys.add(key)
    return keys


# --- the scenario: the demo's disagreements -----------------------------------------------------------------


@pytest.fixture
def day(app, world):
    """Village 0 of town 0 (grids 0 and 1), today:
    - A, B, C (hazard), E reported today, D reported today and marked a duplicate of A;
    - A closed by its reporter (自办自结), B registered and past its handling limit (overdue), E rejected (无效);
    - X1 reported two days ago, registered, past its limit today (an overdue step today, not a report of today);
    - X2 reported two days ago, closed by its reporter today (a closure today, not a report of today).
    """
    with app.app_context():
        now = utcnow()
        at = today_moment(now)
        before = now - timedelta(days=2)
        op = account("town0_operator")
        x1 = report(world, "gw0", "0101", 0, before)
        loop.register(x1, op, now=before + timedelta(minutes=5))
        x2 = report(world, "gw1", "0101", 1, before)
        a = report(world, "gw0", "0101", 0, at)
        b = report(world, "gw0", "0103", 0, at)
        report(world, "gw1", "1001", 1, at)  # C, a hazard
        d = report(world, "gw0", "0101", 0, at)
        e = report(world, "gw1", "0103", 1, at)
        loop.self_close(a, account("gw0"), "现场已清理", now=at)
        loop.self_close(x2, account("gw1"), "已处理", now=at)
        loop.register(b, op, now=at)
        loop.mark_duplicate(d, op, a, now=at)
        loop.reject(e, op, "不属实", now=at)
        for case in (x1, b):
            case.handle_due = now - timedelta(seconds=1)
        db.commit()
        loop.sweep_deadlines(now=now)
        alerts.sweep(now)  # X1 and B: an overdue alert each
        jobs.process_outbox()
        ids = {"city": world.city.id, "town": world.towns[0].id, "village": world.villages[0].id}
        make_leader("town0_leader", ids["town"])
        make_leader("village0_leader", ids["village"])
        db.commit()
        db.remove()
    return ids


# what every screen must say for today, at the city, the town and the village (all the cases lie in all three)
TODAY = {"reported": 4, "closed": 1, "closure_rate": 0.25, "overdue": 1, "hazard": 1}

WALL_ACCOUNTS = {"city": "city_duty_officer", "town": "town0_duty", "village": "village0_admin"}
MOBILE_ACCOUNTS = {"city": "city_leader", "town": "town0_leader", "village": "village0_leader"}


def test_same_figure_same_number_on_wall_drill_mobile_and_api(app, client, day):
    seen: dict[str, dict[str, dict[str, str]]] = {}
    for level in ("city", "town", "village"):
        logged_in(client, WALL_ACCOUNTS[level])
        counts = panel(client, "counts")
        seen.setdefault("wall", {})[level] = {k: wall_tile(counts, k) for k in TODAY}
        alerts = re.search(r">未解除预警</a> <b[^>]*>(\d+)</b>", panel(client, "alerts")).group(1)
        logout(client)

        logged_in(client, "city_supervisor")
        html = client.get(f"/drill/{day[level]}?period=day").get_data(as_text=True)
        seen.setdefault("drill", {})[level] = {
            "reported": drill_figure(html, "reported"),
            "closed": drill_figure(html, "closed"),
            "closure_rate": drill_figure(html, "closure_rate"),
            "overdue": drill_figure(html, "overdue"),
            "hazard": drill_figure(html, "kind-hazard"),
        }
        logout(client)

        logged_in(client, MOBILE_ACCOUNTS[level])
        html = client.get("/m/").get_data(as_text=True)
        seen.setdefault("mobile", {})[level] = {k: mobile_tile(html, k) for k in ("reported", "closed", "overdue")}
        seen["mobile"][level]["closure_rate"] = mobile_tile(html, "closure_rate")
        assert mobile_tile(html, "alerts_open") == alerts == "2", level  # X1 and B: overdue alerts
        logout(client)

    headers = token_for(client, "city_supervisor")
    for level in ("city", "town", "village"):
        body = client.get(f"/api/v1/figures?place={day[level]}&period=day", headers=headers).get_json()
        assert body["period"]["kind"] == "day" and body["labels"]["overdue"] == "逾期事件"
        values = body["figures"]
        seen.setdefault("api", {})[level] = {
            k: pct(values[k]) if k == "closure_rate" else str(values[k]) for k in TODAY
        }

    expected = {k: pct(v) if k == "closure_rate" else str(v) for k, v in TODAY.items()}
    for screen, levels in seen.items():
        for level, figures in levels.items():
            for key, value in figures.items():
                assert value == expected[key], (screen, level, key, value)


def test_overdue_today_is_three_named_figures(app, client, day):
    """§2 a: the wall used to show the overdue *steps* of today (X1 and B: 2) as 逾期 beside 逾期 = 1 on /m/ and
    the drill. Now 逾期事件 is today's reports overdue now (B) everywhere; the steps are 新增逾期; the open
    overdue cases, whenever reported, are 当前逾期在办 — three names for three quantities."""
    logged_in(client, "city_duty_officer")
    counts = panel(client, "counts")
    assert wall_tile(counts, "overdue") == "1"
    assert wall_tile(counts, "overdue_new") == "2"  # X1 (reported two days ago) and B
    assert wall_tile(counts, "overdue_open") == "2"  # X1 and B are still open
    names = {key: catalogue.label(key) for key in ("overdue", "overdue_new", "overdue_open")}
    assert names == {"overdue": "逾期事件", "overdue_new": "新增逾期", "overdue_open": "当前逾期在办"}
    for key, name in names.items():
        assert re.search(
            rf'data-key="{key}">\s*<span class="v">[^<]*</span>\s*<span class="k"><a [^>]*>{name}</a>', counts
        )


def test_closures_and_closure_rate_are_two_named_figures(app, client, day):
    """§2 b: 结案 counted today's closing steps (A and X2: 2) beside a rate of today's reports. Now 当期结案 (2)
    and 已办结 (1, of today's reports) are two figures, and 办结率 = 已办结 ÷ 上报事件 (1 / 4)."""
    logged_in(client, "city_duty_officer")
    counts = panel(client, "counts")
    assert wall_tile(counts, "closures") == "2"
    assert wall_tile(counts, "closed") == "1"
    assert wall_tile(counts, "closure_rate") == "25.00%"
    assert catalogue.label("closures") != catalogue.label("closed")


def test_todays_reports_leave_duplicates_out_everywhere_on_the_wall(app, client, day):
    """§2 c: D (a duplicate) is in none of today's report figures: the tile, the rate's denominator, the
    hourly chart and the map's grid loads all add up to the drill's 4."""
    import json

    logged_in(client, "city_duty_officer")
    counts = panel(client, "counts")
    assert wall_tile(counts, "reported") == "4" and wall_tile(counts, "closure_rate") == "25.00%"
    hourly = json.loads(re.search(r'class="panel-data">(.*?)</script>', counts, re.S).group(1))
    assert sum(hourly["today"]) == 4
    data = json.loads(re.search(r'class="panel-data">(.*?)</script>', panel(client, "map"), re.S).group(1))
    assert sum(data["load"]) == 4 and data["reported_today"] == 4


def test_town_wall_ranks_villages_by_indicator_8(app, world, client):
    """§2 e: a village whose only overdue step this month belongs to a case of last month is at 100 % — as in
    the drill-down — not at (2 − 1) / 2 = 50 %."""
    with app.app_context():
        now = utcnow()
        at = today_moment(now)
        old_day = local(now, TZ).date().replace(day=1) - timedelta(days=3)
        old, _ = day_bounds_utc(old_day, TZ)
        old = old + timedelta(hours=3)
        last_month = report(world, "gw2", "0101", 2, old)  # village 1 of town 0
        loop.register(last_month, account("town0_operator"), now=old + timedelta(minutes=5))
        last_month.handle_due = now - timedelta(seconds=1)
        db.commit()
        loop.sweep_deadlines(now=now)  # overdue *this* month
        report(world, "gw2", "0101", 2, at)
        report(world, "gw3", "0103", 3, at)
        late = report(world, "gw0", "0103", 0, at)  # village 0: one of two this month overdue → 50 %
        report(world, "gw0", "0101", 0, at)
        loop.register(late, account("town0_operator"), now=at)
        late.handle_due = now - timedelta(seconds=1)
        db.commit()
        loop.sweep_deadlines(now=now)
        jobs.process_outbox()
        v0, v1 = world.villages[0], world.villages[1]
        names = {v0.id: v0.name, v1.id: v1.name}
        db.remove()
    logged_in(client, "town0_duty")
    html = panel(client, "rankings")
    rows = dict(
        (name, value)
        for name, value in re.findall(r'<span class="n">([^<]+)</span>\s*<span class="v">([^<]+)</span>', html)
    )
    assert rows[names[v1.id]] == "100.00%"
    assert rows[names[v0.id]] == "50.00%"
    assert 'href="/figures/#timeliness"' in html
    logout(client)
    logged_in(client, "city_supervisor")
    for vid in (v0.id, v1.id):
        drill = client.get(f"/drill/{vid}?period=month").get_data(as_text=True)
        assert drill_figure(drill, "timeliness") == rows[names[vid]]


def test_escalation_alert_past_its_limit_is_not_called_close_to_it(app, world, client):
    """§2 f: an escalation alert whose limit passed days ago is listed as 逾期未流转, counted apart from the
    待流转临期 ones still before their limit."""
    with app.app_context():
        now = utcnow()
        late = report(world, "gw0", "0101", 0, now - timedelta(days=4))
        soon = report(world, "gw1", "0101", 1, now - timedelta(hours=1))
        town = world.towns[0].id
        db.add(
            Alert(
                case_id=late.id,
                kind="escalation_due",
                town_id=town,
                due_at=now - timedelta(days=3),
                raised_at=now - timedelta(days=3, hours=1),
            )
        )
        db.add(
            Alert(case_id=soon.id, kind="escalation_due", town_id=town, due_at=now + timedelta(hours=2), raised_at=now)
        )
        late_number, soon_number = late.number, soon.number
        db.commit()
        db.remove()
    logged_in(client, "city_duty_officer")
    html = panel(client, "alerts")
    items = dict(
        (number, kind)
        for kind, number in re.findall(r'<span class="kind">([^<]+)</span>\s*<span class="num">([^<]+)</span>', html)
    )
    assert items == {late_number: "逾期未流转", soon_number: "待流转临期"}
    assert re.search(r">逾期未流转</a> 1", html) and re.search(r">待流转临期</a> 1", html)
    assert re.search(r">未解除预警</a> <b[^>]*>2</b>", html)
    # the duty officer's alert desk says the same
    desk = client.get("/alerts/").get_data(as_text=True)
    late_row = desk.split(late_number, 1)[0].rsplit("<tr", 1)[-1] + desk.split(late_number, 1)[1].split("</tr>", 1)[0]
    assert "逾期未流转" in late_row and "待流转临期" not in late_row


# --- the catalogue and its page -------------------------------------------------------------------------------


def test_catalogue_entries_are_complete_and_distinct():
    assert len(catalogue.FIGURES) >= 40
    for f in catalogue.FIGURES:
        assert re.fullmatch(r"[a-z0-9_]+", f.key), f.key
        for attr in ("name", "definition", "numerator", "denominator", "counted", "excluded"):
            assert getattr(f, attr).strip(), (f.key, attr)
        assert f.definition.endswith("。"), f.key  # one sentence
        assert f.period in catalogue.PERIOD_TEXT and f.shown and set(f.shown) <= set(catalogue.SCREENS), f.key
        assert (f.denominator != "—") == f.rate or f.key in (
            "reports_per_gridworker",
            "assessment_reports_per_10k",
            "assessment_reports_per_gridworker",
            "assessment_town_center_reports",
            "assessment_village_disputes",
            "assessment_town_escalations",
        ), f.key
    # every assessment indicator has its entry
    from commandcenter.assessment.rules import INDICATOR_KEYS

    keys = set(INDICATOR_KEYS)
    assert keys == set(catalogue.ASSESSMENT_KEYS)
    assert set(catalogue.ASSESSMENT_KEYS.values()) <= set(catalogue.BY_KEY)


def test_figures_page_lists_the_catalogue_for_any_logged_in_account(app, world, client):
    assert client.get("/figures/").status_code == 302  # not logged in: to the login page
    logged_in(client, "gw0")
    response = client.get("/figures/")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "口径说明" in html
    for f in catalogue.FIGURES:
        entry = html.split(f'id="{f.key}"', 1)[1].split("</article>", 1)[0]
        assert f.name in entry and f.definition in entry and f.numerator in entry, f.key
        assert f.period_text in entry


def test_every_label_on_the_screens_links_to_its_entry(app, client, day):
    logged_in(client, "city_duty_officer")
    linked = set()
    for name in ("map", "counts", "attendance", "alerts", "logins", "rankings"):
        linked |= label_keys(panel(client, name))
    drill = client.get(f"/drill/{day['town']}?period=day").get_data(as_text=True)
    drill_keys = label_keys(drill)
    assert {"reported", "closed", "closure_rate", "overdue", "timeliness", "login_rate"} <= drill_keys
    # the sortable headers of the table carry a ⓘ link to their entry
    assert 'class="figure-help" href="/figures/#timeliness"' in drill
    linked |= drill_keys
    logout(client)
    logged_in(client, "city_leader")
    mobile_keys = label_keys(client.get("/m/").get_data(as_text=True))
    assert {"reported", "closed", "closure_rate", "overdue", "alerts_open", "timeliness"} <= mobile_keys
    linked |= mobile_keys
    assert {"reported", "closures", "overdue_new", "overdue_open", "alerts_open", "attendance_rate"} <= linked
    page = client.get("/figures/").get_data(as_text=True)
    for key in linked:
        assert f'id="{key}"' in page, key


def test_api_figures_names_its_fields(app, client, day):
    headers = token_for(client, "town0_supervisor")
    response = client.get(f"/api/v1/figures?place={day['village']}&period=month", headers=headers)
    assert response.status_code == 200
    body = response.get_json()
    assert body["place"]["level"] == "village" and body["figures"]["reported"] >= 4
    assert client.get("/api/v1/figures?place=abc", headers=headers).get_json()["error"]["field"] == "place"
    outside = client.get(f"/api/v1/figures?place={day['city']}", headers=headers)
    assert outside.status_code == 404 and outside.get_json()["error"]["field"] == "place"
    wrong = client.get("/api/v1/figures?period=year", headers=headers)
    assert wrong.status_code == 400 and wrong.get_json()["error"]["field"] == "period"
    assert client.get("/api/v1/figures").status_code == 401
