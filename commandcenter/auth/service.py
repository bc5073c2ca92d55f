"""Login rules: lockout after repeated failures, every attempt recorded (it feeds the login rate)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import distinct, func, select

from ..audit import audit
from ..db import db
from ..models import Account, ApiToken, LoginLock, LoginRecord, Outbox, SecurityAlert, WebSession
from ..security import new_token, token_digest, verify_password
from ..timeutil import utcnow

USERNAME_MAX = 64
PASSWORD_MAX = 128


# One answer for every refused login — wrong password, unknown user, locked, deactivated: a different word
# would tell a stranger which user names exist, or that a guessed password was right. The hint is shown with
# every refusal alike, so that a locked or deactivated user knows where to turn. The true reason is kept in
# LoginRecord.reason and the audit log.
LOGIN_FAILED = "用户名或密码错误"
LOGIN_FAILED_HINT = "如确认用户名和密码无误，账号可能暂时锁定或已停用，请稍后再试或联系安全管理员。"
ALERT_MANY_ADDRESSES = "login_many_addresses"


@dataclass
class LoginResult:
    account: Account | None
    error: str | None = None
    field: str | None = None
    hint: str | None = None  # set on a refusal of the credentials (not on a malformed form)


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


def _lock_row_for_update(account_id: int, address: str) -> LoginLock:
    """The failure counter of (account, address), created if missing and row-locked for this transaction,
    so that parallel guesses from one address cannot slip past the count."""
    if db.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    for _ in range(3):
        db.execute(
            insert(LoginLock).values(account_id=account_id, address=address, failures=0).on_conflict_do_nothing()
        )
        lock = db.execute(
            select(LoginLock)
            .filter_by(account_id=account_id, address=address)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).scalar_one_or_none()
        if lock is not None:
            return lock
        # housekeeping deleted the spent row between the two statements: insert it again
    raise RuntimeError("login lock row vanished three times")


def _count_failure(account: Account, address: str, now, settings) -> str:
    """One more wrong password from `address`: lock the account *for that address* at the limit.
    Failures count within a window of login_lock_minutes from the first; returns the LoginRecord reason."""
    window = timedelta(minutes=settings.login_lock_minutes)
    # the account row first, then its counter: the order a successful login takes (it updates the account,
    # then deletes the counter), so the two never wait for each other in a circle; it also serialises the
    # alert check below. FOR NO KEY UPDATE (key_share): rows referencing the account (login records) can
    # still be inserted meanwhile
    db.execute(select(Account.id).where(Account.id == account.id).with_for_update(key_share=True))
    lock = _lock_row_for_update(account.id, address)
    if lock.locked_until is not None and lock.locked_until > now:
        return "locked"  # a parallel attempt from the same address locked it meanwhile
    if lock.first_failure_at is None or now - lock.first_failure_at > window or lock.locked_until is not None:
        lock.failures, lock.first_failure_at, lock.locked_until = 0, now, None
    lock.failures += 1
    if lock.failures >= settings.login_max_failures:
        lock.locked_until = now + window
        return "bad_password_locked"
    return "bad_password"


def _watch_for_guessing(account: Account, now, settings) -> None:
    """Failures on one account from many addresses are an attack (password spraying, a botnet), not a
    reason to lock its owner out: raise one alert per account and window to the security administrator."""
    since = now - timedelta(minutes=settings.login_lock_minutes)
    addresses = db.execute(
        select(func.count(distinct(LoginRecord.address))).where(
            LoginRecord.account_id == account.id, LoginRecord.success.is_(False), LoginRecord.at >= since
        )
    ).scalar_one()
    if addresses < settings.login_alert_addresses:
        return
    raised = (
        select(SecurityAlert.id)
        .where(
            SecurityAlert.account_id == account.id,
            SecurityAlert.kind == ALERT_MANY_ADDRESSES,
            SecurityAlert.at >= since,
        )
        .limit(1)
    )
    if db.execute(raised).first() is not None:
        return
    # parallel failures from different addresses: one of them raises it (they queue on the account row)
    db.execute(select(Account.id).where(Account.id == account.id).with_for_update(key_share=True))
    if db.execute(raised).first() is not None:
        return
    detail = (
        f"账号 {account.username} 在 {settings.login_lock_minutes} 分钟内从 {addresses} 个不同地址登录失败，"
        "疑似口令猜测攻击"
    )
    db.add(SecurityAlert(at=now, kind=ALERT_MANY_ADDRESSES, account_id=account.id, detail=detail))
    audit("security.alert", "account", account.id, success=False, detail=detail)


def authenticate(username: str, password: str, address: str | None, channel: str = "web") -> LoginResult:
    """Check a login. Failures lock the account per (account, address) — never for everyone, or anyone could
    lock the administrator out — and failures from many addresses raise a SecurityAlert. Every refusal gets
    the same answer (LOGIN_FAILED), at about the same time: the password is verified in every case."""
    settings = current_app.config["SETTINGS"]
    username = (username or "").strip()
    invalid = validate_credentials(username, password or "")
    if invalid:
        return invalid
    now = utcnow()
    where = (address or "unknown")[:64]
    account = db.query(Account).filter_by(username=username).one_or_none()
    # always one (slow) password check, against a dummy hash for an unknown user: the time of the answer
    # must not tell a locked or deactivated account, or a stranger's name, from a wrong password
    password_ok = verify_password(account.password_hash if account is not None else None, password)
    refused = LoginResult(None, LOGIN_FAILED, "password", hint=LOGIN_FAILED_HINT)

    def record(success: bool, reason: str | None) -> None:
        db.add(
            LoginRecord(
                account_id=account.id if account else None,
                username=username,
                success=success,
                reason=reason,
                at=now,
                address=address,
                channel=channel,
            )
        )
        audit("login", "account", account.id if account else username, success=success, detail=reason, account=account)

    if account is None:
        record(False, "unknown_user")
        db.commit()
        return refused
    lock = db.get(LoginLock, (account.id, where))
    if lock is not None and lock.locked_until is not None and lock.locked_until > now:
        record(False, "locked")
        _watch_for_guessing(account, now, settings)
        db.commit()
        return refused
    if not password_ok:
        record(False, _count_failure(account, where, now, settings))
        _watch_for_guessing(account, now, settings)
        db.commit()
        return refused
    if not account.active:
        record(False, "disabled")
        db.commit()
        return refused
    if lock is not None:
        db.delete(lock)  # the right password from this address: its count starts again
    account.last_login_at = now
    db.add(
        Outbox(
            topic="presence.login",
            payload={
                "account_id": account.id,
                "town_id": account.town_id,
                "at": now.isoformat(),
                "is_center_admin": account.role == "center_admin",
            },
        )
    )
    record(True, None)
    db.commit()
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
    if ws is not None:  # the live sockets this session opened end with it, in every web process
        from ..realtime import disconnect_web_sessions

        disconnect_web_sessions([ws.id])


def end_sessions(
    account: Account, *, keep_session_id: str | None = None, revoke_tokens: bool = True, reason: str
) -> int:
    """End every web session of the account except `keep_session_id` (a WebSession.id), revoke its API
    tokens, and disconnect the live sockets those sessions opened (in every web process).

    Used after a password change (keeping the session that made it), on deactivation and by the
    administrator. Commits (with whatever change the caller made, e.g. the new password) before it
    disconnects, so that a socket reconnecting at once finds its session already ended. Returns the number
    of sessions ended.
    """
    from ..realtime import disconnect_web_sessions

    now = utcnow()
    sessions = db.query(WebSession).filter(WebSession.account_id == account.id, WebSession.ended_at.is_(None)).all()
    ended = [ws.id for ws in sessions if ws.id != keep_session_id]
    for ws in sessions:
        if ws.id in ended:
            ws.ended_at = now
    if revoke_tokens:
        db.query(ApiToken).filter(ApiToken.account_id == account.id, ApiToken.revoked.is_(False)).update(
            {ApiToken.revoked: True}, synchronize_session=False
        )
    audit(
        "session.end_all",
        "account",
        account.id,
        detail=f"{reason}；结束会话 {len(ended)} 个" + ("，吊销全部令牌" if revoke_tokens else ""),
    )
    db.commit()
    disconnect_web_sessions(ended)
    return len(ended)


def active_tokens(account: Account) -> list[ApiToken]:
    """The account's tokens that still open the API (not revoked, not expired), newest first."""
    return (
        db.query(ApiToken)
        .filter(ApiToken.account_id == account.id, ApiToken.revoked.is_(False), ApiToken.expires_at > utcnow())
        .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
        .all()
    )


def revoke_token(actor: Account, token_id: int) -> ApiToken | None:
    """Revoke one API token: its owner may, and the system administrator (account.manage) may revoke anyone's.
    None (the caller answers 404) when there is no such token or it is not the actor's to revoke.
    The caller commits."""
    from ..access import has_permission

    token = db.get(ApiToken, token_id)
    if token is None or (token.account_id != actor.id and not has_permission(actor, "account.manage")):
        return None
    if not token.revoked:
        token.revoked = True
        audit("api_token.revoke", "api_token", token.id, detail=f"账号 #{token.account_id}：{token.name}")
    return token


class PasswordChangeRequired(Exception):
    """The account must change its password (初始密码 or expired) before it gets anything else."""


def issue_api_token(account: Account, name: str) -> str:
    if password_expired(account):
        raise PasswordChangeRequired()
    token = new_token()
    days = current_app.config["SETTINGS"].api_token_days
    db.add(
        ApiToken(
            account_id=account.id,
            token_hash=token_digest(token),
            name=name[:64],
            expires_at=utcnow() + timedelta(days=days),
        )
    )
    audit("api_token.issue", "account", account.id, account=account)
    db.commit()
    return token
