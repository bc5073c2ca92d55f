"""The drill-down pages through the test client on PostgreSQL: levels, figures, sorting, filters, validation,
the .xlsx export read back with openpyxl, and the jurisdiction (404 outside the viewer's place).

The data is tests/test_stats.py's hand-counted dataset (Monday 2 and Tuesday 3 November 2026)."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from openpyxl import load_workbook

from commandcenter.db import db
from commandcenter.drill.service import CHILD_COLUMNS
from tests.conftest import logged_in
from tests.test_stats import TUE, add_case, at, build_dataset

pytestmark = [pytest.mark.postgres]

P = "period=custom&start=2026-11-02&end=2026-11-03"


@pytest.fixture
def w(app, world):
    with app.app_context():
        view = build_dataset(world)
    db.remove()
    return view


def text(response) -> str:
    return response.get_data(as_text=True)


def figure(html: str, name: str) -> str:
    """The visible text of the element marked data-figure=name (tags stripped)."""
    match = re.search(rf'data-figure="{re.escape(name)}"[^>]*>(.*?)</(dd|td|span|strong)>', html, re.S)
    assert match, f"no figure {name}"
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


def table_rows(html: str) -> list[list[str]]:
    body = re.search(r'<table class="data drill-table".*?<tbody>(.*?)</tbody>', html, re.S).group(1)
    rows = []
    for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S):
        rows.append(
            [
                re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", td)).strip()
                for td in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)
            ]
        )
    return rows


# --- levels ----------------------------------------------------------------------------------------------


def test_each_supervisor_starts_at_his_own_place(client, w):
    logged_in(client, "city_supervisor")
    response = client.get("/drill/?" + P)
    assert response.status_code == 302 and response.headers["Location"].startswith(f"/drill/{w.city}?")
    assert "start=2026-11-02" in response.headers["Location"]
    client2 = client.application.test_client()
    logged_in(client2, "town0_supervisor")
    assert client2.get("/drill/").headers["Location"] == f"/drill/{w.town(0)}"


def test_city_page_panels_children_and_links(client, w):
    logged_in(client, "city_supervisor")
    html = text(client.get(f"/drill/{w.city}?" + P))
    assert "测试市" in html and "2026-11-02 至 2026-11-03" in html
    assert figure(html, "reported") == "9"
    assert figure(html, "gridworkers") == "8"
    for panel in (
        "事件",
        "办结与有效",
        "流转",
        "时效",
        "网格员",
        "管理员登录",
        "走访",
        "信息采集",
        "党建",
        "矛盾纠纷排查化解",
    ):
        assert f"<h2>{panel}</h2>" in html, panel
    rows = table_rows(html)
    assert [r[0] for r in rows] == ["东湖街道", "西湖街道"]
    assert [r[1] for r in rows] == ["7", "2"]
    assert rows[0][4] == "42.86%"  # 办结率 3/7
    assert f'href="/drill/{w.town(0)}?period=custom&amp;start=2026-11-02&amp;end=2026-11-03"' in html
    assert 'id="drill-trend-data"' in html and '"reported": [5, 4]' in html.replace(
        '"reported":[5,4]', '"reported": [5, 4]'
    )
    assert "plotly-basic.min.js" in html and "js/drill.js" in html and "css/drill.css" in html


def test_town_village_grid_worker_case_chain(client, w):
    logged_in(client, "city_supervisor")
    town = text(client.get(f"/drill/{w.town(0)}?" + P))
    assert figure(town, "closure_rate") == "42.86%"
    assert figure(town, "valid_rate") == "83.33%"
    assert figure(town, "timeliness") == "83.33%"  # indicator 8: (6 assessed − 1 overdue) / 6, c4 (invalid) left out
    assert figure(town, "patrol_rate").startswith("50.00%")
    assert figure(town, "login_rate") == "33.33%"
    assert figure(town, "visit-drug_user") == "50.00%"
    assert figure(town, "visit-community_correction") == "—"
    assert figure(town, "party_members") == "50"
    assert "测试市</a>" in town  # breadcrumb back up
    assert [r[0] for r in table_rows(town)] == ["东湖南社区", "东湖北社区"]
    village = text(client.get(f"/drill/{w.village(0)}?" + P))
    assert [r[0] for r in table_rows(village)] == ["东湖南社区第1网格", "东湖南社区第2网格"]
    grid = text(client.get(f"/drill/{w.grid(0)}?" + P))
    rows = table_rows(grid)
    assert rows[0][:5] == ["gw0", "东湖南社区第1网格", "4", "2", "50.00%"]
    assert f'href="/drill/worker/{w.id("gw0")}?period=custom' in grid
    worker = text(client.get(f"/drill/worker/{w.id('gw0')}?" + P))
    assert figure(worker, "reports") == "4" and figure(worker, "patrol_compliant") == "达标"
    assert "本期上报的事件（5 件）" in worker  # his four and the one judged duplicate
    links = re.findall(r'class="case-link" href="/cases/(\d+)"', worker)
    assert len(links) == 5
    assert client.get(f"/cases/{links[0]}").status_code == 200


def test_flagged_figures_carry_a_warning_instead_of_a_plain_fact(client, w):
    logged_in(client, "city_supervisor")
    village = text(client.get(f"/drill/{w.village(1)}?" + P))
    assert "数据质量提示" in village
    assert "人房关联率 101.88% 超过 100%，登记数据可能有误" in village
    assert figure(village, "linkage_rate").startswith("⚠ 101.88%")
    town = text(client.get(f"/drill/{w.town(0)}?" + P))
    rows = table_rows(town)
    linkage = [c.label for c in CHILD_COLUMNS].index("人房关联率")
    assert rows[0][linkage] == "95.00%" and rows[1][linkage] == "⚠ 101.88%"
    # the town's total adds up the impossible village figure: it is suspect too, on the drill as in the bulletin
    assert "数据质量提示" in town and "合计含东湖北社区的存疑数据" in town
    assert figure(town, "linkage_rate").startswith("⚠")
    assert "下级单位有存疑数据" in town  # and it says which child's figure is impossible
    note = town.split("下级单位有存疑数据")[1].split("</section>")[0]
    assert "东湖北社区</a>：已关联人数 2547 多于登记人口 2500" in note and "东湖南社区" not in note


def test_a_burst_of_reports_is_flagged_on_the_pages(app, client, w):
    with app.app_context():
        for i in range(51):
            add_case(w, 6, reporter="gw6", reported=at(TUE, 14) + timedelta(seconds=60 * i + 5))
        db.commit()
    db.remove()
    logged_in(client, "city_supervisor")
    town = text(client.get(f"/drill/{w.town(1)}?" + P))
    assert "网格员 gw6 在 2026-11-03 14:00 起的一小时内上报 51 件" in town
    assert figure(town, "reported").startswith("⚠ 53")
    grid = text(client.get(f"/drill/{w.grid(6)}?" + P))
    assert table_rows(grid)[0][:3] == ["gw6", "西湖北社区第1网格", "⚠ 51"]
    worker = text(client.get(f"/drill/worker/{w.id('gw6')}?" + P))
    assert "2026-11-03 14:00 起的一小时内上报 51 件" in worker


# --- sorting and filters -----------------------------------------------------------------------------------


def test_sorting_by_any_column_server_side(client, w):
    logged_in(client, "city_supervisor")
    html = text(client.get(f"/drill/{w.town(0)}/table?{P}&sort=-reported"))
    assert "<html" not in html  # a fragment for the htmx swap
    assert [r[0] for r in table_rows(html)] == ["东湖南社区", "东湖北社区"]
    html = text(client.get(f"/drill/{w.town(0)}/table?{P}&sort=reported"))
    assert [r[0] for r in table_rows(html)] == ["东湖北社区", "东湖南社区"]
    assert "人房关联率 ▲" not in html and "上报事件 ▲" in html
    # the column header links reverse the order and keep the period
    assert (
        f'hx-get="/drill/{w.town(0)}/table?period=custom&amp;start=2026-11-02&amp;end=2026-11-03&amp;sort=-reported"'
        in html
    )
    # an htmx request to the page itself for the table gets the fragment too
    fragment = text(
        client.get(f"/drill/{w.town(0)}?{P}&sort=name", headers={"HX-Request": "true", "HX-Target": "drill-table"})
    )
    assert "<html" not in fragment and [r[0] for r in table_rows(fragment)] == ["东湖北社区", "东湖南社区"]
    # empty values (—) stay last whichever the direction
    for sort in ("login_rate", "-login_rate"):
        rows = table_rows(text(client.get(f"/drill/{w.village(0)}/table?{P}&sort={sort}")))
        assert [r[0] for r in rows] == ["东湖南社区第1网格", "东湖南社区第2网格"]
    workers = table_rows(text(client.get(f"/drill/{w.town(0)}/table?{P}&table=gridworkers&sort=-reports")))
    assert [r[0] for r in workers] == ["gw0", "gw1", "gw3", "gw2"]
    assert client.get(f"/drill/{w.town(0)}/table?{P}&sort=password").status_code == 400


def test_filters_narrow_the_case_figures(client, w):
    logged_in(client, "city_supervisor")
    html = text(client.get(f"/drill/{w.town(0)}?{P}&kind=hazard"))
    assert figure(html, "reported") == "2" and figure(html, "gridworkers") == "4"
    assert [r[1] for r in table_rows(html)] == ["2", "0"]
    html = text(client.get(f"/drill/{w.town(0)}?{P}&source=hotline"))
    assert figure(html, "reported") == "1"
    html = text(client.get(f"/drill/{w.town(0)}?{P}&state=closed&category={w.cat('10').id}"))
    assert figure(html, "reported") == "2"  # the two closed safety hazards


BAD_INPUT = [
    ("period=custom&start=2026-13-01&end=2026-11-03", "开始日期：日期格式应为 YYYY-MM-DD"),
    ("period=custom&start=2026-11-02&end=tomorrow", "结束日期：日期格式应为 YYYY-MM-DD"),
    ("period=custom&start=2026-11-02", "结束日期：自定义时间段须填写结束日期"),
    ("period=custom&start=2026-11-03&end=2026-11-02", "结束日期：不能早于开始日期"),
    ("period=custom&start=2025-01-01&end=2026-01-02", "结束日期：时间段不能超过 366 天"),
    ("period=year", "统计时段：取值无效"),
    ("kind=fire", "事件类型：取值无效"),
    ("category=999999", "事件类别：不存在"),
    ("category=abc", "事件类别：不存在"),
    ("state=lost", "事件状态：取值无效"),
    ("source=fax", "事件来源：取值无效"),
    ("sort=secret", "排序：不支持按该列排序"),
    ("table=users", "表格：取值无效"),
]


def test_bad_input_is_refused_naming_the_field(client, w):
    logged_in(client, "city_supervisor")
    for query, words in BAD_INPUT:
        response = client.get(f"/drill/{w.town(0)}?{query}")
        assert response.status_code == 400, query
        assert words in text(response), query
        assert 'name="start"' in text(response)  # the form comes back to put it right
        assert client.get(f"/drill/{w.town(0)}/export.xlsx?{query}").status_code == 400, query
        assert client.get(f"/drill/{w.town(0)}/table?{query}").status_code == 400, query


def test_a_year_of_366_days_is_accepted(client, w):
    logged_in(client, "city_supervisor")
    assert client.get(f"/drill/{w.town(0)}?period=custom&start=2024-01-01&end=2024-12-31").status_code == 200
    for kind in ("day", "week", "month"):
        assert client.get(f"/drill/{w.town(0)}?period={kind}").status_code == 200


def test_worker_page_paginates_and_validates(client, w):
    logged_in(client, "city_supervisor")
    assert client.get(f"/drill/worker/{w.id('gw0')}?{P}&page=0").status_code == 400
    assert "页码" in text(client.get(f"/drill/worker/{w.id('gw0')}?{P}&page=x"))
    html = text(client.get(f"/drill/worker/{w.id('gw0')}?{P}&page=9"))  # past the end: the last page
    assert "本期上报的事件（5 件）" in html
    assert client.get(f"/drill/worker/{w.id('town0_admin')}").status_code == 404  # not a gridworker
    assert client.get("/drill/worker/999999").status_code == 404


# --- export ------------------------------------------------------------------------------------------------


def test_export_children_as_xlsx(client, w):
    logged_in(client, "city_supervisor")
    response = client.get(f"/drill/{w.town(0)}/export.xlsx?{P}&sort=-linkage_rate")
    assert response.status_code == 200
    assert response.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert "attachment" in response.headers["Content-Disposition"]
    book = load_workbook(io.BytesIO(response.data))
    sheet = book.worksheets[0]
    headers = [c.value for c in sheet[1]]
    assert headers[:5] == ["名称", "上报事件", "安全隐患", "矛盾纠纷", "办结率"]
    rows = [[c for c in r] for r in sheet.iter_rows(min_row=2)]
    assert [r[0].value for r in rows] == ["东湖北社区", "东湖南社区"]  # sorted as asked
    north, south = rows
    col = {name: i for i, name in enumerate(headers)}
    assert south[col["上报事件"]].value == 5
    assert south[col["办结率"]].value == pytest.approx(3 / 5)
    assert south[col["办结率"]].number_format == "0.00%"
    assert north[col["办结率"]].value == 0  # 0 of 2, a number
    assert north[col["上报至镇级办结率"]].value is None  # undefined: blank, not 0
    link = north[col["人房关联率"]]
    assert link.value == pytest.approx(2547 / 2500) and link.number_format == "0.00%"
    assert "人房关联率 101.88% 超过 100%" in link.comment.text
    assert south[col["人房关联率"]].comment is None
    about = {r[0].value: r[1].value for r in book["说明"].iter_rows()}
    assert about["开始日期"] == "2026-11-02" and about["单位"] == "东湖街道"


def test_export_gridworkers_as_xlsx(client, w):
    logged_in(client, "city_supervisor")
    response = client.get(f"/drill/{w.village(0)}/export.xlsx?{P}&table=gridworkers")
    sheet = load_workbook(io.BytesIO(response.data)).worksheets[0]
    assert sheet.title == "网格员明细"
    assert [c.value for c in sheet[1]][:4] == ["网格员", "所在网格", "上报事件", "已办结"]
    values = [[c.value for c in r] for r in sheet.iter_rows(min_row=2)]
    assert [(v[0], v[2], v[3], v[9]) for v in values] == [("gw0", 4, 2, "达标"), ("gw1", 1, 1, "未达标")]
    grid = load_workbook(io.BytesIO(client.get(f"/drill/{w.grid(1)}/export.xlsx?{P}").data)).worksheets[0]
    assert [c.value for c in grid["A"]] == ["网格员", "gw1"]


def test_export_a_gridworkers_cases_as_xlsx(client, w):
    logged_in(client, "city_supervisor")
    worker = text(client.get(f"/drill/worker/{w.id('gw0')}?{P}&kind=hazard"))
    assert (
        f'href="/drill/worker/{w.id("gw0")}/export.xlsx?period=custom&amp;start=2026-11-02&amp;end=2026-11-03&amp;kind=hazard"'
        in worker
    )
    response = client.get(f"/drill/worker/{w.id('gw0')}/export.xlsx?{P}")
    sheet = load_workbook(io.BytesIO(response.data)).worksheets[0]
    assert [c.value for c in sheet[1]][:5] == ["案卷号", "类别", "类型", "来源", "状态"]
    values = [[c.value for c in r] for r in sheet.iter_rows(min_row=2)]
    assert len(values) == 5  # as on the page: his four and the duplicate
    newest = values[0]  # c3, Tuesday 23:59, overdue, a neighbours' dispute
    assert newest[1] == "矛盾纠纷 / 邻里纠纷" and newest[2] == "矛盾纠纷" and newest[4] == "已立案"
    assert newest[6] == "2026-11-03 23:59" and newest[8] == "是"
    assert sorted(v[4] for v in values) == sorted(["已立案", "已结案", "已结案", "无效", "重复"])
    assert client.get(f"/drill/worker/{w.id('gw0')}/export.xlsx?period=custom&start=x").status_code == 400
    client2 = client.application.test_client()
    logged_in(client2, "town1_supervisor")
    assert client2.get(f"/drill/worker/{w.id('gw0')}/export.xlsx?{P}").status_code == 404


# --- jurisdiction and permission -----------------------------------------------------------------------------


def test_a_town_supervisor_sees_only_his_town(client, w):
    logged_in(client, "town0_supervisor")
    assert client.get(f"/drill/{w.town(0)}?{P}").status_code == 200
    html = text(client.get(f"/drill/{w.grid(0)}?{P}"))
    assert "测试市" not in html.split('class="drill-crumbs"')[1].split("</nav>")[0]  # nothing above his town
    for path in (
        f"/drill/{w.town(1)}",
        f"/drill/{w.village(2)}",
        f"/drill/{w.grid(5)}",
        f"/drill/{w.city}",
        f"/drill/{w.town(1)}/table",
        f"/drill/{w.town(1)}/export.xlsx",
        f"/drill/worker/{w.id('gw4')}",
        "/drill/999999",
    ):
        assert client.get(path).status_code == 404, path
    assert client.get(f"/drill/worker/{w.id('gw0')}").status_code == 200


def test_roles_without_the_permission_are_refused(client, w):
    logged_in(client, "gw0")
    assert client.get("/drill/").status_code == 403
    assert client.get(f"/drill/{w.grid(0)}").status_code == 403
    anonymous = client.application.test_client()
    assert anonymous.get(f"/drill/{w.city}").status_code == 302
