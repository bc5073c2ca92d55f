"""The first-run guide of docs/operations.md, done as a new city does it: server mode on an EMPTY PostgreSQL
database, two `flask` commands, then only the browser. No Python is written by hand: the categories, the
places and grids (one GeoJSON file), a center, a department and the accounts are made on the admin pages, an
operator takes a 12345 call, and the case appears on a duty officer's wall (issue 13 §9)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import (
    ARTIFACTS,
    ROOT,
    TEST_REDIS_URL,
    LiveServer,
    WorkerProcess,
    create_database,
    drop_database,
    free_port,
)

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

PLACES = Path(__file__).parent / "fixtures" / "first_run" / "places.geojson"
ADMIN_PASSWORD = "FirstRun@2026city"
NEW_PASSWORD = "Pingjiang#2026new"
MAP_CASE_IDS = """() => {
  const el = document.getElementById('plot-map');
  if (!el || !el.data) return [];
  return el.data.filter(t => t.meta === 'cases').flatMap(t => (t.customdata || []).map(c => c[0]));
}"""


@pytest.fixture
def empty_database():
    """A brand-new PostgreSQL database with no tables at all (the session's test database is migrated)."""
    url = create_database("cc_firstrun")
    yield url
    drop_database(url)


def flask_command(env: dict, *args: str) -> str:
    """A `flask` command as the operations guide writes it; its output, or the test fails with it."""
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, f"flask {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def log_in(page, base: str, username: str, password: str) -> None:
    page.goto(base + "/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def change_forced_password(page, base: str, one_time: str) -> None:
    """The first login with a one-time password lands on the change page and allows nothing else."""
    assert "/password" in page.url, page.url
    page.fill("#old_password", one_time)
    page.fill("#new_password", NEW_PASSWORD)
    page.fill("#new_password_again", NEW_PASSWORD)
    page.click("main button[type=submit].primary")  # not the header's 退出 button
    page.wait_for_load_state()
    assert "/password" not in page.url, page.locator("body").inner_text()[:500]


def create_account(page, base: str, username: str, name: str, role: str, place_label: str) -> str:
    """Create an account on /admin/accounts/new; returns the one-time password shown once."""
    page.goto(base + "/admin/accounts/new")
    page.fill("#username", username)
    page.fill("#display_name", name)
    page.select_option("#role", role)
    option = page.locator("#place_id option", has_text=place_label).first
    page.select_option("#place_id", option.get_attribute("value"))
    page.click("main button[type=submit].primary")
    page.wait_for_load_state()
    password = page.locator(".one-time-password").inner_text().strip()
    assert len(password) >= 8, page.locator("body").inner_text()[:500]
    return password


def test_a_new_city_from_an_empty_database_to_a_case_on_the_wall(browser, empty_database, redis_conn, tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": empty_database,
        "REDIS_URL": TEST_REDIS_URL,
        "INSTANCE_PATH": str(tmp_path),
        "SECRET_KEY": "first-run-test",
        "SECURE_COOKIES": "0",
        "LOGIN_RATE_LIMIT": "1000 per minute",
    }
    env.pop("FLASK_APP", None)
    # the two commands of the guide
    flask_command(env, "db", "upgrade")
    out = flask_command(env, "create-admin", "--username", "cityadmin", "--password", ADMIN_PASSWORD)
    assert "cityadmin" in out

    ARTIFACTS.mkdir(exist_ok=True)
    web = LiveServer(env, free_port(), ARTIFACTS / "first-run-web.log").start()
    worker = WorkerProcess(env, ARTIFACTS / "first-run-worker.log").start()
    admin_ctx = browser.new_context(viewport={"width": 1600, "height": 1000}, locale="zh-CN")
    duty_ctx = browser.new_context(viewport={"width": 1920, "height": 1080}, locale="zh-CN")
    operator_ctx = browser.new_context(viewport={"width": 1600, "height": 1000}, locale="zh-CN")
    outside: list[str] = []
    for ctx in (admin_ctx, duty_ctx, operator_ctx):
        ctx.on(
            "request",
            lambda r: (
                outside.append(r.url)
                if not r.url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:", "about:"))
                else None
            ),
        )
    try:
        base = web.url
        admin = admin_ctx.new_page()
        log_in(admin, base, "cityadmin", ADMIN_PASSWORD)
        assert admin.url.rstrip("/") == base, admin.url

        # 1. categories: the national default tree, one button
        admin.goto(base + "/admin/categories")
        admin.click("text=安装国家默认类别树")
        admin.wait_for_load_state()
        assert "占道经营" in admin.locator("body").inner_text()

        # 2. places and grids: one GeoJSON file, checked, then confirmed
        admin.goto(base + "/admin/places")
        admin.set_input_files("input[type=file][name=file]", str(PLACES))
        admin.click("text=上传并检查")
        admin.wait_for_load_state()
        admin.click("text=确认导入")
        admin.wait_for_load_state()
        admin.goto(base + "/admin/places")
        tree = admin.locator("body").inner_text()
        for name in ("姑苏区", "平江街道", "钮家巷社区", "钮家巷第一网格", "钮家巷第二网格"):
            assert name in tree, f"{name} missing from the places tree"

        # 3. the town's center and a department serving the whole city
        admin.goto(base + "/admin/centers")
        option = admin.locator("#f-place option", has_text="平江街道").first
        admin.select_option("#f-place", option.get_attribute("value"))
        admin.fill("#f-name", "平江街道综治中心")
        admin.click(".center-form button[type=submit]")
        admin.wait_for_load_state()
        assert "平江街道综治中心" in admin.locator("body").inner_text()

        admin.goto(base + "/admin/departments")
        admin.fill("#f-code", "CG01")
        admin.fill("#f-name", "城管局")
        option = admin.locator("#f-places option", has_text="姑苏区").first
        admin.select_option("#f-places", [option.get_attribute("value")])
        admin.click(".department-form button[type=submit]")
        admin.wait_for_load_state()
        assert "城管局" in admin.locator("body").inner_text()

        # 4. accounts: a duty officer and a 12345 operator, each with a one-time password
        duty_password = create_account(admin, base, "duty01", "王值班", "duty_officer", "姑苏区")
        operator_password = create_account(admin, base, "op01", "李坐席", "operator", "姑苏区")

        # 5. the duty officer opens the wall
        wall = duty_ctx.new_page()
        log_in(wall, base, "duty01", duty_password)
        change_forced_password(wall, base, duty_password)
        wall.goto(base + "/wall")
        wall.wait_for_function("() => window.wallState && window.wallState().socketUp", timeout=20000)
        wall.wait_for_function(
            "() => { const el = document.getElementById('plot-map'); return el && el.data && el.data.length > 0; }",
            timeout=20000,
        )
        assert wall.evaluate(MAP_CASE_IDS) == []

        # 6. the operator takes a call; the grid follows from the coordinates
        desk = operator_ctx.new_page()
        log_in(desk, base, "op01", operator_password)
        change_forced_password(desk, base, operator_password)
        desk.goto(base + "/hotline/new")
        option = desk.locator("#category_id option", has_text="占道经营").first
        desk.select_option("#category_id", option.get_attribute("value"))
        desk.fill("#external_ref", "GS2026120300001")
        desk.fill("#caller_name", "张先生")
        desk.fill("#caller_phone", "13812345678")
        desk.fill("#address", "平江路 88 号门口")
        desk.fill("#lon", "120.585")
        desk.fill("#lat", "31.300")
        desk.fill("#description", "平江路 88 号门口有流动摊贩占道经营，行人无法通过。")
        desk.click("main form button[type=submit].primary")
        desk.wait_for_load_state()
        body = desk.locator("body").inner_text()
        assert "钮家巷第一网格" in body, body[:800]

        # 7. the case is on the wall, live
        wall.wait_for_function(f"() => ({MAP_CASE_IDS})().length == 1", timeout=20000)
        wall.screenshot(path=str(ARTIFACTS / "first-run-wall.png"))
        assert outside == []
    finally:
        for ctx in (admin_ctx, duty_ctx, operator_ctx):
            ctx.close()
        worker.stop()
        web.stop()
