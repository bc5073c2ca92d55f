"""The operator's pages: queues and periodic jobs (ops), and the audit log (auditor)."""

from __future__ import annotations

from flask import current_app, render_template, request
from sqlalchemy import func, select

from ..access import require
from ..audit import audit
from ..db import db
from ..models import AuditLog, JobRun, Outbox
from ..vocabulary import QUEUES
from . import bp

PAGE = 100


@bp.get("/ops")
@require("ops.view")
def ops():
    """Queues, workers, failed jobs, the last run of each periodic job, the outbox backlog."""
    settings = current_app.config["SETTINGS"]
    queues, workers, failed, redis_error = [], [], [], None
    if settings.redis_url:
        try:
            from rq import Queue, Worker
            from rq.registry import FailedJobRegistry, ScheduledJobRegistry

            from ..redis_conn import redis_client

            r = redis_client()
            for name in QUEUES:
                q = Queue(name, connection=r)
                registry = FailedJobRegistry(queue=q)
                queues.append(
                    {
                        "name": name,
                        "queued": q.count,
                        "failed": registry.count,
                        "scheduled": ScheduledJobRegistry(queue=q).count,
                    }
                )
                for job_id in registry.get_job_ids(0, 19):
                    job = q.fetch_job(job_id)
                    if job is not None:
                        failed.append(
                            {
                                "id": job.id,
                                "queue": name,
                                "func": job.func_name,
                                "ended_at": job.ended_at,
                                "error": (job.exc_info or "").strip().splitlines()[-1:],
                            }
                        )
            workers = [
                {
                    "name": w.name,
                    "state": w.get_state(),
                    "queues": ", ".join(w.queue_names()),
                    "current": (w.get_current_job() or None) and w.get_current_job().func_name,
                }
                for w in Worker.all(connection=r)
            ]
        except Exception as exc:
            redis_error = f"{exc.__class__.__name__}: {exc}"
    runs = db.execute(select(JobRun).order_by(JobRun.name)).scalars().all()
    backlog = db.execute(select(func.count(Outbox.id)).where(Outbox.processed_at.is_(None))).scalar_one()
    oldest = db.execute(select(func.min(Outbox.created_at)).where(Outbox.processed_at.is_(None))).scalar_one()
    return render_template(
        "admin/ops.html",
        queues=queues,
        workers=workers,
        failed=failed,
        runs=runs,
        backlog=backlog,
        oldest=oldest,
        redis_error=redis_error,
        mode=settings.mode,
    )


@bp.get("/audit")
@require("audit.read")
def audit_log():
    """Read-only: no route edits or deletes audit rows (and PostgreSQL refuses to)."""
    stmt = select(AuditLog).order_by(AuditLog.id.desc())
    username = (request.args.get("username") or "").strip()[:64]
    action = (request.args.get("action") or "").strip()[:40]
    if username:
        stmt = stmt.where(AuditLog.username == username)
    if action:
        stmt = stmt.where(AuditLog.action == action)
    before = request.args.get("before_id", type=int)
    if before:
        stmt = stmt.where(AuditLog.id < before)
    rows = db.execute(stmt.limit(PAGE + 1)).scalars().all()
    audit("audit.read", detail=f"username={username or '*'} action={action or '*'}", commit=True)
    return render_template(
        "admin/audit.html",
        rows=rows[:PAGE],
        username=username,
        action=action,
        next_before=rows[PAGE - 1].id if len(rows) > PAGE else None,
    )
