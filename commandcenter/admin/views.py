"""The routes of admin/ (the rules are in the package docstring)."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import func, select

from .. import labels
from ..access import current_account, require
from ..audit import audit
from ..db import db
from ..models import Account, AuditLog, JobRun, Outbox, Place
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


@bp.get("/accounts")
@require("account.manage")
def accounts():
    q = (request.args.get("q") or "").strip()[:64]
    stmt = select(Account).order_by(Account.username).limit(200)
    if q:
        stmt = stmt.where(
            Account.username.contains(q, autoescape=True) | Account.display_name.contains(q, autoescape=True)
        )
    rows = db.execute(stmt).scalars().all()
    places = {p.id: p for p in db.execute(select(Place).where(Place.id.in_({a.place_id for a in rows}))).scalars()}
    return render_template("admin/accounts.html", rows=rows, places=places, q=q, L=labels)


@bp.post("/accounts/<int:account_id>/active")
@require("account.manage")
def set_active(account_id: int):
    """Disable a redundant or expired account (or enable it again) — under the rules of
    accounts.set_account_active: never one's own, never a security administrator's or auditor's, never the
    last active one of the three administrator roles."""
    return _change_active(account_id, url_for("admin.accounts", q=request.args.get("q", "")))


def _change_active(account_id: int, back: str):
    """The one path of both pages (system and security administrator) to enable or disable an account."""
    from ..accounts import AccountError, set_account_active

    account = db.get(Account, account_id)
    if account is None:
        abort(404)
    active = request.form.get("active") == "1"
    try:
        set_account_active(current_account(), account, active)
    except AccountError as exc:
        db.rollback()
        audit(
            "account.enable" if active else "account.disable",
            "account",
            account_id,
            success=False,
            detail=exc.message,
            commit=True,
        )
        flash(exc.message, "error")
        return redirect(back)
    db.commit()
    flash(f"账号 {account.username} 已{'启用' if account.active else '停用'}", "info")
    return redirect(back)


@bp.context_processor
def _account_rules():
    """accounts.active_refusal for the templates: a button that would be refused is not shown."""
    from ..accounts import active_counts, active_refusal

    return {"active_refusal": active_refusal, "active_counts": active_counts}


# --- the security administrator: guessing alerts, login locks, the administrators' own accounts ------------


@bp.get("/security")
@require("account.lock")
def security():
    """Open alerts (failed logins from many addresses), the current login locks (per account and address),
    and the security administrator and auditor accounts, which only this role enables or disables."""
    from ..models import LoginLock, SecurityAlert
    from ..timeutil import utcnow

    now = utcnow()
    alerts = (
        db.execute(
            select(SecurityAlert)
            .where(SecurityAlert.acknowledged_at.is_(None))
            .order_by(SecurityAlert.at.desc())
            .limit(PAGE)
        )
        .scalars()
        .all()
    )
    done = (
        db.execute(
            select(SecurityAlert)
            .where(SecurityAlert.acknowledged_at.is_not(None))
            .order_by(SecurityAlert.acknowledged_at.desc())
            .limit(20)
        )
        .scalars()
        .all()
    )
    locks = (
        db.execute(
            select(LoginLock).where(LoginLock.locked_until > now).order_by(LoginLock.locked_until.desc()).limit(PAGE)
        )
        .scalars()
        .all()
    )
    guarded = (
        db.execute(
            select(Account)
            .where(Account.role.in_(("security_admin", "auditor")))
            .order_by(Account.role, Account.username)
        )
        .scalars()
        .all()
    )
    ids = {a.account_id for a in alerts + done} | {a.acknowledged_by_id for a in done} | {lk.account_id for lk in locks}
    names = dict(db.execute(select(Account.id, Account.username).where(Account.id.in_(ids - {None}))).all())
    return render_template(
        "admin/security.html", alerts=alerts, done=done, locks=locks, guarded=guarded, names=names, now=now, L=labels
    )


@bp.post("/security/alerts/<int:alert_id>/ack")
@require("account.lock")
def acknowledge_alert(alert_id: int):
    from ..models import SecurityAlert
    from ..timeutil import utcnow

    alert = db.execute(select(SecurityAlert).where(SecurityAlert.id == alert_id).with_for_update()).scalar_one_or_none()
    if alert is None:
        abort(404)
    if alert.acknowledged_at is not None:
        flash("该告警已由他人确认", "info")
        return redirect(url_for("admin.security"))
    alert.acknowledged_at = utcnow()
    alert.acknowledged_by_id = current_account().id
    note = (request.form.get("note") or "").strip()[:200]
    audit("security.alert_ack", "security_alert", alert.id, detail=note or None)
    db.commit()
    flash("告警已确认", "info")
    return redirect(url_for("admin.security"))


@bp.post("/security/locks/<int:account_id>/lift")
@require("account.lock")
def lift_lock(account_id: int):
    """Lift the login lock of an account from one address (the owner called; the address is known)."""
    from ..models import LoginLock
    from ..timeutil import utcnow

    address = (request.form.get("address") or "")[:64]
    lock = db.get(LoginLock, (account_id, address))
    if lock is None or lock.locked_until is None or lock.locked_until <= utcnow():
        flash("该锁定已过期或已解除", "info")
        return redirect(url_for("admin.security"))
    account = db.get(Account, account_id)
    db.delete(lock)
    audit(
        "login.unlock",
        "account",
        account_id,
        detail=f"解除 {account.username if account else account_id} 从 {address} 登录的锁定",
    )
    db.commit()
    flash(f"已解除 {account.username if account else account_id} 从 {address} 登录的锁定", "info")
    return redirect(url_for("admin.security"))


@bp.post("/security/accounts/<int:account_id>/active")
@require("account.lock")
def security_set_active(account_id: int):
    """The security administrator enables or disables security administrator and auditor accounts."""
    return _change_active(account_id, url_for("admin.security"))


@bp.route("/accounts/<int:account_id>/tokens", methods=["GET", "POST"])
@require("account.manage")
def account_tokens(account_id: int):
    """An account's API tokens, revocable by the system administrator (a lost phone, a leaver)."""
    from ..auth.service import active_tokens, revoke_token

    account = db.get(Account, account_id)
    if account is None:
        abort(404)
    if request.method == "POST":
        token = revoke_token(current_account(), request.form.get("token_id", type=int) or 0)
        if token is None or token.account_id != account.id:
            db.rollback()
            abort(404)
        db.commit()
        flash(f"已吊销 {account.username} 的访问令牌「{token.name}」", "info")
        return redirect(url_for("admin.account_tokens", account_id=account.id))
    return render_template("admin/account_tokens.html", account=account, tokens=active_tokens(account))


