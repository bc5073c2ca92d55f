"""Request plumbing shared by every blueprint: who is asking, security headers, errors."""

from __future__ import annotations

import functools
import logging
import threading
import time
from datetime import timedelta

from flask import Flask, abort, flash, g, jsonify, render_template, request, session
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from . import labels
from .db import db
from .models import Account, ApiToken, WebSession
from .security import mask_email, mask_id_number, mask_name, mask_phone, token_digest
from .timeutil import fmt, utcnow

log = logging.getLogger(__name__)

# htmx, the socket.io client and Plotly all work with scripts from 'self' only; Plotly needs inline
# styles and maplibre (inside Plotly's map traces) needs blob: workers.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
    "worker-src 'self' blob:; child-src blob:; frame-ancestors 'none'; base-uri 'self'; "
    "form-action 'self'; object-src 'none'"
)

# a view may set these itself; the others are always ours
OWN_CHOICE_HEADERS = frozenset({"Content-Security-Policy", "Permissions-Policy"})


@functools.cache
def security_header_items(secure: bool) -> tuple[tuple[str, str], ...]:
    """The headers every answer carries (pages, the API, the heartbeat's lane)."""
    items = [
        ("Content-Security-Policy", CSP),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "same-origin"),
        ("Permissions-Policy", "geolocation=(), camera=(), microphone=()"),
    ]
    if secure:
        items.append(("Strict-Transport-Security", "max-age=31536000"))
    return tuple(items)


SESSION_TOUCH_SECONDS = 60
# an API token's "last used" (shown on its list) is written at most this often: a phone's heartbeat a minute
# must not write the database each time (issue 15)
TOKEN_TOUCH_SECONDS = 600
# … and those due are gathered per process and written together, one UPDATE at most every this many seconds:
# after a restart, or at 8 in the morning, 15,000 phones' first heartbeats would otherwise each write their token
TOKEN_TOUCH_FLUSH_SECONDS = 5.0
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# all that an account whose password must change may reach until it has changed it
PASSWORD_CHANGE_ENDPOINTS = frozenset({"auth.change_password", "auth.logout", "static", "health.healthz"})
PASSWORD_CHANGE_MESSAGE = "密码已过期或为初始密码，请先修改密码"


def _cookie_api_csrf_refusal():
    from flask_wtf.csrf import ValidationError, validate_csrf

    from .api.errors import api_error

    try:
        validate_csrf(request.headers.get("X-CSRFToken") or request.headers.get("X-CSRF-Token"))
    except ValidationError:
        return api_error(
            403, "以浏览器会话调用接口须携带 X-CSRFToken 请求头；应用请使用访问令牌（Bearer）", field="X-CSRFToken"
        )
    return None


def _password_change_required():
    """Until the password is changed: the change page and logout, nothing else, in pages and the API."""
    if is_api_request():
        from .api.errors import api_error

        return api_error(403, PASSWORD_CHANGE_MESSAGE + "（请在网页端修改）", field="password")
    from flask import redirect, url_for

    if request.method == "GET" and not request.headers.get("HX-Request"):
        flash(PASSWORD_CHANGE_MESSAGE, "warning")
    return redirect(url_for("auth.change_password"))


def wants_fragment() -> bool:
    """An htmx request for a part of the page (a history restore wants the whole page)."""
    return bool(request.headers.get("HX-Request")) and not request.headers.get("HX-History-Restore-Request")


def is_api_request() -> bool:
    return request.path.startswith(("/api/", "/open311/", "/healthz"))


