"""A person logs in through the real page in Debian's chromium, against a live server on PostgreSQL."""

from __future__ import annotations

import pytest

from tests.conftest import ARTIFACTS, PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.live]


def test_login_in_chromium(world, live_server, page):
    page.goto(live_server.url + "/login")
    assert page.title().startswith("登录")
    page.fill("#username", "town0_supervisor")
    page.fill("#password", "wrong-password")
    page.click("button[type=submit]")
    assert page.locator(".field-error").inner_text() == "用户名或密码错误"

    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(live_server.url + "/")
    assert "工作台" in page.locator("h1").inner_text()
    assert "督导人员" in page.locator(".me").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "login-home.png"))

    page.click("text=退出")
    page.wait_for_url(live_server.url + "/login")
    assert "已安全退出" in page.content()
    assert page.outside_requests == [], "no page may fetch anything from outside the machine"
