"""The six-step closed loop (六步闭环) as a state machine: one function per step.

Each step checks that the step is legal from the case's state, that the actor's role and
jurisdiction allow it, changes the case, writes its history step and an outbox row, and commits
all of it in one transaction. Nothing is pushed or enqueued before that commit.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from .. import alerts, labels, refcache
from ..access import Forbidden, has_permission, in_jurisdiction
from ..categories import limits_of, limits_record
from ..db import db
from ..models import (
    CASE_LEVELS,
    Account,
    Case,
    CaseStep,
    Category,
    Center,
    Department,
    Dispute,
    ExtensionRequest,
    Outbox,
    Place,
)
from ..timeutil import current_tz, day_bounds_utc, fmt, local, utcnow
from ..vocabulary import FINAL_STATES, OPEN_STATES
from ..workcalendar import assumed_between, deadline_utc

LEVEL_RANK = {level: i for i, level in enumerate(CASE_LEVELS)}

# the legal moves: action → states it may start from
ALLOWED_FROM: dict[str, tuple[str, ...]] = {
    "register": ("reported",),
    "reject": ("reported", "registered"),
    "duplicate": ("reported", "registered"),
    "dispatch": ("registered",),
    "accept": ("dispatched",),
    "feedback": ("handling",),
    "close": ("feedback",),
    "rework": ("feedback",),
    "escalate": ("reported", "registered", "dispatched", "handling"),
    "self_close": ("reported",),
    "transfer": ("reported", "registered", "dispatched", "handling", "feedback"),
    "pause": ("registered", "dispatched", "handling"),
    "resume": ("registered", "dispatched", "handling"),
    "outstanding": ("closed",),
    # a department's work queue (issue 14 §2): 退回, 申请延期 and the center's decision on it
    "return": ("dispatched", "handling"),
    "extend": ("dispatched", "handling"),
    "extend_approve": ("dispatched", "handling"),
    "extend_refuse": ("dispatched", "handling"),
    # 重新定位 (issue 14 §3): the place is part of registering; once dispatched, the handler was chosen
    # for the old place (cases/relocate.py)
    "relocate": ("reported", "registered"),
}

PERMISSION_OF = {
    "register": "case.register",
    "reject": "case.register",
    "duplicate": "case.register",
    "dispatch": "case.dispatch",
    "accept": "case.handle",
    "feedback": "case.handle",
    "close": "case.verify",
    "rework": "case.verify",
    "escalate": "case.escalate",
    "self_close": "case.report",
    "transfer": "case.register",
    "pause": "case.pause",
    "resume": "case.pause",
    "outstanding": "case.mark_outstanding",
    "return": "dept.queue",
    "extend": "dept.queue",
    "extend_approve": "dept.extend.decide",
    "extend_refuse": "dept.extend.decide",
    "relocate": "case.register",
}

MAX_NOTE = 2000
EMPTY_CATEGORIES = "事件类别表为空：请运行 flask categories install-default 或在「事件类别」页面添加"
PAUSE_REASON_MAX = 200


class TransitionError(Exception):
    """An illegal step: the message says why, in the words the operator uses."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message, self.field = message, field


@dataclass
class ReportInput:
    category_id: int
    description: str
    lat: float | None = None
    lon: float | None = None
    address: str | None = None
    grid_id: int | None = None
    discovered_at: datetime | None = None  # naive UTC
    self_handled: bool = False
    caller_name: str | None = None
    caller_phone: str | None = None
    external_ref: str | None = None


def _step(
    case: Case,
    actor: Account | None,
    action: str,
    to_state: str,
    *,
    note: str | None = None,
    to_level: str | None = None,
    now: datetime,
    public: bool = False,
    payload_extra: dict | None = None,
) -> CaseStep:
    step = CaseStep(
        case_id=case.id,
        at=now,
        actor_id=actor.id if actor else None,
        action=action,
        from_state=case.state,
        to_state=to_state,
        from_level=case.level,
        to_level=to_level or case.level,
        note=(note or None) and note[:MAX_NOTE],
        public=bool(public and note),
    )
    db.add(step)
    case.state = to_state
    if to_level:
        case.level = to_level
    if to_state in FINAL_STATES:
        case.paused_at = None
    alerts.clear_for_case(case, now)
    db.add(
        Outbox(
            topic="case.changed",
            payload={
                "case_id": case.id,
                "action": action,
                "state": to_state,
                "level": case.level,
                "town_id": case.town_id,
                "village_id": case.village_id,
                "grid_id": case.grid_id,
                "kind": case.kind,
                "at": now.isoformat(),
                **(payload_extra or {}),
            },
        )
    )
    return step


def refuse_state(case: Case, action: str):
    raise TransitionError(f"案件当前状态为「{labels.STATE[case.state]}」，不能执行「{labels.ACTION[action]}」")


def _check(case: Case, actor: Account | None, action: str) -> None:
    if case.state not in ALLOWED_FROM[action]:
        refuse_state(case, action)
    if actor is None:
        return  # the system itself (deadline sweep)
    if not has_permission(actor, PERMISSION_OF[action]):
        raise Forbidden(f"角色「{labels.ROLE.get(actor.role, actor.role)}」无权执行「{labels.ACTION[action]}」")
    if not may_act_on(actor, case):
        raise Forbidden("该案件不在本账号辖区内")


def may_see(account: Account, case: Case) -> bool:
    if account.role == "department":
        return case.department_id is not None and case.department_id == account.department_id
    if account.role in ("gridworker", "volunteer"):
        return (
            case.reporter_id == account.id
            or case.assignee_id == account.id
            or in_jurisdiction(account, grid_id=case.grid_id, village_id=case.village_id, town_id=case.town_id)
        )
    return in_jurisdiction(account, grid_id=case.grid_id, village_id=case.village_id, town_id=case.town_id)


