"""The wall display (issue 5): every panel, its figures, its scope and its access rule, on PostgreSQL.

Cases go through commandcenter.cases.loop as the world's real accounts; `jobs.process_outbox()` feeds
the counters, which live in an in-process fakeredis here (the test app has no REDIS_URL). The expected
figures are written out in each test, never read from the module under test.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import time as dt_time
from datetime import timedelta

import pytest

from commandcenter import counters, jobs
from commandcenter.cases import loop
from commandcenter.db import db
from commandcenter.models import Account, Heartbeat, LoginRecord, Place, SettingValue, SignIn
from commandcenter.ranking import competition_ranks
from commandcenter.timeutil import day_bounds_utc, local, utcnow
from commandcenter.wall import polygons, priming
from tests.conftest import csrf_from, logged_in
from tests.conftest import report as shared_report

pytestmark = [pytest.mark.postgres]

PANELS = ("map", "counts", "attendance", "alerts", "logins", "rankings")
TZ = "Asia/Shanghai"


@pytest.fixture(autouse=True)
def fresh_counters():
    """Each test starts with empty counters (as after a restart in embedded mode) and leaves none."""
    jobs._fake_redis = None
    priming._last_probe.clear()
    polygons._geo_cache.clear()
    yield
    jobs._fake_redis = None


def account(username: str) -> Account:
    return db.query(Account).filter_by(username=username).one()


def report(world, username: str, code: str, grid: int, now=None, discovered=None):
    return shared_report(
        world,
        username,
        code,
        now,
        grid=grid,
        key=f"wall-{uuid.uuid4().hex[:12]}",
        description=f"测试事件 {code}",
        address=f"测试路 {grid} 号",
        discovered_at=discovered,
    )


def tile(html: str, key: str) -> str:
    match = re.search(rf'data-key="{key}">\s*<span class="v">([^<]*)</span>', html)
    assert match, f"no tile {key}"
    return match.group(1).strip()


def panel_data(html: str) -> dict:
    match = re.search(r'<script type="application/json" class="panel-data">(.*?)</script>', html, re.S)
    assert match, "panel without its data block"
    return json.loads(match.group(1))


def get_panel(client, name: str) -> str:
    response = client.get(f"/wall/panel/{name}")
    assert response.status_code == 200, (name, response.status_code)
    assert response.headers["X-Wall-Panel"] == name
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith(f'<section id="panel-{name}"')
    return html


@pytest.fixture
def day_of_cases(app, world):
    """Today: town 0 gets 3 ordinary, 1 hazard, 1 dispute; town 1 gets 2 ordinary. In town 0 one case is
    self-closed, one escalated to the town, the hazard escalated to the city, the dispute registered."""
    with app.app_context():
        now = utcnow() - timedelta(seconds=5)
        a = report(world, "gw0", "0101", 0, now=now)
        b = report(world, "gw0", "0103", 0, now=now)
        c = report(world, "gw1", "0302", 1, now=now)
        hazard = report(world, "gw2", "1001", 2, now=now)
        dispute = report(world, "gw3", "2001", 3, now=now)
        report(world, "gw4", "0101", 4, now=now)
        report(world, "gw5", "0103", 5, now=now)
        loop.self_close(a, account("gw0"), "现场已清理")
        loop.escalate(b, account("gw0"), to_level="town", note="需镇街协调")
        loop.escalate(hazard, account("gw2"), to_level="city", note="需市级处置")
        loop.register(dispute, account("town0_operator"))
        assert jobs.process_outbox() == 11  # 7 reports + 4 steps
        return {"cases": [a, b, c, hazard, dispute]}


# --- the page and every panel ---------------------------------------------------------------------------


def test_wall_page_renders_every_panel(app, world, day_of_cases, client):
    logged_in(client, "city_duty_officer")
    response = client.get("/wall")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    for name in PANELS:
        assert f'id="panel-{name}"' in html, name
    assert "连接中断，正在重连…" in html and "最后更新" in html
    # offline and CSP-clean: scripts only from our own static files; data blocks are not scripts
    for tag in re.findall(r"<script[^>]*>", html):
        assert 'src="/static/' in tag or 'type="application/json"' in tag, tag
    assert not re.search(r"\son[a-z]+=", html), "no inline event handlers"
    assert "/static/vendor/plotly.min.js" in html and "/static/vendor/socket.io.min.js" in html
    assert "/static/js/wall.js" in html and "/static/css/wall.css" in html
    # the page and the fragments are the same code
    for name in PANELS:
        fragment = get_panel(client, name)
        assert f'<section id="panel-{name}"' in fragment
    assert client.get("/wall/panel/nonsense").status_code == 404
    assert client.get("/wall/").status_code == 200


def test_counts_panel_shows_todays_figures(app, world, day_of_cases, client):
    logged_in(client, "city_duty_officer")
    html = get_panel(client, "counts")
    assert tile(html, "reported") == "7"
    assert tile(html, "registrations") == "1"  # steps made today (catalogue: 当期立案)
    assert tile(html, "closed") == "1"  # of today's reports (已办结)
    assert tile(html, "closures") == "1"  # closing steps made today (当期结案)
    assert tile(html, "closure_rate") == "14.29%"  # 1 / 7
    assert tile(html, "overdue") == "0"
    assert tile(html, "overdue_new") == "0" and tile(html, "overdue_open") == "0"
    assert tile(html, "escalations_town") == "1"
    assert tile(html, "escalations_city") == "1"
    assert tile(html, "hazard") == "1"
    assert tile(html, "dispute") == "1"
    hourly = panel_data(html)
    now_local = local(utcnow(), TZ)
    assert len(hourly["today"]) == now_local.hour + 1
    reported_local = local(day_of_cases["cases"][0].reported_at, TZ)
    if reported_local.date() == now_local.date():  # (unless the test ran across midnight)
        assert hourly["today"][reported_local.hour] == 7
    assert sum(hourly["last_week"]) == 0


def test_counts_follow_a_new_case(app, world, day_of_cases, client):
    logged_in(client, "city_duty_officer")
    assert tile(get_panel(client, "counts"), "reported") == "7"
    with app.app_context():
        report(world, "gw6", "1003", 6)
        jobs.process_outbox()
    html = get_panel(client, "counts")
    assert tile(html, "reported") == "8"
    assert tile(html, "hazard") == "2"


def test_hourly_chart_compares_with_the_same_day_last_week(app, world, client):
    now = utcnow()
    start, _ = day_bounds_utc(local(now, TZ).date(), TZ)
    at = max(start + timedelta(seconds=1), now - timedelta(minutes=1))
    with app.app_context():
        report(world, "gw0", "0101", 0, now=at)
        report(world, "gw1", "0101", 1, now=at)
        report(world, "gw2", "0101", 2, now=at - timedelta(days=7))
        report(world, "gw3", "0101", 3, now=at - timedelta(days=7, hours=1))
        report(world, "gw4", "0101", 4, now=at - timedelta(days=8))  # not the same weekday: not shown
        jobs.process_outbox()
    logged_in(client, "city_duty_officer")
    hourly = panel_data(get_panel(client, "counts"))
    hour = local(at, TZ).hour
    assert hourly["today"][hour] == 2 and sum(hourly["today"]) == 2
    assert hourly["last_week"][hour] == 1
    # the one an hour earlier falls on the day before that weekday when it is now 0 h local (the test failed
    # from 16:00 to 17:00 UTC when it expected both)
    same_weekday = local(at - timedelta(hours=1), TZ).date() == local(at, TZ).date()
    assert sum(hourly["last_week"]) == (2 if same_weekday else 1)
    assert hourly["last_week_day"] == (local(at, TZ).date() - timedelta(days=7)).isoformat()


def test_map_panel_points_loads_and_alerts(app, world, client):
    now = utcnow()
    with app.app_context():
        ordinary = report(world, "gw0", "0101", 0)
        hazard = report(world, "gw0", "1003", 0)
        closed = report(world, "gw1", "0101", 1)
        loop.self_close(closed, account("gw1"), "已处理")
        parking = report(world, "gw2", "0401", 2, discovered=now - timedelta(minutes=50))  # 乱停车: alert at once
        jobs.process_outbox()
        grid0, grid1, grid2 = (str(world.grids[i].id) for i in range(3))
    logged_in(client, "city_duty_officer")
    data = panel_data(get_panel(client, "map"))
    assert len(data["grids"]) == 8
    load = dict(zip(data["grids"], data["load"], strict=True))
    assert load[grid0] == 2 and load[grid1] == 1 and load[grid2] == 1 and sum(load.values()) == 4
    points = {p[0]: p for p in data["points"]}
    assert set(points) == {ordinary.id, hazard.id, parking.id}  # the closed one is gone
    assert points[ordinary.id][3] == "ordinary" and points[ordinary.id][4] == 0
    assert points[hazard.id][3] == "hazard"
    assert points[parking.id][4] == 2  # alerting: drawn bigger and red
    assert data["alert_grids"] == [grid2]
    lat, lon = world.grid_point(0)
    assert points[ordinary.id][1] == pytest.approx(lat) and points[ordinary.id][2] == pytest.approx(lon)


def test_alert_ticker_lists_open_alerts_with_time_left(app, world, client):
    now = utcnow()
    with app.app_context():
        parking = report(world, "gw0", "0401", 0, discovered=now - timedelta(minutes=50))
        jobs.process_outbox()
    logged_in(client, "city_duty_officer")
    html = get_panel(client, "alerts")
    assert parking.number in html
    assert "乱停车一小时临期" in html
    match = re.search(r'<time class="left" data-due="([^"]+)">剩 (\d\d):(\d\d)</time>', html)
    assert match, html
    assert 8 <= int(match.group(2)) <= 10  # the hour ends 10 minutes from now
    assert 'class="alert alert-parking_due newest"' in html
    assert "东湖街道" in html  # a city wall names the town
    assert ">未解除预警</a> <b" in html and ">1</b> 条" in html


def test_attendance_and_login_rates_by_town(app, world, client):
    app.config["SETTINGS"].sign_in_window_end = dt_time(0, 0)  # the morning 签到 window is over, whatever the hour
    now = utcnow()
    today = local(now, TZ).date()
    with app.app_context():
        town0, town1 = world.towns[0].id, world.towns[1].id
        db.add_all(
            [
                Heartbeat(account_id=account("gw0").id, at=now - timedelta(minutes=1)),
                Heartbeat(account_id=account("gw4").id, at=now - timedelta(minutes=20)),
            ]
        )  # gw4: offline
        db.add_all([SignIn(account_id=account(f"gw{i}").id, town_id=town0, day=today, at=now) for i in range(3)])
        db.add_all(
            [
                LoginRecord(account_id=account(u).id, username=u, success=True, at=now - timedelta(minutes=5))
                for u in ("town0_admin", "village0_admin")
            ]
        )
        db.add(LoginRecord(account_id=account("town1_admin").id, username="town1_admin", success=False, at=now))
        db.commit()
        assert town1
    logged_in(client, "city_duty_officer")
    html = get_panel(client, "attendance")  # the first wall request rebuilds presence from the tables
    chart = panel_data(html)
    assert chart["names"] == ["东湖街道", "西湖街道"]
    assert chart["attendance"] == [75.0, 0.0]  # 3 of 4 signed in; none
    assert chart["online"] == [25.0, 0.0]
    assert chart["low"] == [True, True] and chart["threshold"] == 90.0
    assert "在线 1 · 签到 3 / 4" in chart["label"][0]
    assert "东湖街道、西湖街道" in html
    logins = get_panel(client, "logins")
    rows = re.findall(
        r'<li class="(low|ok)">\s*<span class="n">([^<]+)</span>.*?<span class="v">([^<]+)</span>', logins, re.S
    )
    assert rows == [
        ("ok", "东湖街道", "66.67%"),
        ("low", "西湖街道", "0.00%"),
    ]  # 2 of 3 admins; a failed login counts nothing


def test_thresholds_are_settings(app, world, client):
    now = utcnow()
    with app.app_context():
        db.add_all(
            [
                LoginRecord(account_id=account(u).id, username=u, success=True, at=now - timedelta(minutes=5))
                for u in ("town0_admin", "village0_admin")
            ]
        )
        db.add(SettingValue(key="wall", value={"login_threshold": "70%"}))
        db.commit()
    logged_in(client, "city_duty_officer")
    logins = get_panel(client, "logins")
    assert re.search(r'<li class="low">\s*<span class="n">东湖街道</span>', logins)  # 66.67% < 70%
    app.config["WALL_SETTINGS"] = {"login_threshold": 0.5, "attendance_threshold": 0}
    logins = get_panel(client, "logins")
    assert re.search(r'<li class="ok">\s*<span class="n">东湖街道</span>', logins)
    assert panel_data(get_panel(client, "attendance"))["low"] == [False, False]


def test_city_wall_ranks_towns_by_the_assessment_and_towns_rank_villages_by_timeliness(app, world, client, redis_conn):
    """The city's wall: towns by this month's assessment total so far (shared ranks). A town's wall: its
    villages by 处理及时率 (indicator 8): r = (new − overdue) / new, 社区 and 村委 apart."""
    from commandcenter.assessment.service import month_table

    now = utcnow()
    with app.app_context():
        for gw, grid in (("gw0", 0), ("gw4", 4)):
            report(world, gw, "0101", grid, now=now)
            report(world, gw, "0103", grid, now=now)
        late = report(world, "gw4", "0501", 4, now=now)  # 井盖缺损
        loop.register(late, account("town1_operator"), now=now)
        late.handle_due = now - timedelta(seconds=1)  # its limit has passed (whatever the hour of the test)
        db.commit()
        loop.sweep_deadlines(now=now)
        jobs.process_outbox()
        today = local(now).date()
        table = month_table(db.get(Place, world.city.id), f"{today.year:04d}-{today.month:02d}")
        db.remove()
    logged_in(client, "city_duty_officer")
    html = get_panel(client, "rankings")
    rows = re.findall(
        r'<span class="rk">([^<]+)</span>\s*<span class="n">([^<]+)</span>\s*<span class="v">([^<]+)</span>', html
    )
    assert rows == [(str(r["rank"]), r["town_name"], f"{r['total']:.2f} 分") for r in table["rows"]]
    assert len(rows) == 2 and 'href="/figures/#assessment_total"' in html
    ranks = {name: rank for rank, name, _ in rows}
    totals = {r["town_name"]: r["total"] for r in table["rows"]}
    assert (ranks["东湖街道"] == ranks["西湖街道"]) == (totals["东湖街道"] == totals["西湖街道"])

    client.post("/logout", data={"csrf_token": csrf_from(client.get("/").get_data(as_text=True))})
    logged_in(client, "town1_duty")
    html = get_panel(client, "rankings")
    rows = re.findall(
        r'<span class="rk">([^<]+)</span>\s*<span class="n">([^<]+)</span>\s*<span class="v">([^<]+)</span>', html
    )
    assert ("1", "西湖南社区", "66.67%") in rows  # 3 new, 1 overdue
    assert ("—", "西湖北社区", "—") in rows  # nothing reported: not ranked
    assert "<h3>社区</h3>" in html and "<h3>村委</h3>" in html and "处理及时率" in html


def test_shared_ranks_skip_after_a_tie():
    assert competition_ranks([50.0, 80.0, 50.0, None, 20.0]) == [2, 1, 2, None, 4]
    assert competition_ranks([90.0, 90.0, 70.0]) == [1, 1, 3]
    assert competition_ranks([]) == []


# --- scope and access ----------------------------------------------------------------------------------


def test_town_duty_officer_sees_only_his_town(app, world, day_of_cases, client):
    with app.app_context():
        report(world, "gw4", "0401", 4, discovered=utcnow() - timedelta(minutes=50))  # an alert in town 1
        jobs.process_outbox()
        town0_grids = {str(g.id) for g in world.grids[:4]}
    logged_in(client, "town0_duty")
    html = client.get("/wall").get_data(as_text=True)
    assert "东湖街道" in html
    pages = {"page": html, **{name: get_panel(client, name) for name in PANELS}}
    geo = client.get("/wall/geojson")
    pages["geojson"] = geo.get_data(as_text=True)
    for where, text in pages.items():
        assert "西湖" not in text, f"town 1 shows in {where}"
    counts = pages["counts"]
    assert tile(counts, "reported") == "5" and tile(counts, "closure_rate") == "20.00%"
    assert tile(counts, "escalations_town") == "1" and tile(counts, "escalations_city") == "1"
    data = panel_data(pages["map"])
    assert set(data["grids"]) == town0_grids and data["alert_grids"] == []
    assert {str(p[7]) for p in data["points"]} <= town0_grids
    features = json.loads(pages["geojson"])["features"]
    assert {f["id"] for f in features} == town0_grids
    assert "暂无临期预警" in pages["alerts"]
    # a town ranks its villages, 社区 and 村委 apart
    assert "东湖南社区" in pages["rankings"] and "东湖北社区" in pages["rankings"]
    assert "<h3>社区</h3>" in pages["rankings"] and "<h3>村委</h3>" in pages["rankings"]


@pytest.mark.parametrize(
    "username", ["city_admin", "city_security_admin", "city_auditor", "dept0", "gw0", "volunteer0"]
)
def test_roles_without_wall_view_are_refused(app, world, client, username):
    logged_in(client, username)
    for path in ("/wall", "/wall/panel/counts", "/wall/panel/map", "/wall/geojson"):
        assert client.get(path).status_code == 403, (username, path)


def test_anonymous_is_sent_to_the_login_page(app, world, client):
    for path in ("/wall", "/wall/panel/counts", "/wall/geojson"):
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"], path


@pytest.mark.parametrize(
    "username", ["city_duty_officer", "city_operator", "city_supervisor", "city_leader", "town1_admin"]
)
def test_roles_with_wall_view_get_the_wall(app, world, client, username):
    logged_in(client, username)
    assert client.get("/wall").status_code == 200
    assert client.get("/wall/panel/alerts").status_code == 200


# --- the grid GeoJSON -------------------------------------------------------------------------------------


def test_geojson_is_scoped_small_and_revalidated_with_an_etag(app, world, client):
    logged_in(client, "city_duty_officer")
    response = client.get("/wall/geojson")
    assert response.status_code == 200
    assert response.mimetype == "application/geo+json"
    etag = response.headers["ETag"]
    assert etag
    body = response.get_json(force=True)
    assert len(body["features"]) == 8
    assert body["bbox"] == pytest.approx([120.0, 31.0, 120.2, 31.1])
    feature = body["features"][0]
    assert feature["properties"]["name"].endswith("第1网格") and feature["geometry"]["type"] == "Polygon"
    assert len(feature["geometry"]["coordinates"][0]) == 5
    again = client.get("/wall/geojson", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.get_data() == b""
    assert client.get("/wall/geojson", headers={"If-None-Match": '"other"'}).status_code == 200


def test_geojson_simplifies_dense_boundaries(app, world, client):
    with app.app_context():
        grid = world.grids[0]
        ring = [[120.0 + 0.05 * i / 200, 31.0] for i in range(200)]  # 200 collinear points on one side
        ring += [[120.05, 31.0], [120.05, 31.05], [120.0, 31.05], [120.0, 31.0]]
        db.get(type(grid), grid.id).geometry = {"type": "Polygon", "coordinates": [ring]}
        db.commit()
    logged_in(client, "city_duty_officer")
    feature = next(
        f for f in client.get("/wall/geojson").get_json(force=True)["features"] if f["id"] == str(world.grids[0].id)
    )
    assert len(feature["geometry"]["coordinates"][0]) <= 6


# --- counters after a restart ------------------------------------------------------------------------------


def test_empty_counters_are_rebuilt_at_the_first_request(app, world, day_of_cases, client):
    logged_in(client, "city_duty_officer")
    jobs._fake_redis = None  # a restart in embedded mode: the in-process counters are gone
    html = get_panel(client, "counts")
    assert tile(html, "reported") == "7" and tile(html, "closed") == "1"
    with app.app_context():
        r = jobs.counters_redis()
        assert r.exists(priming.PRIMED_KEY)
        month = counters.case_counts(r, world.towns[0].id, month=local(utcnow(), TZ).date())
        assert month["reported"] == 5 and month["closed"] == 1
        # primed, but today's counters went missing while the database has steps today: rebuilt again
        r.delete(counters.day_key(local(utcnow(), TZ).date(), world.city.id))
    assert tile(get_panel(client, "counts"), "reported") == "7"


def test_primed_counters_are_not_rebuilt_again(app, world, day_of_cases, client):
    logged_in(client, "city_duty_officer")
    get_panel(client, "counts")
    with app.app_context():
        r = jobs.counters_redis()
        # a figure only the counters hold (no table has it): a rebuild would erase it
        r.hincrby(counters.day_key(local(utcnow(), TZ).date(), world.city.id), "closed", 100)
    assert tile(get_panel(client, "counts"), "closures") == "101"


def test_time_left_reads_unambiguously():
    from commandcenter.wall.views import fmt_left

    assert fmt_left(596) == "剩 09:56"  # under an hour: minutes and seconds, counting down
    assert fmt_left(-61278) == "超时 17时01分"  # never a clock-like 17:01:18
    assert fmt_left(14 * 3600 + 46 * 60 + 52) == "剩 14时46分"
    assert fmt_left(-(3 * 86400 + 9 * 3600 + 5)) == "超时 3天9时"
    assert fmt_left(0) == "剩 00:00"


def test_wall_settings_are_read_once_and_a_bad_value_stops_the_start(monkeypatch, tmp_path):
    """WALL_* are settings like the others: read once at start, and a typo fails loudly instead of being
    ignored at every request."""
    from commandcenter.settings import Settings

    monkeypatch.setenv("WALL_LOGIN_THRESHOLD", "80%")
    monkeypatch.setenv("WALL_MAX_POINTS", "2000")
    settings = Settings.from_env(database_url="sqlite://", instance_path=tmp_path)
    assert (settings.wall_login_threshold, settings.wall_max_points) == (0.8, 2000)
    monkeypatch.setenv("WALL_TICKER_ROWS", "many")
    with pytest.raises(RuntimeError, match="WALL_TICKER_ROWS"):
        Settings.from_env(database_url="sqlite://", instance_path=tmp_path)
    monkeypatch.setenv("WALL_TICKER_ROWS", "7")
    monkeypatch.setenv("WALL_ATTENDANCE_THRESHOLD", "180%")
    with pytest.raises(RuntimeError, match="WALL_ATTENDANCE_THRESHOLD"):
        Settings.from_env(database_url="sqlite://", instance_path=tmp_path)
