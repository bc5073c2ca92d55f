"""Places and grids administration (issue 13 §2): the GeoJSON upload checked and applied from a fresh city,
the wall's polygons following without a restart, every problem named by its feature's code, 一长五员
positions, merge and split keeping cases (with their steps) and the live counters right, the audit."""

from __future__ import annotations

import io
import json
import re
from datetime import date, timedelta

import pytest
from shapely.geometry import shape
from sqlalchemy import func, select

from commandcenter import counters, place_admin
from commandcenter.db import db
from commandcenter.models import Account, AuditLog, Case, CaseStep, GridPosition, Patrol, Person, Place
from commandcenter.security import hash_password
from tests.conftest import PASSWORD, csrf_from, logged_in, report
from tests.world import WorldView, square

pytestmark = pytest.mark.postgres


def html(response) -> str:
    return response.get_data(as_text=True)


def feature(code: str, name: str, level: str, parent: str | None = None, geometry=None, kind: str | None = None):
    props = {"code": code, "name": name, "level": level}
    if parent is not None:
        props["parent"] = parent
    if kind is not None:
        props["kind"] = kind
    return {"type": "Feature", "properties": props, "geometry": geometry}


def collection(*features) -> bytes:
    return json.dumps({"type": "FeatureCollection", "features": list(features)}, ensure_ascii=False).encode()


def good_file(grid2_east: float = 120.1) -> bytes:
    """The city 320500 → 东湖街道 → 东湖社区 → two grids splitting it in longitude."""
    return collection(
        feature("320500", "测试市", "city", geometry=square(120.0, 31.0, 120.2, 31.2)),
        feature("T01", "东湖街道", "town", "320500", square(120.0, 31.0, 120.1, 31.1), kind="street"),
        feature("V01", "东湖社区", "village", "T01", square(120.0, 31.0, 120.1, 31.05), kind="community"),
        feature("G01", "东湖社区第1网格", "grid", "V01", square(120.0, 31.0, 120.05, 31.05)),
        feature("G02", "东湖社区第2网格", "grid", "V01", square(120.05, 31.0, grid2_east, 31.05), kind="dedicated"),
    )


def upload(client, raw: bytes, name: str = "places.geojson", page: str = "/admin/places"):
    token = csrf_from(html(client.get(page)))
    return client.post(
        "/admin/places/upload",
        data={"csrf_token": token, "file": (io.BytesIO(raw), name)},
        content_type="multipart/form-data",
    )


def check_page(client, raw: bytes) -> tuple[str, str]:
    """(the check page, its URL) after uploading `raw` through the form."""
    response = upload(client, raw)
    assert response.status_code == 302, html(response)
    url = response.headers["Location"]
    assert url.startswith("/admin/places/check/")
    return html(client.get(url)), url


def apply(client, check_url: str, page: str):
    return client.post(check_url + "/apply", data={"csrf_token": csrf_from(page)})


def fresh_admin(app, runner) -> None:
    """What a new installation has: `flask create-admin` (the city 本市 000000 and one admin), plus a leader."""
    result = runner.invoke(args=["create-admin", "--username", "root", "--password", PASSWORD])
    assert result.exit_code == 0, result.output
    with app.app_context():
        from commandcenter.accounts import create_account

        city = db.execute(select(Place)).scalar_one()
        assert (city.code, city.name, city.level) == ("000000", "本市", "city")
        create_account(
            username="leader1",
            display_name="领导",
            password="",
            role="leader",
            place=city,
            password_hash=hash_password(PASSWORD),
        )
        for acc in db.execute(select(Account)).scalars():
            acc.must_change_password = False
        db.commit()


def wall_grids(client) -> dict[str, dict]:
    response = client.get("/wall/geojson")
    assert response.status_code == 200
    return {f["properties"]["name"]: f for f in json.loads(response.data)["features"]}


