"""消息通知: messages outside the browser (issue 13 §7).

Events: a case dispatched to a department (or a person), a case sent back for rework, a deadline warning
(临期预警) and an overdue alert (逾期告警). Who is concerned is decided here (see docs/notifications.md):

- dispatch → the active accounts of the department the case went to (role 职能部门), and the assignee;
- rework → whom the case went back to: its assignee, else the accounts of its department;
- warning → the duty officers and operators of the center that must act: the nearest place, from the
  case's own level upwards (grid → its village, town, city), that has active duty officers or operators;
- overdue → the handler (as for rework) and the same duty officers / operators.

Each account's preferences say which events and which kinds of channel (no row = the defaults of its role,
through every active channel). The channels are the city's: an SMS gateway over HTTP, a 政务钉钉 or
企业微信 group robot (one message to the group per event, @-ing the mobiles of the concerned), and e-mail
over SMTP. A delivery is one message through one channel; its key (event + account + channel) is unique,
so a retried drain creates nothing twice.

Deliveries are created after the change is committed (in the outbox drain and the alert jobs), never in a
report's transaction. After their commit they are sent: in server mode one RQ job per delivery
(`workers.jobs.send_notification`), re-enqueued at its next attempt time after a failure; in embedded mode
a thread of the web process sends whatever is due. The retry intervals are NOTIFY_RETRY_INTERVALS; after
the last, the delivery is 失败 with the reason (HTTP status and a short body, the SMTP answer, a timeout).
Secrets (gateway key, 加签 secret, SMTP password, robot tokens in a URL) are never logged or audited.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import smtplib
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

from flask import current_app, has_app_context
from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError

from . import labels
from .audit import audit
from .db import db, session_factory
from .models import (
    NOTIFY_CHANNEL_KINDS,
    NOTIFY_EVENTS,
    Account,
    Alert,
    Case,
    Department,
    NotifyChannel,
    NotifyDelivery,
    NotifyPreference,
    Place,
)
from .timeutil import fmt, utcnow
from .vocabulary import QUEUE_REALTIME

log = logging.getLogger(__name__)

KIND_LABEL = {
    "sms_http": "短信网关（HTTP）",
    "dingtalk": "政务钉钉群机器人",
    "wecom": "企业微信群机器人",
    "smtp": "电子邮件（SMTP）",
}
EVENT_LABEL = {
    "dispatch": "案件派遣",
    "rework": "退回返工",
    "warning": "临期预警",
    "overdue": "逾期告警",
    "test": "测试消息",
}
PREFERENCE_LABEL = {
    "dispatch": "案件派遣给我或本部门",
    "rework": "案件退回给我（或本部门）返工",
    "warning": "临期预警（本中心须处理）",
    "overdue": "逾期告警（本中心督办或由我处置）",
}
STATUS_LABEL = {"queued": "排队", "sent": "已发送", "failed": "失败"}
SECURITY_LABEL = {"starttls": "STARTTLS", "ssl": "SSL/TLS", "none": "不加密"}
ROBOT_KINDS = ("dingtalk", "wecom")
# the events that concern each role by default (an account may switch them off, or on, on its own page)
ROLE_EVENTS: dict[str, tuple[str, ...]] = {
    "department": ("dispatch", "rework", "overdue"),
    "gridworker": ("dispatch", "rework", "warning"),  # warning: their own 自办自结 left open near midnight
    "center_admin": ("dispatch", "rework", "warning", "overdue"),
    "operator": ("dispatch", "rework", "warning", "overdue"),
    "duty_officer": ("warning", "overdue"),
}
CENTER_ROLES = ("duty_officer", "operator")  # who acts on a warning (alert.ack)
WARNING_KINDS = ("parking_due", "escalation_due", "self_handled_due")
SEND_TIMEOUT_S = 10
PREFIX = "【指挥中心】"

NAME_MAX, URL_MAX, TEMPLATE_MAX, SECRET_MAX, EMAIL_MAX = 100, 500, 2000, 500, 120
HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,64}$")
HOST_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
PHONE = re.compile(r"^1\d{10}$")
DEFAULT_SMS_TEMPLATE = '{"mobile": "{phone}", "content": "{text}"}'


class NotifyError(Exception):
    """A refused change; ``problems``: form field → message (in Chinese, naming the field)."""

    def __init__(self, problems: dict[str, str]):
        super().__init__("；".join(problems.values()))
        self.problems = problems


class SendError(Exception):
    """A send that did not go through; ``reason`` is what the delivery log shows."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# --- preferences ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preference:
    events: frozenset[str]
    channels: frozenset[str]
    default: bool


