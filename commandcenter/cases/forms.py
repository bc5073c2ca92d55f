"""Form input for the case screens: list filters, the action forms of the case page, the 12345 work order.

Each parser returns clean values plus {field: Chinese message}; the messages name the field as the
page labels it, so an operator knows what to fix. Domain rules stay in loop.py.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import select

from .. import labels
from ..category_admin import missing
from ..db import db
from ..inputs import DATE_RANGE_MESSAGE, date_in_range, parse_id
from ..models import CASE_KINDS, CASE_LEVELS, CASE_SOURCES, CASE_STATES, Account, Case, Category
from ..timeutil import from_local, utcnow
from . import actions, loop, queries

# --- list filters ----------------------------------------------------------------------------------

FILTER_KEYS = (
    "state",
    "kind",
    "category",
    "source",
    "level",
    "town",
    "village",
    "overdue",
    "date_from",
    "date_to",
    "q",
)


@dataclass
class CaseFilters:
    state: str | None = None
    kind: str | None = None
    category_id: int | None = None
    source: str | None = None
    level: str | None = None
    town_id: int | None = None
    village_id: int | None = None
    overdue: bool = False
    date_from: date | None = None
    date_to: date | None = None
    q: str = ""
    page: int = 1
    raw: dict[str, str] = field(default_factory=dict)  # what the form shows back
    errors: dict[str, str] = field(default_factory=dict)

    def args(self, page: int | None = None) -> dict[str, str]:
        """Query arguments that reproduce this filter (for pager links)."""
        out = {k: v for k, v in self.raw.items() if v and k not in self.errors}
        if page and page > 1:
            out["page"] = str(page)
        return out


def _int(value: str | None) -> int | None:
    """A positive id that fits the database's integer columns, else None (see inputs.parse_id)."""
    return parse_id(value)


def _date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


DATE_FILTER_LABELS = {"date_from": "上报日期（起）", "date_to": "上报日期（止）"}


def parse_filters(args, account: Account) -> CaseFilters:
    raw = {k: (args.get(k) or "").strip()[:100] for k in FILTER_KEYS}
    f = CaseFilters(raw=raw)
    f.page = max(1, _int(args.get("page")) or 1)
    if raw["state"]:
        f.state = raw["state"] if raw["state"] in CASE_STATES else None
        if f.state is None:
            f.errors["state"] = "状态取值无效"
    if raw["kind"]:
        f.kind = raw["kind"] if raw["kind"] in CASE_KINDS else None
        if f.kind is None:
            f.errors["kind"] = "类型取值无效"
    if raw["source"]:
        f.source = raw["source"] if raw["source"] in CASE_SOURCES else None
        if f.source is None:
            f.errors["source"] = "来源取值无效"
    if raw["level"]:
        f.level = raw["level"] if raw["level"] in CASE_LEVELS else None
        if f.level is None:
            f.errors["level"] = "层级取值无效"
    if raw["category"]:
        f.category_id = _int(raw["category"])
        if f.category_id is None or db.get(Category, f.category_id) is None:
            f.category_id = None
            f.errors["category"] = "事件类别不存在"
    if raw["town"]:
        town_id = _int(raw["town"])
        if town_id and queries.place_in_jurisdiction(account, town_id, "town"):
            f.town_id = town_id
        else:
            f.errors["town"] = "所选镇街不在本辖区内"
    if raw["village"]:
        village_id = _int(raw["village"])
        if village_id and queries.place_in_jurisdiction(account, village_id, "village"):
            f.village_id = village_id
        else:
            f.errors["village"] = "所选村社不在本辖区内"
    f.overdue = raw["overdue"] in ("1", "on", "true")
    for key in ("date_from", "date_to"):
        if raw[key]:
            value = _date(raw[key])
            if value is None:
                f.errors[key] = "日期格式应为 YYYY-MM-DD"
            elif not date_in_range(value):  # year 1 or 9999 overflows the day bounds in UTC
                f.errors[key] = f"{DATE_FILTER_LABELS[key]}{DATE_RANGE_MESSAGE}"
                value = None
            setattr(f, key, value)
    if f.date_from and f.date_to and f.date_from > f.date_to:
        f.errors["date_to"] = "结束日期不能早于开始日期"
        f.date_to = None
    f.q = raw["q"][:50]
    return f