def test_upload_on_a_fresh_city_builds_the_tree_and_the_wall_follows(app, runner):
    fresh_admin(app, runner)
    client = logged_in(app.test_client(), "root")
    wall = logged_in(app.test_client(), "leader1")
    assert wall_grids(wall) == {}  # no grid yet (and the empty answer is now cached)

    tree = html(client.get("/admin/places"))
    assert 'name="file"' in tree and "上传并检查" in tree and "本市" in tree

    page, url = check_page(client, good_file())
    assert "检查通过" in page and "确认导入" in page
    assert 'id="n-create">4<' in page and 'id="n-update">1<' in page  # the city is updated, not created
    assert 'class="places-map"' in page and 'data-code="G02"' in page
    assert '<tr class="updates"><th>更新</th><td>1</td><td>0</td><td>0</td><td>0</td></tr>' in page
    assert '<tr class="creates"><th>新建</th><td>0</td><td>1</td><td>1</td><td>2</td></tr>' in page
    done = apply(client, url, page)
    assert done.status_code == 302 and done.headers["Location"] == "/admin/places"
    assert "新建 4 个、更新 1 个" in html(client.get("/admin/places"))

    with app.app_context():
        places = {p.code: p for p in db.execute(select(Place)).scalars()}
        assert set(places) == {"320500", "T01", "V01", "G01", "G02"}  # the city took the file's code
        city, town, village, g1, g2 = (places[c] for c in ("320500", "T01", "V01", "G01", "G02"))
        assert city.name == "测试市" and city.geometry is not None
        assert (town.parent_id, town.city_id, town.town_id, town.village_id) == (city.id, city.id, town.id, None)
        assert (village.parent_id, village.town_id, village.village_id) == (town.id, town.id, village.id)
        assert (g2.parent_id, g2.city_id, g2.town_id, g2.village_id) == (village.id, city.id, town.id, village.id)
        assert (g1.kind, g2.kind, town.kind) == ("comprehensive", "dedicated", "street")
        assert g1.center_lat == pytest.approx(31.025) and g1.center_lon == pytest.approx(120.025)
        # audit: one row per place (before/after) and one for the whole import
        created = db.execute(select(AuditLog).where(AuditLog.action == "place.create")).scalars().all()
        assert {json.loads(a.detail)["after"]["code"] for a in created} == {"T01", "V01", "G01", "G02"}
        assert all(json.loads(a.detail)["before"] is None and a.username == "root" for a in created)
        city_row = db.execute(select(AuditLog).where(AuditLog.action == "place.update")).scalar_one()
        detail = json.loads(city_row.detail)
        assert detail["before"]["code"] == "000000" and detail["after"]["code"] == "320500"
        assert detail["before"]["geometry"] is None and detail["after"]["geometry"]["type"] == "Polygon"
        summary = json.loads(db.execute(select(AuditLog.detail).where(AuditLog.action == "place.import")).scalar_one())
        assert (summary["created"], summary["updated"]) == (4, 1)

    # the wall shows the new grids at once, in the same process (its cache was filled before the upload)
    grids = wall_grids(wall)
    assert set(grids) == {"东湖社区第1网格", "东湖社区第2网格"}
    east = max(pt[0] for pt in grids["东湖社区第2网格"]["geometry"]["coordinates"][0])
    assert east == pytest.approx(120.1)

    # a boundary change (same grids, same count, same ids) shows without a restart
    page, url = check_page(client, good_file(grid2_east=120.08))
    assert "检查通过" in page and "村社内有约" in page  # the strip left over is a gap: a warning only
    assert apply(client, url, page).status_code == 302
    east = max(pt[0] for pt in wall_grids(wall)["东湖社区第2网格"]["geometry"]["coordinates"][0])
    assert east == pytest.approx(120.08)
    # and the grid index that places new reports follows too
    with app.app_context():
        from commandcenter.geo import grid_index

        grid_index._checked_at = float("-inf")
        g2 = db.execute(select(Place.id).where(Place.code == "G02")).scalar()
        assert grid_index.locate(31.02, 120.07) == g2
        assert grid_index.locate(31.02, 120.09) is None


