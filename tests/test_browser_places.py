"""An administrator of a fresh installation uploads the city's boundaries in Debian's chromium: a file with an
overlap is checked and its problem shown on the map, a corrected file is confirmed, the tree shows the grids."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ARTIFACTS, PASSWORD
from tests.test_place_admin import collection, feature, fresh_admin, good_file
from tests.world import square

pytestmark = [pytest.mark.browser, pytest.mark.live]


def test_upload_check_fix_and_confirm_in_chromium(app, runner, live_server, page):
    problems: list[str] = []
    page.on(
        "console",
        lambda msg: (
            problems.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    fresh_admin(app, runner)  # `flask create-admin`: the city 本市 (000000) and the administrator root

    page.goto(live_server.url + "/login")
    page.fill("#username", "root")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(live_server.url + "/")
    page.click("nav.mainnav >> text=区划网格")
    page.wait_for_url(live_server.url + "/admin/places")
    assert "本市" in page.locator("table.places-tree").inner_text()

    # a file whose second grid overlaps the first
    overlapping = collection(
        feature("T01", "东湖街道", "town", "000000", square(120.0, 31.0, 120.1, 31.1), kind="street"),
        feature("V01", "东湖社区", "village", "T01", square(120.0, 31.0, 120.1, 31.05), kind="community"),
        feature("G01", "东湖社区第1网格", "grid", "V01", square(120.0, 31.0, 120.06, 31.05)),
        feature("G02", "东湖社区第2网格", "grid", "V01", square(120.05, 31.0, 120.1, 31.05)),
    )
    page.set_input_files(
        "input[name=file]", files=[{"name": "bad.geojson", "mimeType": "application/json", "buffer": overlapping}]
    )
    page.click("button:has-text('上传并检查')")
    page.wait_for_url(re.compile(r".*/admin/places/check/[A-Za-z0-9_-]+$"))
    assert "不能导入" in page.locator(".check-verdict").inner_text()
    errors = page.locator("ul.places-problems.errors li").all_inner_texts()
    assert any(t.startswith("G02：") and "与网格 G01 重叠" in t for t in errors), errors
    highlighted = page.locator("svg.places-map path.feature.problem[data-code=G02]")
    assert highlighted.count() == 1 and highlighted.get_attribute("fill") == "#ff4d4f"
    assert page.locator("svg.places-map path.problem-area").count() >= 1
    assert page.locator("button:has-text('确认导入')").count() == 0
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "places-check-error.png"), full_page=True)

    # the corrected file: checked clean, confirmed
    page.click("text=返回区划网格（重新上传）")
    page.wait_for_url(live_server.url + "/admin/places")
    page.set_input_files(
        "input[name=file]", files=[{"name": "good.geojson", "mimeType": "application/json", "buffer": good_file()}]
    )
    page.click("button:has-text('上传并检查')")
    page.wait_for_url(re.compile(r".*/admin/places/check/[A-Za-z0-9_-]+$"))
    assert "检查通过" in page.locator(".check-verdict").inner_text()
    assert page.locator("#n-create").inner_text() == "4" and page.locator("#n-update").inner_text() == "1"
    assert page.locator("svg.places-map path.feature").count() == 5
    page.click("button:has-text('确认导入')")
    page.wait_for_url(live_server.url + "/admin/places")
    assert "新建 4 个、更新 1 个" in page.locator(".flash-info").inner_text()
    tree = page.locator("table.places-tree")
    for name in ("测试市", "东湖街道", "东湖社区", "东湖社区第1网格", "东湖社区第2网格"):
        assert name in tree.inner_text()
    assert page.locator("tr[data-code=G02] td").nth(2).inner_text() == "专属网格"
    page.screenshot(path=str(ARTIFACTS / "places-tree.png"), full_page=True)

    # the grid's own page
    page.click("tr[data-code=G01] >> text=管理")
    assert "一长五员" in page.locator("body").inner_text()
    assert problems == []
    assert page.outside_requests == [], "no page may fetch anything from outside the machine"
