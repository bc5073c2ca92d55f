"""逐级下钻: city → town → village/community → grid → gridworker → case, the same figures at every level.

Views stay thin: the figures come from ``commandcenter.stats``; this module reads the query string (period,
filters, sort), keeps the viewer inside his place (``require_place``: 404 outside, never 403, so another
town's ids reveal nothing), and renders the page, the htmx table fragment or the .xlsx export.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from flask import abort, current_app, redirect, render_template, request, send_file, url_for
from sqlalchemy import func, select

from .. import labels, stats
from ..access import current_account, place_contains, require, require_place
from ..cases import queries as case_queries
from ..db import db
from ..exports import audit_export, xlsx_append, xlsx_cell
from ..inputs import DATE_RANGE_MESSAGE, date_in_range, parse_id
from ..measures import Period, in_place
from ..models import CASE_KINDS, CASE_SOURCES, CASE_STATES, Account, Case, Category, Place
from ..timeutil import fmt, local_today
from . import bp

MAX_DAYS = 366
PAGE_SIZE = 50
PERIOD_KINDS = {"day": "今日", "week": "本周", "month": "本月", "custom": "自定义"}
LEVEL_NAME = {"city": "市", "town": "镇街", "village": "村社", "grid": "网格"}
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
    today = local_today(current_app.config["SETTINGS"].timezone)
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
    Column("reported", "上报事件", "int", _f("reported"), ("reported",)),
    Column("hazard", "安全隐患", "int", lambda f: f.by_kind["hazard"]),
    Column("dispute", "矛盾纠纷", "int", lambda f: f.by_kind["dispute"]),
    Column("closure_rate", "办结率", "rate", _f("closure_rate"), ("closure_rate", "closed")),
    Column("escalated_town", "流转镇街", "int", _f("escalated_town")),
    Column("escalated_town_closure_rate", "流转镇街办结率", "rate", _f("escalated_town_closure_rate"),
           ("escalated_town_closure_rate",)),
    Column("escalated_city", "流转市中心", "int", _f("escalated_city")),
    Column("escalated_city_closure_rate", "流转市中心办结率", "rate", _f("escalated_city_closure_rate"),
           ("escalated_city_closure_rate",)),
    Column("overdue", "逾期", "int", _f("overdue")),
    Column("timeliness", "处理及时率", "rate", _f("timeliness"), ("timeliness",)),
    Column("valid_rate", "有效率", "rate", _f("valid_rate"), ("valid_rate",)),
    Column("duplicates", "重复", "int", _f("duplicates"), ("duplicates",)),
    Column("reports_per_gridworker", "人均上报", "num", _f("reports_per_gridworker"), ("gridworker_reports",)),
    Column("patrol_rate", "巡查达标率", "rate", _f("patrol_rate"), ("patrol_rate", "patrol_compliant")),
    Column("attendance_rate", "出勤率", "rate", _f("attendance_rate"), ("attendance_rate", "attended")),
    Column("special_visit_rate", "特殊人群走访率", "rate", _f("special_visit_rate"), ("special_visit_rate",)),
    Column("login_rate", "管理员登录率", "rate", _f("login_rate"), ("login_rate", "admins_logged_in")),
    Column("linkage_rate", "人房关联率", "rate", _f("linkage_rate"), ("linkage_rate", "linked_persons")),
    Column("party_members", "党员", "int", _f("party_members")),
    Column("party_activities", "党建活动", "int", _f("party_activities")),
)


def _g(name: str) -> Callable[[dict], Any]:
    return lambda row: row[name]


WORKER_COLUMNS = (
    Column("name", "网格员", "text", _g("name")),
    Column("grid", "所在网格", "text", _g("grid")),
    Column("reports", "上报事件", "int", _g("reports"), ("reports",)),
    Column("closed", "已办结", "int", _g("closed")),
    Column("closure_rate", "办结率", "rate", _g("closure_rate")),
    Column("hazard", "安全隐患", "int", _g("hazard")),
    Column("dispute", "矛盾纠纷", "int", _g("dispute")),
    Column("duplicates", "重复", "int", _g("duplicates"), ("duplicates",)),
    Column("overdue", "逾期", "int", _g("overdue")),
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


# --- jurisdiction and navigation ------------------------------------------------------------------------

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


def _bad(exc: BadInput, place: Place | None = None):
    context = dict(error=exc, place=place, form=request.args, kinds=CASE_KINDS, states=CASE_STATES,
                   sources=CASE_SOURCES, tree=case_queries.category_tree(active_only=False),
                   period_kinds=PERIOD_KINDS)
    return render_template("drill/invalid.html", **context), 400


def _fragment() -> bool:
    return bool(request.headers.get("HX-Request")) and not request.headers.get("HX-History-Restore-Request")


def _table_context(place: Place, q: Query) -> dict:
    if place.level == "grid" or q.table == "gridworkers":
        rows = sort_rows(stats.gridworker_rows(place, q.period, q.filters), WORKER_COLUMNS, q.sort)
        return dict(table="gridworkers", columns=WORKER_COLUMNS, rows=rows,
                    link=lambda r: url_for("drill.worker", account_id=r["account_id"], **q.args(sort=None, table=None)),
                    title="网格员明细")
    rows = sort_rows(stats.children(place, q.period, q.filters), CHILD_COLUMNS, q.sort)
    return dict(table="children", columns=CHILD_COLUMNS, rows=rows,
                link=lambda r: url_for("drill.place", place_id=r.place_id, **q.args(sort=None, table=None)),
                title=f"下级{CHILD_NAME[place.level]}")


def _common(q: Query) -> dict:
    return dict(q=q, cell_text=cell_text, pct=stats.pct_text, period_kinds=PERIOD_KINDS, kinds=CASE_KINDS,
                states=CASE_STATES, sources=CASE_SOURCES, visit_labels=stats.VISIT_LABELS)


# --- the pages -----------------------------------------------------------------------------------------------

@bp.get("/")
@require("drill.view")
def index():
    """Start at the viewer's own place (a city supervisor at the city, a town supervisor at his town)."""
    args = {k: v for k, v in request.args.items() if k in (*ARG_KEYS, "sort", "table")}
    return redirect(url_for("drill.place", place_id=current_account().place_id, **args))


