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
    if request.args.get("back") == "page":
        return _change_active(account_id, url_for("admin.account_page", account_id=account_id))
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
    if request.args.get("back") == "page":
        return _change_active(account_id, url_for("admin.security_account_page", account_id=account_id))
    return _change_active(account_id, url_for("admin.security"))


@bp.route("/accounts/<int:account_id>/tokens", methods=["GET", "POST"])
@require("account.manage")
def account_tokens(account_id: int):
    """An account's API tokens, revocable by the system administrator (a lost phone, a leaver): folded into the
    account's page (GET shows it; POST revokes one token and returns there)."""
    return _account_tokens("admin", account_id)


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


# --- an account's page: create, edit, reset the password, unlock, move, sessions and tokens (issue 13 §4) ---------
# Two areas with the same pages (三权分立): the system administrator's under /admin/accounts (account.manage) for
# every account but security_admin and auditor accounts, the security administrator's under /admin/security/accounts
# (account.lock) for those two roles only. The rules themselves are in commandcenter/accounts.py.

ACCOUNT_AREAS = {
    "admin": ("", "account.manage"),  # endpoint prefix, permission
    "security": ("security_", "account.lock"),
}


def _area_url(area: str, endpoint: str, **values) -> str:
    return url_for(f"admin.{ACCOUNT_AREAS[area][0]}{endpoint}", **values)


def _account_or_404(account_id: int) -> Account:
    account = db.get(Account, account_id)
    if account is None:
        abort(404)
    return account


def _form_choices() -> dict:
    """The places (grouped by town, in code order), centers and departments the forms offer."""
    from ..models import Center, Department

    places = db.execute(select(Place).where(Place.active.is_(True)).order_by(Place.code)).scalars().all()
    groups: list[tuple[str, list[Place]]] = []
    by_town: dict[int | None, list[Place]] = {}
    for place in places:
        key = None if place.level == "city" else place.town_id
        if key not in by_town:
            by_town[key] = []
            groups.append(("市级" if key is None else place.name, by_town[key]))
        by_town[key].append(place)
    grids = [p for p in places if p.level == "grid"]
    centers = db.execute(select(Center).order_by(Center.level, Center.name)).scalars().all()
    departments = db.execute(select(Department).order_by(Department.code)).scalars().all()
    return {"place_groups": groups, "grids": grids, "centers": centers, "departments": departments}


def _account_fields(form) -> dict:
    """The form's values as update_account/add_account arguments: objects looked up by id (an unknown id is
    refused naming the field); post, center and department only where the chosen role has them."""
    from ..accounts import AccountError
    from ..models import Center, Department

    def lookup(model, name: str, label: str):
        raw = (form.get(name) or "").strip()
        if not raw:
            return None
        row = db.get(model, int(raw)) if raw.isdigit() else None
        if row is None:
            raise AccountError(name.removesuffix("_id"), f"{label}不存在")
        return row

    role = (form.get("role") or "").strip()[:20]
    return {
        "role": role,
        "display_name": (form.get("display_name") or "").strip()[:65],
        "phone": (form.get("phone") or "").strip()[:21] or None,
        "place": lookup(Place, "place_id", "所属区划"),
        "post": ((form.get("post") or "").strip()[:20] or None) if role == "gridworker" else None,
        "center": lookup(Center, "center_id", "综治中心") if role == "center_admin" else None,
        "department": lookup(Department, "department_id", "职能部门") if role == "department" else None,
    }


def _refused(action: str, account_id, exc) -> None:
    db.rollback()
    audit(action, "account", account_id, success=False, detail=f"{exc.field}: {exc.message}"[:500], commit=True)