def may_act_on(account: Account, case: Case) -> bool:
    """Jurisdiction for acting: inside the place, and a center acts only on cases at or below its level."""
    if not may_see(account, case):
        return False
    home_level = account.place.level
    if account.role in ("center_admin", "operator", "supervisor") and home_level in LEVEL_RANK:
        return LEVEL_RANK[case.level] <= LEVEL_RANK[home_level]
    return True


def _commit() -> None:
    try:
        db.commit()
    except Exception:
        db.rollback()
        raise


def _clean_note(note: str | None, required: bool = False, field: str = "note") -> str | None:
    note = (note or "").strip()
    if required and not note:
        raise TransitionError("请填写说明", field)
    if len(note) > MAX_NOTE:
        raise TransitionError(f"说明不能超过 {MAX_NOTE} 个字", field)
    return note or None


# --- 1. 信息收集: report -------------------------------------------------------------------------

MOBILE_RE = re.compile(r"^1[3-9]\d{9}$")
LANDLINE_RE = re.compile(r"^0\d{2,3}-?[1-9]\d{6,7}(-\d{1,6})?$")
SERVICE_RE = re.compile(r"^[48]00-?\d{3}-?\d{4}$")  # 400/800 numbers
PHONE_INPUT_MAX = 32


def clean_phone(value: str | None) -> str | None:
    """A caller's phone as every door takes it: spaces, brackets and +86 dropped; a mobile, landline or
    400/800 number, or TransitionError naming caller_phone. None when none was given."""
    if value is None or not value.strip():
        return None
    if len(value) > PHONE_INPUT_MAX:
        raise TransitionError(f"来电号码不能超过 {PHONE_INPUT_MAX} 个字符", "caller_phone")
    phone = re.sub(r"[\s()（）]", "", value)
    if phone.startswith("+86"):
        phone = phone[3:]
    elif phone.startswith("86") and len(phone) == 13:
        phone = phone[2:]
    if not (MOBILE_RE.match(phone) or LANDLINE_RE.match(phone) or SERVICE_RE.match(phone)):
        raise TransitionError(
            "来电号码格式不正确：手机号为 11 位（如 13812345678），固话为区号加号码（如 0512-12345678）", "caller_phone"
        )
    return phone


def report_case(
    data: ReportInput,
    *,
    actor: Account | None,
    source: str,
    client_key: str | None,
    now: datetime | None = None,
    reporter_center_id: int | None = None,
) -> tuple[Case, bool]:
    """Create a case, or return the one this client already created with the same key.

    Returns (case, created). A retry after a lost response finds the committed case.
    """
    now = now or utcnow()
    caller_phone = clean_phone(data.caller_phone)
    # PostgreSQL: the INSERT itself finds a known key (ON CONFLICT DO NOTHING), one query less for every new
    # report; a retry refused by a check below (a category deactivated since…) still gets its case
    key_by_insert = db.get_bind().dialect.name == "postgresql"
    if client_key and not key_by_insert:
        existing = _find_by_key(source, client_key)
        if existing is not None:
            _check_same_reporter(existing, actor)
            return existing, False
    try:
        category, grid, discovered = _checked_report(data, now)
    except TransitionError:
        existing = _find_by_key(source, client_key) if client_key and key_by_insert else None
        if existing is None:
            raise
        _check_same_reporter(existing, actor)
        return existing, False
    case = Case(
        number=_placeholder_number(),  # the id and the number come with the row (PostgreSQL: in its INSERT)
        source=source,
        client_key=client_key,
        category_id=category.id,
        kind=category.kind,
        description=data.description,
        address=data.address,
        lat=data.lat,
        lon=data.lon,
        grid_id=grid.id if grid else None,
        village_id=grid.village_id if grid else None,
        town_id=grid.town_id if grid else None,
        reporter_id=actor.id if actor else None,
        reporter_center_id=reporter_center_id,
        caller_name=data.caller_name,
        caller_phone=caller_phone,
        external_ref=data.external_ref,
        state="reported",
        level="grid",
        self_handled=data.self_handled,
        discovered_at=discovered,
        reported_at=now,
        limits=limits_record(category),  # the case keeps them: a later edit of the category applies to new cases
    )
    if category.transfer_limit_minutes:
        case.transfer_due = discovered + timedelta(minutes=category.transfer_limit_minutes)
    if data.self_handled:  # 自办自结: closed the same day, so due at the end of the report's local day
        case.handle_due = day_bounds_utc(local(now, current_tz()).date(), current_tz())[1]
    # known already: hold them on the case, so that the answer (api.views.case_out) needs no query
    set_committed_value(case, "grid", grid)
    set_committed_value(case, "photos", [])  # a case just created has none yet
    alerts.plan_on_report(case, category)
    step_note = f"{labels.SOURCE.get(source, source)}：{category.name}"
    late_parking = case.transfer_due is not None and now > case.transfer_due
    if key_by_insert and not late_parking:
        # the common path (PostgreSQL): the same rows as below — the case, its history step, its outbox row
        # (and a dispute's record) in one transaction — in one INSERT statement, without the unit of work
        try:
            if not _insert_report(case, actor, step_note, now):
                db.rollback()  # nothing was written: the key is known
                return _key_taken(source, client_key, actor, None), False
            db.commit()
        except IntegrityError as exc:
            db.rollback()
            return _key_taken(source, client_key, actor, exc), False
        except Exception:
            db.rollback()
            raise
        make_transient_to_detached(case)
        db.add(case)  # persistent in this session, as the unit of work would have left it
        return case, True
    db.add(case)
    try:
        db.flush()  # the id comes with the row, the number follows it
        case.number = _case_number(case.id, now)
        db.add(CaseStep(**_report_step(case, step_note, now)))
        db.add(Outbox(topic="case.changed", payload=_report_payload(case, now)))
        if category.kind == "dispute":
            db.flush()  # Dispute has no relationship to Case: the unit of work would not order the INSERTs
            db.add(Dispute(case_id=case.id, screening_level=_screening_level(actor)))
        if case.transfer_due is not None and now > case.transfer_due:
            # 乱停车 found more than an hour ago: the city platform would reject it, so it is void at once
            _void_late_parking(
                case,
                now,
                f"乱停车事件须在发现后 {category.transfer_limit_minutes} 分钟内上报并转报市平台，已超时，自动作废",
            )
        db.commit()
    except IntegrityError as exc:
        db.rollback()
        return _key_taken(source, client_key, actor, exc), False
    except Exception:
        db.rollback()
        raise
    return case, True