def _query(target):
    """The period, filters and sort of a place's page (the gridworker table sorts by other columns)."""
    keys = WORKER_KEYS if target.level == "grid" or request.args.get("table") == "gridworkers" else CHILD_KEYS
    return parse_query(request.args, sort_keys=keys)


@bp.get("/<int:place_id>")
@require("drill.view")
def place(place_id: int):
    target = require_place(place_id)
    try:
        q = _query(target)
    except BadInput as exc:
        return _bad(exc, target)
    table = _table_context(target, q)
    if _fragment() and request.headers.get("HX-Target") == "drill-table":
        html = render_template("drill/_table.html", place=target, **table, **_common(q))
    else:
        fig = stats.figures(target, q.period, q.filters)
        trend = stats.trend(target, q.period, q.filters)
        html = render_template("drill/place.html", place=target, fig=fig, trend=trend, crumbs=breadcrumb(target),
                               level_name=LEVEL_NAME, child_name=CHILD_NAME,
                               tree=case_queries.category_tree(active_only=False), **table, **_common(q))
    response = current_app.make_response(html)
    response.headers["Vary"] = "HX-Request, HX-Target"
    return response


@bp.get("/<int:place_id>/table")
@require("drill.view")
def table(place_id: int):
    """The table alone (htmx swap when a column header is clicked)."""
    target = require_place(place_id)
    try:
        q = _query(target)
    except BadInput as exc:
        abort(400, description=exc.message)
    return render_template("drill/_table.html", place=target, **_table_context(target, q), **_common(q))