def _render_account(area: str, account: Account, errors: dict | None = None, values: dict | None = None):
    from ..accounts import may_hold, may_manage
    from ..auth.service import active_tokens
    from ..models import Center, Department, LoginLock, WebSession
    from ..timeutil import utcnow

    actor = current_account()
    manageable = may_manage(actor, account)
    sessions = locks = tokens = []
    if manageable:
        sessions = (
            db.execute(
                select(WebSession)
                .where(WebSession.account_id == account.id, WebSession.ended_at.is_(None))
                .order_by(WebSession.last_seen_at.desc())
            )
            .scalars()
            .all()
        )
        locks = db.execute(select(LoginLock).where(LoginLock.account_id == account.id)).scalars().all()
        tokens = active_tokens(account)
    return render_template(
        "admin/account.html",
        area=area,
        ep=ACCOUNT_AREAS[area][0],
        account=account,
        manageable=manageable,
        roles=[r for r in labels.ROLE if may_hold(actor, r)],
        center=db.get(Center, account.center_id) if account.center_id else None,
        department=db.get(Department, account.department_id) if account.department_id else None,
        sessions=sessions,
        locks=locks,
        tokens=tokens,
        now=utcnow(),
        idle_minutes=current_app.config["SETTINGS"].session_idle_minutes,
        errors=errors or {},
        values=values or {},
        L=labels,
        **_form_choices(),
    ), 400 if errors else 200


def _one_time_page(area: str, account: Account, password: str, created: bool):
    """The answer page that shows a one-time password, once: it is in no redirect, flash, log or later page."""
    return render_template(
        "admin/account_password.html",
        area=area,
        ep=ACCOUNT_AREAS[area][0],
        account=account,
        password=password,
        created=created,
        L=labels,
    )


def _account_new(area: str):
    from ..accounts import AccountError, add_account, may_hold

    actor = current_account()
    errors: dict[str, str] = {}
    values = {k: (request.form.get(k) or "") for k in request.form if k != "csrf_token"}
    if request.method == "POST":
        username = (request.form.get("username") or "").strip()[:65]
        try:
            fields = _account_fields(request.form)
            account, password = add_account(actor, username=username, **fields)
        except AccountError as exc:
            _refused("account.create", username or None, exc)
            errors[exc.field] = exc.message
        else:
            db.commit()
            return _one_time_page(area, account, password, created=True)
    return render_template(
        "admin/account_new.html",
        area=area,
        ep=ACCOUNT_AREAS[area][0],
        roles=[r for r in labels.ROLE if may_hold(actor, r)],
        errors=errors,
        values=values,
        L=labels,
        **_form_choices(),
    ), 400 if errors else 200


def _account_edit(area: str, account_id: int):
    from ..accounts import AccountError, update_account

    account = _account_or_404(account_id)
    try:
        fields = _account_fields(request.form)
        if fields["phone"] is None:
            del fields["phone"]  # the form shows the number masked (PIPL): left empty, it stays as it is
        changed = update_account(current_account(), account, **fields)
    except AccountError as exc:
        _refused("account.update", account_id, exc)
        values = {k: (request.form.get(k) or "") for k in request.form if k != "csrf_token"}
        return _render_account(area, _account_or_404(account_id), {exc.field: exc.message}, values)
    db.commit()
    flash(f"账号 {account.username} 已保存" if changed else "没有需要保存的修改", "info")
    return redirect(_area_url(area, "account_page", account_id=account.id))


def _account_reset(area: str, account_id: int):
    from ..accounts import AccountError, reset_password

    account = _account_or_404(account_id)
    try:
        password = reset_password(current_account(), account)  # commits (its sessions and tokens end with it)
    except AccountError as exc:
        _refused("password.reset", account_id, exc)
        flash(exc.message, "error")
        return redirect(_area_url(area, "account_page", account_id=account_id))
    return _one_time_page(area, account, password, created=False)


def _account_unlock(area: str, account_id: int):
    from ..accounts import AccountError, unlock_account

    account = _account_or_404(account_id)
    try:
        lifted = unlock_account(current_account(), account)
    except AccountError as exc:
        _refused("login.unlock", account_id, exc)
        flash(exc.message, "error")
    else:
        db.commit()
        flash(f"已解除 {account.username} 的 {lifted} 处登录锁定" if lifted else "该账号没有登录锁定", "info")
    return redirect(_area_url(area, "account_page", account_id=account_id))


