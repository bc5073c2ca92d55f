"""The assessment screens: the month's table and chart, closing a month, the rules page, the JSON table.

A city account sees every town; an account of a town (or below it) sees its own town's row only, with its
rank among all towns. The rules page belongs to the system administrator ("rules.edit").
"""

from __future__ import annotations

import json
from datetime import datetime
from urllib.parse import urlencode

from flask import abort, flash, jsonify, redirect, render_template, request, url_for

from ..access import Forbidden, current_account, require
from ..api.errors import api_error
from ..measures import month_key
from ..timeutil import current_tz, fmt, local_today
from . import bp, service
from . import rules as R

# the case list behind a score: its extra filters (besides the town and the month's dates)
CASE_LINKS: dict[str, dict[str, str]] = {
    "reports_per_10k": {},
    "town_center_reports": {"source": "center"},
    "village_disputes": {"source": "center", "kind": "dispute"},
    "town_escalations": {"level": "city"},
    "timeliness": {"overdue": "1"},
}
# the scores about gridworkers and visits lead to the drill-down of the town for the month
DRILL_LINKS = ("reports_per_gridworker", "gridworkers_meeting_quota", "hazard_reporting", "patrol", "special_visits")
LINK_TITLES = {
    "reports_per_10k": "查看本月上报的事件",
    "town_center_reports": "查看综治中心本月自报的事件",
    "village_disputes": "查看综治中心上报的矛盾纠纷",
    "town_escalations": "查看流转至市中心的事件",
    "timeliness": "查看本月上报事件中的逾期事件",
    "reports_per_gridworker": "下钻查看各网格员上报情况",
    "gridworkers_meeting_quota": "下钻查看各网格员上报情况",
    "hazard_reporting": "下钻查看各网格员隐患上报情况",
    "patrol": "下钻查看各网格员巡查情况",
    "special_visits": "下钻查看吸毒人员、易肇事肇祸精神障碍患者的走访情况",
}


def score_links(table: dict) -> dict[int, dict[str, str]]:
    """The URL behind each score of each row: the case list filtered, or the drill-down of the town."""
    period = service.parse_month(table["month"])
    start, end = period.start.isoformat(), period.end.isoformat()
    links: dict[int, dict[str, str]] = {}
    for row in table["rows"]:
        town = row["town_id"]
        by_key = {}
        for key, extra in CASE_LINKS.items():
            by_key[key] = url_for("cases.index", town=town, date_from=start, date_to=end, **extra)
        drill = f"{request.script_root}/drill/{town}?" + urlencode({"period": "custom", "start": start, "end": end})
        for key in DRILL_LINKS:
            by_key[key] = drill
        links[town] = by_key
    return links


def chart_data(table: dict) -> str:
    rows = table["rows"]
    return json.dumps(
        {
            "towns": [r["town_name"] for r in rows],
            "totals": [r["total"] for r in rows],
            "ranks": [r["rank"] for r in rows],
            "month": table["month"],
        },
        ensure_ascii=False,
    ).replace("<", "\\u003c")  # no "</script>" inside the element


def _render(month: str | None, error: str | None, status: int = 200):
    me = current_account()
    today = local_today(current_tz())
    table = service.visible_table(me, month) if month else None
    period = service.parse_month(month) if month else None
    city = service.city_of(me)
    return render_template(
        "assessment/index.html",
        me=me,
        table=table,
        month=month,
        period=period,
        error=error,
        month_value=month or (request.args.get("month") or "")[:20],
        links=score_links(table) if table else {},
        chart=chart_data(table) if table else "{}",
        may_close=(
            may_close := table is not None
            and not table["closed"]
            and service.may_close(me, city)
            and period.end < today
        ),
        missing_days=service.missing_patrol_days(month) if may_close else [],
        percent_keys=R.SHARE_KEYS,
        link_titles=LINK_TITLES,
        closed_label=fmt(datetime.fromisoformat(table["closed_at"].rstrip("Z")), current_tz())
        if table and table["closed_at"]
        else "",
        max_month=month_key(today),
    ), status


