"""GeoReport v2 on top of the domain: services are categories, service requests are cases.

Decisions (see also the module docstring of views.py):
- services: every active small class (depth 2) and item (depth 3) whose ancestors are active;
  service_code is our category code, group the big class, metadata false, type realtime.
- a POST needs a point we can route to a grid: lat & long (WGS-84), or address_id = a grid code.
  address_string alone is kept as the case's address but cannot be routed, so it is refused (400).
- idempotency: the spec has no key. When the client sends device_id, the case's client_key is
  sha256(api_key_hash, device_id, service_code, location, description): the same report re-sent
  by the same device through the same client (a retry after a lost response) finds the first case.
- reads are public, so they show only cases filed through Open311 (a gridworker's or the
  hotline's text was never meant for the public), never the caller's name, phone or e-mail, and
  for disputes (矛盾纠纷, which are about people) neither the text, the place nor the notes.
- status_notes carries only text written for the public (security test, issue 11: an operator's
  registration note with a phone and an identity number came out here). It is the note of the newest
  step an operator marked public on purpose (CaseStep.public, 公开答复), without what the system
  wrote around it (the handler's name of a dispatch, another case's number); else the fixed text of
  the case's state (PUBLIC_STATUS). Internal notes never leave; a dispute shows only the fixed text.
  The other fields come from the citizen's own POST (description, address, point, media_url) or
  name an organisation (agency_responsible), never from a step's note.
"""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from collections.abc import Iterable
from datetime import timedelta

from flask import request
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from .. import labels
from ..audit import audit
from ..cases.loop import ReportInput, TransitionError, report_case
from ..category_admin import missing
from ..db import db
from ..models import Case, CaseStep, Category, Department, Open311Client, Open311Token, Place
from ..security import token_digest
from ..timeutil import current_tz, utcnow
from ..vocabulary import FINAL_STATES
from . import badkeys
from .formats import Open311Error, parse_w3c, w3c

SPEC_URL = "http://wiki.open311.org/GeoReport_v2"
SOURCE = "open311"
CENTER_NAME = "城市网格化服务管理中心"  # agency_responsible before a department is assigned
MAX_DESCRIPTION = 4000  # the spec's limit
MAX_WINDOW = timedelta(days=90)  # the spec's default and largest span of GET requests
MAX_RESULTS = 1000  # the spec's "first 1000 requests"
PRIVATE_KINDS = ("dispute",)
MEDIA_MARK = "；附件链接："  # media_url is kept in the timeline's report step (no column for it yet)
# status_notes when no step carries a public reply: written for the public, one per state
PUBLIC_STATUS = {
    "reported": "已受理，待核实",
    "registered": "已立案，待派遣处置",
    "dispatched": "已派遣至处置部门",
    "handling": "处置中",
    "feedback": "已处置，待核查",
    "closed": "已办结",
    "rejected": "不予受理",
    "duplicate": "重复事件，已并案处理",
}
DEFAULT_STATUS = "已受理"  # a state added later and not yet given a public text
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# discovery's changeset: the last change of what discovery and services describe in code
# (the category tree itself carries no timestamp)
CHANGESET = "2026-11-23 00:00"

# the domain's field names → the Open311 argument that carries them
FIELD = {"category_id": "service_code", "lat": "lat/long", "grid_id": "address_id", "caller_phone": "phone"}

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CJK = re.compile(r"[\u3400-\u9fff]")
MEDIA_URL = re.compile(r"https?://\S+")


# --- services -------------------------------------------------------------------------------------


class Catalog:
    """The category tree, read once per request."""

    def __init__(self) -> None:
        self.by_id = {c.id: c for c in db.execute(select(Category)).scalars()}
        self.by_code = {c.code: c for c in self.by_id.values()}

    def chain(self, category: Category) -> list[Category]:
        """[big class, small class, (item)] down to the category."""
        out = [category]
        while out[0].parent_id is not None and out[0].parent_id in self.by_id:
            out.insert(0, self.by_id[out[0].parent_id])
        return out

    def is_service(self, category: Category) -> bool:
        return category.depth in (2, 3) and all(c.active for c in self.chain(category))

    def services(self) -> list[Category]:
        return sorted((c for c in self.by_id.values() if self.is_service(c)), key=lambda c: c.code)

    def service(self, code: str) -> Category | None:
        category = self.by_code.get(code)
        return category if category is not None and self.is_service(category) else None

    def describe(self, category: Category) -> dict:
        chain = self.chain(category)
        filing = next((c.filing_condition for c in reversed(chain) if c.filing_condition), None)
        kind = labels.KIND.get(category.kind, category.kind)
        description = f"{kind}。立案条件：{filing}" if filing else kind
        notice = service_notice(category)
        if notice:
            description += f"。{notice}"
        keywords = []
        for word in [c.name for c in reversed(chain)] + [kind]:
            if word not in keywords:
                keywords.append(word)
        return {
            "service_code": category.code,
            "service_name": category.name,
            "description": description,
            "metadata": False,
            "type": "realtime",
            "keywords": ", ".join(keywords),
            "group": chain[0].name,
        }


