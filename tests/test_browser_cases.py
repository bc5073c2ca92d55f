"""An operator takes a 12345 call, registers and dispatches it, with clicks in Debian's chromium."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ARTIFACTS, PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.live]


def test_operator_takes_a_call_registers_and_dispatches_it(world, live_server, page):
    problems: list[str] = []
    # a 400 re-render of the form and a missing favicon are logged as "Failed to load resource": not problems
    page.on(
        "console",
        lambda msg: (
            problems.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    category_id = str(world.category("0503").id)  # 公用设施 / 道路破损
    grid_id = str(world.grids[0].id)
    department_id = str(world.departments[1].id)  # 东湖派出所

    page.goto(live_server.url + "/login")
    page.fill("#username", "city_operator")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(live_server.url + "/")

    # the call: through the menu to the work-order form; a mistake first, then put right
    page.click("nav.mainnav >> text=12345 热线受理")
    page.wait_for_url(live_server.url + "/hotline/new")
    page.fill("#external_ref", "GD20260301009")
    page.fill("#caller_name", "赵六")
    page.fill("#caller_phone", "1391234")
    page.select_option("#category_id", category_id)
    page.fill("#address", "东湖路 18 号路口")
    page.select_option("#grid_id", grid_id)
    page.fill("#description", "路面塌陷一处，约一米见方，有车辆绕行")
    page.click("text=受理并生成案卷")
    assert "来电号码格式不正确" in page.locator("#caller_phone-error").inner_text()
    assert page.input_value("#description") == "路面塌陷一处，约一米见方，有车辆绕行"  # nothing lost
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "hotline-form-error.png"), full_page=True)
    page.fill("#caller_phone", "13912345678")
    page.click("text=受理并生成案卷")
    page.wait_for_url(re.compile(r".*/cases/\d+$"))
    assert "已受理 12345 工单" in page.locator(".flash").inner_text()
    assert "139****5678" in page.locator(".caller-phone").inner_text()
    timeline = page.locator(".case-timeline li")
    assert timeline.count() == 1
    number = page.locator("h1").inner_text().split()[0]
    assert number.startswith("SJ")

    # register: 立案
    page.get_by_role("button", name="立案", exact=True).click()
    page.wait_for_load_state()
    assert "已立案" in page.locator(".flash").inner_text()
    assert timeline.count() == 2
    assert page.get_by_role("button", name="立案", exact=True).count() == 0

    # dispatch: 派遣 to the town's police station
    page.select_option("#dispatch-department_id", department_id)
    page.fill("#dispatch-note", "请派员现场处置")
    page.get_by_role("button", name="派遣", exact=True).click()
    page.wait_for_load_state()
    assert "已派遣" in page.locator(".flash").inner_text()
    assert timeline.count() == 3
    assert "派遣至 东湖派出所：请派员现场处置" in timeline.nth(2).inner_text()
    assert "已派遣" in page.locator(".case-head").inner_text()
    assert page.locator("svg.grid-map path.map-grid").count() == 1
    page.screenshot(path=str(ARTIFACTS / "case-dispatched.png"), full_page=True)

    # the list: the filter swaps only the table (htmx), and the address bar keeps the filter
    page.click("nav.mainnav >> text=事件列表")
    page.wait_for_url(live_server.url + "/cases/")
    page.select_option("select[name=state]", "closed")
    page.wait_for_url(re.compile(r".*state=closed.*"))
    page.wait_for_selector("#case-table >> text=没有符合条件的事件")
    page.select_option("select[name=state]", "dispatched")
    page.wait_for_selector(f"#case-table >> text={number}")
    assert page.locator("select[name=state]").count() == 1  # the form itself was not swapped
    page.screenshot(path=str(ARTIFACTS / "case-list.png"), full_page=True)

    # the operator's queue refreshes itself; the dispatched case has left it
    page.click("nav.mainnav >> text=立案派遣")
    page.wait_for_url(live_server.url + "/cases/queue")
    assert number not in page.locator("#queue").inner_text()
    page.screenshot(path=str(ARTIFACTS / "case-queue.png"), full_page=True)

    assert problems == [], f"console errors (CSP?): {problems}"
    assert page.outside_requests == [], "no page may fetch anything from outside the machine"