def _account_move(area: str, account_id: int):
    from ..accounts import AccountError, move_gridworker

    account = _account_or_404(account_id)
    grid_id = request.form.get("grid_id", type=int)
    try:
        moved = move_gridworker(current_account(), account, db.get(Place, grid_id) if grid_id else None)
    except AccountError as exc:
        _refused("account.move", account_id, exc)
        flash(exc.message, "error")
    else:
        db.commit()
        flash(
            f"{account.display_name} 已调整到 {account.place.name}；此前的事件、巡查和走访仍记在其本人和原网格名下"
            if moved
            else "网格未变",
            "info",
        )
    return redirect(_area_url(area, "account_page", account_id=account_id))


def _account_end_session(area: str, account_id: int):
    from ..accounts import AccountError, end_account_session

    account = _account_or_404(account_id)
    try:
        ended = end_account_session(current_account(), account, (request.form.get("session_id") or "")[:64])
    except AccountError as exc:
        _refused("session.end", account_id, exc)
        flash(exc.message, "error")
    else:
        flash("登录会话已结束" if ended else "该会话已结束", "info")
    return redirect(_area_url(area, "account_page", account_id=account_id))


def _account_tokens(area: str, account_id: int):
    from ..accounts import AccountError, revoke_account_token

    account = _account_or_404(account_id)
    if request.method == "GET":
        return _render_account(area, account)
    try:
        token = revoke_account_token(current_account(), account, request.form.get("token_id", type=int) or 0)
    except AccountError as exc:
        _refused("api_token.revoke", account_id, exc)
        flash(exc.message, "error")
        return redirect(_area_url(area, "account_page", account_id=account_id))
    if token is None:
        db.rollback()
        abort(404)
    db.commit()
    flash(f"已吊销 {account.username} 的访问令牌「{token.name}」", "info")
    return redirect(_area_url(area, "account_page", account_id=account.id))


@bp.route("/accounts/new", methods=["GET", "POST"])
@require("account.manage")
def account_new():
    """Create an account; its one-time password is shown once on the answer page."""
    return _account_new("admin")


@bp.get("/accounts/<int:account_id>")
@require("account.manage")
def account_page(account_id: int):
    """An account: its fields (editable), password reset, unlock, enable/disable, grid, sessions and tokens."""
    return _render_account("admin", _account_or_404(account_id))


@bp.post("/accounts/<int:account_id>/edit")
@require("account.manage")
def account_edit(account_id: int):
    return _account_edit("admin", account_id)


@bp.post("/accounts/<int:account_id>/password")
@require("account.manage")
def account_reset_password(account_id: int):
    return _account_reset("admin", account_id)


@bp.post("/accounts/<int:account_id>/unlock")
@require("account.manage")
def account_unlock(account_id: int):
    return _account_unlock("admin", account_id)


@bp.post("/accounts/<int:account_id>/move")
@require("account.manage")
def account_move(account_id: int):
    return _account_move("admin", account_id)


@bp.post("/accounts/<int:account_id>/sessions/end")
@require("account.manage")
def account_end_session(account_id: int):
    return _account_end_session("admin", account_id)


@bp.route("/security/accounts/new", methods=["GET", "POST"])
@require("account.lock")
def security_account_new():
    """The security administrator creates security administrator and auditor accounts (三权分立)."""
    return _account_new("security")


@bp.get("/security/accounts/<int:account_id>")
@require("account.lock")
def security_account_page(account_id: int):
    return _render_account("security", _account_or_404(account_id))


@bp.post("/security/accounts/<int:account_id>/edit")
@require("account.lock")
def security_account_edit(account_id: int):
    return _account_edit("security", account_id)


@bp.post("/security/accounts/<int:account_id>/password")
@require("account.lock")
def security_account_reset_password(account_id: int):
    return _account_reset("security", account_id)


@bp.post("/security/accounts/<int:account_id>/unlock")
@require("account.lock")
def security_account_unlock(account_id: int):
    return _account_unlock("security", account_id)