# --- the action forms of the case page ---------------------------------------------------------------

# action → the fields its form asks for: (name, Chinese label, widget, required)
ACTION_FIELDS: dict[str, list[tuple[str, str, str, bool]]] = {
    "register": [("note", "立案意见", "textarea", False)],
    "reject": [("reason", "作废理由", "textarea", True)],
    "duplicate": [("original_number", "原案卷号", "text", True), ("note", "说明", "text", False)],
    "dispatch": [("department_id", "处置部门", "department", True), ("note", "派遣意见", "textarea", False)],
    "accept": [],
    "feedback": [("note", "处理结果", "textarea", True)],
    "close": [("note", "核查意见", "textarea", False)],
    "rework": [("note", "返工原因", "textarea", True)],
    "escalate": [("to_level", "流转至", "level", True), ("note", "流转理由", "textarea", True)],
    "self_close": [("note", "处置情况", "textarea", True)],
    "transfer": [],
    "pause": [("reason", "暂停理由", "textarea", True)],
    "resume": [],
    "outstanding": [("story", "事迹简述", "textarea", True)],
    "return": [("reason", "退回理由", "textarea", True)],
    "extend": [("days", "延期工作日数", "number", True), ("reason", "延期理由", "textarea", True)],
    "extend_approve": [("note", "审批意见", "textarea", False)],
    "extend_refuse": [("note", "驳回理由", "textarea", True)],
    # 重新定位: the picker (map and 标准地址 search, static/js/locate.js) fills address_id / lon / lat / address
    "relocate": [
        ("locate", "新位置", "locate", True),
        ("address", "地址", "text", False),
        ("lon", "经度", "text", True),
        ("lat", "纬度", "text", True),
        ("note", "说明", "textarea", False),
    ],
}
# what the flash says after the step succeeded
DONE = {
    "register": "已立案",
    "reject": "已作废",
    "duplicate": "已判为重复",
    "dispatch": "已派遣",
    "accept": "已签收",
    "feedback": "已提交处理反馈",
    "close": "已结案",
    "rework": "已退回返工",
    "escalate": "已流转",
    "self_close": "已自办自结",
    "transfer": "已转报市平台",
    "pause": "已暂停计时",
    "resume": "已恢复计时",
    "outstanding": "已标记为优秀网格事件",
    "return": "已退回指挥中心",
    "extend": "已提交延期申请，等待中心审批",
    "extend_approve": "已批准延期，办理时限已顺延",
    "extend_refuse": "已驳回延期申请",
    "relocate": "已重新定位，所属网格已更新",
}
# loop's field names → the form's
FIELD_ALIASES = {"original_id": "original_number", "assignee_id": "department_id"}


TEXT_FIELDS = ("note", "reason", "story")


def text_field_of(action: str) -> str | None:
    """The form's name for the step's text (the domain calls it `note` whatever the form says)."""
    return next((name for name, *_ in ACTION_FIELDS[action] if name in TEXT_FIELDS), None)


def form_field(action: str, field: str | None) -> str | None:
    """The domain's field name → the name of the input on this action's form."""
    if field in TEXT_FIELDS:
        return text_field_of(action) or field
    return FIELD_ALIASES.get(field, field)


