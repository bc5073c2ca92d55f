"""Issue 12 d, h, i: the bulletin's figures as the towns publish them, on every screen that shows them.

d. 上报至镇级 / 上报至市级 (domain.md §6): a month imported with one town's published counts — 9,213 reported, 9,201
   closed, 113 cases that went up to the town center and ended there (all closed), 1,883 that went up to the city
   center (1,871 closed), some straight from the grid and some through the town — prints the published rates:
   1.23 % and 20.44 % (not 21.67 %, the old count of every case that had the town flag), closure 99.36 %.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta

import pytest

from commandcenter.db import db
from commandcenter.importer import FORMATS, import_file
from commandcenter.models import Bulletin, Case
from tests.conftest import logged_in, token_for

pytestmark = pytest.mark.postgres

TZ = "Asia/Shanghai"
NOVEMBER = "period=custom&start=2026-11-01&end=2026-11-30"

# the town's published month (domain.md §6)
PUBLISHED = {
    "reported": 9213,
    "closed": 9201,
    "to_town": 113,
    "to_town_closed": 113,
    "to_city": 1883,
    "to_city_closed": 1871,
}


def write_csv(path, kind: str, rows: list[dict]):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(FORMATS[kind].names), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in FORMATS[kind].names})
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def published_month_rows(grid_code: str, town_code: str) -> list[dict]:
    """9,213 cases of November 2026 in one grid of the town, shaped like the published month."""
    rows: list[dict] = []
    start = datetime(2026, 11, 1, 8, 0)

    def case(**extra) -> None:
        n = len(rows)
        reported = start + timedelta(minutes=4 * n)  # 9,213 × 4 min ≈ 25.6 days: all inside November
        row = {
            "number": f"PUB{n:06d}",
            "source": "app",
            "category_code": "0502",
            "description": "路灯不亮",
            "grid_code": grid_code,
            "state": "closed",
            "reported_at": reported.strftime("%Y-%m-%d %H:%M"),
            "closed_at": (reported + timedelta(hours=3)).strftime("%Y-%m-%d %H:%M"),
        }
        row.update(extra)
        if row["state"] != "closed":
            row["closed_at"] = ""
        rows.append(row)

    open_ = {"state": "handling", "registered_at": ""}
    # went up to the town and ended there: marked, or left blank (level town says it was there)
    for i in range(113):
        case(level="town", escalated_to_town="是" if i % 2 else "")
    # went up to the city through the town (the town center passed it on: indicator 7)
    for i in range(1000):
        case(
            level="city",
            escalated_to_town="是",
            escalated_to_city="是",
            escalated_by_center=town_code,
            **(open_ if i < 6 else {}),
        )
    # went from the grid straight to the city: not marked escalated to the town, and accepted so
    for i in range(883):
        case(level="city", escalated_to_town="否", **(open_ if i < 6 else {}))
    # handled below the town
    while len(rows) < PUBLISHED["reported"]:
        case(level="grid")
    return rows


@pytest.fixture
def published(app, world, tmp_path):
    with app.app_context():
        grid = world.grids[0]
        town = world.towns[0]
        path = write_csv(tmp_path / "cases.csv", "cases", published_month_rows(grid.code, town.code))
        result = import_file("cases", path, tz=TZ)
        assert result.imported and not result.errors, [str(e) for e in result.errors[:5]]
        ids = {"town": town.id}
        # what the old definition counted: every case with the town flag (the straight-to-city ones have none)
        flagged = db.query(Case).filter(Case.town_id == town.id, Case.escalated_to_town.is_(True)).count()
        assert flagged == 113 + 1000
        db.remove()
    return ids


def figure(html: str, name: str) -> str:
    match = re.search(rf'data-figure="{re.escape(name)}"[^>]*>(.*?)</(dd|td|span|strong)>', html, re.S)
    assert match, f"no figure {name}"
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


def test_published_month_prints_the_published_escalation_figures(app, world, client, published):
    town_id = published["town"]
    logged_in(client, "city_supervisor")

    # the drill-down of the town for November
    html = client.get(f"/drill/{town_id}?{NOVEMBER}").get_data(as_text=True)
    assert figure(html, "reported") == "9213"
    assert figure(html, "closure_rate") == "99.87%"
    assert figure(html, "reported_to_town") == "113"
    assert figure(html, "reported_to_town_share") == "1.23%"
    assert figure(html, "reported_to_town_closed") == "113"
    assert figure(html, "reported_to_town_closure_rate") == "100.00%"
    assert figure(html, "reported_to_city") == "1883"
    assert figure(html, "reported_to_city_share") == "20.44%"
    assert figure(html, "reported_to_city_closed") == "1871"
    assert figure(html, "reported_to_city_closure_rate") == "99.36%"
    assert "21.67%" not in html
    assert ">上报至镇级网格中心</a>" in html and ">上报至市级网格中心</a>" in html  # the catalogue's names, linked

    # the city's table of towns: the same numbers in the town's row
    city = client.get(f"/drill/?{NOVEMBER}").headers["Location"]
    city_html = client.get(city).get_data(as_text=True)
    row = re.search(rf'<tr data-place="{town_id}">(.*?)</tr>', city_html, re.S).group(1)
    assert figure(row, "reported_to_town_share") == "1.23%" and figure(row, "reported_to_city_share") == "20.44%"

    # the API
    api = client.application.test_client()
    body = api.get(f"/api/v1/figures?place={town_id}&{NOVEMBER}", headers=token_for(api, "city_supervisor")).get_json()
    f = body["figures"]
    assert (f["reported"], f["closed"]) == (9213, 9201)
    assert (f["reported_to_town"], f["reported_to_town_closed"]) == (113, 113)
    assert (f["reported_to_city"], f["reported_to_city_closed"]) == (1883, 1871)
    assert round(f["reported_to_town_share"] * 100, 2) == 1.23
    assert round(f["reported_to_city_share"] * 100, 2) == 20.44
    assert round(f["reported_to_city_closure_rate"] * 100, 2) == 99.36
    assert body["labels"]["reported_to_town"] == "上报至镇级网格中心"
    assert body["labels"]["reported_to_city"] == "上报至市级网格中心"

    # the bulletin of the town: the sentence and the table as published
    with app.app_context():
        from commandcenter.bulletin import jobs

        b = Bulletin(place_id=town_id, month="2026-11", title="东湖街道月度通报", status="draft", progress=0)
        db.add(b)
        db.commit()
        assert jobs.run_build(b.id) == "done"
        content = db.get(Bulletin, b.id).content
        db.remove()
    blocks = [blk for s in content["sections"] for blk in s["blocks"]]
    text = "\n".join(blk.get("text", "") for blk in blocks)
    assert "上报至镇级网格中心113件，占1.23%，办结113件，办结率100.00%" in text
    assert "上报至市级网格中心1883件，占20.44%，办结1871件，办结率99.36%" in text
    assert "21.67%" not in text
    table = next(blk for blk in blocks if blk["type"] == "table" and "事件流转" in blk["caption"])
    cells = dict(zip(table["header"], table["total"], strict=True))
    assert cells["上报至镇级网格中心"] == "113" and cells["上报至镇级占比"] == "1.23%"
    assert cells["上报至市级网格中心"] == "1883" and cells["上报至市级占比"] == "20.44%"
    assert cells["上报至市级办结"] == "1871" and cells["上报至市级办结率"] == "99.36%"


# --- h and i: visits -------------------------------------------------------------------------------------------


def local_at(y: int, mo: int, d: int, h: int = 10) -> datetime:
    from commandcenter.timeutil import from_local

    return from_local(datetime(y, mo, d, h, 0), TZ)


@pytest.fixture
def visits(app, world):
    """Town 0, grid 0, November 2026 (over: today is later):
    - four special populations, two each: community correction both visited, released prisoners both, drug users
      one, at-risk mentally ill none → four types 5 / 8 = 62.50 %; assessment indicator 10 (two types) 1 / 4 = 25 %;
    - empty-nest elderly (weekly), two: A visited in each of the five weeks that end in November (Sundays 1, 8, 15,
      22, 29), B once → 6 / 10 = 60.00 % (as a monthly rate it read 100 %);
    - rental houses (quarterly), two: X visited on 15 October, Y never → 1 / 2 = 50.00 % for November (as a
      monthly rate it read 0 %)."""
    from commandcenter.models import Person, Site, Visit

    with app.app_context():
        g = world.grids[0]
        worker = world.accounts["gw0"]
        where = dict(grid_id=g.id, village_id=g.village_id, town_id=g.town_id)

        def person(kind: str, freq: str = "monthly") -> Person:
            p = Person(name=f"{kind}{len(db.new)}", person_type=kind, visit_frequency=freq, **where)
            db.add(p)
            db.flush()
            return p

        def visit(target, when: datetime) -> None:
            column = "person_id" if isinstance(target, Person) else "site_id"
            db.add(Visit(gridworker_id=worker.id, town_id=g.town_id, at=when, **{column: target.id}))

        for kind, visited in (
            ("community_correction", 2),
            ("released_prisoner", 2),
            ("drug_user", 1),
            ("mental_risk", 0),
        ):
            for i in range(2):
                p = person(kind)
                if i < visited:
                    visit(p, local_at(2026, 11, 5 + i))
        elderly_a, elderly_b = person("empty_nest_elderly", "weekly"), person("empty_nest_elderly", "weekly")
        for day in ((10, 27), (11, 3), (11, 10), (11, 17), (11, 24)):
            visit(elderly_a, local_at(2026, *day))
        visit(elderly_b, local_at(2026, 11, 10))
        house_x = Site(name="出租屋X", site_type="rental_house", visit_frequency="quarterly", **where)
        house_y = Site(name="出租屋Y", site_type="rental_house", visit_frequency="quarterly", **where)
        db.add_all([house_x, house_y])
        db.flush()
        visit(house_x, local_at(2026, 10, 15))
        db.commit()
        ids = {"town": world.towns[0].id, "elderly_a": elderly_a.id, "elderly_b": elderly_b.id}
        db.remove()
    return ids


def bulletin_content(app, place_id: int, month: str) -> dict:
    from commandcenter.bulletin import jobs

    with app.app_context():
        b = Bulletin(place_id=place_id, month=month, title="通报", status="draft", progress=0)
        db.add(b)
        db.commit()
        assert jobs.run_build(b.id) == "done"
        content = db.get(Bulletin, b.id).content
        db.remove()
    return content


def tables_of(content: dict) -> list[dict]:
    return [blk for s in content["sections"] for blk in s["blocks"] if blk["type"] == "table"]


def test_special_populations_four_types_and_the_assessments_two_are_named_apart(app, world, client, visits):
    town_id = visits["town"]
    logged_in(client, "city_supervisor")
    html = client.get(f"/drill/{town_id}?{NOVEMBER}").get_data(as_text=True)
    assert figure(html, "special_visit_rate") == "62.50%"
    assert ">特殊人群走访率（四类）</a>" in html
    assert "社区矫正人员、刑满释放人员、易肇事肇祸精神障碍患者、吸毒人员四类" in html  # the label's definition

    api = client.application.test_client()
    body = api.get(f"/api/v1/figures?place={town_id}&{NOVEMBER}", headers=token_for(api, "city_supervisor")).get_json()
    assert body["figures"]["special_visit_rate"] == pytest.approx(5 / 8)
    assert body["labels"]["special_visit_rate"] == "特殊人群走访率（四类）"

    content = bulletin_content(app, town_id, "2026-11")
    text = "\n".join(blk.get("text", "") for s in content["sections"] for blk in s["blocks"])
    assert "应走访8人次，实际走访5人次，特殊人群走访率（四类）62.50%" in text
    special = next(t for t in tables_of(content) if "四类特殊人群走访情况" in t["caption"])
    assert dict(zip(special["header"], special["total"], strict=True))["特殊人群走访率（四类）"] == "62.50%"

    # the assessment's indicator 10 counts two types: 1 of 4, 2.5 of its 10 points, under its own name
    page = client.get("/assessment/?month=2026-11").get_data(as_text=True)
    assert (
        "特殊人群走访（两类）" in page
        and "特殊人群走访率（考核第10项：两类）：吸毒人员与易肇事肇祸精神障碍患者两类" in page
    )
    row = dict(re.findall(r'<tr data-town="(\d+)">(.*?)</tr>', page, re.S))[str(town_id)]
    assert re.search(r'data-key="special_visits"[^>]*>\s*(<a[^>]*>)?\s*2\.50', row), row
    json_row = next(r for r in client.get("/assessment/2026-11.json").get_json()["rows"] if r["town_id"] == town_id)
    assert (json_row["figures"]["special_assigned"], json_row["figures"]["special_visited"]) == (4, 1)


def test_visit_rates_are_over_each_populations_own_frequency(app, world, client, visits):
    town_id = visits["town"]
    logged_in(client, "city_supervisor")
    html = client.get(f"/drill/{town_id}?{NOVEMBER}").get_data(as_text=True)
    # weekly: the five weeks ending in November, 6 of 10 person-weeks; quarterly: Q4 up to 30 November, 1 of 2
    assert figure(html, "visit-empty_nest_elderly") == "60.00%"
    assert figure(html, "visit-frequency-empty_nest_elderly") == "每周"
    assert figure(html, "visit-rental_house") == "50.00%"
    assert figure(html, "visit-frequency-rental_house") == "每季度"
    assert figure(html, "visit-drug_user") == "50.00%" and figure(html, "visit-frequency-drug_user") == "每月"
    row = re.search(r'<tr data-visit="empty_nest_elderly">(.*?)</tr>', html, re.S).group(1)
    assert re.findall(r'<td class="num">(\d+)</td>', row) == ["10", "6"]  # 应访（人次）, 已访（人次）

    api = client.application.test_client()
    body = api.get(f"/api/v1/figures?place={town_id}&{NOVEMBER}", headers=token_for(api, "city_supervisor")).get_json()
    elderly = body["visits"]["empty_nest_elderly"]
    assert (elderly["frequency"], elderly["due"], elderly["done"]) == (["weekly"], 10, 6)
    assert elderly["rate"] == pytest.approx(0.6)
    house = body["visits"]["rental_house"]
    assert (house["frequency"], house["due"], house["done"], house["rate"]) == (["quarterly"], 2, 1, 0.5)

    content = bulletin_content(app, town_id, "2026-11")
    others = next(t for t in tables_of(content) if "重点人员与场所走访率" in t["caption"])
    total = dict(zip(others["header"], others["total"], strict=True))
    assert total["空巢老人（每周）"] == "60.00%" and total["出租屋（每季度）"] == "50.00%"

    # a running month is measured on this week (weekly) and this quarter (quarterly): elderly A visited a second
    # ago, B last on a Sunday before this week → 1 of 2; house X's October visit still counts in Q4 → 1 of 2 only
    # while the quarter lasts, so the expectation is computed from today's quarter
    from commandcenter.models import Visit
    from commandcenter.timeutil import current_tz, local_today, utcnow

    with app.app_context():
        today = local_today(current_tz())
        monday = today - timedelta(days=today.weekday())
        db.add(Visit(gridworker_id=world.accounts["gw0"].id, person_id=visits["elderly_a"], at=utcnow()))
        db.add(
            Visit(
                gridworker_id=world.accounts["gw0"].id,
                person_id=visits["elderly_b"],
                at=local_at(*(monday - timedelta(days=1)).timetuple()[:3], h=12),
            )
        )
        db.commit()
        db.remove()
    html = client.get(f"/drill/{town_id}?period=month").get_data(as_text=True)
    assert figure(html, "visit-empty_nest_elderly") == "50.00%"
    in_q4_2026 = today.year == 2026 and today.month >= 10
    assert figure(html, "visit-rental_house") == ("50.00%" if in_q4_2026 else "0.00%")


def test_import_accepts_a_city_case_not_marked_escalated_to_the_town(app, world, tmp_path):
    with app.app_context():
        g, town = world.grids[0], world.towns[0]
        base = {
            "source": "app",
            "category_code": "0502",
            "description": "路灯不亮",
            "grid_code": g.code,
            "state": "closed",
            "reported_at": "2026-11-03 09:12",
            "closed_at": "2026-11-04 10:00",
        }
        rows = [
            base | {"number": "S1", "level": "city", "escalated_to_town": "否"},  # grid → city directly
            base | {"number": "S2", "level": "city"},  # blank: the city flag alone says nothing of the town
            base | {"number": "S3", "level": "city", "escalated_by_center": town.code},  # the town passed it on
            base | {"number": "S4", "level": "town", "escalated_to_town": "否"},  # at the town: contradiction
        ]
        result = import_file("cases", write_csv(tmp_path / "cases.csv", "cases", rows), tz=TZ, skip_bad_rows=True)
        assert [(e.line, e.column) for e in result.errors] == [(5, "escalated_to_town")]
        flags = {
            c.number: (c.escalated_to_town, c.escalated_to_city)
            for c in db.query(Case).filter(Case.number.in_(["S1", "S2", "S3"]))
        }
        assert flags == {"S1": (False, True), "S2": (False, True), "S3": (True, True)}
        db.remove()
