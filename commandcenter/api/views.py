"""JSON API v1: tokens, case intake (gridworker app, hotline system), case reads and actions, photos.

Every write is idempotent on a client-chosen key; every error is JSON naming the field.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from flask import current_app, jsonify, request
from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.orm.exc import StaleDataError

from .. import labels, refcache
from ..access import Forbidden, current_account, public, require
from ..auth.service import PasswordChangeRequired, authenticate, issue_api_token
from ..cases import actions, loop
from ..cases.queries import visible_cases
from ..category_admin import missing
from ..db import db
from ..extensions import limiter
from ..models import Account, Case, CasePhoto, CaseStep, Category, Place
from ..ratelimit import intake_limited
from ..timeutil import local
from . import bp
from .errors import ApiError, api_error
from .schemas import (
    AccountOut,
    CaseAction,
    CaseReport,
    CategoryOut,
    HotlineWorkOrder,
    PhotoOut,
    TokenOut,
    TokenRequest,
    first_error,
)

PAGE_SIZE = 50
IMAGE_SIGNATURES = (
    (b"\xff\xd8\xff", "image/jpeg", "jpg"),
    (b"\x89PNG\r\n\x1a\n", "image/png", "png"),
)


@bp.errorhandler(ApiError)
def handle_api_error(exc: ApiError):
    return api_error(exc.status, exc.message, exc.field)


# the domain names its own fields; the API's body calls some of them differently
API_FIELD = {
    "reason": "note",
    "story": "note",
    "original_id": "original_number",
    "category_id": "category_code",
    "grid_id": "grid_code",
    "self_handled": "self_handled",
    "discovered_at": "discovered_at",
}


@bp.errorhandler(loop.TransitionError)
def handle_transition_error(exc: loop.TransitionError):
    """A wrong state is a conflict (409); a wrong field value is unprocessable (422)."""
    if exc.field is None:
        return api_error(409, exc.message)
    field = API_FIELD.get(exc.field, exc.field)
    return api_error(422, f"{field}: {exc.message}", field)


@bp.errorhandler(Forbidden)
def handle_forbidden(exc: Forbidden):
    return api_error(403, exc.message)


@bp.errorhandler(PasswordChangeRequired)
def handle_password_change_required(_exc):
    from ..web import PASSWORD_CHANGE_MESSAGE

    db.rollback()
    return api_error(403, PASSWORD_CHANGE_MESSAGE + "（请在网页端修改）", "password")


@bp.errorhandler(StaleDataError)
def handle_stale(_exc):
    db.rollback()
    return api_error(409, "案件已被他人修改，请重新读取后再试")


def parse(model: type[BaseModel]) -> BaseModel:
    return parse_json(model, request.mimetype, lambda: request.get_json(silent=True))


def parse_json(model: type[BaseModel], mimetype: str, load) -> BaseModel:
    """An API body's checks, in one place: the views (`parse`) and the heartbeat's lane (api/lane.py). `load()`
    gives the decoded JSON, None when the body is not JSON. ApiError names what is wrong."""
    if mimetype != "application/json":
        raise ApiError(415, "请求体须为 application/json", "Content-Type")
    data = load()
    if data is None:
        raise ApiError(400, "请求体不是合法的 JSON", "body")
    if not isinstance(data, dict):
        raise ApiError(422, "请求体须为 JSON 对象", "body")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        field, message = first_error(exc)
        raise ApiError(422, message, field) from exc


def to_utc_naive(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC).replace(tzinfo=None)


def iso(value: datetime | None) -> str | None:
    """Local time with its offset, as ISO 8601."""
    if value is None:
        return None
    from zoneinfo import ZoneInfo

    tz = current_app.config["SETTINGS"].timezone
    return local(value, tz).replace(tzinfo=ZoneInfo(tz)).isoformat()


def case_out(case: Case, with_steps: bool = False) -> dict:
    grid = case.grid if case.grid_id else None  # from the session's identity map when already loaded
    duplicate_of = db.get(Case, case.duplicate_of_id).number if case.duplicate_of_id else None
    out = {
        "id": case.id,
        "number": case.number,
        "state": case.state,
        "state_label": labels.STATE[case.state],
        "kind": case.kind,
        "category_code": case.category.code,
        "category_name": case.category.name,
        "level": case.level,
        "source": case.source,
        "description": case.description,
        "address": case.address,
        "lat": case.lat,
        "lon": case.lon,
        "grid_code": grid.code if grid else None,
        "self_handled": case.self_handled,
        "valid": case.valid,
        "overdue": case.overdue,
        "duplicate_of": duplicate_of,
        "discovered_at": iso(case.discovered_at),
        "reported_at": iso(case.reported_at),
        "registered_at": iso(case.registered_at),
        "closed_at": iso(case.closed_at),
        "handle_due": iso(case.handle_due),
        "transfer_due": iso(case.transfer_due),
        "photos": len(case.photos),
    }
    if with_steps:
        out["steps"] = [
            {
                "at": iso(step.at),
                "action": step.action,
                "action_label": labels.ACTION.get(step.action, step.action),
                "from_state": step.from_state,
                "to_state": step.to_state,
                "from_level": step.from_level,
                "to_level": step.to_level,
                "actor": step.actor.display_name if step.actor else None,
                "note": step.note,
            }
            for step in db.execute(select(CaseStep).where(CaseStep.case_id == case.id).order_by(CaseStep.id)).scalars()
        ]
    return out


def account_out(account: Account) -> dict:
    return {
        "id": account.id,
        "username": account.username,
        "display_name": account.display_name,
        "role": account.role,
        "post": account.post,
        "place_code": account.place.code,
        "place_name": account.place.name,
    }


def _category(code: str) -> Category:
    category = refcache.category_by_code(code)
    if category is None or not category.active:
        raise ApiError(422, f"category_code: {missing(f'事件类别 {code} 不存在或已停用')}", "category_code")
    return category


def _grid_id(code: str | None) -> int | None:
    if code is None:
        return None
    grid = db.query(Place).filter_by(code=code, level="grid").one_or_none()
    if grid is None:
        raise ApiError(422, f"grid_code: 网格 {code} 不存在", "grid_code")
    return grid.id


def _load_case(case_id: int) -> Case:
    case = db.get(Case, case_id)
    if case is None or not loop.may_see(current_account(), case):
        raise ApiError(404, "案件不存在或不在本账号辖区内", "case_id")
    return case


def _rate_key() -> str:
    account = current_account()
    return f"account:{account.id}" if account else (request.remote_addr or "unknown")


# --- tokens ---------------------------------------------------------------------------------------


@bp.post("/tokens")
@public
@limiter.limit(lambda: current_app.config["SETTINGS"].login_rate_limit)
def create_token():
    """Mobile app login: username and password for a bearer token."""
    body = parse(TokenRequest)
    result = authenticate(body.username, body.password, request.remote_addr, channel="app")
    if result.account is None:
        # one status and one message for a wrong password, an unknown, locked or deactivated account
        # (the true reason is in the login records); a 423 would tell a stranger the name exists
        message = f"{result.error}。{result.hint}" if result.hint else result.error
        return api_error(401, message, result.field)
    token = issue_api_token(result.account, body.device_name)
    from ..models import ApiToken
    from ..security import token_digest

    row = db.query(ApiToken).filter_by(token_hash=token_digest(token)).one()
    payload = TokenOut(
        token=token, expires_at=row.expires_at.replace(tzinfo=UTC), account=AccountOut(**account_out(result.account))
    )
    return jsonify(payload.model_dump(mode="json")), 201


@bp.get("/me")
@require("case.view")
def me():
    return jsonify(account_out(current_account()))


# --- intake ---------------------------------------------------------------------------------------


@bp.post("/cases")
@require("case.report")
@intake_limited(_rate_key)
def report():
    """Gridworker app report. 201 when created, 200 when the same client_key was seen before."""
    body: CaseReport = parse(CaseReport)
    account = current_account()
    category = _category(body.category_code)
    data = loop.ReportInput(
        category_id=category.id,
        description=body.description,
        lat=body.lat,
        lon=body.lon,
        address=body.address,
        grid_id=_grid_id(body.grid_code),
        discovered_at=to_utc_naive(body.discovered_at),
        self_handled=body.self_handled,
    )
    source = {"volunteer": "volunteer", "department": "department", "leader": "leader"}.get(account.role, "app")
    if account.role == "center_admin":
        source = "center"
    case, created = loop.report_case(
        data,
        actor=account,
        source=source,
        client_key=body.client_key,
        reporter_center_id=account.center_id if source == "center" else None,
    )
    response = jsonify(case_out(case))
    response.status_code = 201 if created else 200
    response.headers["Location"] = f"/api/v1/cases/{case.id}"
    return response


@bp.post("/hotline/work-orders")
@require("hotline.take")
@intake_limited(_rate_key)
def hotline_work_order():
    """A 12345 work order from the hotline system; its number is the idempotency key."""
    body: HotlineWorkOrder = parse(HotlineWorkOrder)
    category = _category(body.category_code)
    data = loop.ReportInput(
        category_id=category.id,
        description=body.description,
        lat=body.lat,
        lon=body.lon,
        address=body.address,
        grid_id=_grid_id(body.grid_code),
        discovered_at=to_utc_naive(body.received_at),
        caller_name=body.caller_name,
        caller_phone=body.caller_phone,
        external_ref=body.work_order_no,
    )
    case, created = loop.report_case(
        data, actor=current_account(), source="hotline", client_key=f"12345:{body.work_order_no}"
    )
    return jsonify(case_out(case)), 201 if created else 200


@bp.post("/cases/<int:case_id>/photos")
@require("case.view")
@intake_limited(_rate_key)
def upload_photo(case_id: int):
    """A photo of a case: JPEG or PNG checked by content, size-limited, stored under our own name."""
    case = _load_case(case_id)
    account = current_account()
    if case.reporter_id != account.id and not loop.may_act_on(account, case):
        raise ApiError(403, "只有上报人或有处置权限的账号可以上传照片")
    upload = request.files.get("file")
    if upload is None:
        raise ApiError(422, "file: 请以 multipart/form-data 上传名为 file 的图片", "file")
    settings = current_app.config["SETTINGS"]
    content = upload.stream.read(settings.upload_max_bytes + 1)
    if len(content) > settings.upload_max_bytes:
        raise ApiError(413, f"file: 图片不能超过 {settings.upload_max_bytes // 1024 // 1024} MB", "file")
    if not content:
        raise ApiError(422, "file: 文件为空", "file")
    kind = next(((ctype, ext) for sig, ctype, ext in IMAGE_SIGNATURES if content.startswith(sig)), None)
    if kind is None:
        raise ApiError(415, "file: 只接受 JPEG 或 PNG 图片", "file")
    digest = hashlib.sha256(content).hexdigest()
    existing = db.query(CasePhoto).filter_by(case_id=case.id, sha256=digest).one_or_none()
    if existing is not None:
        return jsonify(
            PhotoOut(
                id=existing.id, content_type=existing.content_type, size=existing.size, sha256=existing.sha256
            ).model_dump()
        ), 200
    settings.upload_dir.mkdir(parents=True, exist_ok=True)
    stored_name = f"{digest}.{kind[1]}"
    path = settings.upload_dir / stored_name
    if not path.exists():
        tmp = path.with_suffix(".part")
        tmp.write_bytes(content)
        tmp.replace(path)
    photo = CasePhoto(case_id=case.id, stored_name=stored_name, content_type=kind[0], size=len(content), sha256=digest)
    db.add(photo)
    db.commit()
    return jsonify(
        PhotoOut(id=photo.id, content_type=photo.content_type, size=photo.size, sha256=photo.sha256).model_dump()
    ), 201


# --- reads ----------------------------------------------------------------------------------------


@bp.get("/cases")
@require("case.view")
def list_cases():
    stmt = visible_cases(current_account()).order_by(Case.id.desc())
    args = request.args
    if "state" in args:
        if args["state"] not in labels.STATE:
            raise ApiError(422, "state: 未知状态", "state")
        stmt = stmt.where(Case.state == args["state"])
    if "kind" in args:
        if args["kind"] not in labels.KIND:
            raise ApiError(422, "kind: 未知类型", "kind")
        stmt = stmt.where(Case.kind == args["kind"])
    if "before_id" in args:
        try:
            before = int(args["before_id"])
        except ValueError as exc:
            raise ApiError(422, "before_id: 须为整数", "before_id") from exc
        stmt = stmt.where(Case.id < before)
    rows = db.execute(stmt.limit(PAGE_SIZE + 1)).scalars().all()
    items = [case_out(case) for case in rows[:PAGE_SIZE]]
    return jsonify({"items": items, "next_before_id": rows[PAGE_SIZE - 1].id if len(rows) > PAGE_SIZE else None})


@bp.get("/cases/<int:case_id>")
@require("case.view")
def get_case(case_id: int):
    return jsonify(case_out(_load_case(case_id), with_steps=True))


@bp.get("/categories")
@require("case.report")
def categories():
    rows = db.query(Category).filter_by(active=True).order_by(Category.code).all()
    codes = {c.id: c.code for c in rows}
    return jsonify(
        [
            CategoryOut(
                code=c.code,
                name=c.name,
                depth=c.depth,
                kind=c.kind,
                parent_code=codes.get(c.parent_id),
                handle_limit=c.handle_limit,
                handle_unit=c.handle_unit,
                must_escalate=c.must_escalate,
                transfer_limit_minutes=c.transfer_limit_minutes,
            ).model_dump()
            for c in rows
        ]
    )


# --- actions --------------------------------------------------------------------------------------


@bp.post("/cases/<int:case_id>/actions/<action>")
@require("case.view")
def act(case_id: int, action: str):
    """One step of the loop: the same domain function as the case page (cases.actions.perform)."""
    if action not in loop.ALLOWED_FROM:
        raise ApiError(404, f"未知操作：{action}", "action")
    body: CaseAction = parse(CaseAction)
    case = _load_case(case_id)
    actions.perform(
        current_account(),
        case,
        action,
        actions.ActionInput(
            note=body.note,
            department_id=body.department_id,
            assignee_id=body.assignee_id,
            to_level=body.to_level,
            original_number=body.original_number,
            public=body.public,
            days=body.days,
            client_key=body.client_key,
            lat=body.lat,
            lon=body.lon,
            address=body.address,
            address_id=body.address_id,
        ),
    )
    out = case_out(case, with_steps=True)
    if body.client_key:  # the step of this key: just taken, or taken by an earlier send of the same request
        step = db.execute(select(CaseStep).where(CaseStep.client_key == body.client_key)).scalar_one()
        out["step"] = {"id": step.id, "at": iso(step.at), "action": step.action, "to_state": step.to_state}
    return jsonify(out)


@bp.get("/openapi.json")
@public
def openapi():
    from .openapi import build_document

    return jsonify(build_document())
