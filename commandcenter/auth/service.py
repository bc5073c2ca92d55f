"""Login rules: lockout after repeated failures, every attempt recorded (it feeds the login rate)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from flask import current_app

from ..audit import audit
from ..db import db
from ..models import Account, ApiToken, LoginRecord, Outbox, WebSession
from ..security import new_token, token_digest, verify_password
from ..timeutil import utcnow

USERNAME_MAX = 64
PASSWORD_MAX = 128


@dataclass
class LoginResult:
    account: Account | None
    error: str | None = None
    field: str | None = None


def validate_credentials(username: str, password: str) -> LoginResult | None:
    """Shape checks before anything touches the database; messages name the field."""
    if not username:
        return LoginResult(None, "请输入用户名", "username")
    if "\x00" in username or "\x00" in password:
        return LoginResult(None, "输入含有不允许的字符", "username" if "\x00" in username else "password")
    if len(username) > USERNAME_MAX:
        return LoginResult(None, f"用户名不能超过 {USERNAME_MAX} 个字符", "username")
    if not password:
        return LoginResult(None, "请输入密码", "password")
    if len(password) > PASSWORD_MAX:
        return LoginResult(None, f"密码不能超过 {PASSWORD_MAX} 个字符", "password")
    return None


def authenticate(username: str, password: str, address: str | None, channel: str = "web") -> LoginResult:
    settings = current_app.config["SETTINGS"]
    username = (username or "").strip()
    invalid = validate_credentials(username, password or "")
    if invalid:
        return invalid
    now = utcnow()
    account = db.query(Account).filter_by(username=username).one_or_none()

    def record(success: bool, reason: str | None) -> None:
        db.add(LoginRecord(account_id=account.id if account else None, username=username,
                           success=success, reason=reason, at=now, address=address, channel=channel))
        audit("login", "account", account.id if account else username, success=success,
              detail=reason, account=account)
        db.commit()

    if account is not None and account.locked_until and account.locked_until > now:
        minutes = max(1, int((account.locked_until - now).total_seconds() // 60) + 1)
        record(False, "locked")
        return LoginResult(None, f"账号因连续登录失败已锁定，请 {minutes} 分钟后再试", "username")
    if account is None or not verify_password(account.password_hash, password):
        reason = "unknown_user" if account is None else "bad_password"
        if account is not None:
            account.failed_logins += 1
            if account.failed_logins >= settings.login_max_failures:
                account.locked_until = now + timedelta(minutes=settings.login_lock_minutes)
                account.failed_logins = 0
                record(False, "bad_password_locked")
                return LoginResult(None, f"连续 {settings.login_max_failures} 次密码错误，账号已锁定 "
                                         f"{settings.login_lock_minutes} 分钟", "password")
        record(False, reason)
        return LoginResult(None, "用户名或密码错误", "password")
    if not account.active:
        record(False, "disabled")
        return LoginResult(None, "账号已停用，请联系管理员", "username")
    account.failed_logins = 0
    account.locked_until = None
    account.last_login_at = now
    db.add(Outbox(topic="presence.login", payload={
        "account_id": account.id, "town_id": account.town_id, "at": now.isoformat(),
        "is_center_admin": account.role == "center_admin"}))
    record(True, None)
    return LoginResult(account)


def password_expired(account: Account) -> bool:
    max_age = current_app.config["SETTINGS"].password_max_age_days
    return account.must_change_password or (
        max_age > 0 and utcnow() - account.password_changed_at > timedelta(days=max_age)
    )


def start_web_session(account: Account, address: str | None) -> str:
    token = new_token()
    db.add(WebSession(id=token_digest(token), account_id=account.id, address=address))
    db.commit()
    return token


def end_web_session(token: str | None) -> None:
    if not token:
        return
    ws = db.get(WebSession, token_digest(token))
    if ws is not None and ws.ended_at is None:
        ws.ended_at = utcnow()
        db.commit()


def issue_api_token(account: Account, name: str) -> str:
    token = new_token()
    days = current_app.config["SETTINGS"].api_token_days
    db.add(ApiToken(account_id=account.id, token_hash=token_digest(token), name=name[:64],
                    expires_at=utcnow() + timedelta(days=days)))
    audit("api_token.issue", "account", account.id, account=account)
    db.commit()
    return token
