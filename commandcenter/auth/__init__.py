"""Login and logout pages (Chinese), password change."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, abort, flash, g, redirect, render_template, request, session, url_for

from ..access import public, require
from ..audit import audit
from ..db import db
from ..extensions import limiter
from ..security import hash_password, password_problems, verify_password
from ..timeutil import utcnow
from .service import (
    active_tokens,
    authenticate,
    end_sessions,
    end_web_session,
    password_expired,
    revoke_token,
    start_web_session,
)

bp = Blueprint("auth", __name__)


def safe_next(target: str | None) -> str:
    """Only same-site relative paths: an open redirect would help phishing."""
    if not target:
        return url_for("main.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("main.index")
    return target


def _login_limit() -> str:
    from flask import current_app

    return current_app.config["SETTINGS"].login_rate_limit


@bp.route("/login", methods=["GET", "POST"])
@public
@limiter.limit(_login_limit, methods=["POST"])
def login():
    errors: dict[str, str] = {}
    username = ""
    if request.method == "POST":
        username = (request.form.get("username") or "").strip()
        result = authenticate(username, request.form.get("password") or "", request.remote_addr)
        if result.account is not None:
            session.clear()
            session["sid"] = start_web_session(result.account, request.remote_addr)
            if password_expired(result.account):
                flash("密码已过期或为初始密码，请先修改密码", "warning")
                return redirect(url_for("auth.change_password"))
            return redirect(safe_next(request.args.get("next")))
        errors[result.field or "username"] = result.error
    status = 400 if errors else 200
    return render_template("auth/login.html", errors=errors, username=username[:64]), status


@bp.post("/logout")
@public
def logout():
    if g.get("account") is not None:
        audit("logout", "account", g.account.id, commit=True)
    end_web_session(session.get("sid"))
    session.clear()
    flash("已安全退出", "info")
    return redirect(url_for("auth.login"))


@bp.route("/password", methods=["GET", "POST"])
@public  # reached only with a login: checked below, so that an expired password can still be changed
def change_password():
    account = g.get("account")
    if account is None:
        return redirect(url_for("auth.login"))
    errors: dict[str, str] = {}
    if request.method == "POST":
        old = request.form.get("old_password") or ""
        new = request.form.get("new_password") or ""
        again = request.form.get("new_password_again") or ""
        if not verify_password(account.password_hash, old[:128]):
            errors["old_password"] = "原密码不正确"
        problems = password_problems(new, account.username)
        if problems:
            errors["new_password"] = "；".join(problems)
        elif new != again:
            errors["new_password_again"] = "两次输入的新密码不一致"
        elif new == old:
            errors["new_password"] = "新密码不能与原密码相同"
        if not errors:
            account.password_hash = hash_password(new)
            account.password_changed_at = utcnow()
            account.must_change_password = False
            audit("password.change", "account", account.id)
            # every other browser and every app token of the account ends with the old password
            web_session = g.get("web_session")
            ended = end_sessions(account, keep_session_id=web_session.id if web_session else None, reason="修改密码")
            db.commit()
            flash(
                "密码已修改" + (f"；其他 {ended} 个登录会话和全部访问令牌已失效" if ended else "；全部访问令牌已失效"),
                "info",
            )
            return redirect(url_for("main.index"))
    return render_template("auth/password.html", errors=errors), 400 if errors else 200


@bp.get("/account/tokens")
@require("account.self")
def my_tokens():
    """The account's own API tokens (the phone apps it is logged in on), each revocable."""
    return render_template("auth/tokens.html", tokens=active_tokens(g.account))


@bp.route("/account/notifications", methods=["GET", "POST"])
@require("account.self")
def my_notifications():
    """The account's own notification preferences (issue 13 §7): which events, which channels, its e-mail."""
    from .. import notify

    account, problems = g.account, {}
    if request.method == "POST":
        events = request.form.getlist("events")[:20]
        channels = request.form.getlist("channels")[:20]
        try:
            notify.save_preference(account, events, channels, (request.form.get("email") or "")[:300])
        except notify.NotifyError as exc:
            db.rollback()
            problems = exc.problems
        else:
            db.commit()
            flash("通知设置已保存", "info")
            return redirect(url_for("auth.my_notifications"))
    return render_template(
        "auth/notifications.html",
        N=notify,
        pref=notify.preference_of(account),
        channels=notify.active_channels(),
        problems=problems,
        email=request.form.get("email", account.email or "")[:300] if problems else account.email or "",
    ), 400 if problems else 200


@bp.post("/account/tokens/<int:token_id>/revoke")
@require("account.self")
def revoke_my_token(token_id: int):
    account = g.account
    token = revoke_token(account, token_id)
    if token is None or token.account_id != account.id:
        db.rollback()
        abort(404)
    db.commit()
    flash(f"访问令牌「{token.name}」已吊销", "info")
    return redirect(url_for("auth.my_tokens"))