def test_each_problem_is_named_by_its_code_and_apply_is_refused(app, world, client):
    v0 = world.villages[0].code
    bowtie = {
        "type": "Polygon",
        "coordinates": [[[120.0, 31.0], [120.01, 31.01], [120.01, 31.0], [120.0, 31.01], [120.0, 31.0]]],
    }
    raw = collection(
        feature("NEWG1", "重叠网格", "grid", v0, square(120.04, 31.0, 120.06, 31.05)),
        feature("OUTG", "出界网格", "grid", v0, square(120.0, 31.05, 120.01, 31.06)),
        feature("ORPH", "孤儿网格", "grid", "NOPE", square(120.3, 31.3, 120.31, 31.31)),
        feature("BADLV", "层级错的村", "village", v0, None, kind="village"),
        feature("DUPT", "重复镇一", "town", world.city.code, None, kind="town"),
        feature("DUPT", "重复镇二", "town", world.city.code, None, kind="town"),
        feature("BOWT", "自相交网格", "grid", v0, bowtie),
        feature(
            "GAPV", "有空隙的村", "village", world.towns[1].code, square(120.2, 31.2, 120.3, 31.3), kind="community"
        ),
        feature("GAPG", "半个村的网格", "grid", "GAPV", square(120.2, 31.2, 120.25, 31.3)),
    )
    logged_in(client, "city_admin")
    page, url = check_page(client, raw)
    errors = re.findall(r'<li class="field-error" data-code="([^"]*)">([^<]*)</li>', page)
    by_code: dict[str, str] = {}
    for code, text in errors:
        by_code[code] = by_code.get(code, "") + text
    assert "重叠" in by_code["NEWG1"] and world.grids[0].code in by_code["NEWG1"]
    assert "超出所属村社" in by_code["OUTG"] and v0 in by_code["OUTG"]
    assert "“NOPE”不存在" in by_code["ORPH"]
    assert "层级不对" in by_code["BADLV"]
    assert "重复" in by_code["DUPT"]
    assert "边界（geometry）无效" in by_code["BOWT"] and "Self-intersection" in by_code["BOWT"]
    assert "GAPV" not in by_code and "GAPG" not in by_code  # a gap is a warning, not an error
    assert re.search(r'data-code="GAPV"><span class="badge warn">提醒</span> GAPV：村社内有约', page)
    # the map highlights the features in error (and draws the overlap itself)
    assert re.search(r'<path class="feature problem" data-code="NEWG1"', page)
    assert re.search(r'<path class="feature problem" data-code="OUTG"', page)
    assert re.search(r'<path class="problem-area" data-code="NEWG1"', page)
    assert "确认导入" not in page and "不能导入" in page

    refused = apply(client, url, page)  # a forged apply is refused as well
    assert refused.status_code == 302 and refused.headers["Location"] == url
    assert "未导入" in html(client.get(url))
    with app.app_context():
        assert db.execute(select(Place).where(Place.code.in_(["GAPV", "GAPG", "NEWG1"]))).first() is None
        row = db.execute(select(AuditLog).where(AuditLog.action == "place.import")).scalar_one()
        assert row.success is False and "NEWG1" in row.detail


def test_a_file_that_is_not_geojson_is_refused_with_the_field_named(app, world, client):
    logged_in(client, "city_admin")
    page, _ = check_page(client, b"{not json")
    assert "文件（file）不是有效的 JSON" in page
    page, _ = check_page(client, b'{"type": "Feature"}')
    assert "FeatureCollection" in page
    token = csrf_from(html(client.get("/admin/places")))
    missing = client.post("/admin/places/upload", data={"csrf_token": token}, content_type="multipart/form-data")
    assert missing.status_code == 400 and "请选择要上传的 GeoJSON 文件（file）" in html(missing)
    assert client.get("/admin/places/check/not-a-real-token-0000000000").status_code == 302