@bp.post("/security/accounts/<int:account_id>/sessions/end")
@require("account.lock")
def security_account_end_session(account_id: int):
    return _account_end_session("security", account_id)


@bp.route("/security/accounts/<int:account_id>/tokens", methods=["GET", "POST"])
@require("account.lock")
def security_account_tokens(account_id: int):
    return _account_tokens("security", account_id)


# --- 事件类别: the category tree (rules in commandcenter/category_admin.py) ---------------------------------


def _category_or_404(category_id: int):
    from ..models import Category

    category = db.get(Category, category_id)
    if category is None:
        abort(404)
    return category


def _category_refused(action: str, object_id, exc) -> None:
    db.rollback()
    audit(action, "category", object_id, success=False, detail=exc.message[:500], commit=True)


@bp.get("/categories")
@require("category.edit")
def categories():
    """The tree (big class → small class → item) with kind, limits and state; install, export, import."""
    return _categories_page()


def _categories_page(problems: list[str] | None = None, status: int = 200):
    from .. import category_admin as ca

    counts = ca.case_counts()
    return render_template(
        "admin/categories.html", tree=ca.tree(), counts=counts, ca=ca, L=labels, problems=problems or []
    ), status


@bp.post("/categories/install-default")
@require("category.edit")
def categories_install_default():
    from .. import category_admin as ca

    if not ca.is_empty():
        flash("类别表已有数据，未安装默认类别树", "info")
        return redirect(url_for("admin.categories"))
    added = ca.install_default(current_account())
    flash(f"已安装国家默认类别树：已添加 {added} 个类别", "info")
    return redirect(url_for("admin.categories"))


@bp.get("/categories/export")
@require("category.edit")
def categories_export():
    from .. import category_admin as ca
    from ..timeutil import local_today

    body = ca.export_json()
    audit("category.export", "category", None, detail=f"导出 {len(ca.export_items())} 个类别", commit=True)
    return current_app.response_class(
        body,
        mimetype="application/json",
        headers={"Content-Disposition": f'attachment; filename="categories-{local_today().isoformat()}.json"'},
    )


@bp.post("/categories/import")
@require("category.edit")
def categories_import():
    from .. import category_admin as ca

    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _categories_page(["file：请选择事件类别 JSON 文件（本系统导出的格式）"], 400)
    try:
        if not upload.filename.lower().endswith(".json"):
            raise ca.CategoryError(problems=["file：文件须为 .json"])
        items, text = ca.parse_import(upload.stream.read(ca.IMPORT_MAX_BYTES + 1))
        done = ca.import_items(current_account(), items, text)
    except ca.CategoryError as exc:
        db.rollback()
        if not exc.audited:
            audit("category.import", "category", None, success=False, detail=exc.message[:500], commit=True)
        return _categories_page(exc.problems, 400)
    flash(f"已导入：新增 {done['added']} 个，修改 {done['updated']} 个，未变 {done['unchanged']} 个", "info")
    return redirect(url_for("admin.categories"))


def _category_form(category=None, parent=None, values=None, errors=None, status=200):
    from .. import category_admin as ca
    from ..models import Category

    movable_to = []
    if category is not None and category.depth > 1:
        movable_to = (
            db.execute(
                select(Category)
                .where(Category.depth == category.depth - 1, Category.id != category.parent_id)
                .order_by(Category.code)
            )
            .scalars()
            .all()
        )
    source = category or parent
    if values is None:
        values = {f: getattr(source, f) for f in ca.VALUE_FIELDS} if source is not None else dict(ca.DEFAULTS)
        if category is None:
            values["name"] = ""
            values["code"] = ca.free_code(parent) or ""
    return render_template(
        "admin/categories_form.html",
        category=category,
        parent=parent if category is None else (db.get(Category, category.parent_id) if category.parent_id else None),
        values=values,
        errors=errors or {},
        movable_to=movable_to,
        deletable=category is not None and ca.deletable(category),
        ca=ca,
        L=labels,
    ), status


