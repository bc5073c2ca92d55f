"""The command center for grid-based social governance (网格化社会治理指挥中心)."""

from __future__ import annotations

import logging

from flask import Flask

from .settings import ROOT, Settings


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    from .ratelimit import storage_uri  # registers the cc+redis:// storage scheme with `limits`

    app = Flask(
        __name__,
        instance_path=str(settings.instance_path),
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    app.config.update(
        SETTINGS=settings,
        SECRET_KEY=settings.secret_key,
        TESTING=settings.testing,
        MAX_CONTENT_LENGTH=settings.upload_max_bytes * 4 + 1024 * 1024,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        SESSION_COOKIE_NAME="cc_session",
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the (server-side, idle-limited) session
        # Redis: one round trip per limited request (ratelimit.OneTripRedisStorage); else per-process memory
        RATELIMIT_STORAGE_URI=storage_uri(settings.redis_url),
        RATELIMIT_HEADERS_ENABLED=True,
        # Redis down must not stop reports or logins: limits fall back to per-process memory
        RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=True,
        RATELIMIT_SWALLOW_ERRORS=True,
        RATELIMIT_STORAGE_OPTIONS={"socket_connect_timeout": 1, "socket_timeout": 1},
        JSON_AS_ASCII=False,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)

    from .db import init_engine

    app.extensions["commandcenter.engine"] = init_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
    )

    from .extensions import csrf, limiter, socketio

    csrf.init_app(app)
    limiter.init_app(app)
    from .realtime import message_queue_channel, origin_check

    socketio.init_app(
        app,
        async_mode="threading",
        message_queue=settings.redis_url,
        # Redis pub/sub ignores the database number: one channel per database, or two installations (or test
        # runs) on one Redis server would deliver each other's pushes
        channel=message_queue_channel(settings.redis_url),
        # the page's own origin and SOCKET_ALLOWED_ORIGINS, on websocket and polling ([] would turn the check off)
        cors_allowed_origins=origin_check(settings.socket_allowed_origins),
        logger=False,
        engineio_logger=False,
    )

    from . import jobs, realtime, web  # noqa: F401  (realtime registers the Socket.IO handlers)

    web.init_app(app)
    from . import inputs

    inputs.init_app(app)  # bounded <int:…> ids, id fields, JSON depth: before the blueprints add their rules
    jobs.install_hooks()
    from . import refcache, token_cache
    from .db import session_factory

    token_cache.install_hooks(session_factory)  # a token or account changed here leaves the cache at once
    refcache.install_hooks(session_factory)  # likewise a category or a place
    refcache.clear()  # a new app may point at another database, or at the same one rebuilt
    refcache.remote.reset()

    from .admin import bp as admin_bp
    from .alert_desk import bp as alerts_bp
    from .api import bp as api_bp
    from .assessment import bp as assessment_bp
    from .auth import bp as auth_bp
    from .bulletin import bp as bulletin_bp
    from .cases import bp as cases_bp
    from .dept import bp as dept_bp
    from .drill import bp as drill_bp
    from .figures import bp as figures_bp
    from .gridworker import bp as gridworker_bp
    from .health import bp as health_bp
    from .hotline import bp as hotline_bp
    from .main import bp as main_bp
    from .mobile import bp as mobile_bp
    from .open311 import bp as open311_bp
    from .persons import bp as persons_bp
    from .points import bp as points_bp
    from .tiles import bp as tiles_bp
    from .wall import bp as wall_bp

    for blueprint in (
        auth_bp,
        health_bp,
        main_bp,
        api_bp,
        cases_bp,
        hotline_bp,
        open311_bp,
        wall_bp,
        admin_bp,
        alerts_bp,
        drill_bp,
        mobile_bp,
        assessment_bp,
        points_bp,
        bulletin_bp,
        persons_bp,
        figures_bp,
        tiles_bp,
        dept_bp,
        gridworker_bp,
    ):
        app.register_blueprint(blueprint)
    csrf.exempt(api_bp)  # token-authenticated, no cookies: CSRF does not apply
    csrf.exempt(open311_bp)  # API-key authenticated
    from .ratelimit import init_intake_limiter

    init_intake_limiter(app, limiter)  # the intake endpoints' own limit (flask-limiter skips them)

    from .cli import register_cli

    register_cli(app)
    from .api.lane import HeartbeatLane

    app.wsgi_app = HeartbeatLane(app, app.wsgi_app)  # the city's heartbeats before Flask's machinery (api/lane.py)
    if settings.trusted_proxies > 0:
        # behind nginx: REMOTE_ADDR is the proxy; take the client from the last `trusted_proxies` entries of
        # X-Forwarded-For (what our own proxies appended, not what the client sent), so that login and intake
        # limits, the audit log and login records see the real address. Host is not taken from a header:
        # nginx passes the client's Host itself (`proxy_set_header Host $host`). Wraps the Socket.IO
        # middleware too, so sockets see the same address. With 0 the headers are ignored.
        from werkzeug.middleware.proxy_fix import ProxyFix

        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=0, x_port=0, x_prefix=0)
    return app