def service_notice(category: Category) -> str | None:
    if not category.handle_limit:
        return None
    unit = labels.UNIT.get(category.handle_unit or "", category.handle_unit or "")
    return f"经核实立案后，按规定在 {category.handle_limit} {unit}内处置完毕"


def definition(code: str) -> dict:
    category = Catalog().service(code)
    if category is None:
        raise Open311Error(404, f"service_code {code} 不存在或已停用")
    return {"service_code": category.code, "attributes": []}


# --- POST requests --------------------------------------------------------------------------------


def authenticate(form: MultiDict) -> Open311Client:
    api_key = (form.get("api_key") or "").strip()
    if not api_key:
        raise badkeys.refuse("缺少 api_key，无法提交服务请求", audited=False)
    client = db.execute(
        select(Open311Client).where(Open311Client.api_key_hash == token_digest(api_key))
    ).scalar_one_or_none()
    if client is None or not client.active:  # limited per address and folded in the audit: see badkeys
        raise badkeys.refuse("api_key 无效或已停用，无法提交服务请求", audited=True)
    return client


def _text(form: MultiDict, name: str, limit: int, errors: list[str]) -> str | None:
    value = _CONTROL.sub("", (form.get(name) or "").replace("\r\n", "\n")).strip()
    if len(value) > limit:
        errors.append(f"{name} 不能超过 {limit} 个字符")
        return None
    return value or None