def _checked_report(data: ReportInput, now: datetime) -> tuple[Category, Place | None, datetime]:
    """The report's category, grid and discovery time, or TransitionError naming the field."""
    category = refcache.category(data.category_id)
    if category is None or not category.active:
        if db.execute(select(Category.id).limit(1)).first() is None:
            raise TransitionError(EMPTY_CATEGORIES, "category_id")
        raise TransitionError("事件类别不存在或已停用", "category_id")
    if category.depth == 1:
        raise TransitionError("请选择具体的小类或细项，而不是大类", "category_id")
    grid = _resolve_grid(data)
    # a gridworker may report what he sees next door: the case belongs to the grid where it lies
    discovered = data.discovered_at or now
    if discovered > now + timedelta(minutes=5):
        raise TransitionError("发现时间不能晚于当前时间", "discovered_at")
    if data.self_handled and category.must_escalate:
        raise TransitionError("该类别事件须流转上级处置，不能自办自结", "self_handled")
    return category, grid, discovered


def _key_taken(source: str, client_key: str | None, actor: Account | None, exc: IntegrityError | None) -> Case:
    """The report's key was known (a retry), or its INSERT failed (IntegrityError: the same key committed by a
    concurrent request, a retry racing its original): that case; anything else is raised again."""
    existing = _find_by_key(source, client_key) if client_key else None
    if existing is None:
        raise exc or RuntimeError("report key conflict without a case")
    _check_same_reporter(existing, actor)
    return existing


def _report_step(case: Case, note: str, now: datetime) -> dict:
    return {
        "case_id": case.id,
        "at": now,
        "actor_id": case.reporter_id,
        "action": "report",
        "from_state": None,
        "to_state": "reported",
        "from_level": None,
        "to_level": "grid",
        "note": note,
    }


def _report_payload(case: Case, now: datetime) -> dict:
    return {
        "case_id": case.id,
        "action": "report",
        "state": "reported",
        "level": "grid",
        "town_id": case.town_id,
        "village_id": case.village_id,
        "grid_id": case.grid_id,
        "kind": case.kind,
        "at": now.isoformat(),
    }


def _case_row(case: Case) -> dict:
    """Every column of a case not yet added to the session, its defaults filled in on the object too (so that
    once attached it needs no refresh)."""
    row = {}
    state = case.__dict__
    for prop in Case.__mapper__.column_attrs:
        column = prop.columns[0]
        if prop.key in state:
            value = state[prop.key]
        else:
            default = column.default
            value = None if default is None else default.arg(None) if default.is_callable else default.arg
            set_committed_value(case, prop.key, value)
        row[column.key] = value
    return row


_REPORT_STATEMENT = None
STEP_COLUMNS = ("at", "actor_id", "action", "from_state", "to_state", "from_level", "to_level", "note")


def _report_statement():
    """One statement for the rows of a report: the case, its id from the sequence and its number made of it
    (nothing when its source and client_key are known), and — only if it was inserted — its history step and
    its outbox row. Returns the new case's id and number, or no row.

        WITH nid AS (SELECT nextval(…) AS id),
             new_case AS (INSERT INTO cases … SELECT nid.id, 'SJ20261203' || lpad(nid.id, 7, '0'), … FROM nid
                          ON CONFLICT (source, client_key) DO NOTHING RETURNING id, number),
             new_step AS (INSERT INTO case_steps … SELECT new_case.id, … FROM new_case),
             new_outbox AS (INSERT INTO outbox … SELECT …, payload || {"case_id": new_case.id} FROM new_case)
        SELECT new_case.id, new_case.number FROM new_case
    """
    global _REPORT_STATEMENT
    if _REPORT_STATEMENT is None:
        from sqlalchemy import Text, bindparam, case, cast, func
        from sqlalchemy.dialects.postgresql import JSONB, insert
        from sqlalchemy.types import JSON

        cases, steps, outbox = Case.__table__, CaseStep.__table__, Outbox.__table__
        nid = select(func.nextval(func.pg_get_serial_sequence("cases", "id")).label("id")).cte("nid")
        digits = cast(nid.c.id, Text)
        number = bindparam("number_prefix", type_=Text) + case(
            (nid.c.id < 10_000_000, func.lpad(digits, 7, "0")), else_=digits
        )  # as _case_number: at least 7 digits, never cut
        columns = [c for c in cases.columns]
        values = [
            nid.c.id if c.key == "id" else number if c.key == "number" else bindparam("c_" + c.key, type_=c.type)
            for c in columns
        ]
        new_case = (
            insert(cases)
            .from_select([c.key for c in columns], select(*values).select_from(nid))
            .on_conflict_do_nothing(index_elements=["source", "client_key"])
            .returning(cases.c.id, cases.c.number)
            .cte("new_case")
        )

        def rows_of(table, prefix: str, keys, extra: dict) -> object:
            cols = [bindparam(prefix + k, type_=table.c[k].type) for k in keys]
            values = select(*extra.values(), *cols).select_from(new_case)
            return table.insert().from_select([*extra, *keys], values, include_defaults=False)

        new_step = rows_of(steps, "s_", (*STEP_COLUMNS, "public"), {"case_id": new_case.c.id}).cte("new_step")
        payload = cast(
            bindparam("o_payload", type_=JSONB).op("||")(func.jsonb_build_object("case_id", new_case.c.id)), JSON
        )
        new_outbox = rows_of(outbox, "o_", ("topic", "created_at", "attempts"), {"payload": payload}).cte("new_outbox")
        _REPORT_STATEMENT = select(new_case.c.id, new_case.c.number).add_cte(new_step, new_outbox)
    return _REPORT_STATEMENT