@bp.route("/categories/new", methods=["GET", "POST"])
@require("category.edit")
def category_new():
    """Add a big class (no parent), or a small class / item under ?parent=<id>."""
    from .. import category_admin as ca
    from ..inputs import parse_id

    parent_id = parse_id(request.args.get("parent"))
    parent = _category_or_404(parent_id) if parent_id else None
    if request.method == "POST":
        values = {f: request.form.get(f) for f in ("code", *ca.VALUE_FIELDS)}
        try:
            category = ca.create(current_account(), parent, values)
        except ca.CategoryError as exc:
            _category_refused("category.create", None, exc)
            return _category_form(parent=parent, values=values, errors=exc.errors, status=400)
        flash(f"已添加{ca.DEPTH_NAME[category.depth]} {category.code} {category.name}", "info")
        return redirect(url_for("admin.categories") + f"#c{category.code}")
    return _category_form(parent=parent)


@bp.route("/categories/<int:category_id>", methods=["GET", "POST"])
@require("category.edit")
def category_edit(category_id: int):
    """Rename, kind, limits, escalation, warning, conditions (applies to new cases only)."""
    from .. import category_admin as ca

    category = _category_or_404(category_id)
    if request.method == "POST":
        values = {f: request.form.get(f) for f in ca.VALUE_FIELDS}
        try:
            ca.update(current_account(), category, values)
        except ca.CategoryError as exc:
            _category_refused("category.update", category_id, exc)
            return _category_form(_category_or_404(category_id), values=values, errors=exc.errors, status=400)
        flash(f"已保存 {category.code} {category.name}（对此后上报的事件生效，已有事件保留原时限）", "info")
        return redirect(url_for("admin.categories") + f"#c{category.code}")
    return _category_form(category)


@bp.post("/categories/<int:category_id>/move")
@require("category.edit")
def category_move(category_id: int):
    from .. import category_admin as ca
    from ..inputs import parse_id

    category = _category_or_404(category_id)
    parent_id = parse_id(request.form.get("parent_id"))
    parent = _category_or_404(parent_id) if parent_id else None
    old_code = category.code
    try:
        ca.move(current_account(), category, parent, request.form.get("code"))
    except ca.CategoryError as exc:
        _category_refused("category.move", category_id, exc)
        category = _category_or_404(category_id)
        values = {f: getattr(category, f) for f in ca.VALUE_FIELDS}
        return _category_form(category, values=values, errors=exc.errors, status=400)
    flash(f"已将 {old_code} {category.name} 移至 {parent.code} {parent.name}，新编码 {category.code}", "info")
    return redirect(url_for("admin.categories") + f"#c{category.code}")


@bp.post("/categories/<int:category_id>/active")
@require("category.edit")
def category_active(category_id: int):
    from .. import category_admin as ca

    category = _category_or_404(category_id)
    active = request.form.get("active") == "1"
    try:
        changed = ca.set_active(current_account(), category, active)
    except ca.CategoryError as exc:
        _category_refused("category.activate" if active else "category.deactivate", category_id, exc)
        flash(exc.message, "error")
        return redirect(url_for("admin.categories") + f"#c{category.code}")
    what = "启用" if active else "停用（其下级一并停用，不再用于上报和 Open311）"
    flash(f"已{what} {category.code} {category.name}，共 {len(changed)} 个类别", "info")
    return redirect(url_for("admin.categories") + f"#c{category.code}")


@bp.post("/categories/<int:category_id>/delete")
@require("category.edit")
def category_delete(category_id: int):
    from .. import category_admin as ca

    category = _category_or_404(category_id)
    code, name = category.code, category.name
    try:
        removed = ca.delete(current_account(), category)
    except ca.CategoryError as exc:
        _category_refused("category.delete", category_id, exc)
        flash(exc.message, "error")
        return redirect(url_for("admin.categories") + f"#c{code}")
    flash(f"已删除 {code} {name}（共 {removed} 个类别）", "info")
    return redirect(url_for("admin.categories"))


# --- centers and departments (issue 13, section 3); the rules are in commandcenter/org_admin.py ---------------