def action_input(action: str, form) -> actions.ActionInput:
    """The page's door: read the form into the domain's input; every check is in actions.perform."""

    def text(name: str | None) -> str:
        return (form.get(name) or "").strip() if name else ""

    return actions.ActionInput(
        note=text(text_field_of(action)) or None,
        department_id=_int(text("department_id")),
        assignee_id=_int(text("assignee_id")),
        days=_days(text("days")),
        to_level=text("to_level") or None,
        original_number=text("original_number") or None,
        public=form.get("public") in ("1", "on", "true"),
        lat=_coordinate(text("lat"), "lat", "纬度"),
        lon=_coordinate(text("lon"), "lon", "经度"),
        address=text("address") or None,
        address_id=_int(text("address_id")),
    )


def _coordinate(value: str, name: str, label: str) -> float | None:
    """A typed coordinate; the domain checks its range and the grid it falls in."""
    if not value:
        return None
    try:
        number = float(value[:40])
    except ValueError:
        number = None
    if number is None or not math.isfinite(number):
        raise loop.TransitionError(f"{label}须为数字，如 {'31.299' if name == 'lat' else '120.585'}", name)
    return number


def _days(value: str) -> int | None:
    """The days of a 延期 as typed; anything not a whole number is None (the domain asks for one)."""
    return int(value) if value.isdigit() and len(value) <= 6 else None


def run_action(action: str, case: Case, account: Account, form) -> Case:
    """Read the action's fields and take the step. Raises TransitionError / Forbidden from the domain."""
    return actions.perform(account, case, action, action_input(action, form))


# --- 12345 work order --------------------------------------------------------------------------------

HOTLINE_FIELDS = (
    "external_ref",
    "caller_name",
    "caller_phone",
    "category_id",
    "address",
    "lon",
    "lat",
    "grid_id",
    "description",
    "discovered_at",
)
EXTERNAL_REF_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-]{0,39}$")
CALLER_NAME_MAX = 32
ADDRESS_MAX = 200
DESCRIPTION_MAX = 2000
# mainland China, generously: a point outside is a typo (or lon/lat swapped)
LON_RANGE, LAT_RANGE = (73.0, 136.0), (3.0, 54.0)


@dataclass
class HotlineInput:
    external_ref: str = ""
    data: loop.ReportInput | None = None


