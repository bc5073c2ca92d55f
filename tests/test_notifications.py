"""Notifications outside the browser (issue 13 §7), through real receivers on loopback: an HTTP SMS gateway
that fails twice before it answers, a DingTalk robot that checks the 加签 signature, a WeCom robot, an SMTP
server (aiosmtpd); in embedded mode (the in-process runner) and in server mode (Redis and a real RQ worker)."""

from __future__ import annotations

import base64
import email
import hashlib
import hmac
import json
import threading
import time
import urllib.parse
from contextlib import contextmanager
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from commandcenter import create_app, jobs, notify
from commandcenter.cases import loop
from commandcenter.db import db
from commandcenter.models import AuditLog, Case, NotifyChannel, NotifyDelivery, Outbox
from commandcenter.settings import Settings
from tests.conftest import (
    TEST_REDIS_URL,
    _truncate_all,
    csrf_from,
    free_port,
    logged_in,
    make_settings,
    report,
    wait_for,
)
from tests.world import WorldView

DEPT_PHONE = "13900000001"


@pytest.fixture
def app(pg_url, tmp_path, monkeypatch):
    """The application with short retries, set the way an operator sets them: NOTIFY_RETRY_INTERVALS."""
    monkeypatch.setenv("NOTIFY_RETRY_INTERVALS", "1,1")  # 3 attempts, one second apart
    application = create_app(make_settings(tmp_path, pg_url))
    with application.app_context():
        _truncate_all()
    from commandcenter.workcalendar import reset_held_years

    reset_held_years()
    yield application
    db.remove()


# --- the receivers ------------------------------------------------------------------------------------------


class Receiver:
    """A real HTTP server on 127.0.0.1: answers 500 to the first `fail_first` posts (or to all), then 200.

    With `dingtalk_secret` it recomputes the 加签 signature of each post and refuses a wrong one the way
    DingTalk does (200 with errcode 310000)."""

    def __init__(self, fail_first: int = 0, always_fail: bool = False, dingtalk_secret: str | None = None):
        self.fail_first, self.always_fail, self.dingtalk_secret = fail_first, always_fail, dingtalk_secret
        self.posts: list[dict] = []  # every post, with the status answered
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(parts.query))
                with receiver.lock:
                    n = len(receiver.posts)
                    status, answer = 200, {"errcode": 0, "errmsg": "ok"}
                    if receiver.always_fail or n < receiver.fail_first:
                        status, answer = 500, {"error": "gateway busy"}
                    elif receiver.dingtalk_secret is not None and not receiver.signed(query):
                        answer = {"errcode": 310000, "errmsg": "sign not match"}
                    receiver.posts.append(
                        {
                            "path": parts.path,
                            "query": query,
                            "headers": dict(self.headers),
                            "body": json.loads(raw),
                            "status": status,
                            "ok": status == 200 and answer["errcode"] == 0,
                        }
                    )
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def signed(self, query: dict) -> bool:
        """DingTalk's check: sign = base64(HMAC-SHA256(secret, timestamp + "\\n" + secret)), fresh timestamp."""
        try:
            timestamp = int(query["timestamp"])
        except (KeyError, ValueError):
            return False
        if abs(time.time() * 1000 - timestamp) > 3600_000:
            return False
        secret = self.dingtalk_secret.encode()
        expected = hmac.new(secret, f"{timestamp}\n".encode() + secret, hashlib.sha256).digest()
        return hmac.compare_digest(base64.b64encode(expected).decode(), query.get("sign", ""))

    def ok_posts(self, path: str | None = None) -> list[dict]:
        return [p for p in self.posts if p["ok"] and (path is None or p["path"] == path)]

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def embedded_jobs(app):
    """The embedded runner (commandcenter.jobs.run_in_process): the outbox drain and the notification sender."""
    stop = threading.Event()
    runner = threading.Thread(target=jobs.run_in_process, args=(app, stop, []), daemon=True, name="test-jobs")
    runner.start()
    yield
    stop.set()
    jobs._wake.set()
    notify._wake.set()
    runner.join(10)
    for t in threading.enumerate():
        if t.name == "notify":
            t.join(5)


# --- helpers ------------------------------------------------------------------------------------------------


@contextmanager
def domain(app):
    """Domain calls in an application context of their own: the test client's requests must not share it
    (they would share `g`, and with it a stale CSRF token)."""
    with app.app_context():
        try:
            yield
        finally:
            db.remove()