def _org_refused(action: str, object_type: str, object_id, exc) -> dict[str, str]:
    """Roll back a refused change, audit the refusal on its own, and hand the problems to the form."""
    db.rollback()
    audit(action, object_type, object_id, success=False, detail="；".join(exc.problems.values())[:500], commit=True)
    return exc.problems


def _department_form() -> dict:
    return {
        "code": (request.form.get("code") or "")[:200],
        "name": (request.form.get("name") or "")[:500],
        "places": request.form.getlist("places")[:5000],
    }


@bp.route("/departments", methods=["GET", "POST"])
@require("org.edit")
def departments():
    """职能部门: each with the places it serves (dispatch offers it only there); create a department."""
    from .. import org_admin as org

    problems: dict[str, str] = {}
    form = {"code": "", "name": "", "places": []}
    if request.method == "POST":
        form = _department_form()
        try:
            department = org.save_department(
                current_account(), None, code=form["code"], name=form["name"], place_ids=form["places"]
            )
        except org.OrgError as exc:
            problems = _org_refused("org.department_create", "department", None, exc)
        else:
            db.commit()
            flash(f"已新建职能部门 {department.code} {department.name}", "info")
            return redirect(url_for("admin.departments"))
    return render_template(
        "admin/departments.html",
        rows=org.list_departments(),
        choices=org.served_place_choices(),
        form=form,
        problems=problems,
        L=labels,
    ), 400 if problems else 200


@bp.route("/departments/<int:department_id>", methods=["GET", "POST"])
@require("org.edit")
def department_edit(department_id: int):
    """Edit a department's code, name and the places it serves."""
    from .. import org_admin as org
    from ..models import Department

    department = db.get(Department, department_id)
    if department is None:
        abort(404)
    problems: dict[str, str] = {}
    form = {
        "code": department.code,
        "name": department.name,
        "places": [str(p) for p in org.served_place_ids(department.id)],
    }
    if request.method == "POST":
        form = _department_form()
        try:
            org.save_department(
                current_account(), department, code=form["code"], name=form["name"], place_ids=form["places"]
            )
        except org.OrgError as exc:
            problems = _org_refused("org.department_edit", "department", department_id, exc)
            department = db.get(Department, department_id)
        else:
            db.commit()
            flash(f"已保存职能部门 {department.code} {department.name}", "info")
            return redirect(url_for("admin.departments"))
    return render_template(
        "admin/departments_edit.html",
        department=department,
        choices=org.served_place_choices(),
        form=form,
        problems=problems,
        L=labels,
    ), 400 if problems else 200


@bp.route("/centers", methods=["GET", "POST"])
@require("org.edit")
def centers():
    """综治中心 / 联动站 per place (city, towns, villages); create a center."""
    from .. import org_admin as org

    problems: dict[str, str] = {}
    form = {"place_id": request.args.get("place_id", ""), "name": ""}
    if request.method == "POST":
        form = {"place_id": request.form.get("place_id", "")[:20], "name": (request.form.get("name") or "")[:500]}
        try:
            center = org.create_center(current_account(), place_id=form["place_id"], name=form["name"])
        except org.OrgError as exc:
            problems = _org_refused("org.center_create", "center", None, exc)
        else:
            db.commit()
            flash(f"已新建 {center.name}", "info")
            return redirect(url_for("admin.centers") + f"#p{center.place_id}")
    return render_template(
        "admin/centers.html", rows=org.list_centers(), form=form, problems=problems, L=labels
    ), 400 if problems else 200


@bp.post("/centers/<int:center_id>/rename")
@require("org.edit")
def center_rename(center_id: int):
    from .. import org_admin as org
    from ..models import Center

    center = db.get(Center, center_id)
    if center is None:
        abort(404)
    try:
        org.rename_center(current_account(), center, (request.form.get("name") or "")[:500])
    except org.OrgError as exc:
        problems = _org_refused("org.center_rename", "center", center_id, exc)
        flash("；".join(problems.values()), "error")
        return redirect(url_for("admin.centers") + f"#c{center_id}")
    db.commit()
    flash(f"已改名为 {center.name}", "info")
    return redirect(url_for("admin.centers") + f"#c{center_id}")