def _insert_report(case: Case, actor: Account | None, note: str, now: datetime) -> bool:
    """The rows of a new report in one statement on the session's connection (its transaction), PostgreSQL.
    False (and nothing written) when a case with the same source and client_key exists; else the case holds
    its id and number."""
    row = _case_row(case)
    params = {"c_" + key: value for key, value in row.items() if key not in ("id", "number")}
    params["number_prefix"] = _number_prefix(now)
    step = _report_step(case, note, now)
    params.update({"s_" + key: step[key] for key in STEP_COLUMNS}, s_public=False)
    params.update(o_topic="case.changed", o_payload=_report_payload(case, now), o_created_at=utcnow(), o_attempts=0)
    conn = db.connection()
    inserted = conn.execute(_report_statement(), params).first()
    if inserted is None:
        return False
    set_committed_value(case, "id", inserted.id)
    set_committed_value(case, "number", inserted.number)
    if case.kind == "dispute":
        conn.execute(Dispute.__table__.insert(), {"case_id": case.id, "screening_level": _screening_level(actor)})
    db.info["outbox_written"] = True  # what jobs._note_outbox notes on a flush: kick the drain after the commit
    return True


def _void_late_parking(case: Case, now: datetime, note: str) -> None:
    """乱停车 not transferred within its hour: the city platform would reject it, so the system voids it."""
    _step(case, None, "auto_reject", "rejected", now=now, note=note)
    case.valid = False
    case.closed_at = now


def _number_prefix(now: datetime) -> str:
    return f"SJ{local(now, current_tz()):%Y%m%d}"


def _case_number(case_id: int, now: datetime) -> str:
    """SJ, the report's local date, the id in at least 7 digits (also made in SQL: _report_statement)."""
    return f"{_number_prefix(now)}{case_id:07d}"


def _placeholder_number() -> str:
    """Until the id is known (SQLite, and PostgreSQL's unit-of-work path for a late parking report; the
    one-statement INSERT passes it but writes the number it makes from the id): a placeholder of its own; a shared one ("pending") would make every
    concurrent report wait on the unique index of `number` until the previous one commits."""
    return f"pending-{uuid.uuid4().hex[:16]}"


def _find_by_key(source: str, client_key: str) -> Case | None:
    # the id alone (a new report's key is almost never known): the case is loaded only when it is
    case_id = db.execute(
        select(Case.id).where(Case.source == source, Case.client_key == client_key)
    ).scalar_one_or_none()
    return None if case_id is None else db.get(Case, case_id)


def _check_same_reporter(case: Case, actor: Account | None) -> None:
    if actor is not None and case.reporter_id not in (None, actor.id):
        raise TransitionError("该幂等键已被其他账号使用，请换一个", "client_key")


def _resolve_grid(data: ReportInput) -> Place | None:
    from ..geo import locate_grid

    if data.grid_id is not None:
        grid = refcache.place(data.grid_id)
        if grid is None or grid.level != "grid":
            raise TransitionError("网格不存在", "grid_id")
        return grid
    if data.lat is not None and data.lon is not None:
        grid = locate_grid(data.lat, data.lon)
        if grid is None:
            raise TransitionError("该位置不在任何网格内，请核对经纬度", "lat")
        return grid
    raise TransitionError("请提供网格或经纬度", "grid_id")


def _screening_level(actor: Account | None) -> str:
    if actor is None:
        return "grid"
    level = actor.place.level
    return level if level in ("grid", "village", "town") else "town"


# --- 2. 案卷建立: register, reject, duplicate -----------------------------------------------------


def register(
    case: Case, actor: Account | None, note: str | None = None, now: datetime | None = None, public: bool = False
) -> Case:
    _check(case, actor, "register")
    now = now or utcnow()
    note = _clean_note(note)
    category = limits_of(case)  # recorded at its report (else, for an old case, its category's)
    tz = current_tz()
    case.registered_at = now
    case.valid = True
    if category.dispatch_limit:
        case.dispatch_due = deadline_utc(now, category.dispatch_limit, category.dispatch_unit, tz)
    if category.handle_limit:
        case.handle_due = deadline_utc(now, category.handle_limit, category.handle_unit, tz)
    if category.must_escalate and category.escalate_limit and not _reached(case, category.escalate_to):
        case.escalate_due = deadline_utc(now, category.escalate_limit, category.escalate_unit, tz)
    dues = [due for due in (case.dispatch_due, case.handle_due, case.escalate_due) if due is not None]
    case.deadline_assumed = bool(dues) and assumed_between(local(now, tz).date(), local(max(dues), tz).date())
    alerts.plan_on_register(case, category)
    _step(case, actor, "register", "registered", note=note, now=now, public=public)
    _commit()
    return case