def test_non_admins_get_403_and_uploads_are_private(app, world, client):
    for username in ("city_leader", "city_security_admin", "town0_admin", "gw0"):
        other = logged_in(app.test_client(), username)
        assert other.get("/admin/places").status_code == 403
        assert other.get(f"/admin/places/{world.grids[0].id}").status_code == 403
        assert other.post("/admin/places/upload", data={}).status_code in (400, 403)
    logged_in(client, "city_admin")
    page, url = check_page(client, good_file())
    # another administrator cannot read or apply someone else's upload by its token
    with app.app_context():
        from commandcenter.accounts import create_account

        create_account(
            username="admin2",
            display_name="管理员二",
            password="",
            role="admin",
            place=db.get(Place, world.city.id),
            password_hash=hash_password(PASSWORD),
        )
        db.commit()
    second = logged_in(app.test_client(), "admin2")
    assert second.get(url).status_code == 302


def test_place_page_edits_adds_children_and_positions_with_masked_phones(app, world, client):
    w = WorldView(world)
    grid_id, village_id = world.grids[0].id, world.villages[0].id
    logged_in(client, "city_admin")
    page = html(client.get(f"/admin/places/{grid_id}"))
    assert "一长五员" in page and "合并网格" in page and "拆分网格" in page
    token = csrf_from(page)

    edited = client.post(
        f"/admin/places/{grid_id}/edit",
        data={"csrf_token": token, "name": "新名字网格", "kind": "dedicated", "active": "1"},
    )
    assert edited.status_code == 302
    bad = client.post(
        f"/admin/places/{grid_id}/edit", data={"csrf_token": token, "name": "", "kind": "park", "active": "1"}
    )
    assert bad.status_code == 400 and "名称（name）不能为空" in html(bad) and "类型（kind）应为" in html(bad)
    # a grid with accounts and open work is not simply switched off
    off = client.post(
        f"/admin/places/{grid_id}/edit", data={"csrf_token": token, "name": "新名字网格", "kind": "dedicated"}
    )
    assert off.status_code == 400 and "合并网格" in html(off)

    child = client.post(
        f"/admin/places/{village_id}/children",
        data={"csrf_token": token, "code": "NEWGRID9", "name": "手工网格", "kind": "comprehensive"},
    )
    assert child.status_code == 302
    dup = client.post(
        f"/admin/places/{village_id}/children",
        data={"csrf_token": token, "code": "NEWGRID9", "name": "又一个", "kind": "comprehensive"},
    )
    assert dup.status_code == 400 and "代码（code）“NEWGRID9”已被其他区划使用" in html(dup)

    def add(**data):
        return client.post(f"/admin/places/{grid_id}/positions", data={"csrf_token": token, **data})

    assert add(position="full_time", account_id=str(w.id("gw0")), name="", phone="").status_code == 302
    assert add(position="grid_chief", account_id="", name="王建国", phone="13912345678").status_code == 302
    second_chief = add(position="grid_chief", account_id="", name="李四", phone="13800001111")
    assert second_chief.status_code == 400 and "岗位（position）网格长已有人担任" in html(second_chief)
    assert add(position="volunteer", account_id="", name="赵六", phone="13700000001").status_code == 302
    assert add(position="volunteer", account_id="", name="钱七", phone="13700000002").status_code == 302
    no_phone = add(position="part_time", account_id="", name="孙八", phone="")
    assert no_phone.status_code == 400 and "电话（phone）" in html(no_phone)
    foreign = add(position="liaison", account_id=str(w.id("gw5")), name="", phone="")
    assert foreign.status_code == 400 and "账号（account_id）须是本网格的在用账号" in html(foreign)

    tree = html(client.get("/admin/places"))
    assert re.search(r'data-code="NEWGRID9"[^>]*>(?:(?!</tr>).)*<span class="badge">无</span>', tree, re.S)
    assert re.search(
        rf'data-code="{world.grids[1].code}"[^>]*>(?:(?!</tr>).)*<span class="badge ok">有</span>', tree, re.S
    )
    page = html(client.get(f"/admin/places/{grid_id}"))
    assert "139****5678" in page and "13912345678" not in page
    assert "王建国" in page and "赵六" in page and "钱七" in page
    with app.app_context():
        grid = db.get(Place, grid_id)
        assert (grid.name, grid.kind, grid.active) == ("新名字网格", "dedicated", True)
        made = db.execute(select(Place).where(Place.code == "NEWGRID9")).scalar_one()
        assert (made.level, made.village_id, made.town_id, made.city_id) == (
            "grid",
            village_id,
            world.towns[0].id,
            world.city.id,
        )
        assert db.execute(select(func.count(GridPosition.id)).where(GridPosition.grid_id == grid_id)).scalar() == 4
        edit = db.execute(
            select(AuditLog).where(AuditLog.action == "place.edit", AuditLog.success.is_(True))
        ).scalar_one()
        detail = json.loads(edit.detail)
        assert detail["before"]["name"] == world.grids[0].name and detail["after"]["kind"] == "dedicated"
        added = db.execute(select(AuditLog.detail).where(AuditLog.action == "place.position_add")).scalars().all()
        assert any("139****5678" in d for d in added) and not any("13912345678" in d for d in added)
        refused = db.execute(
            select(AuditLog).where(AuditLog.action == "place.position_add", AuditLog.success.is_(False))
        )
        assert len(refused.scalars().all()) == 3


