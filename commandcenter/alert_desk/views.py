"""The routes of the alert desk."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for
from sqlalchemy import select

from .. import alerts
from ..access import current_account, in_jurisdiction, require, scope
from ..audit import audit
from ..db import db
from ..models import Alert, Case
from ..timeutil import utcnow
from . import bp


@bp.get("/")
@require("alert.ack")
def index():
    stmt = (
        select(Alert, Case)
        .join(Case, Case.id == Alert.case_id)
        .where(Alert.cleared_at.is_(None))
        .order_by(Alert.due_at)
        .limit(300)
    )
    rows = db.execute(scope(stmt, current_account(), Case)).all()
    return render_template("alerts/index.html", rows=rows, now=utcnow())


@bp.post("/<int:alert_id>/ack")
@require("alert.ack")
def acknowledge(alert_id: int):
    alert = db.get(Alert, alert_id)
    case = db.get(Case, alert.case_id) if alert else None
    if alert is None or not in_jurisdiction(
        current_account(), grid_id=case.grid_id, village_id=case.village_id, town_id=case.town_id
    ):
        abort(404)
    audit("alert.ack", "alert", alert.id)
    alerts.acknowledge(alert, current_account(), utcnow())
    flash(f"已确认预警：{case.number}", "info")
    return redirect(url_for("alerts.index"))