def _reached(case: Case, level: str | None) -> bool:
    return level is None or LEVEL_RANK[case.level] >= LEVEL_RANK[level]


def reject(case: Case, actor: Account | None, reason: str, now: datetime | None = None, public: bool = False) -> Case:
    _check(case, actor, "reject")
    now = now or utcnow()
    reason = _clean_note(reason, required=True, field="reason")
    case.valid = False
    case.closed_at = now
    _step(case, actor, "reject", "rejected", note=reason, now=now, public=public)
    _commit()
    return case


def probable_duplicates(
    case: Case, radius_m: int = 100, window_hours: int = 24, limit: int = 10
) -> list[tuple[Case, float]]:
    """Same category, near in space and time, still valid: offered to the operator when registering
    (the screens pass the settings DUPLICATE_RADIUS_M and DUPLICATE_WINDOW_HOURS)."""
    from ..geo import degrees_box, distance_m

    if case.lat is None or case.lon is None:
        return []
    dlat, dlon = degrees_box(case.lat, radius_m)
    window = timedelta(hours=window_hours)
    rows = db.execute(
        select(Case)
        .where(
            Case.id != case.id,
            Case.category_id == case.category_id,
            Case.state.not_in(("rejected", "duplicate")),
            Case.reported_at.between(case.reported_at - window, case.reported_at + window),
            Case.lat.between(case.lat - dlat, case.lat + dlat),
            Case.lon.between(case.lon - dlon, case.lon + dlon),
        )
        .order_by(Case.reported_at)
        .limit(50)
    ).scalars()
    found = [(other, distance_m(case.lat, case.lon, other.lat, other.lon)) for other in rows]
    found = [(other, d) for other, d in found if d <= radius_m]
    found.sort(key=lambda pair: (pair[0].reported_at, pair[1]))
    return found[:limit]


def mark_duplicate(
    case: Case,
    actor: Account | None,
    original: Case,
    note: str | None = None,
    now: datetime | None = None,
    public: bool = False,
) -> Case:
    """重复: the case ends, points to the original, and the original's timeline records the merge."""
    _check(case, actor, "duplicate")
    if original.id == case.id:
        raise TransitionError("不能把案件判为自身的重复", "original_id")
    if original.state in ("rejected", "duplicate"):
        raise TransitionError("原案件已作废或本身是重复件，请选择有效的原案件", "original_id")
    if actor is not None and not may_see(actor, original):
        raise Forbidden("原案件不在本账号辖区内")
    now = now or utcnow()
    note = _clean_note(note)
    case.valid = False
    case.duplicate_of_id = original.id
    case.closed_at = now
    _step(
        case,
        actor,
        "duplicate",
        "duplicate",
        now=now,
        public=public,
        note=f"与 {original.number} 重复" + (f"：{note}" if note else ""),
    )
    db.add(
        CaseStep(
            case_id=original.id,
            at=now,
            actor_id=actor.id if actor else None,
            action="merge",
            from_state=original.state,
            to_state=original.state,
            from_level=original.level,
            to_level=original.level,
            note=f"合并重复案件 {case.number}（其处理记录一并保留）",
        )
    )
    _commit()
    return case


# --- 3. 任务派遣 and 4. 任务处理 / 5. 处理反馈 -------------------------------------------------------


def dispatch(
    case: Case,
    actor: Account | None,
    department_id: int | None = None,
    assignee_id: int | None = None,
    note: str | None = None,
    now: datetime | None = None,
    public: bool = False,
) -> Case:
    _check(case, actor, "dispatch")
    if department_id is None and assignee_id is None:
        raise TransitionError("请选择处置部门或处置人", "department_id")
    now = now or utcnow()
    note = _clean_note(note)
    department = assignee = None
    if department_id is not None:
        department = db.get(Department, department_id)
        if department is None:
            raise TransitionError("处置部门不存在", "department_id")
    if assignee_id is not None:
        assignee = db.get(Account, assignee_id)
        if (
            assignee is None
            or not assignee.active
            or not (
                in_jurisdiction(assignee, grid_id=case.grid_id, village_id=case.village_id, town_id=case.town_id)
                # 就近派遣: a gridworker of the same town, whichever grid he patrols
                or (assignee.role == "gridworker" and case.town_id is not None and assignee.town_id == case.town_id)
            )
        ):
            raise TransitionError("处置人不存在或不在该案件辖区", "assignee_id")
        # and the dispatcher's own jurisdiction must hold him: a village center sends its own gridworkers, not
        # those of the next village (a town or city center may send any of its town's)
        if actor is not None and assignee.place is not None and not in_jurisdiction(actor, place=assignee.place):
            raise TransitionError("处置人不在本级辖区，不能派遣给他", "assignee_id")
    # checked everything: only now change the case, so a refusal leaves nothing half-done
    if case.dispatch_due is not None and now > case.dispatch_due:
        case.dispatch_late = True  # 派遣超时: dispatched after its dispatch limit
    target = ""
    if department is not None:
        case.department_id = department.id
        target = department.name
    if assignee is not None:
        case.assignee_id = assignee.id
        target = f"{target} {assignee.display_name}".strip()
    case.dispatched_at = now
    _step(
        case,
        actor,
        "dispatch",
        "dispatched",
        now=now,
        public=public,
        note=f"派遣至 {target}" + (f"：{note}" if note else ""),
    )
    _commit()
    return case


