"""逐级下钻: city → town → village/community → grid → gridworker → case, the same figures at every level.

Views stay thin: the figures come from ``commandcenter.stats``, the query string and the tables from
service.py, the .xlsx from export.py. The routes keep the viewer inside his place (``require_place``: 404
outside, never 403, so another town's ids reveal nothing) and render the page, the htmx fragment or the file.
"""

from __future__ import annotations

import io
import math

from flask import abort, current_app, redirect, render_template, request, send_file, url_for
from sqlalchemy import func, select

from .. import labels, stats
from ..access import current_account, has_permission, require, require_place
from ..cases import queries as case_queries
from ..db import db
from ..exports import audit_export
from ..hierarchy import in_place, place_contains
from ..models import CASE_KINDS, CASE_SOURCES, CASE_STATES, Account, Case, Place
from ..web import wants_fragment
from . import bp
from .export import export_what, workbook
from .service import (
    ARG_KEYS,
    CHILD_COLUMNS,
    CHILD_KEYS,
    CHILD_NAME,
    EXPORT_MAX_CASES,
    PAGE_SIZE,
    PERIOD_KINDS,
    WORKER_COLUMNS,
    WORKER_KEYS,
    BadInput,
    Query,
    breadcrumb,
    case_columns,
    cell_text,
    parse_query,
    sort_rows,
)

# --- shared by the pages ------------------------------------------------------------------------------------


def _bad(exc: BadInput, place: Place | None = None):
    context = dict(
        error=exc,
        place=place,
        form=request.args,
        kinds=CASE_KINDS,
        states=CASE_STATES,
        sources=CASE_SOURCES,
        tree=case_queries.category_tree(active_only=False),
        period_kinds=PERIOD_KINDS,
    )
    return render_template("drill/invalid.html", **context), 400


def _table_context(place: Place, q: Query) -> dict:
    if place.level == "grid" or q.table == "gridworkers":
        rows = sort_rows(stats.gridworker_rows(place, q.period, q.filters), WORKER_COLUMNS, q.sort)
        return dict(
            table="gridworkers",
            columns=WORKER_COLUMNS,
            rows=rows,
            link=lambda r: url_for("drill.worker", account_id=r["account_id"], **q.args(sort=None, table=None)),
            title="网格员明细",
        )
    rows = sort_rows(stats.children(place, q.period, q.filters), CHILD_COLUMNS, q.sort)
    return dict(
        table="children",
        columns=CHILD_COLUMNS,
        rows=rows,
        link=lambda r: url_for("drill.place", place_id=r.place_id, **q.args(sort=None, table=None)),
        title=f"下级{CHILD_NAME[place.level]}",
    )


def _common(q: Query) -> dict:
    return dict(
        q=q,
        cell_text=cell_text,
        pct=stats.pct_text,
        period_kinds=PERIOD_KINDS,
        kinds=CASE_KINDS,
        states=CASE_STATES,
        sources=CASE_SOURCES,
        visit_labels=stats.VISIT_LABELS,
    )


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
    if wants_fragment() and request.headers.get("HX-Target") == "drill-table":
        html = render_template("drill/_table.html", place=target, **table, **_common(q))
    else:
        fig = stats.figures(target, q.period, q.filters)
        trend = stats.trend(target, q.period, q.filters)
        html = render_template(
            "drill/place.html",
            place=target,
            fig=fig,
            trend=trend,
            crumbs=breadcrumb(target),
            level_name=labels.PLACE_LEVEL,
            child_name=CHILD_NAME,
            tree=case_queries.category_tree(active_only=False),
            **table,
            **_common(q),
        )
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
    audit_export(
        "drill.export", "place", target.id, what=export_what(target, q, table["title"]), rows=len(table["rows"])
    )
    name = f"{target.name}-{table['title']}-{q.period.start.isoformat()}-{q.period.end.isoformat()}.xlsx"
    return send_file(
        io.BytesIO(data),
        as_attachment=True,
        download_name=name,
        mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    )


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
    cases = list(
        db.scalars(
            stmt.order_by(Case.reported_at.desc(), Case.id.desc()).offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE)
        )
    )
    return render_template(
        "drill/worker.html",
        person=person,
        grid=grid,
        row=row,
        cases=cases,
        total=total,
        page=page,
        pages=pages,
        crumbs=breadcrumb(grid),
        paths=case_queries.category_paths(),
        columns=WORKER_COLUMNS,
        may_replay=has_permission(current_account(), "position.view"),
        today_iso=_today_iso(),
        **_common(q),
    )


@bp.get("/worker/<int:account_id>/export.xlsx")
@require("drill.view")
def worker_export(account_id: int):
    """His cases of the period as .xlsx (the same list as the page, without pages)."""
    person = _worker_or_404(account_id)
    try:
        q = parse_query(request.args)
    except BadInput as exc:
        return _bad(exc, person.place)
    cases = list(
        db.scalars(_worker_cases(person, q).order_by(Case.reported_at.desc(), Case.id.desc()).limit(EXPORT_MAX_CASES))
    )
    title = f"{person.display_name}上报事件"
    data = workbook(person.place, q, title, case_columns(case_queries.category_paths()), cases)
    audit_export("drill.worker_export", "account", person.id, what=export_what(person.place, q, title), rows=len(cases))
    name = f"{person.display_name}-上报事件-{q.period.start.isoformat()}-{q.period.end.isoformat()}.xlsx"
    return send_file(
        io.BytesIO(data),
        as_attachment=True,
        download_name=name,
        mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    )


def _today_iso() -> str:
    from ..timeutil import current_tz, local_today

    return local_today(current_tz()).isoformat()


@bp.get("/worker/<int:account_id>/patrols.json")
@require("drill.view")
def worker_patrols(account_id: int):
    """巡查轨迹回放: his patrols of one local day (?day=YYYY-MM-DD, default today), drawn over his grid.
    A position is personal data: positions.patrol_track checks position.view and audits the read."""
    from datetime import date as date_

    from flask import jsonify

    from .. import positions
    from ..access import Forbidden
    from ..timeutil import current_tz, local_today

    person = _worker_or_404(account_id)
    raw = (request.args.get("day") or "").strip()
    try:
        day = date_.fromisoformat(raw) if raw else local_today(current_tz())
    except ValueError:
        return jsonify({"error": {"message": "日期格式应为 YYYY-MM-DD", "field": "day"}}), 400
    try:
        patrols = positions.patrol_track(current_account(), person, day)
    except Forbidden as exc:
        return jsonify({"error": {"message": exc.message}}), 403
    return jsonify({"day": day.isoformat(), **positions.replay_figure(person, patrols)})
