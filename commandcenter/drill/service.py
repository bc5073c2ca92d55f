"""The drill-down's input and tables: the query string (period, filters, sort), the columns of each table,
sorting, cell texts and the breadcrumb. The routes are in views.py, the .xlsx export in export.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from .. import labels, stats
from ..access import current_account
from ..db import db
from ..figures.catalogue import label as figure_name
from ..hierarchy import place_contains
from ..inputs import DATE_RANGE_MESSAGE, date_in_range, parse_id
from ..measures import Period
from ..models import CASE_KINDS, CASE_SOURCES, CASE_STATES, Category, Place
from ..timeutil import current_tz, fmt, local_today

MAX_DAYS = 366
PAGE_SIZE = 50
PERIOD_KINDS = {"day": "今日", "week": "本周", "month": "本月", "custom": "自定义"}
CHILD_NAME = {"city": "镇街", "town": "村（社区）", "village": "网格", "grid": "网格员"}
ARG_KEYS = ("period", "start", "end", "kind", "category", "state", "source")


class BadInput(Exception):
    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field, self.message = field_name, message


# --- the query string --------------------------------------------------------------------------------


@dataclass
class Query:
    period: Period
    filters: stats.Filters
    raw: dict[str, str] = field(default_factory=dict)
    sort: str = ""
    table: str = "children"

    def args(self, **extra) -> dict[str, str]:
        """The arguments that reproduce this view (for links), plus `extra` (None removes a key)."""
        out = {k: v for k, v in self.raw.items() if v}
        if self.period.kind != "custom":
            out.pop("start", None)
            out.pop("end", None)
        if out.get("period") == "month":  # the default
            out.pop("period")
        if self.table != "children":
            out["table"] = self.table
        if self.sort:
            out["sort"] = self.sort
        for key, value in extra.items():
            if value in (None, ""):
                out.pop(key, None)
            else:
                out[key] = str(value)
        return out


def _date(raw: dict, key: str, label: str) -> date:
    text = raw.get(key, "")
    if not text:
        raise BadInput(key, f"{label}：自定义时间段须填写{label}")
    try:
        value = date.fromisoformat(text)
    except ValueError:
        raise BadInput(key, f"{label}：日期格式应为 YYYY-MM-DD") from None
    if not date_in_range(value):  # year 1 or 9999 overflows the time-zone arithmetic of the period
        raise BadInput(key, f"{label}：{DATE_RANGE_MESSAGE}")
    return value


def parse_query(args, *, sort_keys: set[str] | None = None) -> Query:
    """Period, filters, sort and table from the query string; BadInput names the first wrong field."""
    raw = {k: (args.get(k) or "").strip()[:40] for k in ARG_KEYS}
    today = local_today()
    kind = raw["period"] or "month"
    if kind == "day":
        period = Period(today, today, "day")
    elif kind == "week":
        start = today - timedelta(days=today.weekday())
        period = Period(start, start + timedelta(days=6), "week")
    elif kind == "month":
        period = Period.month(today.year, today.month)
    elif kind == "custom":
        start, end = _date(raw, "start", "开始日期"), _date(raw, "end", "结束日期")
        if end < start:
            raise BadInput("end", "结束日期：不能早于开始日期")
        if (end - start).days + 1 > MAX_DAYS:
            raise BadInput("end", f"结束日期：时间段不能超过 {MAX_DAYS} 天")
        period = Period(start, end, "custom")
    else:
        raise BadInput("period", "统计时段：取值无效（今日、本周、本月或自定义）")
    raw["period"] = kind
    f = {}
    if raw["kind"]:
        if raw["kind"] not in CASE_KINDS:
            raise BadInput("kind", "事件类型：取值无效")
        f["kind"] = raw["kind"]
    if raw["category"]:
        category_id = parse_id(raw["category"])
        if category_id is None or db.get(Category, category_id) is None:
            raise BadInput("category", "事件类别：不存在")
        f["category_id"] = category_id
    if raw["state"]:
        if raw["state"] not in CASE_STATES:
            raise BadInput("state", "事件状态：取值无效")
        f["state"] = raw["state"]
    if raw["source"]:
        if raw["source"] not in CASE_SOURCES:
            raise BadInput("source", "事件来源：取值无效")
        f["source"] = raw["source"]
    q = Query(period=period, filters=stats.Filters(**f), raw=raw)
    table = (args.get("table") or "children").strip()
    if table not in ("children", "gridworkers"):
        raise BadInput("table", "表格：取值无效")
    q.table = table
    sort = (args.get("sort") or "").strip()[:40]
    if sort and sort_keys is not None and sort.lstrip("-") not in sort_keys:
        raise BadInput("sort", "排序：不支持按该列排序")
    q.sort = sort
    return q


# --- the table columns ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    kind: str  # text / int / rate / num / bool
    value: Callable[[Any], Any]
    flags: tuple[str, ...] = ()  # Figures fields whose flags mark this cell
    figure: str = ""  # its key in the catalogue of figures (the header links to /figures/#<key>)

    def flag(self, row) -> str | None:
        if not self.flags:
            return None
        flagged = row.flagged if isinstance(row, stats.Figures) else {f.field: f.message for f in row["flags"]}
        messages = [flagged[name] for name in self.flags if name in flagged]
        return "；".join(messages) if messages else None


def _f(name: str) -> Callable[[stats.Figures], Any]:
    return lambda fig: getattr(fig, name)


CHILD_COLUMNS = (
    Column("name", "名称", "text", _f("place_name")),
    Column("reported", figure_name("reported"), "int", _f("reported"), ("reported",), figure="reported"),
    Column("hazard", figure_name("hazard"), "int", lambda f: f.by_kind["hazard"], figure="hazard"),
    Column("dispute", figure_name("dispute"), "int", lambda f: f.by_kind["dispute"], figure="dispute"),
    Column(
        "closure_rate",
        figure_name("closure_rate"),
        "rate",
        _f("closure_rate"),
        ("closure_rate", "closed"),
        figure="closure_rate",
    ),
    Column("closed", figure_name("closed"), "int", _f("closed"), ("closed",), figure="closed"),
    Column(
        "reported_to_town",
        figure_name("reported_to_town"),
        "int",
        _f("reported_to_town"),
        ("reported_to_town",),
        figure="reported_to_town",
    ),
    Column(
        "reported_to_town_share",
        figure_name("reported_to_town_share"),
        "rate",
        _f("reported_to_town_share"),
        ("reported_to_town_share",),
        figure="reported_to_town_share",
    ),
    Column(
        "reported_to_town_closure_rate",
        figure_name("reported_to_town_closure_rate"),
        "rate",
        _f("reported_to_town_closure_rate"),
        ("reported_to_town_closure_rate",),
        figure="reported_to_town_closure_rate",
    ),
    Column(
        "reported_to_city",
        figure_name("reported_to_city"),
        "int",
        _f("reported_to_city"),
        ("reported_to_city",),
        figure="reported_to_city",
    ),
    Column(
        "reported_to_city_share",
        figure_name("reported_to_city_share"),
        "rate",
        _f("reported_to_city_share"),
        ("reported_to_city_share",),
        figure="reported_to_city_share",
    ),
    Column(
        "reported_to_city_closure_rate",
        figure_name("reported_to_city_closure_rate"),
        "rate",
        _f("reported_to_city_closure_rate"),
        ("reported_to_city_closure_rate",),
        figure="reported_to_city_closure_rate",
    ),
    Column("overdue", figure_name("overdue"), "int", _f("overdue"), figure="overdue"),
    Column("timeliness", figure_name("timeliness"), "rate", _f("timeliness"), ("timeliness",), figure="timeliness"),
    Column("valid_rate", figure_name("valid_rate"), "rate", _f("valid_rate"), ("valid_rate",), figure="valid_rate"),
    Column("duplicates", figure_name("duplicates"), "int", _f("duplicates"), ("duplicates",), figure="duplicates"),
    Column(
        "reports_per_gridworker",
        figure_name("reports_per_gridworker"),
        "num",
        _f("reports_per_gridworker"),
        ("gridworker_reports",),
        figure="reports_per_gridworker",
    ),
    Column(
        "patrol_rate",
        figure_name("patrol_rate"),
        "rate",
        _f("patrol_rate"),
        ("patrol_rate", "patrol_compliant"),
        figure="patrol_rate",
    ),
    Column(
        "attendance_rate",
        figure_name("attendance_rate"),
        "rate",
        _f("attendance_rate"),
        ("attendance_rate", "attended"),
        figure="attendance_rate",
    ),
    Column(
        "special_visit_rate",
        figure_name("special_visit_rate"),
        "rate",
        _f("special_visit_rate"),
        ("special_visit_rate",),
        figure="special_visit_rate",
    ),
    Column(
        "login_rate",
        figure_name("login_rate"),
        "rate",
        _f("login_rate"),
        ("login_rate", "admins_logged_in"),
        figure="login_rate",
    ),
    Column(
        "linkage_rate",
        figure_name("linkage_rate"),
        "rate",
        _f("linkage_rate"),
        ("linkage_rate", "linked_persons"),
        figure="linkage_rate",
    ),
    Column("party_members", figure_name("party_members"), "int", _f("party_members"), figure="party_members"),
    Column(
        "party_activities", figure_name("party_activities"), "int", _f("party_activities"), figure="party_activities"
    ),
)


def _g(name: str) -> Callable[[dict], Any]:
    return lambda row: row[name]


WORKER_COLUMNS = (
    Column("name", "网格员", "text", _g("name")),
    Column("grid", "所在网格", "text", _g("grid")),
    Column("reports", figure_name("reported"), "int", _g("reports"), ("reports",), figure="reported"),
    Column("closed", figure_name("closed"), "int", _g("closed"), figure="closed"),
    Column("closure_rate", figure_name("closure_rate"), "rate", _g("closure_rate"), figure="closure_rate"),
    Column("hazard", figure_name("hazard"), "int", _g("hazard"), figure="hazard"),
    Column("dispute", figure_name("dispute"), "int", _g("dispute"), figure="dispute"),
    Column("duplicates", figure_name("duplicates"), "int", _g("duplicates"), ("duplicates",), figure="duplicates"),
    Column("overdue", figure_name("overdue"), "int", _g("overdue"), figure="overdue"),
    Column("patrol_compliant", "巡查达标", "bool", _g("patrol_compliant")),
    Column("sign_in_days", "签到天数", "int", _g("sign_in_days")),
    Column("visits", "走访次数", "int", _g("visits")),
    Column("visited", "走访对象数", "int", _g("visited")),
)
CHILD_KEYS = {c.key for c in CHILD_COLUMNS}
WORKER_KEYS = {c.key for c in WORKER_COLUMNS}


def sort_rows(rows: list, columns: tuple[Column, ...], sort: str) -> list:
    """Server-side sort by a column key ("-key" descending); empty values (—) always last."""
    if not sort:
        return rows
    key = sort.lstrip("-")
    column = next(c for c in columns if c.key == key)
    descending = sort.startswith("-")
    present = [r for r in rows if column.value(r) is not None]
    missing = [r for r in rows if column.value(r) is None]
    present.sort(key=lambda r: column.value(r), reverse=descending)
    return present + missing


def cell_text(column: Column, value) -> str:
    if value is None:
        return "—"
    if column.kind == "rate":
        return stats.pct_text(value)
    if column.kind == "num":
        return f"{value:.2f}"
    if column.kind == "bool":
        return "达标" if value else "未达标"
    return str(value)


# --- navigation ---------------------------------------------------------------------------------------


def breadcrumb(place: Place) -> list[Place]:
    """The place's ancestors from the viewer's own place down to it (nothing above his place)."""
    home = current_account().place
    chain = [pid for pid in (place.city_id, place.town_id, place.village_id, place.id) if pid]
    seen, out = set(), []
    for pid in chain:
        if pid in seen:
            continue
        seen.add(pid)
        p = db.get(Place, pid)
        if p is not None and place_contains(home, p):
            out.append(p)
    return out


EXPORT_MAX_CASES = 20_000


def case_columns(paths: dict[int, str]) -> tuple[Column, ...]:
    """The columns of a case list export (category paths looked up once)."""
    return (
        Column("number", "案卷号", "text", lambda c: c.number),
        Column("category", "类别", "text", lambda c: paths.get(c.category_id, "")),
        Column("kind", "类型", "text", lambda c: labels.KIND.get(c.kind, c.kind)),
        Column("source", "来源", "text", lambda c: labels.SOURCE.get(c.source, c.source)),
        Column("state", "状态", "text", lambda c: labels.STATE.get(c.state, c.state)),
        Column("level", "层级", "text", lambda c: labels.LEVEL.get(c.level, c.level)),
        Column("reported_at", "上报时间", "text", lambda c: fmt(c.reported_at, current_tz())),
        Column("closed_at", "办结时间", "text", lambda c: fmt(c.closed_at, current_tz()) or None),
        Column("overdue", "逾期", "text", lambda c: "是" if c.overdue else "否"),
        Column("address", "地址", "text", lambda c: c.address),
    )