def sms_channel(url: str, **extra) -> NotifyChannel:
    form = {
        "kind": "sms_http",
        "name": "市政务短信平台",
        "active": "on",
        "url": url,
        "body_template": '{"mobile": "{phone}", "content": "{text}", "sign": "指挥中心"}',
        "header_name": "X-Api-Key",
        "secret": "gateway-key-123",
        **extra,
    }
    return _save(form)


def _save(form: dict) -> NotifyChannel:
    from commandcenter.models import Account

    admin = db.execute(select(Account).where(Account.username == "city_admin")).scalar_one()
    channel = notify.save_channel(admin, None, form)
    db.commit()
    return channel


def dispatched_case(v: WorldView, who: str = "gw0") -> Case:
    case = report(v, who)
    loop.register(case, v.a("town0_operator"))
    loop.dispatch(case, v.a("town0_admin"), department_id=v.dept(0), note="请城管局处置")
    return case


def deliveries(**where) -> list[NotifyDelivery]:
    db.rollback()  # a fresh look at what the other threads committed
    stmt = select(NotifyDelivery).order_by(NotifyDelivery.id)
    for key, value in where.items():
        stmt = stmt.where(getattr(NotifyDelivery, key) == value)
    return list(db.execute(stmt).scalars())


def settled(**where):
    rows = deliveries(**where)
    return rows if rows and all(d.status != "queued" for d in rows) else None


def give_phone(v: WorldView, username: str, phone: str) -> None:
    v.a(username).phone = phone
    db.commit()


# --- SMS gateway failing twice: embedded mode and server mode ----------------------------------------------


def test_dispatch_reaches_the_department_after_two_failed_attempts_embedded(app, world, client, embedded_jobs):
    with domain(app), Receiver(fail_first=2) as gateway:
        w = WorldView(world)
        give_phone(w, "dept0", DEPT_PHONE)
        sms_channel(gateway.url + "/sms/send")
        case = dispatched_case(w)
        rows = wait_for(lambda: settled(event="dispatch"), timeout=30, step=0.2)
        assert rows, f"no delivery settled: {deliveries()}"
        (delivery,) = rows  # only the department's one account is concerned
        assert delivery.status == "sent" and delivery.attempts == 3 and delivery.sent_at is not None
        assert delivery.account_id == w.id("dept0") and delivery.case_id == case.id
        assert [p["status"] for p in gateway.posts] == [500, 500, 200]
        (ok,) = gateway.ok_posts()
        assert ok["body"]["mobile"] == DEPT_PHONE and ok["body"]["sign"] == "指挥中心"
        text = ok["body"]["content"]
        assert case.number in text and "城管局" in text and case.category.name in text and "办理时限" in text
        assert ok["headers"]["X-Api-Key"] == "gateway-key-123"
        # the same event drained again sends nothing twice (the key is unique per event, account, channel)
        row = db.execute(select(Outbox).where(Outbox.payload["action"].as_string() == "dispatch")).scalars().first()
        assert notify.on_case_event(row.id, "dispatch", db.get(Case, case.id)) == 0
        db.commit()
        assert len(deliveries(event="dispatch")) == 1

    logged_in(client, "city_admin")
    page = client.get("/admin/notifications/log?status=sent").get_data(as_text=True)
    assert case.number in page and "已发送" in page and "市政务短信平台" in page
    assert DEPT_PHONE not in page and "139****0001" in page  # staff phones masked in the log


@pytest.mark.redis
def test_dispatch_reaches_the_department_after_two_failed_attempts_server_mode(world, pg_url, redis_conn, tmp_path):
    from rq import Queue, SimpleWorker

    server = create_app(make_settings(tmp_path / "server", pg_url, redis_url=TEST_REDIS_URL))
    assert server.config["SETTINGS"].notify_retry_intervals == (1, 1)
    queue = Queue("realtime", connection=redis_conn)
    with server.app_context(), Receiver(fail_first=2) as gateway:
        v = WorldView(world)
        give_phone(v, "dept0", DEPT_PHONE)
        sms_channel(gateway.url + "/sms/send")
        case = dispatched_case(v)
        assert deliveries() == []  # nothing is sent in the report's transaction: the worker does it

        def work():
            SimpleWorker([queue], connection=redis_conn).work(burst=True, with_scheduler=True)
            return settled(event="dispatch")

        rows = wait_for(work, timeout=40, step=0.3)
        assert rows, f"no delivery settled: {deliveries()}"
        (delivery,) = rows
        assert delivery.status == "sent" and delivery.attempts == 3
        assert [p["status"] for p in gateway.posts] == [500, 500, 200]
        (ok,) = gateway.ok_posts()
        assert case.number in ok["body"]["content"] and ok["body"]["mobile"] == DEPT_PHONE
        db.remove()
    client = server.test_client()
    logged_in(client, "city_admin")
    page = client.get("/admin/notifications/log").get_data(as_text=True)
    assert case.number in page and "已发送" in page