def parse_hotline(form, account: Account, tz: str, now: datetime | None = None) -> tuple[HotlineInput, dict[str, str]]:
    """Check every field of the work order; the messages name the field as the form labels it."""
    now = now or utcnow()
    values = {k: (form.get(k) or "").strip() for k in HOTLINE_FIELDS}
    errors: dict[str, str] = {}

    ref = values["external_ref"].upper()
    if not ref:
        errors["external_ref"] = "请填写工单号"
    elif not EXTERNAL_REF_RE.match(ref):
        errors["external_ref"] = "工单号只能由字母、数字和连字符组成，不超过 40 位"

    caller_name = values["caller_name"]
    if len(caller_name) > CALLER_NAME_MAX:
        errors["caller_name"] = f"来电人姓名不能超过 {CALLER_NAME_MAX} 个字"
    elif caller_name and re.search(r"[<>{}\\\x00-\x1f]", caller_name):
        errors["caller_name"] = "来电人姓名含有不允许的字符"

    phone = None
    if not values["caller_phone"]:
        errors["caller_phone"] = "请填写来电号码"
    else:
        try:
            phone = loop.clean_phone(values["caller_phone"])
        except loop.TransitionError as exc:
            errors["caller_phone"] = exc.message

    category = None
    category_id = _int(values["category_id"])
    if not values["category_id"]:
        errors["category_id"] = missing("请选择事件类别")
    else:
        category = db.get(Category, category_id) if category_id else None
        if category is None or not category.active:
            errors["category_id"] = missing("事件类别不存在或已停用")
        elif category.depth == 1:
            errors["category_id"] = "事件类别请选择具体的小类或细项，而不是大类"

    address = values["address"]
    if not address:
        errors["address"] = "请填写地址"
    elif len(address) > ADDRESS_MAX:
        errors["address"] = f"地址不能超过 {ADDRESS_MAX} 个字"

    lon = lat = None
    if values["lon"] or values["lat"]:
        try:
            lon = float(values["lon"]) if values["lon"] else None
        except ValueError:
            errors["lon"] = "经度须为数字，如 120.585"
        try:
            lat = float(values["lat"]) if values["lat"] else None
        except ValueError:
            errors["lat"] = "纬度须为数字，如 31.299"
        if "lon" not in errors and lon is None:
            errors["lon"] = "请同时填写经度和纬度"
        elif "lon" not in errors and not LON_RANGE[0] <= lon <= LON_RANGE[1]:
            errors["lon"] = "经度超出范围（应在 73 到 136 之间）"
        if "lat" not in errors and lat is None:
            errors["lat"] = "请同时填写经度和纬度"
        elif "lat" not in errors and not LAT_RANGE[0] <= lat <= LAT_RANGE[1]:
            errors["lat"] = "纬度超出范围（应在 3 到 54 之间）"

    from ..geo import locate_grid

    grid_id = None
    coords_ok = "lon" not in errors and "lat" not in errors and lon is not None and lat is not None
    if values["grid_id"]:
        grid_id = _int(values["grid_id"])
        if grid_id is None or queries.place_in_jurisdiction(account, grid_id, "grid") is None:
            errors["grid_id"] = "所选网格不存在或不在本辖区内"
            grid_id = None
        elif coords_ok:
            located = locate_grid(lat, lon)
            if located is None or located.id != grid_id:
                errors["lat"] = "经纬度不在所选网格内，请核对经纬度或网格"
    elif "lon" not in errors and "lat" not in errors:
        if not coords_ok:
            errors["grid_id"] = "请选择网格，或填写经纬度"
        else:
            grid = locate_grid(lat, lon)
            if grid is None:
                errors["lat"] = "该经纬度不在任何网格内，请核对或直接选择网格"
            elif queries.place_in_jurisdiction(account, grid.id, "grid") is None:
                errors["lat"] = "该经纬度不在本辖区内，请核对或直接选择网格"
            else:
                grid_id = grid.id

    description = values["description"]
    if not description:
        errors["description"] = "请填写事件描述"
    elif len(description) > DESCRIPTION_MAX:
        errors["description"] = f"事件描述不能超过 {DESCRIPTION_MAX} 个字（当前 {len(description)} 字）"

    discovered = None
    if values["discovered_at"]:
        try:
            discovered_local = datetime.fromisoformat(values["discovered_at"]).replace(tzinfo=None)
        except ValueError:
            errors["discovered_at"] = "发现时间格式不正确，如 2026-03-01T09:30"
        else:
            discovered = from_local(discovered_local, tz) if date_in_range(discovered_local) else None
            if discovered is None:  # year 1 or 9999 overflows the conversion to UTC
                errors["discovered_at"] = f"发现时间{DATE_RANGE_MESSAGE}"
            elif discovered > now + timedelta(minutes=5):
                errors["discovered_at"] = "发现时间不能晚于当前时间"
                discovered = None
            elif discovered < now - timedelta(days=365):
                errors["discovered_at"] = "发现时间不能早于一年前"
                discovered = None

    result = HotlineInput(external_ref=ref)
    if not errors:
        result.data = loop.ReportInput(
            category_id=category.id,
            description=description,
            lat=lat,
            lon=lon,
            address=address,
            grid_id=grid_id,
            discovered_at=discovered,
            caller_name=caller_name or None,
            caller_phone=phone,
            external_ref=ref,
        )
    return result, errors


def hotline_client_key(external_ref: str) -> str:
    return f"12345:{external_ref}"


def find_hotline_case(external_ref: str) -> Case | None:
    return db.execute(
        select(Case).where(Case.source == "hotline", Case.client_key == hotline_client_key(external_ref))
    ).scalar_one_or_none()


def label_of(action: str) -> str:
    return labels.ACTION[action]
