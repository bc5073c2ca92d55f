"""Building a bulletin is a job: on the RQ queue "reports" in server mode, in a thread in embedded mode.

The same `run_build` runs in both. It moves the row to running, records its progress after each step
(collect figures → tables → rankings → stories → render .docx → store), committing each, and ends in done
or failed (the error kept on the row and shown; a failed build can be requested again). `request_build`
refuses a second build while one is queued or running, by a conditional UPDATE, so two clicks (or two web
processes) start one job. A build that stopped reporting for STALE_MINUTES (a killed worker) may be restarted.
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import timedelta

from flask import Flask, current_app
from sqlalchemy import or_, update

from ..db import db
from ..models import Account, Bulletin
from ..timeutil import utcnow
from ..vocabulary import QUEUE_REPORTS
from . import builder
from . import docx as docx_render

log = logging.getLogger(__name__)
QUEUE = QUEUE_REPORTS
JOB = "workers.jobs.build_bulletin"
JOB_TIMEOUT = 600
STALE_MINUTES = 15
ERROR_MAX = 1000
_threads: dict[int, threading.Thread] = {}


def fail_interrupted_builds() -> int:
    """Embedded mode, at start: a build that was queued or running in the previous process's thread is
    gone with it. Say so at once, instead of showing 生成中 until the stale window has passed, so that
    the person can build again. (In server mode the job waits in RQ and survives a web restart.)"""
    count = db.execute(
        update(Bulletin)
        .where(Bulletin.status.in_(("queued", "running")))
        .values(
            status="failed",
            progress_note="服务重启，生成已中断",
            updated_at=utcnow(),
            error="生成过程中服务重启，生成已中断，请重新生成",
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    db.commit()
    if count:
        log.warning("%d bulletin build(s) interrupted by the restart marked failed", count)
    return count


def request_build(bulletin_id: int, account: Account | None) -> bool:
    """Queue a build unless one is already queued or running. True when this call queued it."""
    now = utcnow()
    stale = now - timedelta(minutes=STALE_MINUTES)
    claimed = db.execute(
        update(Bulletin)
        .where(
            Bulletin.id == bulletin_id, or_(Bulletin.status.not_in(("queued", "running")), Bulletin.updated_at < stale)
        )
        .values(
            status="queued",
            progress=0,
            progress_note="排队等待生成",
            error=None,
            job_id=None,
            updated_at=now,
            updated_by_id=account.id if account else None,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if not claimed:
        db.rollback()
        return False
    db.commit()
    try:
        job_id = enqueue(bulletin_id)
    except Exception as exc:  # Redis unreachable: say so on the row; the person may try again
        log.warning("could not enqueue the build of bulletin %s: %s", bulletin_id, exc.__class__.__name__)
        db.execute(
            update(Bulletin)
            .where(Bulletin.id == bulletin_id)
            .values(
                status="failed",
                progress_note="未能加入任务队列",
                updated_at=utcnow(),
                error=f"任务队列不可用（{exc.__class__.__name__}），请稍后重试",
            )
            .execution_options(synchronize_session=False)
        )
        db.commit()
        return False
    db.execute(
        update(Bulletin)
        .where(Bulletin.id == bulletin_id)
        .values(job_id=job_id)
        .execution_options(synchronize_session=False)
    )
    db.commit()
    db.expire_all()
    return True


def enqueue(bulletin_id: int) -> str:
    settings = current_app.config["SETTINGS"]
    if settings.redis_url:
        from rq import Queue

        from ..redis_conn import redis_client

        job = Queue(QUEUE, connection=redis_client()).enqueue(
            JOB,
            bulletin_id,
            job_timeout=JOB_TIMEOUT,
            result_ttl=24 * 3600,
            failure_ttl=7 * 24 * 3600,
            description=f"月度通报 #{bulletin_id}",
        )
        return job.id
    app = current_app._get_current_object()
    thread = threading.Thread(target=_in_thread, args=(app, bulletin_id), name=f"bulletin-{bulletin_id}", daemon=True)
    _threads[bulletin_id] = thread
    thread.start()
    return f"embedded-{uuid.uuid4().hex[:12]}"


def _in_thread(app: Flask, bulletin_id: int) -> None:
    with app.app_context():
        try:
            run_build(bulletin_id)
        finally:
            db.remove()


def wait_for_threads(timeout: float = 60) -> None:
    """Embedded mode: wait for the builds started by this process (tests, orderly shutdown)."""
    for bulletin_id, thread in list(_threads.items()):
        thread.join(timeout)
        if not thread.is_alive():
            _threads.pop(bulletin_id, None)


def run_build(bulletin_id: int) -> str:
    """Build the content and the .docx of a bulletin; returns the final status (done / failed)."""
    bulletin = db.get(Bulletin, bulletin_id)
    if bulletin is None:
        log.warning("bulletin %s vanished before its build", bulletin_id)
        return "missing"

    def progress(percent: int, note: str) -> None:
        bulletin.status, bulletin.progress, bulletin.progress_note = "running", percent, note
        db.commit()

    try:
        progress(5, "开始生成")
        content = builder.build(bulletin, progress)
        progress(85, "生成 Word 文档")
        data = docx_render.render(content)
        progress(95, "保存通报")
        bulletin.content, bulletin.docx, bulletin.built_at = content, data, utcnow()
        bulletin.status, bulletin.progress, bulletin.progress_note, bulletin.error = "done", 100, "生成完成", None
        db.commit()
        log.info("bulletin %s built: %s tables, %s bytes", bulletin_id, content.get("tables"), len(data))
        return "done"
    except Exception as exc:
        log.exception("building bulletin %s failed", bulletin_id)
        db.rollback()
        bulletin = db.get(Bulletin, bulletin_id)
        bulletin.status, bulletin.progress_note = "failed", "生成失败"
        bulletin.error = f"{exc.__class__.__name__}: {exc}"[:ERROR_MAX]
        db.commit()
        return "failed"
