"""A town supervisor writes, builds and downloads his monthly bulletin, with clicks in Debian's chromium."""

from __future__ import annotations

import re
from io import BytesIO

import docx
import pytest

from tests.conftest import ARTIFACTS, PASSWORD
from tests.test_bulletin import body_text, month_of_data, new_bulletin, row_of, table

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.postgres]

PROBLEMS = "东湖北社区矛盾纠纷尚未化解，人房关联数据需核实。"


def test_town_supervisor_writes_builds_and_downloads_the_bulletin(app, world, live_server, page):
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
    data = month_of_data(app, world)
    bid = new_bulletin(app, world.towns[0].id, data["month"])
    new_bulletin(app, world.towns[1].id, data["month"], title="西湖街道月度通报")

    page.goto(live_server.url + "/login")
    page.fill("#username", "town0_supervisor")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(live_server.url + "/")

    # the list shows his town's bulletin only
    page.click("nav.mainnav >> text=月度通报")
    page.wait_for_url(live_server.url + "/bulletins/")
    assert "西湖街道月度通报" not in page.locator("table.bulletin-list").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "bulletin-list.png"))
    page.click("table.bulletin-list >> text=东湖街道月度通报")
    page.wait_for_url(f"{live_server.url}/bulletins/{bid}")
    assert "尚未生成" in page.locator("#bulletin-content").inner_text()

    # free text and a story, saved
    page.fill("#problems", PROBLEMS)
    page.fill("#requirements", "下月10日前完成整改。")
    page.check(f'input[name=story][value="{data["road"]}"]')
    page.click("#save-button")
    page.wait_for_url(f"{live_server.url}/bulletins/{bid}")
    assert "已保存" in page.locator(".flash").inner_text()
    assert page.input_value("#problems") == PROBLEMS
    page.screenshot(path=str(ARTIFACTS / "bulletin-edit.png"))

    # 生成通报: the progress bar (htmx polling) reaches done, and the content appears without a reload
    page.click("#build-button")
    page.wait_for_selector("#bulletin-progress[data-status=done]", timeout=30000)
    assert page.locator("#bulletin-progress progress").get_attribute("value") == "100"
    assert "已生成" in page.locator("#bulletin-progress").inner_text()
    page.wait_for_selector("#bulletin-content >> text=一、总体情况", timeout=10000)
    assert PROBLEMS in page.locator("#bulletin-content").inner_text()
    assert page.locator("#bulletin-content figcaption").first.inner_text().startswith("表1 ")
    # the suggestion of the built data can be copied into the box (and is not saved by that)
    page.click("#fill-suggestion")
    assert "事件办结率低于" in page.input_value("#problems")
    page.screenshot(path=str(ARTIFACTS / "bulletin-built.png"), full_page=True)

    # download the .docx and read its tables back
    with page.expect_download() as info:
        page.click("#bulletin-progress >> text=下载 Word（.docx）")
    download = info.value
    assert re.search(r"\.docx$", download.suggested_filename)
    document = docx.Document(BytesIO(open(download.path(), "rb").read()))
    events = table(document, "事件上报与办理")
    assert events[0][:5] == ["村（社区）", "上报事件", "普通事件", "安全隐患", "矛盾纠纷"]
    assert row_of(events, "东湖南社区")[1] == "3" and row_of(events, "东湖北社区")[1] == "1"
    assert row_of(events, "合计")[1] == "4"
    assert row_of(table(document, "人房关联"), "东湖北社区")[-1] == "数据存疑"
    text = body_text(document)
    assert PROBLEMS in text and "东湖南社区第1网格" in text

    # the print view opens with the same content
    page.goto(f"{live_server.url}/bulletins/{bid}/print")
    assert page.locator("figcaption").count() == len(document.tables)
    page.set_viewport_size({"width": 900, "height": 1200})
    page.screenshot(path=str(ARTIFACTS / "bulletin-print.png"))
    assert page.outside_requests == []
    assert problems == []
