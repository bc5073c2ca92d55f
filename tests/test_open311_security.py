"""Open311 holes found by the outside security test (issue 11); each test fails on the code before its fix.

1. status_notes carried the note of the case's last step: an operator's internal note (a contact's
   phone and identity number, "社区矫正对象") went out to anyone, in JSON and XML, single and list.
2. every POST with a random api_key got a fresh rate budget and wrote its own audit row.
"""

from __future__ import annotations

import time
import uuid
import xml.etree.ElementTree as ET

import pytest
from sqlalchemy import select

from commandcenter.cases import loop
from commandcenter.db import db
from commandcenter.models import Account, AuditLog, CaseStep
from commandcenter.open311 import badkeys
from tests.conftest import make_settings
from tests.test_open311 import BASE, KEY, add_client, assert_error, case_by_number, created_number, post

pytestmark = pytest.mark.security

PHONE = "13712345678"
ID_NUMBER = "320501199001011234"
SECRET_NOTE = f"已核实。联系人王五，电话{PHONE}，身份证{ID_NUMBER}，系社区矫正对象"
SECRETS = ("王五", PHONE, ID_NUMBER, "社区矫正", "已核实", "内部")


def answers(client, number: str) -> dict[str, tuple[str, str | None]]:
    """Every public answer that shows the case: name → (whole body, the case's status_notes in it)."""
    out = {}
    for fmt in ("json", "xml"):
        for kind, url in (("single", f"{BASE}/requests/{number}.{fmt}"), ("list", f"{BASE}/requests.{fmt}")):
            response = client.get(url)
            assert response.status_code == 200, response.get_data(as_text=True)
            if fmt == "json":
                notes = {r["service_request_id"]: r["status_notes"] for r in response.get_json()}
            else:
                notes = {
                    e.findtext("service_request_id"): e.findtext("status_notes")
                    for e in ET.fromstring(response.get_data())
                }
            assert number in notes, (url, notes)
            out[f"{kind}.{fmt}"] = (response.get_data(as_text=True), notes[number])
    return out


def assert_public(client, number: str, status_notes: str, *secrets: str) -> None:
    """No secret anywhere in any public answer (checked first), and the expected status_notes in each."""
    got = answers(client, number)
    for name, (body, _notes) in got.items():
        for secret in secrets:
            assert secret not in body, (name, secret)
    for name, (_body, notes) in got.items():
        assert notes == status_notes, (name, notes)


def account(world, username: str) -> Account:
    return db.get(Account, world.accounts[username].id)


# --- 1. internal notes ----------------------------------------------------------------------------


def test_internal_step_notes_never_leave_through_open311(app, client, world):
    add_client(app)
    number = created_number(client, world, media_url="https://img.example.com/a.jpg")
    with app.app_context():
        loop.register(case_by_number(number), account(world, "city_operator"), note=SECRET_NOTE)
    # the outside test's finding: this note came back in status_notes, without any key
    assert_public(client, number, "已立案，待派遣处置", *SECRETS)

    with app.app_context():  # every later step with an internal note: still only the state's fixed text
        loop.dispatch(
            case_by_number(number),
            None,
            department_id=world.departments[0].id,
            assignee_id=world.accounts["gw0"].id,
            note=f"内部：请联系王五 {PHONE}",
        )
    assert_public(client, number, "已派遣至处置部门", *SECRETS, "gw0")
    with app.app_context():
        loop.accept(case_by_number(number), None)
    assert_public(client, number, "处置中", *SECRETS, "gw0")
    with app.app_context():
        loop.pause(case_by_number(number), None, f"内部：王五（身份证 {ID_NUMBER}）住院，暂停计时")
    assert_public(client, number, "处置中", *SECRETS)
    with app.app_context():
        loop.resume(case_by_number(number), None)
        loop.feedback(case_by_number(number), None, f"内部：已电话 {PHONE} 告知王五")
    assert_public(client, number, "已处置，待核查", *SECRETS)
    with app.app_context():
        loop.close(case_by_number(number), None, f"内部：核查人联系王五 {PHONE}")
    assert_public(client, number, "已办结", *SECRETS)
    got = client.get(f"{BASE}/requests/{number}.json").get_json()[0]
    assert got["status"] == "closed" and got["media_url"] == "https://img.example.com/a.jpg"
    assert got["agency_responsible"] == "城管局" and got["description"] == "小区门口有一堆暴露垃圾"

    rejected = created_number(client, world, description="测试")
    original = created_number(client, world, grid=1)
    duplicate = created_number(client, world, grid=1, description="同一堆垃圾")
    with app.app_context():
        loop.reject(case_by_number(rejected), None, f"内部：报告人王五系社区矫正对象，电话 {PHONE}")
        loop.mark_duplicate(case_by_number(duplicate), None, case_by_number(original), note=f"内部：王五 {PHONE}")
    assert_public(client, rejected, "不予受理", *SECRETS)
    assert_public(client, duplicate, "重复事件，已并案处理", *SECRETS)


