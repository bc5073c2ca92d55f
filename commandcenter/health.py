"""GET /healthz: the state of the database and of Redis, for probes and tests.

Anyone (a load balancer, the wall's poll, a probe) gets only ``{"status": "up"}`` or
``{"status": "degraded"}``: 200 while the database answers (Redis down is degraded, reports are still
taken), 503 when the database is down. The detail — mode, database backend, the Redis state and the
exception class of a failure — tells an attacker what runs behind the service, so it is given only to
a logged-in account (session or API token) with ``ops.view``.
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from .access import current_account, has_permission, public
from .db import db
from .extensions import csrf

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@public  # on purpose: probes need no login; they get the status word only
def healthz():
    detail, status = _check()
    body = {"status": "degraded" if status != 200 or detail.get("degraded") else "up"}
    if has_permission(current_account(), "ops.view"):
        body.update(detail)
    return jsonify(body), status, {"Cache-Control": "no-store"}


def _check() -> tuple[dict, int]:
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
    return result, status


csrf.exempt(bp)