def load_account_from_token() -> Account | None:
    """The account of the request's bearer token. Tokens and their accounts are cached in this process for
    TOKEN_CACHE_SECONDS (token_cache.py: a revocation or deactivation made through the app takes effect in
    every process within about a second, one made in this process at once, one typed into SQL within the
    window); 0 reads the database on every request."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return None
    from flask import current_app

    from . import token_cache
    from .proc_cache import attach

    digest = token_digest(header[7:].strip())
    now = utcnow()
    cached = cached_token_account(digest, now)
    if cached is not TOKEN_NOT_CACHED:
        return None if cached is None else attach(db(), cached)  # this session's copy, without a query
    max_age = current_app.config["SETTINGS"].token_cache_seconds
    engine_key = id(current_app.extensions["commandcenter.engine"])
    read_at = token_cache.generation()
    # the token's columns and its account in one statement, the token not loaded as an entity: every phone
    # this process has not seen for TOKEN_CACHE_SECONDS comes through here (at a city's peak, a few hundred a
    # second after a restart)
    row = db.execute(_token_statement(), {"digest": digest}).first()
    if row is None:
        return None
    token_id, revoked, expires_at, last_used_at, account = row
    if revoked or expires_at <= now or not account.active:
        return None
    if last_used_at is None or (now - last_used_at).total_seconds() > TOKEN_TOUCH_SECONDS:
        _touch_token(token_id, now)
        last_used_at = now
    if max_age > 0:
        token = token_cache.TokenColumns(token_id, expires_at, last_used_at)
        token_cache.store(engine_key, digest, token, account, read_at)
    return account


TOKEN_NOT_CACHED = object()


def cached_token_account(digest: str, now) -> Account | None | object:
    """The account of a token this process has cached (a detached copy: its columns only), None when the
    token has expired, TOKEN_NOT_CACHED when it is not cached (read it from the database). Its last use is
    noted. Needs an app context; the heartbeat's lane (api/lane.py) and every bearer request come through here."""
    from flask import current_app

    from . import token_cache

    max_age = current_app.config["SETTINGS"].token_cache_seconds
    if max_age <= 0:
        return TOKEN_NOT_CACHED
    entry = token_cache.lookup(id(current_app.extensions["commandcenter.engine"]), digest, max_age)
    if entry is None:
        return TOKEN_NOT_CACHED
    if entry.expires_at <= now:
        return None
    if entry.last_used_at is None or (now - entry.last_used_at).total_seconds() > TOKEN_TOUCH_SECONDS:
        _touch_token(entry.token_id, now)
        entry.last_used_at = now
    return entry.account


@functools.cache
def _token_statement():
    from sqlalchemy import bindparam, select

    return (
        select(ApiToken.id, ApiToken.revoked, ApiToken.expires_at, ApiToken.last_used_at, Account)
        .join(Account, Account.id == ApiToken.account_id)
        .where(ApiToken.token_hash == bindparam("digest"))
    )


_touches: dict[int, object] = {}  # token id → last use not yet written (this process)
_touch_state = {"flushed_at": float("-inf")}
_touch_lock = threading.Lock()


def _touch_token(token_id: int, now) -> None:
    """Its last use (shown on the token list), at most every TOKEN_TOUCH_SECONDS; written with the others due
    in this process at most every TOKEN_TOUCH_FLUSH_SECONDS (so a last use shown may lag that much)."""
    with _touch_lock:
        _touches[token_id] = now
        if time.monotonic() - _touch_state["flushed_at"] < TOKEN_TOUCH_FLUSH_SECONDS:
            return
        _touch_state["flushed_at"] = time.monotonic()
        due = dict(_touches)
        _touches.clear()
    flush_token_touches(due)


def flush_token_touches(due: dict | None = None) -> None:
    """One UPDATE for the tokens' last uses gathered here; a plain statement on the session's connection (not
    a change of a token for the token cache's hooks), committed at once. If it fails, they are kept for the
    next flush: a last use is bookkeeping, never worth a failed request."""
    from .db import move_forward

    if due is None:
        with _touch_lock:
            due = dict(_touches)
            _touches.clear()
    if not due:
        return
    try:
        move_forward(ApiToken.__table__, "last_used_at", sorted(due.items()))
        db.commit()
    except Exception:
        db.rollback()
        log.warning("could not write the last use of %d API tokens; kept for the next flush", len(due))
        with _touch_lock:
            for k, v in due.items():
                _touches.setdefault(k, v)


def load_account_from_session(app: Flask) -> Account | None:
    token = session.get("sid")
    if not token:
        return None
    ws = db.get(WebSession, token_digest(token))
    now = utcnow()
    idle = timedelta(minutes=app.config["SETTINGS"].session_idle_minutes)
    if ws is None or ws.ended_at is not None:
        session.clear()
        return None
    if now - ws.last_seen_at > idle:
        ws.ended_at = now
        db.commit()
        session.clear()
        g.session_expired = True
        from .realtime import disconnect_web_sessions  # its sockets too (each process's check would, later)

        disconnect_web_sessions([ws.id])
        return None
    account = db.get(Account, ws.account_id)
    if account is None or not account.active:
        session.clear()
        return None
    if (now - ws.last_seen_at).total_seconds() > SESSION_TOUCH_SECONDS:
        ws.last_seen_at = now
        db.commit()
    g.web_session = ws
    return account


CALENDAR_WARNED_ROLES = ("admin", "duty_officer")


def calendar_warning() -> str | None:
    """The missing-year warning of the working calendar, for the administrator and the duty officers."""
    account = g.get("account")
    if account is None or account.role not in CALENDAR_WARNED_ROLES:
        return None
    from .calendar_notice import missing_year_warning

    return missing_year_warning()


