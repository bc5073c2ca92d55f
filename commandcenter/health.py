"""GET /healthz: the state of the database and of Redis, for probes and tests."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from .access import public
from .db import db
from .extensions import csrf

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@public
def healthz():
    settings = current_app.config["SETTINGS"]
    result = {"mode": settings.mode, "database": "ok", "redis": "not configured"}
    status = 200
    try:
        db.execute(text("SELECT 1"))
        result["database_backend"] = db.get_bind().dialect.name
    except Exception as exc:  # report, never raise: this is the page that says what is down
        db.rollback()
        result["database"] = f"down: {exc.__class__.__name__}"
        status = 503
    if settings.redis_url:
        from .redis_conn import redis_client

        try:
            redis_client().ping()
            result["redis"] = "ok"
        except Exception as exc:
            result["redis"] = f"down: {exc.__class__.__name__}"
            result["degraded"] = True  # reports are still accepted; follow-up work waits in the outbox
    return jsonify(result), status


csrf.exempt(bp)
