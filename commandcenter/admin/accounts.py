"""账号管理: the account list, enabling and disabling, each account's page (create, edit, reset the
password, unlock, move a gridworker, sessions and tokens), in the system administrator's area and the security
administrator's. The rules are in commandcenter/accounts.py."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from .. import labels
from ..access import current_account, require
from ..audit import audit
from ..db import db
from ..models import Account, Place
from . import bp


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
        return change_active(account_id, url_for("admin.account_page", account_id=account_id))
    return change_active(account_id, url_for("admin.accounts", q=request.args.get("q", "")))


def change_active(account_id: int, back: str):
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


@bp.route("/accounts/<int:account_id>/tokens", methods=["GET", "POST"])
@require("account.manage")
def account_tokens(account_id: int):
    """An account's API tokens, revocable by the system administrator (a lost phone, a leaver): folded into the
    account's page (GET shows it; POST revokes one token and returns there)."""
    return _account_tokens("admin", account_id)


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
        "email": (form.get("email") or "").strip()[:200] or None,
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
        if fields["email"] is None:
            del fields["email"]  # masked the same way
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
