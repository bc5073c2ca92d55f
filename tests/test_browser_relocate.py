"""Chromium: an operator relocates a case (重新定位, issue 14 §3) — from the 立案派遣 queue by searching the standard
address list, then on the case page by a tap on the grids' map — and the case page shows the new grid."""

from __future__ import annotations

import re

import pytest

from commandcenter.db import db
from commandcenter.models import Case, StandardAddress
from tests.conftest import ARTIFACTS
from tests.test_browser_dept import login, watch_errors
from tests.test_case_screens import new_case

pytestmark = [pytest.mark.browser, pytest.mark.live]
expect = pytest.importorskip("playwright.sync_api").expect


def test_an_operator_relocates_a_case_by_a_standard_address_and_by_a_tap(app, world, live_server, page):
    problems = watch_errors(page)
    case = new_case(app, world, grid=0, description="井盖缺失，行人易跌落", address="东湖路口")
    with app.app_context():
        target = world.grids[3]  # town 0, the other village
        db.add(
            StandardAddress(
                code="SA-0001",
                address="东湖北社区幸福路 8 号",
                grid_id=target.id,
                village_id=target.village_id,
                town_id=target.town_id,
                lat=target.center_lat + 0.002,
                lon=target.center_lon + 0.002,
            )
        )
        db.commit()
        names = {g.id: g.name for g in world.grids}
    base = live_server.url
    login(page, base, "town0_operator")

    # 1. from the queue: a row's 「重新定位」 opens the queue's panel, a standard address found by a search
    page.goto(base + "/cases/queue")
    page.locator(f"a.relocate-link[data-case-id='{case.id}']").click()
    panel = page.locator("#relocate-panel")
    expect(panel).to_be_visible()
    expect(panel.locator(".relocate-number")).to_have_text(case.number)
    panel.locator("#address-search").fill("幸福路")
    choice = panel.locator("button.address-choice", has_text="幸福路 8 号")
    expect(choice).to_be_visible()
    choice.click()
    assert page.input_value("#relocate-address") == "东湖北社区幸福路 8 号"
    assert page.input_value("#relocate-address_id") != ""
    page.screenshot(path=str(ARTIFACTS / "queue-relocate.png"), full_page=True)
    panel.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(rf".*/cases/{case.id}$"))
    expect(page.locator(".flash").first).to_contain_text("已重新定位")
    expect(page.locator(".case-fields")).to_contain_text(names[world.grids[3].id])
    expect(page.locator(".case-fields")).to_contain_text("东湖北社区幸福路 8 号")
    expect(page.locator("li.step-relocate").first).to_contain_text("改为「东湖北社区幸福路 8 号」")
    with app.app_context():
        moved = db.get(Case, case.id)
        assert (moved.grid_id, moved.village_id) == (world.grids[3].id, world.grids[3].village_id)

    # 2. on the case page: a tap on the map, in grid 1 (back to the first village)
    form = page.locator("form#act-relocate")
    expect(form.locator("svg.locate-map")).to_be_visible()
    form.locator(f"path.locate-grid[data-grid-id='{world.grids[1].id}']").click()
    assert "已定位：" in form.locator(".locate-status").inner_text()
    assert page.input_value("#relocate-address_id") == ""
    lon, lat = float(page.input_value("#relocate-lon")), float(page.input_value("#relocate-lat"))
    page.fill("#relocate-note", "现场核实位置")
    page.screenshot(path=str(ARTIFACTS / "case-relocate.png"), full_page=True)
    form.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(rf".*/cases/{case.id}$"))
    expect(page.locator(".case-fields")).to_contain_text(names[world.grids[1].id])
    with app.app_context():
        moved = db.get(Case, case.id)
        assert moved.grid_id == world.grids[1].id
        assert abs(moved.lon - lon) < 1e-6 and abs(moved.lat - lat) < 1e-6
    assert problems == [] and page.outside_requests == []