def test_a_receiver_that_always_fails_leaves_a_failed_delivery_and_the_case_flows_on(app, world, client, embedded_jobs):
    with domain(app), Receiver(always_fail=True) as gateway:
        w = WorldView(world)
        give_phone(w, "dept0", DEPT_PHONE)
        sms_channel(gateway.url + "/sms/send")
        case = dispatched_case(w)
        # the case moves on while the gateway refuses
        loop.accept(db.get(Case, case.id), w.a("dept0"))
        rows = wait_for(lambda: settled(event="dispatch"), timeout=30, step=0.2)
        assert rows
        (delivery,) = rows
        assert delivery.status == "failed" and delivery.attempts == 3  # 1 + the 2 configured retries
        assert delivery.last_error.startswith("HTTP 500") and "gateway busy" in delivery.last_error
        assert len(gateway.posts) == 3
        loop.feedback(db.get(Case, case.id), w.a("dept0"), "已清理完毕")
        assert db.get(Case, case.id).state == "feedback"
        report(w, "gw1", description="另一处暴露垃圾")  # reporting is untouched

    logged_in(client, "city_admin")
    page = client.get("/admin/notifications/log?status=failed").get_data(as_text=True)
    assert "失败" in page and "HTTP 500" in page and case.number in page
    assert case.number not in client.get("/admin/notifications/log?status=sent").get_data(as_text=True)


# --- robots: DingTalk 加签 and WeCom ----------------------------------------------------------------------------


def test_dingtalk_signature_is_checked_by_the_robot_and_wecom_mentions_the_handlers(app, w, embedded_jobs):
    give_phone(w, "dept0", DEPT_PHONE)
    with Receiver(dingtalk_secret="SEC0123456789abcdef") as robot:
        _save(
            {
                "kind": "dingtalk",
                "name": "城管值班群（钉钉）",
                "active": "on",
                "url": robot.url + "/robot/send?access_token=tok-good",
                "secret": "SEC0123456789abcdef",
            }
        )
        _save(
            {
                "kind": "dingtalk",
                "name": "签名配错的钉钉群",
                "active": "on",
                "url": robot.url + "/robot/send?access_token=tok-bad",
                "secret": "SECwrong",
            }
        )
        case = dispatched_case(w)
        rows = wait_for(lambda: (r := settled(event="dispatch")) and len(r) == 2 and r, timeout=30, step=0.2)
        assert rows
        by_name = {d.channel.name: d for d in rows}
        good, bad = by_name["城管值班群（钉钉）"], by_name["签名配错的钉钉群"]
        assert good.status == "sent" and good.attempts == 1 and good.account_id is None  # one message to the group
        assert bad.status == "failed" and bad.attempts == 3 and "errcode 310000" in bad.last_error
        (ok,) = robot.ok_posts()
        assert ok["query"]["access_token"] == "tok-good"
        assert ok["body"]["msgtype"] == "text" and case.number in ok["body"]["text"]["content"]
        assert ok["body"]["at"]["atMobiles"] == [DEPT_PHONE]

    with Receiver() as wecom:
        _save(
            {"kind": "wecom", "name": "企业微信群", "active": "on", "url": wecom.url + "/cgi-bin/webhook/send?key=k1"}
        )
        case2 = dispatched_case(w, "gw1")
        assert wait_for(lambda: wecom.ok_posts(), timeout=20, step=0.2)
        (ok,) = wecom.ok_posts()
        assert ok["body"]["msgtype"] == "text" and case2.number in ok["body"]["text"]["content"]
        assert ok["body"]["text"]["mentioned_mobile_list"] == [DEPT_PHONE]


# --- e-mail of an alert ---------------------------------------------------------------------------------------


