"""安全管理: the security administrator's page (guessing alerts, login locks, the administrators' own
accounts)."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from .. import labels
from ..access import current_account, require
from ..audit import audit
from ..db import db
from ..models import Account
from . import bp
from .accounts import change_active
from .views import PAGE

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
        return change_active(account_id, url_for("admin.security_account_page", account_id=account_id))
    return change_active(account_id, url_for("admin.security"))
