"""The gridworker app's daily work: heartbeat (online), sign-in (签到), patrol (巡查), visit (走访)."""

from __future__ import annotations

import math

from flask import current_app, jsonify

from .. import fieldwork
from ..access import current_account, require
from ..ratelimit import intake_limited
from . import bp
from .schemas import HeartbeatIn, PatrolIn, SignInIn, VisitIn
from .views import _rate_key, iso, parse, to_utc_naive


def finite(value: float | None) -> float | None:
    """NaN and ±Infinity are not JSON (RFC 8259): they are answered as null."""
    return value if value is None or math.isfinite(value) else None


@bp.post("/heartbeats")
@require("case.report")
@intake_limited(_rate_key)
def heartbeat():
    """The app's heartbeat. Most of them are answered by the lane before this view (api/lane.py), alike."""
    body: HeartbeatIn = parse(HeartbeatIn)
    fieldwork.heartbeat(current_account(), body.lat, body.lon)
    return no_content()


def no_content():
    """204, without a Content-Type (there is no content), as the heartbeat's lane answers it."""
    response = current_app.response_class(status=204)
    del response.headers["Content-Type"]
    return response


@bp.post("/sign-ins")
@require("case.report")
@intake_limited(_rate_key)
def sign_in():
    body: SignInIn = parse(SignInIn)
    row, created = fieldwork.sign_in(current_account(), body.lat, body.lon, at=to_utc_naive(body.at))
    return jsonify({"day": row.day.isoformat(), "at": iso(row.at), "created": created}), 201 if created else 200


@bp.post("/patrols")
@require("case.report")
@intake_limited(_rate_key)
def patrol():
    body: PatrolIn = parse(PatrolIn)
    row, created = fieldwork.record_patrol(
        current_account(),
        body.client_key,
        to_utc_naive(body.started_at),
        to_utc_naive(body.ended_at),
        [list(p) for p in body.track],
    )
    minutes = round((row.ended_at - row.started_at).total_seconds() / 60, 1) if row.ended_at else None
    # a row written before the track rules (or imported) may hold NaN/Infinity: never put it in JSON
    return jsonify(
        {"id": row.id, "minutes": finite(minutes), "distance_m": finite(row.distance_m), "created": created}
    ), 201 if created else 200


@bp.post("/visits")
@require("person.view")
@intake_limited(_rate_key)
def visit():
    body: VisitIn = parse(VisitIn)
    row, created = fieldwork.record_visit(
        current_account(),
        body.client_key,
        to_utc_naive(body.at),
        body.person_id,
        body.site_id,
        body.note,
        body.lat,
        body.lon,
    )
    return jsonify({"id": row.id, "created": created}), 201 if created else 200