def test_an_overdue_alert_is_mailed_to_the_duty_officer_through_a_real_smtp_server(app, w, embedded_jobs):
    from aiosmtpd.controller import Controller

    class Inbox:
        def __init__(self):
            self.envelopes = []

        async def handle_DATA(self, _server, _session, envelope):  # noqa: N802
            self.envelopes.append(envelope)
            return "250 OK"

    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    try:
        w.a("town0_duty").email = "duty0@example.gov.cn"
        db.commit()
        _save(
            {
                "kind": "smtp",
                "name": "政务邮箱",
                "active": "on",
                "host": "127.0.0.1",
                "port": str(smtp.port),
                "security": "none",
                "sender": "notice@example.gov.cn",
            }
        )
        case = dispatched_case(w)
        case = db.get(Case, case.id)
        later = case.handle_due + timedelta(hours=1)
        loop.sweep_deadlines(now=later)
        assert jobs.sweep_alerts(now=later) >= 1  # the overdue alert is raised; its messages are queued
        assert wait_for(lambda: inbox.envelopes, timeout=20, step=0.2)
        (envelope,) = inbox.envelopes
        assert envelope.rcpt_tos == ["duty0@example.gov.cn"] and envelope.mail_from == "notice@example.gov.cn"
        message = email.message_from_bytes(envelope.original_content)
        body = message.get_payload(decode=True).decode(message.get_content_charset())
        assert case.number in body and "逾期" in body and case.category.name in body
        assert "13800000000" not in body  # never the reporter's phone
        rows = wait_for(lambda: settled(event="overdue"), timeout=10)
        by_user = {d.account.username: d for d in rows}
        assert by_user["town0_duty"].status == "sent"
        # the town's operator and the department are concerned too, but left no e-mail: the log says so
        assert by_user["town0_operator"].status == "failed" and "未登记电子邮箱" in by_user["town0_operator"].last_error
        assert by_user["dept0"].status == "failed"
        assert "city_duty_officer" not in by_user  # the town center acts, not the city
    finally:
        smtp.stop()


# --- preferences -------------------------------------------------------------------------------------------


def test_an_account_that_switched_an_event_off_gets_nothing_for_it(app, world, client):
    logged_in(client, "dept0")
    page = client.get("/account/notifications").get_data(as_text=True)
    assert "案件派遣给我" in page and "checked" in page
    form = {"csrf_token": csrf_from(page), "events": ["rework", "overdue"], "channels": ["sms_http"], "email": ""}
    assert client.post("/account/notifications", data=form).status_code == 302
    bad = client.post("/account/notifications", data={**form, "email": "not-an-email"})
    assert bad.status_code == 400 and "电子邮箱（email）" in bad.get_data(as_text=True)
    assert "案件派遣给我" in client.get("/account/notifications").get_data(as_text=True)

    with domain(app), Receiver() as gateway:
        w = WorldView(world)
        give_phone(w, "dept0", DEPT_PHONE)
        sms_channel(gateway.url + "/sms/send")
        case = dispatched_case(w)
        jobs.process_outbox()
        assert deliveries(event="dispatch") == []  # switched off
        loop.accept(db.get(Case, case.id), w.a("dept0"))
        loop.feedback(db.get(Case, case.id), w.a("dept0"), "已处理")
        loop.rework(db.get(Case, case.id), w.a("town0_admin"), "现场仍有垃圾，请返工")
        jobs.process_outbox()
        (rework,) = deliveries(event="rework")
        assert rework.account_id == w.id("dept0") and "返工" in rework.text and case.number in rework.text
        notify.send_due()
        (ok,) = gateway.ok_posts()
        assert "退回返工" in ok["body"]["content"]
        detail = db.execute(select(AuditLog.detail).where(AuditLog.action == "notify.preferences")).scalar_one()
        assert json.loads(detail)["after"]["events"] == ["overdue", "rework"]


# --- the administration ---------------------------------------------------------------------------------------