def _check_handler(case: Case, actor: Account | None) -> None:
    """Handling belongs to whom the case was dispatched to; centers may act for their handlers."""
    if actor is None or actor.role in ("center_admin", "operator"):
        return
    if actor.role == "department" and case.department_id == actor.department_id:
        return
    if case.assignee_id == actor.id:
        return
    raise Forbidden("该案件未派遣给本账号")


def step_by_key(case: Case, actor: Account | None, action: str, client_key: str | None) -> CaseStep | None:
    """The step already taken with this idempotency key (a resend from the phone's queue), or None.

    A key is the sender's: used by another account, or by this one for another case or another step, the
    request is refused naming client_key (never a second step, never the other step's details)."""
    if not client_key:
        return None
    step = db.execute(select(CaseStep).where(CaseStep.client_key == client_key)).scalar_one_or_none()
    if step is None:
        return None
    if actor is None or step.actor_id != actor.id:
        raise TransitionError("该幂等键已被其他账号使用，请换一个", "client_key")
    if step.case_id != case.id or step.action != action:
        raise TransitionError("该幂等键已用于另一步办理，请换一个", "client_key")
    return step


def _commit_keyed(case: Case, actor: Account | None, action: str, client_key: str | None) -> None:
    """Commit a step sent with a key; when the same key won a race a moment ago, that step is the answer."""
    from sqlalchemy.orm.exc import StaleDataError

    if not client_key:
        _commit()
        return
    try:
        db.commit()
    except (IntegrityError, StaleDataError):  # the key's unique index, or the case's version moved on
        db.rollback()
        if step_by_key(case, actor, action, client_key) is None:
            raise
        db.refresh(case)


def accept(case: Case, actor: Account | None, now: datetime | None = None, client_key: str | None = None) -> Case:
    if step_by_key(case, actor, "accept", client_key) is not None:
        return case  # a resend: the step is taken already, whatever the case went through since
    _check(case, actor, "accept")
    _check_handler(case, actor)
    _step(case, actor, "accept", "handling", now=now or utcnow()).client_key = client_key
    _commit_keyed(case, actor, "accept", client_key)
    return case


def feedback(
    case: Case,
    actor: Account | None,
    note: str,
    now: datetime | None = None,
    public: bool = False,
    client_key: str | None = None,
) -> Case:
    if step_by_key(case, actor, "feedback", client_key) is not None:
        return case  # a resend: the step is taken already, whatever the case went through since
    _check(case, actor, "feedback")
    _check_handler(case, actor)
    note = _clean_note(note, required=True)
    step = _step(case, actor, "feedback", "feedback", note=note, now=now or utcnow(), public=public)
    step.client_key = client_key
    _commit_keyed(case, actor, "feedback", client_key)
    return case


# --- 6. 核查结案, rework ---------------------------------------------------------------------------


def close(
    case: Case, actor: Account | None, note: str | None = None, now: datetime | None = None, public: bool = False
) -> Case:
    _check(case, actor, "close")
    now = now or utcnow()
    case.closed_at = now
    _step(
        case, actor, "close", "closed", note=_clean_note(note) or "核查属实，处置到位，予以结案", now=now, public=public
    )
    _resolve_dispute(case, now)
    _commit()
    return case


def rework(case: Case, actor: Account | None, note: str, now: datetime | None = None) -> Case:
    """返工: verification failed, back to the handler."""
    _check(case, actor, "rework")
    note = _clean_note(note, required=True)
    case.rework_count += 1
    _step(case, actor, "rework", "handling", note=note, now=now or utcnow())
    _commit()
    return case


def self_close(case: Case, actor: Account | None, note: str, now: datetime | None = None) -> Case:
    """自办自结: the gridworker solved it on the spot; it counts only if closed the same local day."""
    _check(case, actor, "self_close")
    if actor is not None and case.reporter_id != actor.id:
        raise Forbidden("只有上报人本人可以自办自结")
    if limits_of(case).must_escalate:
        raise TransitionError("该类别事件须流转上级处置，不能自办自结", "self_handled")
    note = _clean_note(note, required=True)
    now = now or utcnow()
    case.self_handled = True
    case.valid = True
    case.registered_at = case.registered_at or now
    case.closed_at = now
    on_time = self_closed_same_day(case)
    _step(case, actor, "self_close", "closed", now=now, note=note + ("" if on_time else "（超过当日办结，不计积分）"))
    _resolve_dispute(case, now)
    _commit()
    return case


def self_closed_same_day(case: Case) -> bool:
    if not case.self_handled or case.closed_at is None:
        return False
    tz = current_tz()
    return local(case.closed_at, tz).date() == local(case.reported_at, tz).date()


# --- 流转: escalate ----------------------------------------------------------------------------