def default_preference(account: Account) -> Preference:
    return Preference(frozenset(ROLE_EVENTS.get(account.role, ())), frozenset(NOTIFY_CHANNEL_KINDS), True)


def preference_of(account: Account) -> Preference:
    row = db.get(NotifyPreference, account.id)
    if row is None:
        return default_preference(account)
    return Preference(frozenset(row.events or ()), frozenset(row.channels or ()), False)


def _preferences(accounts: list[Account]) -> dict[int, Preference]:
    ids = [a.id for a in accounts]
    found = db.execute(select(NotifyPreference).where(NotifyPreference.account_id.in_(ids))).scalars()
    rows = {r.account_id: r for r in found}
    out = {}
    for a in accounts:
        row = rows.get(a.id)
        out[a.id] = (
            default_preference(a)
            if row is None
            else Preference(frozenset(row.events or ()), frozenset(row.channels or ()), False)
        )
    return out


def save_preference(account: Account, events, channels, email: str | None) -> Preference:
    """The account's own choice (its page /account/notifications), audited with before and after."""
    problems: dict[str, str] = {}
    events = [e for e in dict.fromkeys(events or ()) if e]
    channels = [c for c in dict.fromkeys(channels or ()) if c]
    if any(e not in NOTIFY_EVENTS for e in events):
        problems["events"] = "通知事件（events）含未知的事件"
    if any(c not in NOTIFY_CHANNEL_KINDS for c in channels):
        problems["channels"] = "通知方式（channels）含未知的渠道类型"
    email = (email or "").strip()
    if email and (len(email) > EMAIL_MAX or not EMAIL.match(email)):
        problems["email"] = f"电子邮箱（email）格式不正确，应如 name@example.gov.cn，且不超过 {EMAIL_MAX} 个字符"
    if problems:
        raise NotifyError(problems)
    before = preference_of(account)
    before_email = account.email
    row = db.get(NotifyPreference, account.id) or NotifyPreference(account_id=account.id)
    row.events, row.channels = sorted(events), sorted(channels)
    db.add(row)
    account.email = email or None
    _audit(
        "notify.preferences",
        "account",
        account.id,
        {"events": sorted(before.events), "channels": sorted(before.channels), "email_set": bool(before_email)},
        {"events": row.events, "channels": row.channels, "email_set": bool(account.email)},
        account,
    )
    return preference_of(account)


# --- who is concerned, and the words ---------------------------------------------------------------------


def _active(stmt) -> list[Account]:
    return list(db.execute(stmt.where(Account.active.is_(True)).order_by(Account.id)).scalars())


def department_accounts(department_id: int | None) -> list[Account]:
    if department_id is None:
        return []
    return _active(select(Account).where(Account.role == "department", Account.department_id == department_id))


def handlers_of(case: Case) -> list[Account]:
    """Whom a case is with: its assignee (one person), else the accounts of its department."""
    if case.assignee_id is not None:
        assignee = db.get(Account, case.assignee_id)
        return [assignee] if assignee is not None and assignee.active else []
    return department_accounts(case.department_id)


def center_staff(case: Case) -> list[Account]:
    """The duty officers and operators of the center that must act: the nearest place, from the case's level
    upwards, that has any."""
    grid = db.get(Place, case.grid_id) if case.grid_id else None
    levels = ("village", "town", "city")
    start = {"grid": 0, "village": 0, "town": 1, "city": 2}.get(case.level, 0)
    city_id = grid.city_id if grid is not None else None
    if city_id is None and case.town_id:
        town = db.get(Place, case.town_id)
        city_id = town.city_id if town else None
    ids = {"village": case.village_id, "town": case.town_id, "city": city_id}
    for place_id in (ids[lv] for lv in levels[start:]):
        if place_id is None:
            continue
        staff = _active(select(Account).where(Account.role.in_(CENTER_ROLES), Account.place_id == place_id))
        if staff:
            return staff
    return []


