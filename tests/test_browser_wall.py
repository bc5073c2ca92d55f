"""The wall in Debian's chromium: every panel on one screen, live updates, an alert from a worker, and
recovery after the server is stopped and started again. Screenshots go to test-artifacts/."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
import requests

from commandcenter import create_app
from commandcenter.cases import loop
from commandcenter.db import db
from commandcenter.models import Account
from commandcenter.timeutil import utcnow
from tests.conftest import ARTIFACTS, PASSWORD, TEST_REDIS_URL, make_settings

pytestmark = [pytest.mark.browser, pytest.mark.live]

PANELS = ("map", "counts", "attendance", "alerts", "logins", "rankings")

MAP_CASE_IDS = """() => {
  const el = document.getElementById('plot-map');
  if (!el || !el.data) return [];
  return el.data.filter(t => t.meta === 'cases').flatMap(t => (t.customdata || []).map(c => c[0]));
}"""
HIGHLIGHTED = """() => {
  const el = document.getElementById('plot-map');
  const t = el && el.data && el.data.find(t => t.meta === 'highlight');
  return t ? t.lat.length : 0;
}"""


def tile_text(page, key: str) -> str:
    return page.locator(f'#panel-counts [data-key="{key}"] .v').inner_text().strip()


def open_wall(page, base_url: str, username: str = "city_duty_officer") -> None:
    page.goto(base_url + "/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base_url + "/")
    page.goto(base_url + "/wall")
    page.wait_for_function("() => window.wallState && window.wallState().socketUp", timeout=15000)
    page.wait_for_function(
        "() => { const el = document.getElementById('plot-map'); return el && el.data && el.data.length > 0; }",
        timeout=15000,
    )


def assert_fits_the_screen(page) -> None:
    sizes = page.evaluate(
        "() => [document.documentElement.scrollHeight, innerHeight, document.documentElement.scrollWidth, innerWidth]"
    )
    assert sizes[0] <= sizes[1] and sizes[2] <= sizes[3], f"the wall scrolls: {sizes}"
    width, height = sizes[3], sizes[1]
    for name in PANELS:
        panel = page.locator(f"#panel-{name}")
        assert panel.is_visible(), name
        box = panel.bounding_box()
        assert (
            box["x"] >= 0
            and box["y"] >= 0
            and box["x"] + box["width"] <= width + 1
            and box["y"] + box["height"] <= height + 1
        ), (name, box)
        assert box["width"] > width * 0.15 and box["height"] > height * 0.15, (name, box)
    for plot in ("plot-map", "plot-hourly", "plot-attendance"):
        box = page.locator(f"#{plot}").bounding_box()
        assert box and box["height"] > 40, (plot, box)


def api_token(base_url: str, username: str) -> str:
    response = requests.post(base_url + "/api/v1/tokens", json={"username": username, "password": PASSWORD}, timeout=10)
    assert response.status_code in (200, 201), response.text
    return response.json()["token"]


def post_case(base_url: str, token: str, world, grid: int, code: str = "0101") -> dict:
    lat, lon = world.grid_point(grid)
    response = requests.post(
        base_url + "/api/v1/cases",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
        json={
            "client_key": f"wall-{uuid.uuid4().hex[:16]}",
            "category_code": code,
            "description": "路边垃圾堆积，影响通行",
            "lat": lat,
            "lon": lon,
        },
    )
    assert response.status_code in (200, 201), response.text
    return response.json()


def test_wall_fits_updates_live_and_recovers_after_a_restart(world, live_server, page):
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    token = api_token(live_server.url, "gw0")
    before = [post_case(live_server.url, token, world, grid) for grid in (0, 5)]

    open_wall(page, live_server.url)
    assert_fits_the_screen(page)
    page.wait_for_function(f"() => ({MAP_CASE_IDS})().length >= 2", timeout=10000)
    assert set(page.evaluate(MAP_CASE_IDS)) >= {c["id"] for c in before}
    assert tile_text(page, "reported") == "2"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "wall-1920x1080.png"))

    # the duty officer zooms in on the map: a refresh must keep that view (uirevision)
    box = page.locator("#plot-map").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    zoom_before = page.evaluate("() => document.getElementById('plot-map')._fullLayout.map.zoom")
    page.mouse.wheel(0, -400)
    page.wait_for_timeout(800)
    zoom = page.evaluate("() => document.getElementById('plot-map')._fullLayout.map.zoom")
    assert zoom > zoom_before + 0.2

    # a case posted through the API: on the map at once (highlighted), and in the counts, without a reload
    canvases = page.evaluate("() => document.querySelectorAll('canvas').length")
    page.evaluate("""() => { window.__sameDocument = true;
        document.getElementById('plot-map').__kept = true; document.getElementById('plot-hourly').__kept = true; }""")
    posted_at = time.monotonic()
    new = post_case(live_server.url, token, world, 3, code="1003")
    page.wait_for_function(f"() => ({MAP_CASE_IDS})().includes({new['id']})", timeout=10000, polling=50)
    on_screen = time.monotonic() - posted_at
    assert page.evaluate(HIGHLIGHTED) >= 1
    # issue 15 §1: pushes come as one "batch" per tick (1 s); commit → screen within 1.5 s (printed, and
    # bounded loosely here: this machine is shared by other test runs)
    state = page.evaluate("() => window.wallState()")
    print(
        f"report posted → on the wall's map: {on_screen:.2f} s "
        f"(commit → flushed {state['flushLagMs']} ms, → received {state['lagMs']} ms)"
    )
    assert state["batches"] >= 1 and 0 <= state["flushLagMs"] < 3000 and on_screen < 3.0
    page.wait_for_function(
        "() => document.querySelector('#panel-counts [data-key=\"reported\"] .v').textContent.trim() === '3'",
        timeout=10000,
    )
    assert tile_text(page, "hazard") == "1"
    page.wait_for_function(
        "() => document.querySelector('#panel-map .map-reported').textContent.trim() === '3'", timeout=15000
    )
    page.wait_for_timeout(500)
    assert page.evaluate("() => window.__sameDocument === true"), "the page was reloaded"
    # the panels were swapped by htmx, the graphs kept (hx-preserve) and updated in place, the zoom kept
    assert page.evaluate("() => document.getElementById('plot-hourly').__kept === true")
    assert page.evaluate("() => document.getElementById('plot-map').__kept === true")
    assert page.evaluate("() => document.getElementById('plot-map')._fullLayout.map.zoom") == pytest.approx(
        zoom, abs=0.01
    )
    assert page.evaluate("() => document.querySelectorAll('canvas').length") == canvases, "no new graph was made"
    assert page.locator("#wall-updated").inner_text().count(":") == 2

    # the same wall on a 4K screen: same layout, nothing scrolls
    page.set_viewport_size({"width": 3840, "height": 2160})
    page.wait_for_timeout(1200)
    assert_fits_the_screen(page)
    page.screenshot(path=str(ARTIFACTS / "wall-3840x2160.png"))
    page.set_viewport_size({"width": 1920, "height": 1080})

    # the server goes away: the banner shows; it comes back on the same port (LiveServer.start reuses its
    # port): the banner goes by itself
    banner = page.locator("#wall-banner")
    assert banner.is_hidden()
    live_server.stop()
    banner.wait_for(state="visible", timeout=20000)
    assert "连接中断，正在重连" in banner.inner_text()
    page.screenshot(path=str(ARTIFACTS / "wall-disconnected.png"))
    live_server.start()
    banner.wait_for(state="hidden", timeout=40000)
    # the new process starts with empty in-process counters: the first wall request rebuilt them
    page.wait_for_function(
        "() => document.querySelector('#panel-counts [data-key=\"reported\"] .v').textContent.trim() === '3'",
        timeout=15000,
    )
    assert page.evaluate("() => window.__sameDocument === true"), "recovered without a reload"
    another = post_case(live_server.url, token, world, 6)
    page.wait_for_function(f"() => ({MAP_CASE_IDS})().includes({another['id']})", timeout=15000)
    page.wait_for_function(
        "() => document.querySelector('#panel-counts [data-key=\"reported\"] .v').textContent.trim() === '4'",
        timeout=10000,
    )
    assert page.outside_requests == []
    assert errors == []


def test_alert_raised_by_a_worker_appears_in_the_ticker(world, live_stack, page, pg_url, tmp_path):
    web, _worker = live_stack
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    open_wall(page, web.url)
    assert "暂无临期预警" in page.locator("#panel-alerts").inner_text()

    # the report is committed by this test process in server mode (as another web process would); the
    # counters, the alert and the pushes are done by the separate RQ worker and reach the page via Redis
    writer = create_app(make_settings(tmp_path / "writer", pg_url, redis_url=TEST_REDIS_URL))
    with writer.app_context():
        gw = db.query(Account).filter_by(username="gw0").one()
        lat, lon = world.grid_point(0)
        now = utcnow()
        data = loop.ReportInput(
            category_id=world.category("0401").id,
            description="车辆占用消防通道",
            lat=lat,
            lon=lon,
            address="东湖路 8 号",
            discovered_at=now - timedelta(minutes=50),
        )
        case, _ = loop.report_case(
            data, actor=gw, source="app", client_key=f"wall-parking-{uuid.uuid4().hex[:8]}", now=now
        )
        db.remove()

    row = page.locator(f'#panel-alerts li.alert[data-case="{case.id}"]')
    row.wait_for(state="visible", timeout=30000)
    assert case.number in row.inner_text() and "乱停车一小时临期" in row.inner_text()
    assert "fresh" in row.get_attribute("class") or "newest" in row.get_attribute("class")
    first = row.locator("time.left").inner_text()
    assert first.startswith("剩 ")
    page.wait_for_timeout(2100)
    assert row.locator("time.left").inner_text() != first, "the time left counts down"
    page.wait_for_function(f"() => ({MAP_CASE_IDS})().includes({case.id})", timeout=15000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "wall-alert.png"))
    assert page.outside_requests == []
    assert errors == []
