"""Open311 GeoReport v2 (http://wiki.open311.org/GeoReport_v2) on PostgreSQL.

Most tests go through the Flask test client; the last one speaks to a real `flask serve` with the
`requests` library exactly as the published spec writes the protocol, parsing the answers by
itself (ElementTree, json) instead of trusting our serializers.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, update

from commandcenter.cases import loop
from commandcenter.db import db
from commandcenter.models import Case, CaseStep, Category, Open311Client, Open311Token
from commandcenter.open311 import bp as open311_bp
from commandcenter.security import token_digest
from commandcenter.timeutil import utcnow

BASE = "/open311/v2"
KEY = "o311-test-key-0123456789"
CALLER = {"first_name": "三", "last_name": "张", "phone": "13912345678", "email": "zhangsan@example.com"}
W3C = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$")
REQUEST_FIELDS = [
    "service_request_id",
    "status",
    "status_notes",
    "service_name",
    "service_code",
    "description",
    "agency_responsible",
    "service_notice",
    "requested_datetime",
    "updated_datetime",
    "expected_datetime",
    "address",
    "address_id",
    "zipcode",
    "lat",
    "long",
    "media_url",
]
SERVICE_FIELDS = ["service_code", "service_name", "description", "metadata", "type", "keywords", "group"]


def add_client(app, key: str = KEY, name: str = "随手拍", active: bool = True) -> int:
    with app.app_context():
        client = Open311Client(name=name, api_key_hash=token_digest(key), active=active)
        db.add(client)
        db.commit()
        return client.id


def form(world, grid: int = 0, **fields) -> dict:
    lat, lon = world.grid_point(grid)
    data = {
        "api_key": KEY,
        "service_code": "0101",
        "lat": f"{lat}",
        "long": f"{lon}",
        "description": "小区门口有一堆暴露垃圾",
        **CALLER,
    }
    data.update(fields)
    return {k: v for k, v in data.items() if v is not None}


def post(client, world, fmt: str = "json", grid: int = 0, **fields):
    return client.post(f"{BASE}/requests.{fmt}", data=form(world, grid, **fields))


def created_number(client, world, **fields) -> str:
    response = post(client, world, **fields)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()[0]["service_request_id"]


def errors_of(response) -> list[dict]:
    """The spec's error list, in whichever format the response is."""
    if response.content_type.startswith("text/xml"):
        root = ET.fromstring(response.get_data())
        assert root.tag == "errors"
        return [{"code": int(e.findtext("code")), "description": e.findtext("description")} for e in root]
    body = response.get_json()
    assert isinstance(body, list) and body, body
    return body


