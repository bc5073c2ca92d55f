"""The routes of mobile/ (the rules are in the package docstring)."""

from __future__ import annotations

from datetime import date, timedelta

from flask import render_template, url_for
from sqlalchemy import func, select

from ..access import current_account, has_permission, require
from ..db import db
from ..measures import Period
from ..models import Alert, Case, Place
from ..timeutil import current_tz, local, local_today, utcnow
from . import bp

TREND_DAYS = 30


def trend_svg(trend: dict, width: int = 340, height: int = 120) -> dict:
    """Geometry of a bar chart (reports per day) with a line (closures per day) from `stats.trend`, for the
    template to draw as SVG."""
    rows = [
        {"day": date.fromisoformat(d), "reported": r, "closed": c}
        for d, r, c in zip(trend["days"], trend["reported"], trend["closed"], strict=True)
    ]
    top = max([r["reported"] for r in rows] + [r["closed"] for r in rows] + [1])
    pad_left, pad_bottom, pad_top = 4, 16, 18
    inner_w, inner_h = width - pad_left * 2, height - pad_bottom - pad_top
    step = inner_w / max(1, len(rows))
    bars, points = [], []
    for i, row in enumerate(rows):
        h = inner_h * row["reported"] / top
        x = pad_left + i * step
        bars.append(
            {
                "x": round(x + step * 0.1, 1),
                "y": round(pad_top + inner_h - h, 1),
                "w": round(step * 0.8, 1),
                "h": round(h, 1),
                "title": f"{row['day'].month}月{row['day'].day}日 上报事件 {row['reported']} 件，当期结案 {row['closed']} 件",
            }
        )
        points.append(f"{x + step / 2:.1f},{pad_top + inner_h - inner_h * row['closed'] / top:.1f}")
    labels = []
    if rows:
        for i in (0, len(rows) // 2, len(rows) - 1):
            labels.append(
                {"x": round(pad_left + i * step + step / 2, 1), "text": f"{rows[i]['day'].month}/{rows[i]['day'].day}"}
            )
    return {
        "width": width,
        "height": height,
        "bars": bars,
        "line": " ".join(points),
        "labels": labels,
        "top": top,
        "baseline": pad_top + inner_h,
        "label_y": height - 3,
    }


def open_alert_count(place: Place) -> int:
    stmt = select(func.count(Alert.id)).where(Alert.cleared_at.is_(None))
    if place.level != "city":
        town_ids = [place.town_id] if place.town_id else []
        stmt = stmt.where(Alert.town_id.in_(town_ids))
    if place.level in ("village", "grid"):  # alerts are kept per town: count those of the place's cases
        column = Case.village_id if place.level == "village" else Case.grid_id
        stmt = stmt.join(Case, Case.id == Alert.case_id).where(column == place.id)
    return db.scalar(stmt) or 0


def town_ranking(place: Place) -> dict | None:
    """Last month's assessment (the last complete one; frozen once the month is closed): every town for a
    city account, the own row with its rank for a town account."""
    from ..assessment.service import last_month, month_table

    city = db.get(Place, place.city_id) if place.city_id else None
    if city is None:
        return None
    month = last_month(local_today(current_tz()))
    table = month_table(city, month)
    rows = table["rows"]
    if place.level != "city":
        rows = [r for r in rows if r["town_id"] == place.town_id]
    return {"rows": rows, "towns": len(table["rows"]), "month": int(month[5:]), "closed": table.get("closed")}


@bp.get("/")
@require("mobile.view")
def index():
    from .. import stats

    me = current_account()
    place = me.place
    tz = current_tz()
    today = local_today(tz)
    day = Period(today, today, "day")
    month = Period(today.replace(day=1), today, "month")
    trend_period = Period(today - timedelta(days=TREND_DAYS - 1), today, "custom")
    return render_template(
        "mobile/index.html",
        me=me,
        place=place,
        today=today,
        now_local=local(utcnow(), tz),
        day=stats.figures(place, day),
        month=stats.figures(place, month),
        alerts=open_alert_count(place),
        ranking=town_ranking(place),
        alerts_url=url_for("alerts.index") if has_permission(me, "alert.ack") else None,
        trend=trend_svg(stats.trend(place, trend_period)),
    )