@bp.get("/")
@require("assessment.view")
def index():
    today = local_today(current_tz())
    month, error = service.month_arg(request.args.get("month"), today)
    if error:
        return _render(None, f"月份：{error}", 400)
    return _render(month, None)


@bp.get("/<month>.json")
@require("assessment.view")
def month_json(month: str):
    today = local_today(current_tz())
    key, error = service.month_arg(month, today)
    if error:
        return api_error(400, f"月份：{error}", "month")
    return jsonify(service.visible_table(current_account(), key))


@bp.post("/<month>/close")
@require("assessment.close")
def close(month: str):
    me = current_account()
    city = service.city_of(me)
    if not service.may_close(me, city):
        abort(403, description="只有市级考核管理账号可以关账")
    try:
        row = service.close_month(city, month, me, confirm_missing=request.form.get("confirm_missing") == "1")
    except service.AssessmentError as exc:
        today = local_today(current_tz())
        key, _ = service.month_arg(month, today)
        if key is None:
            return _render(None, f"月份：{exc.message}", 400)
        return _render(key, exc.message, exc.status)
    except Forbidden as exc:
        abort(403, description=exc.message)
    flash(f"{service.parse_month(row.month).label}考核已关账，结果已冻结", "info")
    return redirect(url_for("assessment.index", month=row.month))


# --- the rules --------------------------------------------------------------------------------------


def _form_values(rules: dict) -> dict[str, str]:
    values = {}
    for item in rules["indicators"]:
        for attr in ("weight", "standard", "quota"):
            if attr in item and not (item["key"] == "timeliness" and attr == "standard"):  # = timeliness.full
                values[f"{item['key']}.{attr}"] = str(item[attr])
    values["timeliness.full"] = str(rules["timeliness"]["full"])
    values["timeliness.zero"] = str(rules["timeliness"]["zero"])
    values["weakest"] = str(rules["weakest"])
    return values


def _render_rules(values: dict[str, str], errors: dict[str, str], status: int = 200):
    return render_template(
        "assessment/rules.html",
        rules=R.DEFAULT_RULES,
        values=values,
        errors=errors,
        defaults=_form_values(R.validate_rules({})),
    ), status


@bp.get("/rules")
@require("rules.edit")
def rules_page():
    return _render_rules(_form_values(service.current_rules()), {})


@bp.post("/rules")
@require("rules.edit")
def save_rules():
    values = {key: (request.form.get(key) or "").strip()[:20] for key in _form_values(R.DEFAULT_RULES)}
    errors: dict[str, str] = {}
    data: dict = {"indicators": [], "timeliness": {}}
    labels = {"weight": "权重", "standard": "标准", "quota": "达标定额"}
    for item in R.DEFAULT_RULES["indicators"]:
        entry = {"key": item["key"]}
        for attr in ("weight", "standard", "quota"):
            name = f"{item['key']}.{attr}"
            if name not in values:
                continue
            if values[name] == "":
                errors[name] = f"{item['name']}的{labels[attr]}不能为空"
            else:
                entry[attr] = values[name]
        data["indicators"].append(entry)
    for attr, label in (("full", "满分线"), ("zero", "零分线")):
        name = f"timeliness.{attr}"
        if values[name] == "":
            errors[name] = f"处理及时率{label}不能为空"
        else:
            data["timeliness"][attr] = values[name]
    try:
        data["weakest"] = int(values["weakest"])
    except ValueError:
        errors["weakest"] = "薄弱指标个数须为 0 到 10 的整数"
    if not errors:
        try:
            service.save_rules(data, current_account())
        except R.RulesError as exc:
            errors = exc.errors
    if errors:
        return _render_rules(values, errors, 400)
    flash("考核规则已保存；已关账月份仍按关账时的规则计分", "info")
    return redirect(url_for("assessment.rules_page"))