def init_app(app: Flask) -> None:
    with _touch_lock:  # last uses gathered for another app (another database) are not this one's
        _touches.clear()
        _touch_state["flushed_at"] = float("-inf")

    @app.before_request
    def refuse_nul() -> None:
        """A NUL in a query or form field is never real input, and PostgreSQL cannot store it."""
        sources = [request.args]
        if request.mimetype == "application/x-www-form-urlencoded":
            sources.append(request.form)
        for source in sources:
            for key, value in source.items(multi=True):
                if "\x00" in key or "\x00" in value:
                    abort(400, description=f"{key[:40]}: 含有不允许的字符")

    @app.before_request
    def identify():
        g.account = None
        if request.endpoint == "static":
            return None
        g.account = load_account_from_token() if request.headers.get("Authorization") else None
        if g.account is None:
            g.account = load_account_from_session(app)
            if g.get("session_expired") and not is_api_request():
                minutes = app.config["SETTINGS"].session_idle_minutes
                flash(f"会话已超时（{minutes} 分钟无操作），请重新登录", "warning")
            if g.account is not None and request.path.startswith("/api/") and request.method not in SAFE_METHODS:
                # the API is for bearer tokens; a call riding on the browser's cookie must prove it came
                # from our own page (X-CSRFToken), or a foreign site could post reports in the user's name
                refusal = _cookie_api_csrf_refusal()
                if refusal is not None:
                    return refusal
        if g.account is not None and request.endpoint not in PASSWORD_CHANGE_ENDPOINTS:
            from .auth.service import password_expired

            if password_expired(g.account):
                return _password_change_required()
        return None

    @app.after_request
    def security_headers(response):
        headers = response.headers
        for name, value in security_header_items(app.config["SETTINGS"].secure_cookies):
            if name in OWN_CHOICE_HEADERS:
                # (the gridworker's /g/ pages set their own Permissions-Policy: they need the location and the camera)
                headers.setdefault(name, value)
            else:
                headers[name] = value
        if g.get("account") is not None and request.endpoint != "static" and request.blueprint != "tiles":
            response.headers["Cache-Control"] = "no-store"  # (basemap tiles set their own: private, versioned)
        return response

    @app.teardown_appcontext
    def remove_session(_exc=None) -> None:
        db.remove()

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        # our own abort(..., description=...) says more than the generic word for the status
        custom = exc.description if exc.description != type(exc).description else None
        if exc.code == 400 and "CSRF" in (exc.description or ""):
            custom = "页面已过期或缺少安全令牌（CSRF），请刷新页面后重试"
        message = custom or labels.HTTP_ERRORS.get(exc.code, exc.description)
        if is_api_request():
            from .api.errors import api_error

            return api_error(exc.code or 500, message)
        return render_template("error.html", code=exc.code, message=message), exc.code

    @app.errorhandler(OperationalError)
    @app.errorhandler(DBAPIError)
    @app.errorhandler(PoolTimeout)
    def database_down(exc):
        """The database is unreachable (or every connection of the pool is busy past DB_POOL_TIMEOUT): say so,
        and recover by itself when it returns."""
        log.error("database error: %s", exc.__class__.__name__)
        db.rollback()
        message = "数据库暂时不可用，请稍后重试"
        if is_api_request():
            response = jsonify({"error": {"message": message, "field": None}})
            response.status_code = 503
        else:
            response = app.make_response((render_template("error.html", code=503, message=message), 503))
        response.headers["Retry-After"] = "5"
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error")
        db.rollback()
        message = "系统内部错误，已记录，请联系管理员"
        if is_api_request():
            return jsonify({"error": {"message": message, "field": None}}), 500
        return render_template("error.html", code=500, message=message), 500

    tz = app.config["SETTINGS"].timezone
    app.jinja_env.filters["dt"] = lambda v, p="%Y-%m-%d %H:%M": fmt(v, tz, p)
    app.jinja_env.filters["mask_id"] = mask_id_number
    app.jinja_env.filters["mask_phone"] = mask_phone
    app.jinja_env.filters["mask_email"] = mask_email
    app.jinja_env.filters["mask_name"] = mask_name
    app.jinja_env.filters["pct"] = lambda v: "—" if v is None else f"{v * 100:.2f}%"
    app.jinja_env.globals["L"] = labels
    app.jinja_env.globals["current_account"] = lambda: g.get("account")
    app.jinja_env.globals["calendar_warning"] = calendar_warning