def _where(case: Case) -> str:
    if case.address:
        return case.address
    grid = db.get(Place, case.grid_id) if case.grid_id else None
    return grid.name if grid else "—"


def case_text(event_name: str, case: Case, alert: Alert | None = None) -> str:
    """The message: case number, category, place and deadline; nothing about the reporter."""
    category = case.category.name if case.category else "—"
    where = _where(case)
    deadline = fmt(case.handle_due) if case.handle_due else "未设定"
    if event_name == "dispatch":
        department = db.get(Department, case.department_id) if case.department_id else None
        target = department.name if department else "您"
        return (
            f"{PREFIX}案件 {case.number}（{category}）已派遣至{target}，地点：{where}，"
            f"办理时限：{deadline}。请及时签收处理。"
        )
    if event_name == "rework":
        return (
            f"{PREFIX}案件 {case.number}（{category}）核查未通过，已退回返工（第 {case.rework_count} 次），"
            f"地点：{where}，办理时限：{deadline}。"
        )
    if event_name == "warning" and alert is not None:
        kind = labels.ALERT_KIND.get(alert.kind, alert.kind)
        return f"{PREFIX}预警：案件 {case.number}（{category}）{kind}，时限：{fmt(alert.due_at)}，地点：{where}。"
    return f"{PREFIX}逾期：案件 {case.number}（{category}）已超过办理时限 {deadline}，地点：{where}。请督办。"


# --- creating deliveries --------------------------------------------------------------------------------


def active_channels() -> list[NotifyChannel]:
    return list(
        db.execute(select(NotifyChannel).where(NotifyChannel.active.is_(True)).order_by(NotifyChannel.id)).scalars()
    )


def _any_channel() -> bool:
    return db.execute(select(NotifyChannel.id).where(NotifyChannel.active.is_(True)).limit(1)).first() is not None


def deliver(event_name: str, key: str, case: Case | None, recipients: list[Account], text: str) -> list[NotifyDelivery]:
    """One delivery per concerned account and channel kind it chose (one per group robot), each once."""
    channels = active_channels()
    recipients = list({a.id: a for a in recipients}.values())
    if not channels or not recipients:
        return []
    prefs = _preferences(recipients)
    wanted = [a for a in recipients if event_name in prefs[a.id].events]
    now = utcnow()
    rows: list[NotifyDelivery] = []
    for channel in channels:
        people = [a for a in wanted if channel.kind in prefs[a.id].channels]
        if not people:
            continue
        base = dict(
            event=event_name,
            case_id=case.id if case else None,
            channel_id=channel.id,
            channel_kind=channel.kind,
            text=text,
            status="queued",
            attempts=0,
            next_attempt_at=now,
        )
        if channel.kind in ROBOT_KINDS:
            mobiles = ",".join(sorted({a.phone for a in people if a.phone}))
            rows.append(NotifyDelivery(key=f"{key}.c{channel.id}", recipient=mobiles or None, **base))
            continue
        for a in people:
            address = a.phone if channel.kind == "sms_http" else a.email
            row = NotifyDelivery(key=f"{key}.a{a.id}.c{channel.id}", account_id=a.id, recipient=address, **base)
            if not address:
                row.status, row.next_attempt_at = "failed", None
                row.last_error = "该账号未登记手机号码" if channel.kind == "sms_http" else "该账号未登记电子邮箱"
            rows.append(row)
    created = []
    existing = set(
        db.execute(select(NotifyDelivery.key).where(NotifyDelivery.key.in_([r.key for r in rows]))).scalars()
    )
    for row in rows:
        if row.key in existing:
            continue
        try:
            with db.begin_nested():
                db.add(row)
        except IntegrityError:  # another worker made it between our look and our insert
            continue
        created.append(row)
    return created


def on_case_event(outbox_id: int, action: str, case: Case) -> int:
    """After a committed dispatch or rework (called by the outbox drain, inside its transaction)."""
    if action not in ("dispatch", "rework") or not _any_channel():
        return 0
    if action == "dispatch":
        people = department_accounts(case.department_id)
        if case.assignee_id is not None:
            assignee = db.get(Account, case.assignee_id)
            if assignee is not None and assignee.active:
                people.append(assignee)
    else:
        people = handlers_of(case)
    return len(_guarded(lambda: deliver(action, f"ob{outbox_id}", case, people, case_text(action, case))))