@bp.route("/police-beats", methods=["GET", "POST"])
@require("org.edit")
def police_beats():
    """警格: create beats, link each grid to its beat (警网关联), and the 警网关联率 of the city and each town."""
    from .. import org_admin as org
    from ..models import PoliceBeat

    problems: dict[str, str] = {}
    form = {"code": "", "name": "", "town_id": ""}
    if request.method == "POST":
        form = {
            "code": (request.form.get("code") or "")[:200],
            "name": (request.form.get("name") or "")[:500],
            "town_id": request.form.get("town_id", "")[:20],
        }
        try:
            beat = org.create_beat(current_account(), code=form["code"], name=form["name"], town_id=form["town_id"])
        except org.OrgError as exc:
            problems = _org_refused("org.beat_create", "police_beat", None, exc)
        else:
            db.commit()
            flash(f"已新建警格 {beat.code} {beat.name}", "info")
            return redirect(url_for("admin.police_beats", town_id=beat.town_id or ""))
    towns = db.execute(select(Place).where(Place.level == "town").order_by(Place.code)).scalars().all()
    town_id = request.args.get("town_id", type=int) or (int(form["town_id"]) if form["town_id"].isdigit() else None)
    town = next((t for t in towns if t.id == town_id), towns[0] if towns else None)
    grids = (
        db.execute(
            select(Place).where(Place.level == "grid", Place.town_id == town.id).order_by(Place.code).limit(2000)
        )
        .scalars()
        .all()
        if town
        else []
    )
    beats = db.execute(select(PoliceBeat).order_by(PoliceBeat.code)).scalars().all()
    total, by_town = org.link_rates()
    return render_template(
        "admin/centers_police_beats.html",
        towns=towns,
        town=town,
        grids=grids,
        beats=beats,
        usable=[b for b in beats if town is not None and b.town_id in (None, town.id)],
        total=total,
        by_town=by_town,
        form=form,
        problems=problems,
    ), 400 if problems else 200


@bp.post("/police-beats/link")
@require("org.edit")
def police_beat_link():
    from .. import org_admin as org

    grid_id = request.form.get("grid_id", "")[:20]
    try:
        grid = org.link_grid(current_account(), grid_id=grid_id, beat_id=request.form.get("beat_id", "")[:20])
    except org.OrgError as exc:
        problems = _org_refused("org.grid_beat", "place", grid_id or None, exc)
        flash("；".join(problems.values()), "error")
        return redirect(url_for("admin.police_beats", town_id=request.form.get("town_id", type=int) or ""))
    db.commit()
    flash(f"网格 {grid.name} 的警格已{'关联' if grid.police_beat_id else '解除关联'}", "info")
    return redirect(url_for("admin.police_beats", town_id=grid.town_id) + f"#g{grid.id}")


@bp.route("/hotline", methods=["GET", "POST"])
@require("org.edit")
def hotline_link():
    """The link to the 12345 hotline platform: its name, the address of a work order, whether work orders
    arrive by the API (and which endpoint that is)."""
    from .. import org_admin as org

    problems: dict[str, str] = {}
    values = org.hotline_settings()
    if request.method == "POST":
        values = {
            "platform_name": (request.form.get("platform_name") or "")[:500],
            "work_order_url": (request.form.get("work_order_url") or "")[:1000],
            "api_intake": request.form.get("api_intake") == "1",
        }
        try:
            org.save_hotline(current_account(), **values)
        except org.OrgError as exc:
            problems = _org_refused("org.hotline", "setting", org.HOTLINE_KEY, exc)
        else:
            db.commit()
            flash("已保存 12345 热线对接设置", "info")
            return redirect(url_for("admin.hotline_link"))
    return render_template(
        "admin/centers_hotline.html",
        values=values,
        problems=problems,
        endpoint=org.HOTLINE_API_PATH,
        endpoint_url=request.host_url.rstrip("/") + org.HOTLINE_API_PATH,
    ), 400 if problems else 200