def _coordinate(form: MultiDict, name: str, bound: float, errors: list[str]) -> float | None:
    raw = (form.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        errors.append(f"{name} 须为十进制度数（WGS-84），收到 {raw[:40]!r}")
        return None
    if not math.isfinite(value) or not -bound <= value <= bound:
        errors.append(f"{name} 超出范围（-{bound:g} 到 {bound:g}）")
        return None
    return value


def caller_name(first: str | None, last: str | None) -> str | None:
    """张 + 三 → 张三 (family name first in Chinese); John + Smith → John Smith."""
    if first and last:
        return last + first if _CJK.search(first + last) else f"{first} {last}"
    return first or last


def client_key(
    client: Open311Client,
    device_id: str,
    service_code: str,
    lat: float | None,
    lon: float | None,
    address_id: str | None,
    address: str | None,
    description: str | None,
) -> str:
    parts = [
        client.api_key_hash,
        device_id,
        service_code,
        "" if lat is None else f"{lat:.7f}",
        "" if lon is None else f"{lon:.7f}",
        address_id or "",
        address or "",
        description or "",
    ]
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


def create_request(form: MultiDict) -> tuple[Case, bool, dict]:
    """POST requests: returns (case, created, the response's request element)."""
    if request.mimetype not in FORM_TYPES:
        raise Open311Error(
            400, f"请求体须为 application/x-www-form-urlencoded（当前 Content-Type 为 {request.mimetype or '空'}）"
        )
    client = authenticate(form)
    errors: list[str] = []
    service_code = (form.get("service_code") or "").strip()
    if not service_code:
        errors.append("缺少必填参数 service_code")
    lat = _coordinate(form, "lat", 90, errors)
    lon = _coordinate(form, "long", 180, errors)
    sent = {name: bool((form.get(name) or "").strip()) for name in ("lat", "long")}
    if sent["lat"] != sent["long"]:
        errors.append("lat 与 long 须同时提供")
    address = _text(form, "address_string", 200, errors)
    address_id = _text(form, "address_id", 32, errors)
    description = _text(form, "description", MAX_DESCRIPTION, errors)
    first = _text(form, "first_name", 30, errors)
    last = _text(form, "last_name", 30, errors)
    phone = _text(form, "phone", 20, errors)
    device_id = _text(form, "device_id", 200, errors)
    account_id = _text(form, "account_id", 200, errors)
    media_url = _text(form, "media_url", 2000, errors)
    if media_url and not MEDIA_URL.fullmatch(media_url):
        errors.append("media_url 须为 http:// 或 https:// 开头的网址")
    grid_id = None
    if not (sent["lat"] or sent["long"]):  # no point: route by the grid code, or refuse
        if address_id:
            grid = db.execute(
                select(Place).where(Place.code == address_id, Place.level == "grid", Place.active.is_(True))
            ).scalar_one_or_none()
            if grid is None:
                errors.append(f"address_id {address_id} 不是本市的网格编码")
            else:
                grid_id = grid.id
        elif address:
            errors.append(
                "本市按网格受理事件，须提供 lat 与 long（WGS-84 经纬度）或以 address_id 提供网格编码；"
                "仅凭 address_string 无法确定所在网格"
            )
        else:
            errors.append("缺少位置：须提供 lat 与 long，或 address_string，或 address_id 之一")
    if errors:
        raise Open311Error(400, *errors)
    category = Catalog().service(service_code)
    if category is None:
        raise Open311Error(404, missing(f"service_code {service_code} 不存在或已停用，请先调用 services 查询"))
    key = client_key(client, device_id, service_code, lat, lon, address_id, address, description) if device_id else None
    data = ReportInput(
        category_id=category.id,
        description=description or "",
        lat=lat,
        lon=lon,
        address=address,
        grid_id=grid_id,
        caller_name=caller_name(first, last),
        caller_phone=phone,
    )
    try:
        case, created = report_case(data, actor=None, source=SOURCE, client_key=key)
    except TransitionError as exc:
        field = FIELD.get(exc.field or "", exc.field)
        if exc.field == "lat":
            raise Open311Error(
                400, f"lat/long（{lat}, {lon}）不在本市任何网格内，无法受理；请核对经纬度（WGS-84）"
            ) from exc
        raise Open311Error(400, f"{exc.message}（{field}）" if field else exc.message) from exc
    _record(case, client, created, media_url)
    return (
        case,
        created,
        {"service_request_id": case.number, "service_notice": service_notice(category), "account_id": account_id},
    )


def _record(case: Case, client: Open311Client, created: bool, media_url: str | None) -> None:
    """The token row (which client filed the case), the media link, and the audit line."""
    has_token = db.execute(select(Open311Token.token).where(Open311Token.case_id == case.id)).first()
    if has_token is None:
        db.add(Open311Token(token=uuid.uuid4().hex, case_id=case.id, client_id=client.id))
    if created and media_url:
        step = (
            db.execute(
                select(CaseStep).where(CaseStep.case_id == case.id, CaseStep.action == "report").order_by(CaseStep.id)
            )
            .scalars()
            .first()
        )
        if step is not None:
            step.note = (step.note or "") + MEDIA_MARK + media_url
    if created:
        audit("open311.request", "case", case.number, detail=f"Open311 客户端 #{client.id} {client.name}")
    try:
        db.commit()
    except Exception:
        db.rollback()
        raise


# --- GET requests ---------------------------------------------------------------------------------


def _values(args: MultiDict, name: str) -> list[str]:
    """A comma list that may also be declared several times: status=open,closed or status=open&status=closed."""
    out: list[str] = []
    for raw in args.getlist(name):
        for part in raw.split(","):
            part = part.strip()
            if part and part not in out:
                out.append(part)
    return out


def find_requests(args: MultiDict) -> list[Case]:
    stmt = select(Case).where(Case.source == SOURCE)
    numbers = _values(args, "service_request_id")
    if numbers:  # "this overrides all other arguments"
        if len(numbers) > MAX_RESULTS:
            raise Open311Error(400, f"service_request_id 一次最多 {MAX_RESULTS} 个")
        stmt = stmt.where(Case.number.in_(numbers))
    else:
        tz = current_tz()
        start_raw, end_raw = (args.get("start_date") or "").strip(), (args.get("end_date") or "").strip()
        start = parse_w3c(start_raw, "start_date", tz) if start_raw else None
        end = parse_w3c(end_raw, "end_date", tz, end=True) if end_raw else None
        if start is None and end is None:
            end = utcnow()
        if start is None:
            start = end - MAX_WINDOW
        if end is None:
            end = start + MAX_WINDOW
        if end < start:
            raise Open311Error(400, "end_date 不能早于 start_date")
        if end - start > MAX_WINDOW:
            raise Open311Error(400, "start_date 与 end_date 的跨度不能超过 90 天")
        stmt = stmt.where(Case.reported_at >= start, Case.reported_at <= end)
        codes = _values(args, "service_code")
        if codes:
            stmt = stmt.join(Category, Category.id == Case.category_id).where(Category.code.in_(codes))
        statuses = _values(args, "status")
        unknown = [s for s in statuses if s not in ("open", "closed")]
        if unknown:
            raise Open311Error(400, f"status 只能是 open 或 closed，收到 {', '.join(unknown)[:80]}")
        if statuses == ["open"]:
            stmt = stmt.where(Case.state.not_in(FINAL_STATES))
        elif statuses == ["closed"]:
            stmt = stmt.where(Case.state.in_(FINAL_STATES))
    stmt = stmt.order_by(Case.reported_at.desc(), Case.id.desc()).limit(MAX_RESULTS)
    return list(db.execute(stmt).scalars())


def find_request(number: str) -> Case:
    case = db.execute(select(Case).where(Case.source == SOURCE, Case.number == number)).scalar_one_or_none()
    if case is None:
        raise Open311Error(404, f"service_request_id {number} 不存在")
    return case


def find_token(token: str) -> dict:
    row = db.execute(
        select(Open311Token.token, Case.number)
        .join(Case, Case.id == Open311Token.case_id)
        .where(Open311Token.token == token)
    ).first()
    if row is None:
        raise Open311Error(404, f"token {token} 不存在")
    return {"service_request_id": row.number, "token": row.token}


def public_reply(step: CaseStep) -> str | None:
    """The text of a step marked public, without what the system wrote around the operator's words:
    a dispatch's "派遣至 <department> <handler's name>：", a duplicate's "与 <number> 重复：", the
    report's media link. None when nothing of the operator's own is left."""
    if not step.public or not step.note:
        return None
    text = step.note
    if step.action == "dispatch":  # 派遣至 {target}[：{note}] — the target may name a person
        text = text.split("：", 1)[1] if text.startswith("派遣至") and "：" in text else ""
    elif step.action == "duplicate":  # 与 {number} 重复[：{note}]
        text = text.split("：", 1)[1] if "：" in text else ""
    elif step.action == "report":
        text = text.split(MEDIA_MARK, 1)[0]
    return text.strip() or None


def status_note(case: Case, history: list[CaseStep]) -> str:
    """The newest public reply, else the state's fixed text; never an internal note."""
    if case.kind not in PRIVATE_KINDS:
        for step in reversed(history):
            text = public_reply(step)
            if text:
                return text
    return PUBLIC_STATUS.get(case.state, DEFAULT_STATUS)


def serialize(cases: Iterable[Case]) -> list[dict]:
    """Cases → the spec's request elements, with every lookup done in one query per table."""
    cases = list(cases)
    if not cases:
        return []
    ids = [c.id for c in cases]
    catalog = Catalog()
    steps: dict[int, list[CaseStep]] = {}
    for step in db.execute(select(CaseStep).where(CaseStep.case_id.in_(ids)).order_by(CaseStep.id)).scalars():
        steps.setdefault(step.case_id, []).append(step)
    place_ids = {i for c in cases for i in (c.grid_id, c.village_id, c.town_id) if i}
    places = {p.id: p for p in db.execute(select(Place).where(Place.id.in_(place_ids))).scalars()} if place_ids else {}
    dept_ids = {c.department_id for c in cases if c.department_id}
    departments = (
        {d.id: d.name for d in db.execute(select(Department).where(Department.id.in_(dept_ids))).scalars()}
        if dept_ids
        else {}
    )
    tz = current_tz()
    out = []
    for case in cases:
        category = catalog.by_id[case.category_id]
        history = steps.get(case.id, [])
        report_step = next((s for s in history if s.action == "report"), None)
        media_url = None  # only the link the citizen sent (_record), never other text of the step
        if report_step is not None and report_step.note and MEDIA_MARK in report_step.note:
            link = report_step.note.rsplit(MEDIA_MARK, 1)[1]
            media_url = link if MEDIA_URL.fullmatch(link) else None
        agency = departments.get(case.department_id, CENTER_NAME)
        grid = places.get(case.grid_id)
        private = case.kind in PRIVATE_KINDS
        closed = case.state in FINAL_STATES
        address = case.address
        if not address and grid is not None:  # most specific first, as the spec asks
            address = "，".join(p.name for p in (grid, places.get(case.village_id), places.get(case.town_id)) if p)
        out.append(
            {
                "service_request_id": case.number,
                "status": "closed" if closed else "open",
                "status_notes": status_note(case, history),
                "service_name": category.name,
                "service_code": category.code,
                "description": None if private else (case.description or None),
                "agency_responsible": agency,
                "service_notice": service_notice(category),
                "requested_datetime": w3c(case.reported_at, tz),
                "updated_datetime": w3c(case.closed_at if closed and case.closed_at else case.updated_at, tz),
                "expected_datetime": w3c(case.handle_due, tz),
                "address": None if private else address,
                "address_id": None if private or grid is None else grid.code,
                "zipcode": None,
                "lat": None if private else case.lat,
                "long": None if private else case.lon,
                "media_url": None if private else media_url,
            }
        )
    return out


def discovery(base_url: str) -> dict:
    return {
        "changeset": CHANGESET,
        "contact": f"{CENTER_NAME}：请通过本市 12345 热线或网格化服务管理中心联系接口维护人员",
        "key_service": "api_key 由系统管理员签发（flask open311 add-client 名称），只保存其摘要",
        "endpoints": [
            {
                "specification": SPEC_URL,
                "url": base_url,
                "changeset": CHANGESET,
                "type": "production",
                "formats": ["text/xml", "application/json"],
            }
        ],
    }