def local_today(app) -> date:
    from commandcenter.timeutil import local, utcnow

    return local(utcnow(), app.config["SETTINGS"].timezone).date()


def _today_counts(app, place_id: int) -> dict:
    from commandcenter.jobs import counters_redis

    with app.app_context():
        return counters.case_counts(counters_redis(), place_id, tz=app.config["SETTINGS"].timezone)


def test_merge_moves_cases_with_their_steps_and_keeps_the_counters_right(app, world, client):
    from commandcenter.jobs import counters_redis, process_outbox, rebuild_counters

    w = WorldView(world)
    a_id, b_id = world.grids[0].id, world.grids[1].id
    with app.app_context():
        cases = [report(w, "gw0", grid=0) for _ in range(3)] + [report(w, "gw1", grid=1)]
        a_cases = [c.id for c in cases[:3]]
        steps_before = {
            cid: db.execute(select(func.count(CaseStep.id)).where(CaseStep.case_id == cid)).scalar() for cid in a_cases
        }
        assert all(n >= 1 for n in steps_before.values())
        db.add(
            Person(
                name="张三",
                person_type="drug_user",
                visit_frequency="monthly",
                grid_id=a_id,
                village_id=world.villages[0].id,
                town_id=world.towns[0].id,
            )
        )
        from commandcenter.timeutil import utcnow

        db.add(
            Patrol(
                gridworker_id=w.id("gw0"),
                grid_id=a_id,
                town_id=world.towns[0].id,
                started_at=utcnow() - timedelta(hours=2),
                ended_at=utcnow() - timedelta(hours=1),
            )
        )
        db.add(GridPosition(grid_id=a_id, position="grid_chief", name="甲", phone="13900000000"))
        db.add(GridPosition(grid_id=b_id, position="grid_chief", name="乙", phone="13900000001"))
        db.add(GridPosition(grid_id=a_id, position="volunteer", name="丙", phone="13900000002"))
        db.commit()
        process_outbox()
        rebuild_counters()
    assert _today_counts(app, a_id)["reported"] == 3 and _today_counts(app, b_id)["reported"] == 1

    logged_in(client, "city_admin")
    summary = html(client.get(f"/admin/places/{a_id}/merge?into={b_id}"))
    assert "确认合并" in summary and "3 件" in summary and "网格长 因目标网格已有人担任" in summary
    wrong = client.get(f"/admin/places/{a_id}/merge?into={world.grids[2].id}")
    assert wrong.status_code == 400 and "须是同一村社的网格" in html(wrong)
    done = client.post(
        f"/admin/places/{a_id}/merge", data={"csrf_token": csrf_from(summary), "into": b_id, "confirm": "1"}
    )
    assert done.status_code == 302

    with app.app_context():
        a, b = db.get(Place, a_id), db.get(Place, b_id)
        assert a.active is False and b.active is True  # A kept, never deleted
        assert shape(b.geometry).area == pytest.approx(shape(world.grids[0].geometry).area * 2)
        for cid in a_cases:
            case = db.get(Case, cid)
            assert (case.grid_id, case.village_id) == (b_id, world.villages[0].id)
            n = db.execute(select(func.count(CaseStep.id)).where(CaseStep.case_id == cid)).scalar()
            assert n == steps_before[cid]  # the history stays as it was
        assert db.execute(select(Person.grid_id)).scalar_one() == b_id
        assert db.get(Account, w.id("gw0")).place_id == b_id
        assert db.execute(select(Patrol.grid_id)).scalar_one() == a_id  # patrol history stays with A
        chiefs = db.execute(select(GridPosition.name).where(GridPosition.position == "grid_chief")).scalars().all()
        assert chiefs == ["乙"]
        assert db.execute(select(GridPosition.grid_id).where(GridPosition.name == "丙")).scalar() == b_id
        row = db.execute(select(AuditLog).where(AuditLog.action == "place.merge")).scalar_one()
        detail = json.loads(row.detail)
        assert detail["before"]["a"]["active"] is True and detail["after"]["a"]["active"] is False
        assert sorted(detail["case_ids"]) == sorted(a_cases) and detail["moved"]["cases"] == 3
        # the live counters equal a fresh recount from the database
        today = local_today(app)
        rep = counters.reconcile(counters_redis(), db, today - timedelta(days=31), today, w.city)
        assert rep["keys_fixed"] == 0, rep["drift"]
    assert _today_counts(app, a_id)["reported"] == 0 and _today_counts(app, b_id)["reported"] == 4
    assert "东湖南社区第1网格" not in json.dumps(
        wall_grids(logged_in(app.test_client(), "city_leader")), ensure_ascii=False
    )