def escalate(
    case: Case, actor: Account | None, to_level: str | None = None, note: str | None = None, now: datetime | None = None
) -> Case:
    """小事不出网格, 大事不出村, 难事不出镇: what a level cannot solve goes one level up (or to a named one)."""
    _check(case, actor, "escalate")
    current = LEVEL_RANK[case.level]
    target = to_level or (CASE_LEVELS[current + 1] if current + 1 < len(CASE_LEVELS) else None)
    if target is None or target not in LEVEL_RANK:
        raise TransitionError("已在市中心，无法继续流转", "to_level")
    if LEVEL_RANK[target] <= current:
        raise TransitionError("只能向上级流转", "to_level")
    note = _clean_note(note, required=True)
    now = now or utcnow()
    # the record of the levels the case passed: straight from the grid to the city does not pass the town
    # (上报至镇级 and 上报至市级 are disjoint in the published figures: stats.py)
    if target == "town" or case.level == "town":
        case.escalated_to_town = True
    if target == "city":
        case.escalated_to_city = True
    if actor is not None and actor.place.level == "town" and LEVEL_RANK[target] > LEVEL_RANK["town"]:
        # indicator 7 (事项流转): the town center passing a case up to the city
        center_id = (
            actor.center_id
            or db.execute(select(Center.id).where(Center.place_id == actor.place_id, Center.level == "town")).scalar()
        )
        case.escalated_by_center_id = center_id
    to_state = "registered" if case.state != "reported" else "reported"
    if to_state == "registered":
        case.department_id = None
        case.assignee_id = None
    _step(
        case,
        actor,
        "escalate",
        to_state,
        to_level=target,
        now=now,
        note=f"由{labels.LEVEL[case.level]}流转至{labels.LEVEL[target]}：{note}",
    )
    if case.escalate_due is not None and _reached(case, limits_of(case).escalate_to):
        if now > case.escalate_due:
            case.escalate_late = True  # 流转超时: the target reached after its escalation limit
        case.escalate_due = None
        case.escalate_warn_at = None
        alerts.clear_for_case(case, now)
    _commit()
    return case


# --- 乱停车 transfer, pause/resume, outstanding ------------------------------------------------


def transfer_to_city(case: Case, actor: Account | None, now: datetime | None = None) -> Case:
    """Hand a 乱停车 report to the city platform; only worth anything inside its hour."""
    _check(case, actor, "transfer")
    if case.transfer_due is None:
        raise TransitionError("只有乱停车类事件需要转报市平台")
    if case.transferred_at is not None:
        raise TransitionError("该事件已转报市平台")
    now = now or utcnow()
    if now > case.transfer_due:
        raise TransitionError("已超过发现后一小时的转报时限")
    case.transferred_at = now
    _step(case, actor, "transfer", case.state, now=now, note="已转报市平台")
    _commit()
    return case


def pause(case: Case, actor: Account | None, reason: str, now: datetime | None = None) -> Case:
    _check(case, actor, "pause")
    if case.paused_at is not None:
        raise TransitionError("计时已暂停")
    reason = _clean_note(reason, required=True, field="reason")
    if len(reason) > PAUSE_REASON_MAX:
        raise TransitionError(f"暂停理由不能超过 {PAUSE_REASON_MAX} 个字", "reason")
    now = now or utcnow()
    case.paused_at = now
    case.pause_reason = reason
    _step(case, actor, "pause", case.state, note=reason, now=now)
    _commit()
    return case


def resume(case: Case, actor: Account | None, now: datetime | None = None) -> Case:
    _check(case, actor, "resume")
    if case.paused_at is None:
        raise TransitionError("计时未暂停")
    now = now or utcnow()
    paused_for = now - case.paused_at
    for attr in ("dispatch_due", "handle_due", "escalate_due"):
        if getattr(case, attr) is not None:
            setattr(case, attr, getattr(case, attr) + paused_for)
    case.paused_at = None
    _step(
        case,
        actor,
        "resume",
        case.state,
        now=now,
        note=f"恢复计时，暂停 {int(paused_for.total_seconds() // 60)} 分钟，时限相应顺延",
    )
    _commit()
    return case


def mark_outstanding(case: Case, actor: Account | None, story: str, now: datetime | None = None) -> Case:
    _check(case, actor, "outstanding")
    story = _clean_note(story, required=True, field="story")
    case.outstanding = True
    case.outstanding_story = story
    _step(case, actor, "outstanding", case.state, note="标记为优秀网格事件", now=now or utcnow())
    _commit()
    return case


def _resolve_dispute(case: Case, now: datetime) -> None:
    if case.kind != "dispute":
        return
    dispute = db.get(Dispute, case.id)
    if dispute is not None and dispute.outcome == "pending":
        dispute.outcome = "resolved"
        dispute.mediated_at = now
        dispute.mediation_level = case.level if case.level != "city" else "town"


# --- a department's work queue: 退回 and 延期 (issue 14 §2) ----------------------------------------

EXTENSION_MAX_DAYS = 30


def return_case(case: Case, actor: Account | None, reason: str, now: datetime | None = None) -> Case:
    """退回: the department sends a case it cannot handle (not its remit) back to the center, which
    dispatches it again; the department and the assignee are cleared, a pending 延期 lapses."""
    _check(case, actor, "return")
    _check_handler(case, actor)
    reason = _clean_note(reason, required=True, field="reason")
    now = now or utcnow()
    department = db.get(Department, case.department_id) if case.department_id else None
    case.department_id = None
    case.assignee_id = None
    pending = pending_extension(case)
    if pending is not None:
        pending.status = "refused"
        pending.decided_at = now
        pending.note = "案件已退回，申请失效"
    who = f"{department.name}退回" if department else "退回"
    _step(case, actor, "return", "registered", note=f"{who}：{reason}", now=now)
    _commit()
    return case