def test_a_step_marked_public_shows_its_note(app, client, world):
    add_client(app)
    number = created_number(client, world)

    def mark_public(action: str) -> None:  # the lead's page/API checkbox will set this column
        with app.app_context():
            step = (
                db.execute(
                    select(CaseStep)
                    .where(CaseStep.case_id == case_by_number(number).id, CaseStep.action == action)
                    .order_by(CaseStep.id.desc())
                )
                .scalars()
                .first()
            )
            step.public = True
            db.commit()

    with app.app_context():
        loop.register(case_by_number(number), account(world, "city_operator"), note=SECRET_NOTE)
        loop.dispatch(
            case_by_number(number),
            None,
            department_id=world.departments[0].id,
            assignee_id=world.accounts["gw0"].id,
            note="已安排今日清运",
        )
    mark_public("dispatch")
    # the operator's words only: "派遣至 城管局 gw0：" names the handler in person
    assert_public(client, number, "已安排今日清运", *SECRETS, "gw0")
    with app.app_context():
        loop.accept(case_by_number(number), None)
        loop.feedback(case_by_number(number), None, "垃圾已清运，感谢您的反映")
    mark_public("feedback")
    assert_public(client, number, "垃圾已清运，感谢您的反映", *SECRETS)
    with app.app_context():  # a later internal step does not replace the newest public reply
        loop.close(case_by_number(number), None, f"内部：核查人联系王五 {PHONE}")
    assert_public(client, number, "垃圾已清运，感谢您的反映", *SECRETS)
    mark_public("close")  # what the operator marks public on purpose is shown, as written
    assert_public(client, number, f"内部：核查人联系王五 {PHONE}")

    # a dispute is about people: even a public reply stays inside
    dispute = created_number(client, world, service_code="2001", description="楼上漏水与楼下争吵")
    with app.app_context():
        loop.register(case_by_number(dispute), None, note="双方已同意调解")
        step = db.execute(
            select(CaseStep).where(CaseStep.case_id == case_by_number(dispute).id, CaseStep.action == "register")
        ).scalar_one()
        step.public = True
        db.commit()
    assert_public(client, dispute, "已立案，待派遣处置", "双方已同意调解")


# --- 2. wrong api_keys ----------------------------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
def storage_app(request, pg_url, tmp_path, world):
    """The app with its rate limits in memory (embedded) or in Redis (server mode, db of TEST_REDIS_URL)."""
    from commandcenter import create_app

    redis_url = None
    if request.param == "redis":
        redis_url = request.getfixturevalue("redis_url")
        request.getfixturevalue("redis_conn")  # flushed before and after
    application = create_app(make_settings(tmp_path, pg_url, redis_url=redis_url))
    add_client(application)
    return application


def bad_key_rows(app, address: str) -> list[AuditLog]:
    with app.app_context():
        return (
            db.execute(
                select(AuditLog)
                .where(AuditLog.action == "open311.bad_key", AuditLog.address == address)
                .order_by(AuditLog.id)
            )
            .scalars()
            .all()
        )


def test_a_flood_of_wrong_keys_is_limited_by_address_and_folded_in_the_audit(storage_app, world):
    http = storage_app.test_client()
    http.environ_base["REMOTE_ADDR"] = "203.0.113.7"
    statuses = [post(http, world, api_key=f"guess-{uuid.uuid4().hex}").status_code for _ in range(40)]
    limit = badkeys.BAD_KEY_LIMIT.amount
    assert statuses[:limit] == [403] * limit and set(statuses[limit:]) == {429}, statuses
    # the 429 is the spec's error list, in either format, and says when to come back
    for fmt in ("json", "xml"):
        response = post(http, world, fmt=fmt, api_key="guess-again")
        assert_error(response, 429, "api_key")
        assert 1 <= int(response.headers["Retry-After"]) <= 60
    rows = bad_key_rows(storage_app, "203.0.113.7")
    assert 1 <= len(rows) <= 2, [r.detail for r in rows]
    assert not rows[0].success and "本条代表 1 次尝试" in rows[0].detail
    # a legitimate client behind the same address keeps its own budget
    assert post(http, world, api_key=KEY).status_code == 201
    assert post(http, world, fmt="xml", api_key=KEY).status_code == 201
    # another address is not held back by this one's flood
    other = storage_app.test_client()
    other.environ_base["REMOTE_ADDR"] = "198.51.100.9"
    assert_error(post(other, world, api_key="typo-key"), 403, "api_key")
    assert len(bad_key_rows(storage_app, "198.51.100.9")) == 1


def test_the_next_window_writes_how_many_attempts_were_folded(storage_app, world, monkeypatch):
    monkeypatch.setattr(badkeys, "FOLD_SECONDS", 1)
    http = storage_app.test_client()
    http.environ_base["REMOTE_ADDR"] = "203.0.113.8"
    for _ in range(5):
        assert_error(post(http, world, api_key=f"guess-{uuid.uuid4().hex}"), 403)
    assert len(bad_key_rows(storage_app, "203.0.113.8")) == 1
    time.sleep(1.2)
    assert_error(post(http, world, api_key="guess-later"), 403)
    rows = bad_key_rows(storage_app, "203.0.113.8")
    assert len(rows) == 2
    # the first attempt was written on its own; the next 4 were only counted: the new row stands for 5
    assert "本条代表 5 次尝试" in rows[1].detail and "未逐条记录的 4 次" in rows[1].detail, rows[1].detail
    for row in rows:  # the keys themselves are never written down
        assert "guess" not in (row.detail or "")