@bp.route("/calendar", methods=["GET", "POST"])
@require("calendar.edit")
def calendar():
    """工作日历: the years the city holds, a year's holidays and make-up workdays, and the import of the State
    Council's notice (CSV or JSON, formats in commandcenter/calendar_notice.py and docs/operations.md)."""
    from .. import calendar_notice as notice
    from ..inputs import DATE_MAX, DATE_MIN
    from ..timeutil import local_today
    from ..workcalendar import library_years

    problems: list[str] = []
    if request.method == "POST":
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            problems = ["file：请选择国务院节假日安排通知的 CSV 或 JSON 文件"]
        else:
            data = upload.stream.read(256 * 1024 + 1)
            try:
                if len(data) > 256 * 1024:
                    raise notice.NoticeError(["file：文件不能超过 256 KB"])
                days, note = notice.parse(upload.filename, data)
                note = (request.form.get("note") or "").strip()[: notice.NOTE_MAX] or note
                done = notice.load_year(current_account(), days, note)
            except notice.NoticeError as exc:
                db.rollback()
                problems = exc.problems
                audit(
                    "calendar.import",
                    "calendar_year",
                    None,
                    success=False,
                    detail="；".join(problems)[:500],
                    commit=True,
                )
            else:
                flash(
                    f"已导入 {done['year']} 年工作日历：放假 {done['holidays']} 天，调休上班 {done['workdays']} 天；"
                    f"重新计算按假定日历计算的时限 {done['recomputed']} 件",
                    "info",
                )
                return redirect(url_for("admin.calendar", year=done["year"]))
    today = local_today()
    year = request.args.get("year", type=int) or today.year
    if not DATE_MIN.year <= year <= DATE_MAX.year:
        year = today.year
    return render_template(
        "admin/calendar.html",
        years=notice.held_years(),
        library=library_years(),
        year=year,
        rows=notice.year_rows(year),
        problems=problems,
    ), 400 if problems else 200