@bp.get("/<int:place_id>/export.xlsx")
@require("drill.view")
def export(place_id: int):
    target = require_place(place_id)
    try:
        q = _query(target)
    except BadInput as exc:
        return _bad(exc, target)
    table = _table_context(target, q)
    data = workbook(target, q, table["title"], table["columns"], table["rows"])
    audit_export("drill.export", "place", target.id, what=export_what(target, q, table["title"]), rows=len(table["rows"]))
    name = f"{target.name}-{table['title']}-{q.period.start.isoformat()}-{q.period.end.isoformat()}.xlsx"
    return send_file(io.BytesIO(data), as_attachment=True, download_name=name,
                     mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")


def workbook(place: Place, q: Query, title: str, columns: tuple[Column, ...], rows: list) -> bytes:
    """Chinese headers on row 1, one row per child; rates as numbers formatted as percentages; a flagged
    cell carries the flag's message as a comment. A second sheet says what the table is."""
    from openpyxl import Workbook
    from openpyxl.comments import Comment
    from openpyxl.styles import Font, PatternFill

    wb = Workbook()
    ws = wb.active
    ws.title = SHEET_TITLE_BAD.sub("_", title)[:31] or "表格"
    xlsx_append(ws, [c.label for c in columns])
    for cell in ws[1]:
        cell.font = Font(bold=True)
    warn = PatternFill("solid", fgColor="FFF4E0")
    for r, row in enumerate(rows, start=2):
        for c, column in enumerate(columns, start=1):
            value = column.value(row)
            if column.kind == "bool":
                value = None if value is None else ("达标" if value else "未达标")
            cell = xlsx_cell(ws, r, c, value)  # text typed by people may start with "=": kept as text
            if column.kind == "rate":
                cell.number_format = "0.00%"
            elif column.kind == "num":
                cell.number_format = "0.00"
            message = column.flag(row)
            if message:
                cell.comment = Comment(f"数据质量提示：{message}", "指挥中心")
                cell.fill = warn
    for c, column in enumerate(columns, start=1):
        ws.column_dimensions[ws.cell(row=1, column=c).column_letter].width = max(10, min(30, len(column.label) * 2 + 4))
    ws.freeze_panes = "B2"
    about = wb.create_sheet("说明")
    f = q.filters
    for line in (("单位", place.name), ("表格", title), ("统计时段", q.period.label),
                 ("开始日期", q.period.start.isoformat()), ("结束日期", q.period.end.isoformat()),
                 ("事件类型", f.kind or "全部"), ("事件类别", f.category_id or "全部"), ("事件状态", f.state or "全部"),
                 ("事件来源", f.source or "全部"),
                 ("说明", "空白表示分母为 0、比率无定义；带批注的单元格为数据质量存疑的数字。")):
        xlsx_append(about, line)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


SHEET_TITLE_BAD = re.compile(r"[\[\]:*?/\\]")  # characters Excel does not allow in a sheet's name


def export_what(place: Place, q: Query, title: str) -> str:
    """What an export holds, for its audit row: the place, the table, the period and the filters."""
    f = q.filters
    filters = "，".join(f"{k}={v}" for k, v in (("类型", f.kind), ("类别", f.category_id), ("状态", f.state),
                                                ("来源", f.source)) if v) or "无筛选"
    return (f"{place.name}（{place.code}）{title}；{q.period.start.isoformat()} 至 {q.period.end.isoformat()}；"
            f"{filters}")


def _worker_or_404(account_id: int) -> Account:
    """A gridworker whose grid lies inside the viewer's place; 404 for anyone else."""
    person = db.get(Account, account_id)
    if person is None or person.role != "gridworker" or person.place is None:
        abort(404)
    if not place_contains(current_account().place, person.place):
        abort(404)
    return person


def _worker_cases(person: Account, q: Query):
    """His cases of the period (duplicates included) that lie inside the viewer's place: a report he made
    next door, in another town, is not shown to this town's supervisor (he could not open it)."""
    where = [Case.reporter_id == person.id, *stats.case_conditions(q.period, q.filters)]
    return in_place(select(Case).where(*where), Case, current_account().place)


@bp.get("/worker/<int:account_id>")
@require("drill.view")
def worker(account_id: int):
    """A gridworker: his figures and his cases in the period, only if his grid lies inside the viewer's place."""
    person = _worker_or_404(account_id)
    grid = person.place
    try:
        q = parse_query(request.args)
        page = int(request.args.get("page") or 1)
        if page < 1:
            raise ValueError
    except BadInput as exc:
        return _bad(exc, grid)
    except ValueError:
        return _bad(BadInput("page", "页码：应为正整数"), grid)
    rows = stats.gridworker_rows(grid, q.period, q.filters, account_id=person.id) if person.active else []
    row = rows[0] if rows else None
    stmt = _worker_cases(person, q)
    total = db.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    pages = max(1, math.ceil(total / PAGE_SIZE))
    page = min(page, pages)
    cases = list(db.scalars(stmt.order_by(Case.reported_at.desc(), Case.id.desc())
                            .offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE)))
    return render_template("drill/worker.html", person=person, grid=grid, row=row, cases=cases, total=total,
                           page=page, pages=pages, crumbs=breadcrumb(grid), paths=case_queries.category_paths(),
                           columns=WORKER_COLUMNS, **_common(q))


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
        Column("reported_at", "上报时间", "text", lambda c: fmt(c.reported_at, _tz())),
        Column("closed_at", "办结时间", "text", lambda c: fmt(c.closed_at, _tz()) or None),
        Column("overdue", "逾期", "text", lambda c: "是" if c.overdue else "否"),
        Column("address", "地址", "text", lambda c: c.address),
    )


def _tz() -> str:
    return current_app.config["SETTINGS"].timezone


@bp.get("/worker/<int:account_id>/export.xlsx")
@require("drill.view")
def worker_export(account_id: int):
    """His cases of the period as .xlsx (the same list as the page, without pages)."""
    person = _worker_or_404(account_id)
    try:
        q = parse_query(request.args)
    except BadInput as exc:
        return _bad(exc, person.place)
    cases = list(db.scalars(_worker_cases(person, q).order_by(Case.reported_at.desc(), Case.id.desc())
                            .limit(EXPORT_MAX_CASES)))
    title = f"{person.display_name}上报事件"
    data = workbook(person.place, q, title, case_columns(case_queries.category_paths()), cases)
    audit_export("drill.worker_export", "account", person.id, what=export_what(person.place, q, title), rows=len(cases))
    name = f"{person.display_name}-上报事件-{q.period.start.isoformat()}-{q.period.end.isoformat()}.xlsx"
    return send_file(io.BytesIO(data), as_attachment=True, download_name=name,
                     mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