def assert_error(response, status: int, *words: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    errors = errors_of(response)
    assert all(e["code"] == status and e["description"] for e in errors)
    text = " ".join(e["description"] for e in errors)
    for word in words:
        assert word in text, text


def case_by_number(number: str) -> Case:
    return db.execute(select(Case).where(Case.number == number)).scalar_one()


# --- routes, discovery, services --------------------------------------------------------------------


def test_every_open311_route_is_marked_public(app):
    rules = [r for r in app.url_map.iter_rules() if r.endpoint.startswith(open311_bp.name + ".")]
    assert len(rules) >= 9
    for rule in rules:
        assert getattr(app.view_functions[rule.endpoint], "_permission", None) == "public", rule.rule


def test_discovery_in_both_formats(client):
    body = client.get(f"{BASE}/discovery.json").get_json()
    assert {"changeset", "contact", "key_service", "endpoints"} <= set(body)
    endpoint = body["endpoints"][0]
    assert endpoint["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert endpoint["url"].endswith("/open311/v2") and "text/xml" in endpoint["formats"]
    root = ET.fromstring(client.get(f"{BASE}/discovery.xml").get_data())
    assert root.tag == "discovery"
    assert [f.text for f in root.find("endpoints/endpoint/formats")] == ["text/xml", "application/json"]


def test_services_are_the_active_small_classes_and_items(app, client, world):
    services = client.get(f"{BASE}/services.json").get_json()
    codes = [s["service_code"] for s in services]
    with app.app_context():
        expected = sorted(c.code for c in db.execute(select(Category).where(Category.depth.in_((2, 3)))).scalars())
    assert codes == expected and "01" not in codes
    by_code = {s["service_code"]: s for s in services}
    assert list(by_code["0101"]) == SERVICE_FIELDS
    assert by_code["0101"]["group"] == "市容环境" and by_code["0101"]["metadata"] is False
    assert by_code["0101"]["type"] == "realtime" and "立案条件" in by_code["0101"]["description"]
    assert by_code["040101"]["service_name"] == "机动车乱停放" and by_code["040101"]["group"] == "街面秩序"
    assert "乱停车" in by_code["040101"]["keywords"]  # an item is found by its small class's name too
    assert by_code["2001"]["description"].startswith("矛盾纠纷")
    # a retired small class disappears with its items; a retired big class with everything below it
    with app.app_context():
        db.execute(update(Category).where(Category.code.in_(("0401", "05"))).values(active=False))
        db.commit()
    codes = {s["service_code"] for s in client.get(f"{BASE}/services.json").get_json()}
    assert not codes & {"0401", "040101", "0501", "0504"} and "0402" in codes
    assert client.get(f"{BASE}/services/0401.json").status_code == 404


def test_services_xml_follows_the_spec(client, world):
    response = client.get(f"{BASE}/services.xml")
    assert response.status_code == 200 and response.content_type == "text/xml; charset=utf-8"
    assert response.get_data().startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(response.get_data())
    assert root.tag == "services" and len(root) > 50
    for element in root:
        assert element.tag == "service"
        assert [child.tag for child in element] == SERVICE_FIELDS
        assert element.findtext("metadata") in ("true", "false")
        assert element.findtext("type") in ("realtime", "batch", "blackbox")


def test_service_definition(client, world):
    assert client.get(f"{BASE}/services/0101.json").get_json() == {"service_code": "0101", "attributes": []}
    root = ET.fromstring(client.get(f"{BASE}/services/010101.xml").get_data())
    assert root.tag == "service_definition" and root.findtext("service_code") == "010101"
    assert root.find("attributes") is not None and len(root.find("attributes")) == 0
    assert_error(client.get(f"{BASE}/services/9999.json"), 404, "9999")
    assert_error(client.get(f"{BASE}/services/01.xml"), 404)  # a big class is not a service


# --- POST requests ----------------------------------------------------------------------------------


def test_post_creates_an_open311_case(app, client, world):
    client_id = add_client(app)
    response = post(
        client,
        world,
        grid=3,
        address_string="东湖路 1 号",
        media_url="https://img.example.com/1.jpg",
        account_id="u-42",
        device_id="dev-1",
    )
    assert response.status_code == 201 and response.content_type == "application/json; charset=utf-8"
    body = response.get_json()
    assert len(body) == 1 and set(body[0]) == {"service_request_id", "service_notice", "account_id"}
    assert body[0]["account_id"] == "u-42" and "1 工作日" in body[0]["service_notice"]
    number = body[0]["service_request_id"]
    with app.app_context():
        case = case_by_number(number)
        assert case.source == "open311" and case.state == "reported" and case.reporter_id is None
        assert case.category.code == "0101" and case.grid_id == world.grids[3].id
        assert case.town_id == world.towns[0].id and case.address == "东湖路 1 号"
        assert case.caller_name == "张三" and case.caller_phone == "13912345678"
        assert case.description == "小区门口有一堆暴露垃圾" and case.client_key
        token = db.execute(select(Open311Token).where(Open311Token.case_id == case.id)).scalar_one()
        assert token.client_id == client_id and re.fullmatch(r"[0-9a-f]{32}", token.token)
        steps = db.execute(select(CaseStep).where(CaseStep.case_id == case.id)).scalars().all()
        assert [s.action for s in steps] == ["report"] and "https://img.example.com/1.jpg" in steps[0].note


def test_post_in_xml(app, client, world):
    add_client(app)
    response = post(client, world, fmt="xml")
    assert response.status_code == 201 and response.content_type == "text/xml; charset=utf-8"
    root = ET.fromstring(response.get_data())
    assert root.tag == "service_requests" and [e.tag for e in root] == ["request"]
    assert [e.tag for e in root[0]] == ["service_request_id", "service_notice", "account_id"]
    assert root[0].findtext("service_request_id").startswith("SJ") and root[0].find("account_id").text is None


def test_device_id_makes_a_resent_report_idempotent(app, client, world):
    add_client(app)
    first = post(client, world, device_id="phone-7")
    again = post(client, world, device_id="phone-7")
    assert first.status_code == 201 and again.status_code == 200
    assert first.get_json() == again.get_json()
    other_text = post(client, world, device_id="phone-7", description="另一处垃圾")
    other_device = post(client, world, device_id="phone-8")
    assert other_text.status_code == other_device.status_code == 201
    # without device_id there is nothing to recognise a retry by: each POST is a report
    assert post(client, world).status_code == post(client, world).status_code == 201
    # another client's identical report is its own case
    add_client(app, key="second-client-key", name="第二个客户端")
    assert post(client, world, api_key="second-client-key", device_id="phone-7").status_code == 201
    with app.app_context():
        assert db.query(Case).count() == 6
        assert db.query(Open311Token).count() == 6


def test_api_key_errors_are_403_lists(app, client, world):
    add_client(app)
    add_client(app, key="retired-key", name="已停用", active=False)
    assert_error(post(client, world, api_key=None), 403, "api_key")
    assert_error(post(client, world, api_key="wrong"), 403, "api_key")
    assert_error(post(client, world, fmt="xml", api_key="retired-key"), 403, "api_key")
    with app.app_context():
        assert db.query(Case).count() == 0


def test_post_validation_errors_name_the_argument(app, client, world):
    add_client(app)
    assert_error(post(client, world, service_code=None), 400, "service_code")
    assert_error(post(client, world, fmt="xml", service_code=""), 400, "service_code")
    assert_error(post(client, world, service_code="9999"), 404, "9999")
    assert_error(post(client, world, service_code="01"), 404)  # big classes are not services
    assert_error(post(client, world, lat=None, long=None), 400, "lat", "address_string", "address_id")
    assert_error(post(client, world, long=None), 400, "lat", "long")
    assert_error(post(client, world, lat="north"), 400, "lat")
    assert_error(post(client, world, lat="95", long="120"), 400, "lat")
    assert_error(post(client, world, long="nan"), 400, "long")
    assert_error(post(client, world, lat=None, long=None, address_string="东湖路 1 号"), 400, "lat", "address_id")
    assert_error(post(client, world, lat=None, long=None, address_id="nope"), 400, "address_id")
    assert_error(post(client, world, description="长" * 4001), 400, "description", "4000")
    assert_error(post(client, world, phone="1" * 40), 400, "phone")
    assert_error(post(client, world, media_url="javascript:alert(1)"), 400, "media_url")
    # several problems at once come back together, as the spec's list allows
    both = post(client, world, service_code=None, lat=None, long=None)
    assert both.status_code == 400 and len(errors_of(both)) == 2
    # the spec's body is form-encoded; JSON is refused with a clear word, not mistaken for "no api_key"
    as_json = client.post(f"{BASE}/requests.json", json=form(world))
    assert_error(as_json, 400, "application/x-www-form-urlencoded")
    with app.app_context():
        assert db.query(Case).count() == 0


def test_location_outside_every_grid_is_400(app, client, world):
    add_client(app)
    response = post(client, world, lat="39.9042", long="116.4074")
    assert_error(response, 400, "网格", "39.9042")
    with app.app_context():
        assert db.query(Case).count() == 0


def test_address_id_is_a_grid_code(app, client, world):
    add_client(app)
    number = created_number(
        client, world, lat=None, long=None, address_id=world.grids[5].code, address_string="西湖路 8 号"
    )
    with app.app_context():
        case = case_by_number(number)
        assert case.grid_id == world.grids[5].id and case.lat is None and case.address == "西湖路 8 号"
    got = client.get(f"{BASE}/requests/{number}.json").get_json()[0]
    assert got["address_id"] == world.grids[5].code and got["lat"] is None and got["address"] == "西湖路 8 号"


# --- GET requests -----------------------------------------------------------------------------------


def test_get_one_request_in_both_formats(app, client, world):
    add_client(app)
    number = created_number(client, world, grid=2, media_url="https://img.example.com/2.jpg")
    body = client.get(f"{BASE}/requests/{number}.json").get_json()
    assert len(body) == 1
    got = body[0]
    assert list(got) == REQUEST_FIELDS
    assert got["service_request_id"] == number and got["status"] == "open"
    assert got["status_notes"] == "已受理，待核实" and got["service_code"] == "0101"
    assert got["service_name"] == "暴露垃圾" and got["description"] == "小区门口有一堆暴露垃圾"
    assert got["agency_responsible"] == "城市网格化服务管理中心" and got["expected_datetime"] is None
    assert got["requested_datetime"].endswith("+08:00") and W3C.match(got["requested_datetime"])
    assert got["address_id"] == world.grids[2].code and world.grids[2].name in got["address"]
    assert (got["lat"], got["long"]) == world.grid_point(2) and got["media_url"] == "https://img.example.com/2.jpg"
    with app.app_context():
        reported = case_by_number(number).reported_at
    assert datetime.fromisoformat(got["requested_datetime"]).replace(tzinfo=None) == (
        reported + timedelta(hours=8)
    ).replace(microsecond=0)
    root = ET.fromstring(client.get(f"{BASE}/requests/{number}.xml").get_data())
    assert root.tag == "service_requests" and [e.tag for e in root] == ["request"]
    assert [e.tag for e in root[0]] == REQUEST_FIELDS
    assert root[0].findtext("service_request_id") == number and float(root[0].findtext("lat")) == got["lat"]
    assert_error(client.get(f"{BASE}/requests/SJ000.json"), 404, "SJ000")
    assert_error(client.get(f"{BASE}/requests/SJ000.xml"), 404, "SJ000")


def test_reads_never_show_the_callers_personal_data(app, client, world):
    add_client(app)
    number = created_number(client, world)
    created_number(client, world, grid=1)
    outputs = [
        client.get(f"{BASE}/requests.json").get_data(as_text=True),
        client.get(f"{BASE}/requests.xml").get_data(as_text=True),
        client.get(f"{BASE}/requests/{number}.json").get_data(as_text=True),
        client.get(f"{BASE}/requests/{number}.xml").get_data(as_text=True),
    ]
    for text in outputs:
        assert number in text
        for secret in ("张三", "13912345678", "zhangsan@example.com", KEY, token_digest(KEY)):
            assert secret not in text


def test_status_and_notes_follow_the_closed_loop(app, client, world):
    add_client(app)
    number = created_number(client, world)
    with app.app_context():
        case = case_by_number(number)
        loop.register(case, None)
        loop.dispatch(case, None, department_id=world.departments[0].id, assignee_id=world.accounts["gw0"].id)
        handle_due = case.handle_due
    got = client.get(f"{BASE}/requests/{number}.json").get_json()[0]
    assert got["status"] == "open" and got["agency_responsible"] == "城管局"
    assert got["status_notes"] == "已派遣至处置部门"  # internal notes stay inside (issue 11)
    assert got["expected_datetime"] == (handle_due + timedelta(hours=8)).isoformat(timespec="seconds") + "+08:00"
    with app.app_context():
        case = case_by_number(number)
        loop.accept(case, None)
        loop.feedback(case, None, "垃圾已清运")
        loop.close(case, None, "现场核查已清理干净")
        closed_at = case.closed_at
    got = client.get(f"{BASE}/requests/{number}.json").get_json()[0]
    assert got["status"] == "closed" and got["status_notes"] == "已办结"
    assert got["updated_datetime"] == (closed_at + timedelta(hours=8)).isoformat(timespec="seconds") + "+08:00"

    rejected = created_number(client, world, description="测试")
    original = created_number(client, world, grid=1)
    duplicate = created_number(client, world, grid=1, description="同一堆垃圾")
    with app.app_context():
        loop.reject(case_by_number(rejected), None, "经核实为测试数据")
        loop.mark_duplicate(case_by_number(duplicate), None, case_by_number(original))
    got = {r["service_request_id"]: r for r in client.get(f"{BASE}/requests.json").get_json()}
    assert got[rejected]["status"] == "closed" and got[rejected]["status_notes"] == "不予受理"
    assert got[duplicate]["status"] == "closed" and got[duplicate]["status_notes"] == "重复事件，已并案处理"
    assert got[original]["status"] == "open"


def test_request_filters(app, client, world):
    add_client(app)
    a = created_number(client, world)
    b = created_number(client, world, service_code="0502", description="路灯不亮")
    c = created_number(client, world, service_code="0502", description="又一盏路灯不亮")
    old = created_number(client, world, description="很久以前")
    with app.app_context():
        loop.reject(case_by_number(c), None, "重复报告")
        db.execute(update(Case).where(Case.number == old).values(reported_at=utcnow() - timedelta(days=120)))
        db.commit()

    def numbers(query: str, fmt: str = "json") -> list[str]:
        response = client.get(f"{BASE}/requests.{fmt}?{query}")
        assert response.status_code == 200, response.get_data(as_text=True)
        if fmt == "xml":
            return [e.findtext("service_request_id") for e in ET.fromstring(response.get_data())]
        return [r["service_request_id"] for r in response.get_json()]

    assert numbers("") == [c, b, a]  # the last 90 days, newest first
    assert numbers("", "xml") == [c, b, a]
    assert numbers("status=open") == [b, a] and numbers("status=closed") == [c]
    assert numbers("status=open,closed") == [c, b, a] == numbers("status=open&status=closed")
    assert numbers("service_code=0502") == [c, b] and numbers("service_code=0101,0502&status=open") == [b, a]
    assert numbers("service_code=9999") == []
    # service_request_id overrides every other argument, the date window included
    assert sorted(numbers(f"service_request_id={a},{old}&status=closed")) == sorted([a, old])
    now = utcnow()
    start = (now - timedelta(days=130)).strftime("%Y-%m-%dT%H:%M:%SZ")
    end = (now - timedelta(days=100)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert numbers(f"start_date={start}&end_date={end}") == [old]
    assert numbers(f"start_date={start}") == [old]  # start + 90 days
    assert numbers(f"end_date={end}") == [old]  # the 90 days before end
    # a '+' offset sent without encoding arrives as a space and is still understood
    local_start = (now + timedelta(hours=8) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    assert numbers(f"start_date={local_start}+08:00") == [c, b, a]
    assert numbers(f"start_date={local_start}%2B08:00") == [c, b, a]
    # a bare date as end_date covers that whole day
    today = (now + timedelta(hours=8)).date()
    assert numbers(f"start_date={today}&end_date={today}") == [c, b, a]


def test_request_filter_errors(client, world):
    assert_error(
        client.get(f"{BASE}/requests.json?start_date=2026-01-01T00:00:00Z&end_date=2026-06-01T00:00:00Z"), 400, "90"
    )
    assert_error(client.get(f"{BASE}/requests.xml?start_date=2026-01-01&end_date=2026-05-01"), 400, "90")
    assert_error(client.get(f"{BASE}/requests.json?start_date=2026-03-01&end_date=2026-02-01"), 400, "end_date")
    assert_error(client.get(f"{BASE}/requests.json?start_date=yesterday"), 400, "start_date")
    assert_error(client.get(f"{BASE}/requests.json?end_date=2026-13-01"), 400, "end_date")
    assert_error(client.get(f"{BASE}/requests.json?status=pending"), 400, "status")
    ids = ",".join(f"SJ{i}" for i in range(1001))
    assert_error(client.get(f"{BASE}/requests.json?service_request_id={ids}"), 400, "1000")


def test_at_most_1000_requests(app, client, world):
    add_client(app)
    number = created_number(client, world)
    with app.app_context():
        case = case_by_number(number)
        rows = [
            {
                k: getattr(case, k)
                for k in (
                    "source",
                    "category_id",
                    "kind",
                    "description",
                    "lat",
                    "lon",
                    "grid_id",
                    "village_id",
                    "town_id",
                    "state",
                    "level",
                    "discovered_at",
                )
            }
            | {"number": f"SJX{i:07d}", "reported_at": case.reported_at - timedelta(seconds=i + 1)}
            for i in range(1005)
        ]
        db.execute(Case.__table__.insert(), rows)
        db.commit()  # these rows have no history: their status_notes are the state's fixed text
    body = client.get(f"{BASE}/requests.json").get_json()
    assert len(body) == 1000 and body[0]["service_request_id"] == number
    assert body[1]["status_notes"] == "已受理，待核实"


def test_only_open311_cases_are_public(app, client, world):
    add_client(app)
    mine = created_number(client, world)
    with app.app_context():
        lat, lon = world.grid_point(0)
        data = loop.ReportInput(
            category_id=world.category("0101").id, description="网格员发现：某某家门口堆物", lat=lat, lon=lon
        )
        internal, _ = loop.report_case(data, actor=world.accounts["gw0"], source="app", client_key="k-1")
        internal_number = internal.number
    assert [r["service_request_id"] for r in client.get(f"{BASE}/requests.json").get_json()] == [mine]
    assert_error(client.get(f"{BASE}/requests/{internal_number}.json"), 404)
    listed = client.get(f"{BASE}/requests.json?service_request_id={internal_number},{mine}").get_json()
    assert [r["service_request_id"] for r in listed] == [mine]


def test_disputes_keep_their_details_private(app, client, world):
    add_client(app)
    number = created_number(client, world, service_code="2001", description="楼上王某家漏水与楼下争吵")
    got = client.get(f"{BASE}/requests/{number}.json").get_json()[0]
    assert got["service_code"] == "2001" and got["status"] == "open"
    assert got["description"] is None and got["lat"] is None and got["address"] is None
    assert got["status_notes"] == "已受理，待核实"
    assert "王某" not in client.get(f"{BASE}/requests.xml").get_data(as_text=True)


def test_token_lookup(app, client, world):
    add_client(app)
    number = created_number(client, world)
    with app.app_context():
        token = db.execute(select(Open311Token.token)).scalar_one()
    assert client.get(f"{BASE}/tokens/{token}.json").get_json() == [{"service_request_id": number, "token": token}]
    root = ET.fromstring(client.get(f"{BASE}/tokens/{token}.xml").get_data())
    assert root.tag == "service_requests" and root.find("request/service_request_id").text == number
    assert root.find("request/token").text == token
    assert_error(client.get(f"{BASE}/tokens/nope.json"), 404, "nope")


def test_xml_escapes_and_drops_what_xml_cannot_carry(app, client, world):
    add_client(app)
    text = "A <b>\"bold\"</b> & 'odd' ]]> 描述\u0007\nsecond line"
    number = created_number(client, world, description=text)
    root = ET.fromstring(client.get(f"{BASE}/requests/{number}.xml").get_data())
    assert root.findtext("request/description") == text.replace("\u0007", "")
    assert client.get(f"{BASE}/requests/{number}.json").get_json()[0]["description"] == text.replace("\u0007", "")


def test_unknown_paths_methods_and_failures_answer_as_error_lists(client, world, monkeypatch):
    assert_error(client.get(f"{BASE}/nothing.json"), 404)
    assert_error(client.get(f"{BASE}/nothing.xml"), 404)
    assert_error(client.get(f"{BASE}/services.html"), 404, ".json", ".xml")
    assert_error(client.put(f"{BASE}/requests.json"), 400, "PUT")
    assert_error(client.delete(f"{BASE}/services.xml"), 400, "DELETE")

    from commandcenter.open311 import service

    def broken(*_args, **_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(service, "find_requests", broken)
    assert_error(client.get(f"{BASE}/requests.json"), 400)
    assert_error(client.get(f"{BASE}/requests.xml"), 400)


def test_rate_limit_is_per_client_and_answers_as_a_list(pg_url, tmp_path, world):
    from commandcenter import create_app
    from tests.conftest import make_settings

    limited = create_app(make_settings(tmp_path, pg_url, intake_rate_limit="2 per minute"))
    add_client(limited)
    add_client(limited, key="other-client-key", name="另一个")
    http = limited.test_client()
    assert [post(http, world).status_code for _ in range(2)] == [201, 201]
    assert_error(post(http, world), 429)
    assert_error(post(http, world, fmt="xml"), 429)
    assert post(http, world, api_key="other-client-key").status_code == 201  # each client has its own budget


# --- the CLI ----------------------------------------------------------------------------------------


def test_cli_adds_and_lists_clients(app, client, runner, world):
    result = runner.invoke(args=["open311", "add-client", "市民随手拍"])
    assert result.exit_code == 0, result.output
    key = result.output.strip().splitlines()[-1]
    assert len(key) >= 40
    with app.app_context():
        stored = db.execute(select(Open311Client)).scalar_one()
        assert stored.name == "市民随手拍" and stored.api_key_hash == token_digest(key) and stored.active
        client_id = stored.id
    assert post(client, world, api_key=key).status_code == 201
    listing = runner.invoke(args=["open311", "list-clients"])
    assert listing.exit_code == 0 and "市民随手拍" in listing.output and "启用" in listing.output
    assert key not in listing.output and token_digest(key) not in listing.output
    assert runner.invoke(args=["open311", "disable-client", str(client_id)]).exit_code == 0
    assert_error(post(client, world, api_key=key), 403, "api_key")
    assert "停用" in runner.invoke(args=["open311", "list-clients"]).output
    assert runner.invoke(args=["open311", "enable-client", str(client_id)]).exit_code == 0
    assert post(client, world, api_key=key).status_code == 201
    assert runner.invoke(args=["open311", "add-client", "  "]).exit_code != 0
    assert runner.invoke(args=["open311", "disable-client", "999"]).exit_code != 0


# --- the real server, spoken to as the published spec writes it ------------------------------------


def _w3c_datetime(text: str) -> datetime:
    assert W3C.match(text), text
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert value.tzinfo is not None
    return value


def _spec_request_element(element: ET.Element) -> dict:
    """Check one <request> of GET requests against the spec's field list and types."""
    assert element.tag == "request"
    names = [child.tag for child in element]
    for required in (
        "service_request_id",
        "status",
        "service_name",
        "service_code",
        "requested_datetime",
        "updated_datetime",
    ):
        assert required in names, required
    assert set(names) <= set(REQUEST_FIELDS), set(names) - set(REQUEST_FIELDS)
    values = {child.tag: child.text for child in element}
    assert values["service_request_id"]
    assert values["status"] in ("open", "closed")
    _w3c_datetime(values["requested_datetime"])
    _w3c_datetime(values["updated_datetime"])
    if values.get("expected_datetime"):
        _w3c_datetime(values["expected_datetime"])
    if values.get("lat") is not None:
        float(values["lat"]), float(values["long"])
    return values


@pytest.mark.live
def test_live_server_speaks_the_published_spec(app, world, live_server):
    import requests

    key = "live-spec-key-9f3a"
    add_client(app, key=key, name="spec client")
    root = f"{live_server.url}{BASE}"
    lat, lon = world.grid_point(4)
    phone = "13700007777"

    # POST Service Request, as the spec's example: form-encoded, UTF-8
    body = {
        "api_key": key,
        "service_code": "0502",
        "lat": str(lat),
        "long": str(lon),
        "description": "路灯不亮，晚上很黑",
        "first_name": "四",
        "last_name": "李",
        "phone": phone,
    }
    response = requests.post(f"{root}/requests.json", data=body, timeout=10)
    assert response.status_code in (200, 201), response.text
    assert response.headers["Content-Type"].startswith("application/json")
    created = response.json()
    assert isinstance(created, list) and len(created) == 1
    number = created[0]["service_request_id"]
    assert isinstance(number, str) and number

    # GET Service Request, JSON
    got = requests.get(f"{root}/requests/{number}.json", timeout=10)
    assert got.status_code == 200 and got.headers["Content-Type"].startswith("application/json")
    item = got.json()[0]
    assert item["service_request_id"] == number and item["status"] in ("open", "closed")
    assert item["service_code"] == "0502" and isinstance(item["lat"], float) and isinstance(item["long"], float)
    assert abs(item["lat"] - lat) < 1e-9 and abs(item["long"] - lon) < 1e-9
    assert _w3c_datetime(item["requested_datetime"]).utcoffset() == timedelta(hours=8)
    assert phone not in got.text and "李四" not in got.text

    # GET Service Request, XML: <service_requests><request>…</request></service_requests>
    got = requests.get(f"{root}/requests/{number}.xml", timeout=10)
    assert got.status_code == 200 and got.headers["Content-Type"].startswith("text/xml")
    assert got.content.lstrip().lower().startswith(b'<?xml version="1.0" encoding="utf-8"?>')
    tree = ET.fromstring(got.content)
    assert tree.tag == "service_requests" and len(tree) == 1
    values = _spec_request_element(tree[0])
    assert values["service_request_id"] == number and values["service_code"] == "0502"
    assert abs(float(values["lat"]) - lat) < 1e-9 and abs(float(values["long"]) - lon) < 1e-9
    assert phone not in got.text

    # GET Service Requests, XML, the default window
    listing = ET.fromstring(requests.get(f"{root}/requests.xml", timeout=10).content)
    assert listing.tag == "service_requests"
    assert [_spec_request_element(e)["service_request_id"] for e in listing] == [number]

    # GET Service List, XML
    services = requests.get(f"{root}/services.xml", timeout=10)
    assert services.status_code == 200 and services.headers["Content-Type"].startswith("text/xml")
    tree = ET.fromstring(services.content)
    assert tree.tag == "services" and len(tree) > 0
    for service in tree:
        assert service.tag == "service"
        names = {child.tag for child in service}
        assert {"service_code", "service_name", "metadata", "type"} <= names
        assert names <= set(SERVICE_FIELDS)
        assert service.findtext("metadata") in ("true", "false")
        assert service.findtext("type") in ("realtime", "batch", "blackbox")
    assert "0502" in [s.findtext("service_code") for s in tree]

    def spec_errors(resp, status: int) -> list[dict]:
        assert resp.status_code == status, resp.text
        if resp.headers["Content-Type"].startswith("text/xml"):
            tree = ET.fromstring(resp.content)
            assert tree.tag == "errors" and len(tree) >= 1
            out = []
            for error in tree:
                assert error.tag == "error" and {c.tag for c in error} == {"code", "description"}
                out.append({"code": int(error.findtext("code")), "description": error.findtext("description")})
            return out
        errors = json.loads(resp.text)
        assert isinstance(errors, list) and errors
        for error in errors:
            assert set(error) == {"code", "description"} and isinstance(error["code"], int)
            assert isinstance(error["description"], str) and error["description"]
        return errors

    # a date window longer than 90 days
    errors = spec_errors(
        requests.get(
            f"{root}/requests.json",
            params={"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-06-01T00:00:00Z"},
            timeout=10,
        ),
        400,
    )
    assert errors[0]["code"] == 400
    spec_errors(
        requests.get(
            f"{root}/requests.xml",
            params={"start_date": "2026-01-01T00:00:00+08:00", "end_date": "2026-12-01T00:00:00+08:00"},
            timeout=10,
        ),
        400,
    )
    # a wrong api_key
    errors = spec_errors(requests.post(f"{root}/requests.xml", data={**body, "api_key": "not-a-key"}, timeout=10), 403)
    assert errors[0]["code"] == 403
    spec_errors(
        requests.post(f"{root}/requests.json", data={k: v for k, v in body.items() if k != "api_key"}, timeout=10), 403
    )
    # an unknown service_request_id
    spec_errors(requests.get(f"{root}/requests/SJ19990101000000.json", timeout=10), 404)
    spec_errors(requests.get(f"{root}/requests/SJ19990101000000.xml", timeout=10), 404)
    # no service_code
    errors = spec_errors(
        requests.post(f"{root}/requests.json", data={k: v for k, v in body.items() if k != "service_code"}, timeout=10),
        400,
    )
    assert any("service_code" in e["description"] for e in errors)
    # a point outside every grid
    spec_errors(requests.post(f"{root}/requests.json", data={**body, "lat": "39.9", "long": "116.4"}, timeout=10), 400)
    # nothing of the refused posts became a case
    with app.app_context():
        assert db.query(Case).count() == 1