def on_alerts(raised: list[Alert], commit: bool = False) -> int:
    """After warnings or overdue alerts were raised: the center staff (and the handler when overdue)."""
    total = 0
    if not raised or not _any_channel():
        return 0
    for alert in raised:
        case = db.get(Case, alert.case_id)
        if case is None:
            continue
        event_name = "overdue" if alert.kind == "overdue" else "warning"
        people = center_staff(case) + (handlers_of(case) if event_name == "overdue" else [])
        if alert.kind == "self_handled_due" and case.reporter is not None:  # the gridworker must close it today
            people.append(case.reporter)
        total += len(
            _guarded(lambda: deliver(event_name, f"al{alert.id}", case, people, case_text(event_name, case, alert)))  # noqa: B023
        )
    if commit and total:
        db.commit()
    return total


def _guarded(make) -> list[NotifyDelivery]:
    """Notifications never break the work they follow: a failure here is logged and forgotten."""
    try:
        with db.begin_nested():
            return make()
    except Exception:
        log.exception("could not create the notifications of an event")
        return []


# --- after the commit: send -------------------------------------------------------------------------------

_wake = threading.Event()


def _note_new(session, _flush_context) -> None:
    # a test message is sent at once by the page that made it, never by a job
    ids = [o.id for o in session.new if isinstance(o, NotifyDelivery) and o.status == "queued" and o.event != "test"]
    if ids:
        session.info.setdefault("notify_new", []).extend(ids)


def _after_commit(session) -> None:
    ids = session.info.pop("notify_new", None)
    if ids:
        schedule(ids)


def install_hooks() -> None:
    if not event.contains(session_factory, "after_flush", _note_new):
        event.listen(session_factory, "after_flush", _note_new)
        event.listen(session_factory, "after_commit", _after_commit)
        event.listen(session_factory, "after_soft_rollback", lambda s, _t: s.info.pop("notify_new", None))


def _server() -> bool:
    return has_app_context() and bool(current_app.config["SETTINGS"].redis_url)


def schedule(ids: list[int], at: datetime | None = None) -> None:
    """Server mode: one RQ job per delivery (at its next attempt time); embedded mode: wake the sender."""
    if not _server():
        _wake.set()
        return
    try:
        from rq import Queue

        from .redis_conn import redis_client

        queue = Queue(QUEUE_REALTIME, connection=redis_client())
        for delivery_id in ids:
            if at is None:
                queue.enqueue("workers.jobs.send_notification", delivery_id, job_timeout=120)
            else:
                # RQ keeps whole seconds (it truncates): round up, or the job would find the delivery not yet due
                when = at if at.microsecond == 0 else at.replace(microsecond=0) + timedelta(seconds=1)
                queue.enqueue_at(
                    when.replace(tzinfo=UTC), "workers.jobs.send_notification", delivery_id, job_timeout=120
                )
    except Exception as exc:  # Redis down: the deliveries wait, queued; the periodic sweep sends them
        log.warning(
            "could not enqueue %d notification(s) (%s); the sweep will send them", len(ids), exc.__class__.__name__
        )


def retry_intervals() -> tuple[int, ...]:
    return tuple(current_app.config["SETTINGS"].notify_retry_intervals)


