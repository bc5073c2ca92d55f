"""积分排名 pages: the rankings of the viewer's place for a month, and the rulebook (admin)."""

from __future__ import annotations

from typing import NoReturn

from flask import abort, flash, redirect, render_template, request, url_for

from ..access import current_account, require, require_place
from ..audit import audit
from ..db import db
from ..figures.catalogue import label as figure_name
from ..measures import Period, month_key
from ..models import Place
from ..timeutil import current_tz, local_today
from . import bp, service
from .rules import DEFAULT_RULES, KIND_KEYS, KIND_NAMES, POINT_KINDS, RULE_HELP, RULE_UNITS

GROUP_TITLES = {
    "community": "社区排名",
    "village": "村委排名",
    "towns": "镇（街道）排名",
    "grids": "网格排名",
    "gridworkers": "网格员排名",
}
POST_NAMES = {
    "grid_chief": "网格长",
    "liaison": "网格联络员",
    "full_time": "专职网格员",
    "part_time": "兼职网格员",
    "grid_supervisor": "网格监督员",
}


def _bad_query(field: str, label: str, message: str) -> NoReturn:
    abort(400, description=f"参数 {field}（{label}）有误：{message}")


def _month(raw: str | None) -> tuple[str, Period]:
    if raw is None or raw == "":
        today = local_today(current_tz())
        raw = month_key(today)
    try:
        return raw, Period.parse_month(raw)
    except ValueError as exc:
        _bad_query("month", "月份", str(exc))


def _place() -> Place:
    """The viewer's place, or (for a city or town account) a town or village inside it picked by ?place=."""
    account = current_account()
    raw = request.args.get("place", "")
    if raw == "":
        return account.place
    if not raw.isdigit() or len(raw) > 12:
        _bad_query("place", "范围", "应为地点编号")
    place = require_place(int(raw))
    if place.level not in ("city", "town", "village"):
        _bad_query("place", "范围", "只能选择市、镇（街道）或村（社区）")
    return place


@bp.get("/")
@require("points.view")
def index():
    month, period = _month(request.args.get("month"))
    key = request.args.get("kind", "total") or "total"
    if key != "total" and key not in KIND_KEYS:
        _bad_query("kind", "积分类别", "应为 total 或 " + "、".join(KIND_KEYS))
    place = _place()
    result = service.compute(place, period)
    tables = service.rankings(result, key)
    account = current_account()
    choices = []
    if account.place.level in ("city", "town"):
        levels = ("town",) if account.place.level == "city" else ("village",)
        choices = service.places_inside(account.place, levels[0])
    full_workers = place.level != "city"
    if not full_workers:
        tables["gridworkers"]["ends"] = service.ends(tables["gridworkers"])
    chart_rows = result["towns"] if place.level == "city" else result["villages"]
    chart = {
        "title": ("各镇（街道）" if place.level == "city" else "各村（社区）") + "积分合计",
        "names": [r["name"] for r in chart_rows],
        "kinds": [{"key": k, "name": n, "values": [r["points"][k] for r in chart_rows]} for k, n in POINT_KINDS],
        "totals": [r["total"] for r in chart_rows],
    }
    return render_template(
        "points/index.html",
        place=place,
        home=account.place,
        month=month,
        period=period,
        key=key,
        key_name=figure_name("points_total") if key == "total" else KIND_NAMES[key],
        kinds=POINT_KINDS,
        rules=result["rules"],
        tables=tables,
        titles=GROUP_TITLES,
        full_workers=full_workers,
        chart=chart,
        choices=choices,
        posts=POST_NAMES,
        units=RULE_UNITS,
    )


@bp.route("/rules", methods=["GET", "POST"])
@require("rules.edit")
def rules():
    errors: dict[str, str] = {}
    values = service.rulebook()
    submitted: dict[str, str] = {}
    status = 200
    if request.method == "POST":
        submitted = {key: request.form.get(key, "") for key in KIND_KEYS}
        if request.form.get("reset") == "1":
            submitted = {key: str(value) for key, value in DEFAULT_RULES.items()}
        saved, errors = service.save_rulebook(submitted, current_account())
        if not errors:
            audit(
                "points.rules", "setting", service.SETTING_KEY, detail=", ".join(f"{k}={saved[k]:g}" for k in KIND_KEYS)
            )
            db.commit()
            flash("积分规则已保存", "success")
            return redirect(url_for("points.rules"))
        audit("points.rules", "setting", service.SETTING_KEY, success=False, detail="; ".join(errors.values()))
        db.commit()
        status = 400
    row = service.stored_rulebook()
    return render_template(
        "points/rules.html",
        kinds=POINT_KINDS,
        values=values,
        submitted=submitted,
        errors=errors,
        defaults=DEFAULT_RULES,
        units=RULE_UNITS,
        help=RULE_HELP,
        stored=row,
    ), status