def test_split_gives_cases_to_the_grid_holding_their_location(app, world, client):
    from commandcenter.jobs import counters_redis, process_outbox, rebuild_counters

    w = WorldView(world)
    a = world.grids[0]  # lon 120.0–120.05, lat 31.0–31.05
    with app.app_context():
        south = report(w, "gw0", latlon=(31.01, 120.02))
        north = report(w, "gw0", latlon=(31.04, 120.02))
        nowhere = report(w, "gw0", by_grid_id=True)  # no location
        db.add(
            Person(
                name="李四",
                person_type="drug_user",
                visit_frequency="monthly",
                grid_id=a.id,
                village_id=a.village_id,
                town_id=a.town_id,
            )
        )
        db.commit()
        process_outbox()
        rebuild_counters()
    v0 = world.villages[0].code
    good = collection(
        feature("S1", "南片", "grid", v0, square(120.0, 31.0, 120.05, 31.025)),
        feature("S2", "北片", "grid", v0, square(120.0, 31.025, 120.05, 31.05)),
    )
    short = collection(
        feature("S1", "南片", "grid", v0, square(120.0, 31.0, 120.05, 31.02)),
        feature("S2", "北片", "grid", v0, square(120.0, 31.025, 120.05, 31.05)),
    )
    logged_in(client, "city_admin")
    page = html(client.get(f"/admin/places/{a.id}"))

    def send(raw: bytes):
        response = client.post(
            f"/admin/places/{a.id}/split",
            data={"csrf_token": csrf_from(page), "file": (io.BytesIO(raw), "split.geojson")},
            content_type="multipart/form-data",
        )
        assert response.status_code == 302
        return response.headers["Location"]

    bad_url = send(short)
    bad = html(client.get(bad_url))
    assert "新网格没有盖住原网格" in bad and "确认拆分" not in bad

    url = send(good)
    summary = html(client.get(url))
    assert "确认拆分" in summary and "gw0" in summary  # the gridworkers of A are listed to be moved
    assert f"/admin/accounts/{w.id('gw0')}" in summary
    done = client.post(url, data={"csrf_token": csrf_from(summary), "fallback": "S2"})
    assert done.status_code == 302
    with app.app_context():
        s1 = db.execute(select(Place).where(Place.code == "S1")).scalar_one()
        s2 = db.execute(select(Place).where(Place.code == "S2")).scalar_one()
        assert (s1.village_id, s1.town_id, s1.parent_id) == (a.village_id, a.town_id, a.village_id)
        assert db.get(Case, south.id).grid_id == s1.id
        assert db.get(Case, north.id).grid_id == s2.id
        assert db.get(Case, nowhere.id).grid_id == s2.id  # no location: the grid the admin picked
        assert db.execute(select(Person.grid_id)).scalar_one() == s2.id
        assert db.get(Place, a.id).active is False
        assert db.execute(
            select(AuditLog).where(AuditLog.action == "place.split", AuditLog.success.is_(True))
        ).scalar_one()
        today = local_today(app)
        rep = counters.reconcile(counters_redis(), db, today - timedelta(days=31), today, w.city)
        assert rep["keys_fixed"] == 0, rep["drift"]
    after = html(client.get(f"/admin/places/{a.id}"))  # the old grid asks for its gridworkers to be moved
    assert "本网格已停用，请把下列账号调整到新的网格" in after and f"/admin/accounts/{w.id('gw0')}" in after
    assert _today_counts(app, s1.id)["reported"] == 1 and _today_counts(app, s2.id)["reported"] == 2