def send_delivery(delivery_id: int, *, retries: bool = True) -> datetime | None:
    """Send one queued delivery if it is due (the row stays locked meanwhile: no second sender). Returns the
    time of its next attempt when it must be tried again, else None."""
    stmt = select(NotifyDelivery).where(NotifyDelivery.id == delivery_id)
    if db.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    delivery = db.execute(stmt).scalar_one_or_none()
    if delivery is None or delivery.status != "queued":
        db.rollback()
        return None
    if delivery.next_attempt_at is not None and delivery.next_attempt_at > utcnow():
        due = delivery.next_attempt_at
        db.rollback()
        return due
    delivery.attempts = (delivery.attempts or 0) + 1
    error = None
    try:
        channel = delivery.channel
        if not channel.active:
            raise SendError("渠道已停用")
        transmit(channel, delivery.recipient, delivery.text)
    except SendError as exc:
        error = exc.reason
    except Exception as exc:  # a bug or an unexpected answer: recorded, never raised into the job
        log.exception("notification %s: unexpected error", delivery_id)
        error = f"内部错误：{exc.__class__.__name__}"
    intervals = retry_intervals() if retries else ()
    if error is None:
        delivery.status, delivery.sent_at, delivery.last_error, delivery.next_attempt_at = "sent", utcnow(), None, None
    else:
        delivery.last_error = error[:500]
        if delivery.attempts <= len(intervals):
            delivery.next_attempt_at = utcnow() + timedelta(seconds=intervals[delivery.attempts - 1])
        else:
            delivery.status, delivery.next_attempt_at = "failed", None
    next_at = delivery.next_attempt_at if delivery.status == "queued" else None
    db.commit()
    log.info(
        "notification %s via channel %s: %s (attempt %s)%s",
        delivery.id,
        delivery.channel_id,
        delivery.status,
        delivery.attempts,
        f", next at {next_at:%H:%M:%S}" if next_at else "",
    )
    return next_at


def send_due(limit: int = 50, grace_s: int = 0) -> int:
    """Send every queued delivery whose time has come (embedded sender; server-mode safety net)."""
    cutoff = utcnow() - timedelta(seconds=grace_s)
    ids = list(
        db.execute(
            select(NotifyDelivery.id)
            .where(NotifyDelivery.status == "queued", NotifyDelivery.next_attempt_at <= cutoff)
            .order_by(NotifyDelivery.next_attempt_at, NotifyDelivery.id)
            .limit(limit)
        ).scalars()
    )
    db.rollback()
    for delivery_id in ids:
        send_delivery(delivery_id)
    return len(ids)


def run_sender(app, stop: threading.Event) -> None:
    """Embedded mode: a thread of the web process sends what is due, woken by each commit of deliveries."""
    while not stop.is_set():
        _wake.wait(1.0)
        _wake.clear()
        with app.app_context():
            try:
                send_due()
            except Exception:
                log.exception("notification sender failed")
            finally:
                db.remove()


# --- the channels on the wire -----------------------------------------------------------------------------


def _short(raw: bytes | str, limit: int = 200) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = " ".join(text.split())
    return text[:limit] + ("…" if len(text) > limit else "")