def pending_extension(case: Case) -> ExtensionRequest | None:
    return db.execute(
        select(ExtensionRequest)
        .where(ExtensionRequest.case_id == case.id, ExtensionRequest.status == "pending")
        .order_by(ExtensionRequest.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def _extended_due(case: Case, days: int) -> datetime:
    return deadline_utc(case.handle_due, days, "work_days", current_tz())


def request_extension(
    case: Case, actor: Account | None, days: int | None, reason: str, now: datetime | None = None
) -> ExtensionRequest:
    """申请延期: asked before the handling limit passes, one pending request at a time."""
    _check(case, actor, "extend")
    _check_handler(case, actor)
    now = now or utcnow()
    if pending_extension(case) is not None:
        raise TransitionError("已有待审批的延期申请，请等待中心审批")
    if case.handle_due is None:
        raise TransitionError("该案件没有办理时限，无需申请延期")
    if case.overdue or (case.paused_at is None and case.handle_due < now):
        raise TransitionError("办理时限已过，不能再申请延期")
    if days is None:
        raise TransitionError("请填写延期天数", "days")
    if not 1 <= days <= EXTENSION_MAX_DAYS:
        raise TransitionError(f"延期天数须在 1 到 {EXTENSION_MAX_DAYS} 个工作日之间", "days")
    reason = _clean_note(reason, required=True, field="reason")
    request_row = ExtensionRequest(
        case_id=case.id,
        department_id=case.department_id,
        requested_by_id=actor.id if actor else None,
        requested_at=now,
        days=days,
        reason=reason,
        old_due=case.handle_due,
        new_due=_extended_due(case, days),
        status="pending",
    )
    db.add(request_row)
    _step(case, actor, "extend", case.state, note=f"申请延期 {days} 个工作日：{reason}", now=now)
    _commit()
    return request_row


def _decide_extension(
    case: Case, actor: Account | None, action: str, note: str | None, now: datetime | None
) -> ExtensionRequest:
    _check(case, actor, action)
    pending = pending_extension(case)
    if pending is None:
        raise TransitionError("该案件没有待审批的延期申请")
    approve = action == "extend_approve"
    note = _clean_note(note, required=not approve)
    now = now or utcnow()
    pending.status = "approved" if approve else "refused"
    pending.decided_by_id = actor.id if actor else None
    pending.decided_at = now
    pending.note = note
    if approve:
        old = case.handle_due
        if old is not None:
            case.handle_due = _extended_due(case, pending.days)
            pending.new_due = case.handle_due
        tz = current_tz()
        text_ = f"同意延期 {pending.days} 个工作日"
        if old is not None:
            text_ += f"，办理时限由 {fmt(old, tz)} 延至 {fmt(case.handle_due, tz)}"
    else:
        text_ = f"不同意延期：{note}"
    if approve and note:
        text_ += f"：{note}"
    _step(case, actor, action, case.state, note=text_, now=now)
    _commit()
    return pending


def approve_extension(case: Case, actor: Account | None, note: str | None = None, now: datetime | None = None):
    return _decide_extension(case, actor, "extend_approve", note, now)


def refuse_extension(case: Case, actor: Account | None, note: str | None, now: datetime | None = None):
    return _decide_extension(case, actor, "extend_refuse", note, now)


# --- deadlines: the sweep ------------------------------------------------------------------------


def sweep_deadlines(now: datetime | None = None) -> dict[str, int]:
    """Mark overdue cases and void late parking reports. Safe to run any number of times."""
    now = now or utcnow()
    counts = {"overdue": 0, "auto_rejected": 0, "dispatch_late": 0, "escalate_late": 0}
    late_parking = (
        db.execute(
            select(Case).where(
                Case.state.in_(OPEN_STATES),
                Case.transfer_due.is_not(None),
                Case.transfer_due < now,
                Case.transferred_at.is_(None),
            )
        )
        .scalars()
        .all()
    )
    for case in late_parking:
        _void_late_parking(case, now, "乱停车事件未在发现后一小时内转报市平台，按规定自动作废")
        counts["auto_rejected"] += 1
    overdue = (
        db.execute(
            select(Case).where(
                or_(
                    Case.state.in_(("registered", "dispatched", "handling", "feedback")),
                    and_(Case.state == "reported", Case.self_handled.is_(True)),  # 自办自结 left open
                ),
                Case.overdue.is_(False),
                Case.paused_at.is_(None),
                Case.handle_due.is_not(None),
                Case.handle_due < now,
            )
        )
        .scalars()
        .all()
    )
    # the other stage limits: still undispatched past the dispatch limit, still below the escalation target
    # past the escalation limit (the flag stays: the stage was late, whatever happens next)
    for case in db.execute(
        select(Case).where(
            Case.state == "registered",
            Case.dispatched_at.is_(None),
            Case.dispatch_late.is_(False),
            Case.paused_at.is_(None),
            Case.dispatch_due.is_not(None),
            Case.dispatch_due < now,
        )
    ).scalars():
        case.dispatch_late = True
        note = f"超过派遣时限（{fmt(case.dispatch_due, current_tz())}）仍未派遣"
        _step(case, None, "dispatch_overdue", case.state, now=now, note=note)
        counts["dispatch_late"] += 1
    for case in db.execute(
        select(Case).where(
            Case.state.in_(OPEN_STATES),
            Case.escalate_late.is_(False),
            Case.paused_at.is_(None),  # a paused case's clocks stand still (resume moves its limits)
            Case.escalate_due.is_not(None),
            Case.escalate_due < now,
        )
    ).scalars():
        if alerts.needs_escalation(case):
            case.escalate_late = True
            note = f"超过流转时限（{fmt(case.escalate_due, current_tz())}）仍未流转至{labels.LEVEL[limits_of(case).escalate_to]}"
            _step(case, None, "escalate_overdue", case.state, now=now, note=note)
            counts["escalate_late"] += 1
    for case in overdue:
        case.overdue = True
        case.overdue_at = now
        limit = fmt(case.handle_due, current_tz())
        note = f"自办自结未在上报当日办结（时限 {limit}）" if case.state == "reported" else f"超过办理时限（{limit}）"
        _step(case, None, "overdue", case.state, now=now, note=note)
        counts["overdue"] += 1
    _commit()
    return counts