def test_channel_fields_are_validated_by_name_secrets_stay_out_of_the_audit_and_others_get_403(app, world, client):
    logged_in(client, "city_admin")
    page = client.get("/admin/notifications")
    assert page.status_code == 200 and "新建通知渠道" in page.get_data(as_text=True)
    token = csrf_from(page.get_data(as_text=True))

    bad = client.post(
        "/admin/notifications",
        data={"csrf_token": token, "kind": "smtp", "name": "邮件", "host": "smtp..x", "port": "70000", "sender": "x"},
    )
    text = bad.get_data(as_text=True)
    assert bad.status_code == 400
    assert "SMTP 服务器（host）" in text and "端口（port）" in text and "发件人（sender）" in text
    bad = client.post(
        "/admin/notifications",
        data={"csrf_token": token, "kind": "sms_http", "name": "", "url": "ftp://gw", "body_template": "{}"},
    )
    text = bad.get_data(as_text=True)
    assert "名称（name）" in text and "接口地址（url）" in text and "请求体模板（body_template）" in text
    with domain(app):
        refused = db.execute(select(AuditLog).where(AuditLog.action == "notify.channel_create")).scalars().all()
        assert len(refused) == 2 and all(not a.success for a in refused)
        assert db.execute(select(NotifyChannel)).first() is None

    good = client.post(
        "/admin/notifications",
        data={
            "csrf_token": token,
            "kind": "dingtalk",
            "name": "值班群",
            "active": "on",
            "url": "https://oapi.dingtalk.com/robot/send?access_token=tok-secret-1",
            "secret": "SECtopsecret",
        },
    )
    assert good.status_code == 302
    with domain(app):
        channel_id = db.execute(select(NotifyChannel.id)).scalar_one()
    page = client.get(f"/admin/notifications/channels/{channel_id}").get_data(as_text=True)
    assert "SECtopsecret" not in page and "tok-secret-1" not in page and "access_token=***" in page
    saved = client.post(
        f"/admin/notifications/channels/{channel_id}",
        data={"csrf_token": token, "name": "指挥中心值班群", "active": "on", "url": "", "secret": ""},
    )
    assert saved.status_code == 302
    with domain(app):
        channel = db.get(NotifyChannel, channel_id)
        assert channel.name == "指挥中心值班群"
        assert channel.secret == "SECtopsecret" and channel.config["url"].endswith("tok-secret-1")  # kept when empty
        rows = db.execute(select(AuditLog).where(AuditLog.action.like("notify.channel_%"), AuditLog.success)).scalars()
        audits = {a.action: a for a in rows}
        created = json.loads(audits["notify.channel_create"].detail)
        assert created["before"] is None and created["after"]["name"] == "值班群"
        assert created["after"]["secret"] == "已设置" and created["after"]["config"]["url"].endswith("access_token=***")
        edited = json.loads(audits["notify.channel_edit"].detail)
        assert edited["before"]["name"] == "值班群" and edited["after"]["name"] == "指挥中心值班群"
        assert audits["notify.channel_edit"].username == "city_admin"
        for a in db.execute(select(AuditLog)).scalars():
            assert "SECtopsecret" not in (a.detail or "") and "tok-secret-1" not in (a.detail or "")

    mail = client.post(
        "/admin/notifications",
        data={
            "csrf_token": token,
            "kind": "smtp",
            "name": "政务邮箱",
            "active": "on",
            "host": "smtp.example.gov.cn",
            "port": "465",
            "security": "ssl",
            "user": "notice",
            "sender": "notice@example.gov.cn",
            "secret": "smtp-pass-9",
        },
    )
    assert mail.status_code == 302
    listing = client.get("/admin/notifications").get_data(as_text=True)
    assert "smtp.example.gov.cn:465" in listing and "smtp-pass-9" not in listing
    with domain(app):
        mail_id = db.execute(select(NotifyChannel.id).where(NotifyChannel.kind == "smtp")).scalar_one()
        assert (
            "smtp-pass-9" not in db.execute(select(AuditLog.detail).where(AuditLog.object_id == str(mail_id))).scalar()
        )
    page = client.get(f"/admin/notifications/channels/{mail_id}").get_data(as_text=True)
    assert 'value="smtp.example.gov.cn"' in page and "smtp-pass-9" not in page and "已设置" in page

    other = app.test_client()
    logged_in(other, "city_operator")
    assert other.get("/admin/notifications").status_code == 403
    assert other.get("/admin/notifications/log").status_code == 403
    assert other.get(f"/admin/notifications/channels/{channel_id}").status_code == 403


def test_a_test_message_is_sent_from_the_channel_page_and_logged(app, world, client):
    with Receiver() as gateway:
        with domain(app):
            channel_id = sms_channel(gateway.url + "/sms/send").id
        logged_in(client, "city_admin")
        page = client.get(f"/admin/notifications/channels/{channel_id}").get_data(as_text=True)
        assert "发送测试消息" in page and "gateway-key-123" not in page
        token = csrf_from(page)
        refused = client.post(f"/admin/notifications/channels/{channel_id}/test", data={"csrf_token": token})
        assert "接收手机号（recipient）" in client.get(refused.headers["Location"]).get_data(as_text=True)
        sent = client.post(
            f"/admin/notifications/channels/{channel_id}/test",
            data={"csrf_token": token, "recipient": "13700000009"},
            follow_redirects=True,
        )
        assert "测试消息已发送" in sent.get_data(as_text=True)
        (ok,) = gateway.ok_posts()
        assert ok["body"]["mobile"] == "13700000009" and "测试消息" in ok["body"]["content"]
    log_page = client.get("/admin/notifications/log").get_data(as_text=True)
    assert "测试消息" in log_page and "已发送" in log_page


def test_a_bad_retry_setting_stops_the_start(monkeypatch, tmp_path):
    monkeypatch.setenv("NOTIFY_RETRY_INTERVALS", "10,soon")
    with pytest.raises(RuntimeError, match="NOTIFY_RETRY_INTERVALS"):
        Settings.from_env(instance_path=tmp_path)