def _http(url: str, body: dict, headers: dict | None = None, method: str = "POST") -> bytes:
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json; charset=utf-8", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=SEND_TIMEOUT_S) as response:
            return response.read(4000)
    except urllib.error.HTTPError as exc:
        raise SendError(f"HTTP {exc.code}：{_short(exc.read(1000)) or exc.reason}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise SendError(f"超时：{SEND_TIMEOUT_S} 秒内无应答") from None
        raise SendError(f"无法连接：{_short(str(exc.reason))}") from None
    except TimeoutError:
        raise SendError(f"超时：{SEND_TIMEOUT_S} 秒内无应答") from None
    except OSError as exc:
        raise SendError(f"连接错误：{exc.__class__.__name__}") from None


def _robot_answer(raw: bytes) -> None:
    """DingTalk and WeCom answer 200 with {"errcode": 0} on success, another errcode when refused."""
    try:
        answer = json.loads(raw or b"{}")
    except ValueError:
        return
    if isinstance(answer, dict) and answer.get("errcode") not in (None, 0):
        raise SendError(f"机器人拒收：errcode {answer.get('errcode')} {_short(str(answer.get('errmsg', '')), 120)}")


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """加签 as DingTalk documents: base64(HMAC-SHA256(secret, f"{timestamp}\\n{secret}"))."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _with_query(url: str, params: dict) -> str:
    parts = urllib.parse.urlsplit(url)
    query = parts.query + ("&" if parts.query else "") + urllib.parse.urlencode(params)
    return urllib.parse.urlunsplit(parts._replace(query=query))


def _fill(template, values: dict):
    """Put {phone} and {text} into every string of the (parsed) JSON body template: always valid JSON."""
    if isinstance(template, str):
        for name, value in values.items():
            template = template.replace("{" + name + "}", value)
        return template
    if isinstance(template, list):
        return [_fill(v, values) for v in template]
    if isinstance(template, dict):
        return {k: _fill(v, values) for k, v in template.items()}
    return template


def transmit(channel: NotifyChannel, recipient: str | None, text: str) -> None:
    """Send one message; raises SendError with the reason."""
    cfg = channel.config or {}
    mobiles = [m for m in (recipient or "").split(",") if m]
    if channel.kind == "sms_http":
        if not recipient:
            raise SendError("没有手机号码")
        body = _fill(json.loads(cfg.get("body_template") or DEFAULT_SMS_TEMPLATE), {"phone": recipient, "text": text})
        headers = {cfg["header_name"]: channel.secret or ""} if cfg.get("header_name") else {}
        _http(cfg["url"], body, headers)
    elif channel.kind == "dingtalk":
        url = cfg["url"]
        if channel.secret:
            ts = int(time.time() * 1000)
            url = _with_query(url, {"timestamp": ts, "sign": dingtalk_sign(channel.secret, ts)})
        body = {"msgtype": "text", "text": {"content": text}, "at": {"atMobiles": mobiles, "isAtAll": False}}
        _robot_answer(_http(url, body))
    elif channel.kind == "wecom":
        body = {"msgtype": "text", "text": {"content": text, "mentioned_mobile_list": mobiles}}
        _robot_answer(_http(cfg["url"], body))
    elif channel.kind == "smtp":
        _smtp(channel, recipient, text)
    else:
        raise SendError(f"未知的渠道类型 {channel.kind}")


def _smtp(channel: NotifyChannel, recipient: str | None, text: str) -> None:
    if not recipient:
        raise SendError("没有电子邮箱")
    cfg = channel.config or {}
    message = EmailMessage()
    first = text.split("，")[0].split("。")[0]
    message["Subject"] = first[:80]
    message["From"] = cfg["sender"]
    message["To"] = recipient
    message.set_content(text)
    security = cfg.get("security", "starttls")
    host, port = cfg["host"], int(cfg["port"])
    try:
        if security == "ssl":
            server = smtplib.SMTP_SSL(host, port, timeout=SEND_TIMEOUT_S, context=ssl.create_default_context())
        else:
            server = smtplib.SMTP(host, port, timeout=SEND_TIMEOUT_S)
        with server:
            if security == "starttls":
                server.starttls(context=ssl.create_default_context())
            if cfg.get("user"):
                server.login(cfg["user"], channel.secret or "")
            server.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [f"{code} {_short(msg, 80)}" for code, msg in exc.recipients.values()]
        raise SendError("SMTP 拒收收件人：" + "；".join(codes)) from None
    except smtplib.SMTPResponseException as exc:
        raise SendError(f"SMTP {exc.smtp_code}：{_short(exc.smtp_error, 150)}") from None
    except TimeoutError:
        raise SendError(f"SMTP 超时：{SEND_TIMEOUT_S} 秒内无应答") from None
    except smtplib.SMTPException as exc:
        raise SendError(f"SMTP 错误：{_short(str(exc), 150)}") from None
    except ssl.SSLError as exc:
        raise SendError(f"SMTP TLS 错误：{_short(exc.reason or str(exc), 100)}") from None
    except OSError as exc:
        raise SendError(f"SMTP 无法连接：{_short(exc.strerror or exc.__class__.__name__, 100)}") from None


# --- channels: the administration's rules ------------------------------------------------------------------


def mask_url(url: str | None) -> str:
    """A robot's webhook carries its token in the query: shown and audited as ***."""
    if not url:
        return ""
    parts = urllib.parse.urlsplit(url)
    if not parts.query:
        return url
    masked = "&".join(f"{k}=***" for k, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    return urllib.parse.urlunsplit(parts._replace(query=masked))


def mask_recipient(value: str | None) -> str:
    """Staff phones and e-mails in the log: 138****0001, z***@example.gov.cn."""
    if not value:
        return "—"
    out = []
    for item in value.split(","):
        if "@" in item:
            name, _, domain = item.partition("@")
            out.append(f"{name[:1]}***@{domain}")
        elif len(item) >= 7:
            out.append(item[:3] + "****" + item[-4:])
        else:
            out.append("***")
    return "、".join(out)


def channel_snapshot(channel: NotifyChannel) -> dict:
    """What the audit keeps of a channel: everything but the secret (only whether one is set)."""
    cfg = dict(channel.config or {})
    if "url" in cfg:
        cfg["url"] = mask_url(cfg["url"])
    return {
        "kind": channel.kind,
        "name": channel.name,
        "active": bool(channel.active),
        "config": cfg,
        "secret": "已设置" if channel.secret else "未设置",
    }


def _audit(action: str, object_type: str, object_id, before, after, account: Account) -> None:
    detail = json.dumps({"before": before, "after": after}, ensure_ascii=False, sort_keys=True)
    audit(action, object_type, object_id, detail=detail[:4000], account=account)


def _url(value, field: str, label: str, problems: dict) -> str:
    url = (value or "").strip()
    parts = urllib.parse.urlsplit(url) if url else None
    if not url:
        problems[field] = f"{label}（{field}）不能为空"
    elif len(url) > URL_MAX:
        problems[field] = f"{label}（{field}）不能超过 {URL_MAX} 个字符"
    elif parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        problems[field] = f"{label}（{field}）须是 http:// 或 https:// 开头的完整地址"
    return url


def validate_channel(form: dict, channel: NotifyChannel | None) -> tuple[str, str, bool, dict, str | None]:
    """(kind, name, active, config, secret) from a form, or NotifyError naming each wrong field. An empty
    secret or URL on an existing channel keeps the stored one (they are never shown in full)."""
    problems: dict[str, str] = {}
    kind = channel.kind if channel is not None else (form.get("kind") or "").strip()
    if kind not in NOTIFY_CHANNEL_KINDS:
        problems["kind"] = "渠道类型（kind）须为：" + "、".join(KIND_LABEL.values())
    name = " ".join(str(form.get("name") or "").split())
    if not name:
        problems["name"] = "名称（name）不能为空"
    elif len(name) > NAME_MAX:
        problems["name"] = f"名称（name）不能超过 {NAME_MAX} 个字符"
    active = str(form.get("active") or "").lower() in ("1", "on", "true", "yes")
    old = dict(channel.config or {}) if channel is not None else {}
    secret = channel.secret if channel is not None else None
    new_secret = str(form.get("secret") or "")
    if form.get("clear_secret"):
        secret = None
    elif new_secret.strip():
        if len(new_secret) > SECRET_MAX:
            problems["secret"] = f"密钥（secret）不能超过 {SECRET_MAX} 个字符"
        elif any(c in new_secret for c in "\r\n"):
            problems["secret"] = "密钥（secret）不能含换行"
        secret = new_secret.strip()
    config: dict = {}
    if kind in ("sms_http", "dingtalk", "wecom"):
        if not str(form.get("url") or "").strip() and old.get("url"):
            config["url"] = old["url"]
        else:
            config["url"] = _url(form.get("url"), "url", "接口地址", problems)
    if kind == "sms_http":
        template = str(form.get("body_template") or "").strip() or DEFAULT_SMS_TEMPLATE
        if len(template) > TEMPLATE_MAX:
            problems["body_template"] = f"请求体模板（body_template）不能超过 {TEMPLATE_MAX} 个字符"
        else:
            try:
                parsed = json.loads(template)
            except ValueError:
                parsed = None
            if not isinstance(parsed, dict):
                problems["body_template"] = "请求体模板（body_template）须是 JSON 对象，如 " + DEFAULT_SMS_TEMPLATE
            elif "{phone}" not in template or "{text}" not in template:
                problems["body_template"] = "请求体模板（body_template）须含 {phone} 和 {text} 两个占位符"
        config["body_template"] = template
        header = str(form.get("header_name") or "").strip()
        if header and not HEADER_NAME.match(header):
            problems["header_name"] = "密钥请求头（header_name）只能由字母、数字和连字符组成，不超过 64 个字符"
        elif header and not secret:
            problems["secret"] = "填写了密钥请求头（header_name）时，密钥（secret）不能为空"
        config["header_name"] = header
    if kind == "smtp":
        host = str(form.get("host") or "").strip()
        if not host:
            problems["host"] = "SMTP 服务器（host）不能为空"
        elif len(host) > 253 or not all(HOST_LABEL.match(label) for label in host.split(".")):
            problems["host"] = "SMTP 服务器（host）须是域名或 IP 地址，如 smtp.example.gov.cn"
        port_text = str(form.get("port") or "").strip()
        try:
            port = int(port_text)
        except ValueError:
            port = 0
        if not 1 <= port <= 65535:
            problems["port"] = "端口（port）须是 1 到 65535 之间的整数"
        security = str(form.get("security") or "").strip()
        if security not in SECURITY_LABEL:
            problems["security"] = "加密方式（security）须为 STARTTLS、SSL/TLS 或不加密"
        user = str(form.get("user") or "").strip()
        if len(user) > 200:
            problems["user"] = "用户名（user）不能超过 200 个字符"
        sender = str(form.get("sender") or "").strip()
        if not sender or len(sender) > EMAIL_MAX or not EMAIL.match(sender):
            problems["sender"] = "发件人（sender）须是电子邮箱地址，如 notice@example.gov.cn"
        config.update(host=host, port=port, security=security, user=user, sender=sender)
    if problems:
        raise NotifyError(problems)
    return kind, name, active, config, secret


def save_channel(actor: Account, channel: NotifyChannel | None, form: dict) -> NotifyChannel:
    """Create or edit a channel, audited with before and after (no secret) in the same transaction."""
    kind, name, active, config, secret = validate_channel(form, channel)
    before = channel_snapshot(channel) if channel is not None else None
    if channel is None:
        channel = NotifyChannel(kind=kind)
        db.add(channel)
    channel.name, channel.active, channel.config, channel.secret = name, active, config, secret
    db.flush()
    _audit(
        "notify.channel_create" if before is None else "notify.channel_edit",
        "notify_channel",
        channel.id,
        before,
        channel_snapshot(channel),
        actor,
    )
    return channel


def send_test(actor: Account, channel: NotifyChannel, recipient: str) -> NotifyDelivery:
    """发送测试消息: one attempt now, recorded in the delivery log like any other, and audited."""
    recipient = (recipient or "").strip()
    if channel.kind == "sms_http" and not PHONE.match(recipient):
        raise NotifyError({"recipient": "接收手机号（recipient）须是 11 位手机号码"})
    if channel.kind == "smtp" and not EMAIL.match(recipient):
        raise NotifyError({"recipient": "接收邮箱（recipient）须是电子邮箱地址"})
    if channel.kind in ROBOT_KINDS and recipient and not PHONE.match(recipient):
        raise NotifyError({"recipient": "@ 的手机号（recipient）须是 11 位手机号码，或留空"})
    delivery = NotifyDelivery(
        key=f"test.{uuid.uuid4().hex}",
        event="test",
        channel_id=channel.id,
        channel_kind=channel.kind,
        recipient=recipient or None,
        text=f"{PREFIX}测试消息：渠道「{channel.name}」配置可用（{fmt(utcnow())}，由 {actor.display_name} 发送）。",
        status="queued",
        attempts=0,
        next_attempt_at=None,
    )
    db.add(delivery)
    audit(
        "notify.test", "notify_channel", channel.id, detail=f"发送测试消息至 {mask_recipient(recipient)}", account=actor
    )
    db.flush()
    delivery_id = delivery.id
    db.commit()
    send_delivery(delivery_id, retries=False)
    return db.get(NotifyDelivery, delivery_id)


def deliveries(
    status: str | None = None, channel_id: int | None = None, before_id: int | None = None, limit: int = 100
):
    """The delivery log, newest first."""
    stmt = select(NotifyDelivery).order_by(NotifyDelivery.id.desc()).limit(limit)
    if status:
        stmt = stmt.where(NotifyDelivery.status == status)
    if channel_id:
        stmt = stmt.where(NotifyDelivery.channel_id == channel_id)
    if before_id:
        stmt = stmt.where(NotifyDelivery.id < before_id)
    return list(db.execute(stmt).scalars())


def all_channels() -> list[NotifyChannel]:
    return list(db.execute(select(NotifyChannel).order_by(NotifyChannel.id)).scalars())