def test_flask_places_commands(app, world, runner, tmp_path):
    path = tmp_path / "p.geojson"
    v0 = world.villages[0].code
    path.write_bytes(collection(feature("NEWG1", "重叠网格", "grid", v0, square(120.04, 31.0, 120.06, 31.05))))
    result = runner.invoke(args=["places", "import-geojson", str(path), "--apply"])
    assert result.exit_code == 1 and "NEWG1" in result.output
    path.write_bytes(
        collection(feature("T9", "新镇", "town", world.city.code, square(121.0, 31.0, 121.1, 31.1), kind="town"))
    )
    result = runner.invoke(args=["places", "import-geojson", str(path), "--apply"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        town = db.execute(select(Place).where(Place.code == "T9")).scalar_one()
        assert town.town_id == town.id and town.city_id == world.city.id
        assert place_admin.revision() != ""
    result = runner.invoke(args=["places", "check"])
    assert result.exit_code == 0 and "错误 0 个" in result.output


@pytest.mark.live
def test_another_web_process_serves_the_new_boundary_without_a_restart(app, runner, live_server):
    """The wall's cache lives in each process: the places revision in the database tells them all."""
    import requests

    fresh_admin(app, runner)
    with app.app_context():
        place_admin.apply_upload(None, good_file(), "first.geojson")
        db.commit()
    wall = requests.Session()
    login = wall.get(live_server.url + "/login").text
    wall.post(
        live_server.url + "/login",
        data={"username": "leader1", "password": PASSWORD, "csrf_token": csrf_from(login)},
        allow_redirects=False,
    ).raise_for_status()

    def east_of_g2() -> float:
        response = wall.get(live_server.url + "/wall/geojson")
        assert response.status_code == 200
        g2 = next(f for f in response.json()["features"] if f["properties"]["name"] == "东湖社区第2网格")
        return max(pt[0] for pt in g2["geometry"]["coordinates"][0])

    assert east_of_g2() == pytest.approx(120.1)  # the other process has it cached now
    with app.app_context():
        place_admin.apply_upload(None, good_file(grid2_east=120.07), "second.geojson")
        db.commit()
    assert east_of_g2() == pytest.approx(120.07)
