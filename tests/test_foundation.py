"""The plumbing a city relies on: migrations on both databases, the health check, Redis, the CLI."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect

from commandcenter import create_app
from commandcenter.migrate import current_heads, downgrade, upgrade
from commandcenter.models import Base
from tests.conftest import make_settings


def _tables(url: str) -> set[str]:
    from commandcenter.settings import normalize_database_url

    engine = create_engine(normalize_database_url(url))
    names = set(inspect(engine).get_table_names())
    engine.dispose()
    return names


def test_migration_builds_the_whole_schema_on_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    assert set(Base.metadata.tables) <= _tables(url)
    assert current_heads(url) == {"0013"}
    downgrade(url, "base")
    assert _tables(url) <= {"alembic_version"}


def test_migration_on_postgresql_matches_the_models(pg_url):
    """The session database was built by Alembic; autogenerate must find nothing left to do."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from commandcenter.settings import normalize_database_url

    engine = create_engine(normalize_database_url(pg_url))
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == [], f"models and migrations differ: {diff}"


def test_healthz_reports_postgresql(client, auth, world):
    assert client.get("/healthz").get_json() == {"status": "up"}  # anonymous: the status word only
    auth.login("city_admin")  # the detail is for ops.view
    body = client.get("/healthz").get_json()
    assert body["status"] == "up" and body["database"] == "ok" and body["database_backend"] == "postgresql"
    assert body["redis"] == "not configured"


def test_healthz_reports_redis(pg_url, redis_url, tmp_path):
    app = create_app(make_settings(tmp_path, pg_url, redis_url=redis_url))
    response = app.test_client().get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "up"}


def test_healthz_reports_redis_down(pg_url, tmp_path):
    app = create_app(make_settings(tmp_path, pg_url, redis_url="redis://127.0.0.1:1/0"))
    response = app.test_client().get("/healthz")
    assert response.status_code == 200  # the web still takes reports; follow-up work waits
    assert response.get_json() == {"status": "degraded"}


def test_redis_round_trip(redis_conn):
    redis_conn.set("cc:test", "网格")
    assert redis_conn.get("cc:test").decode() == "网格"


def test_embedded_default_is_sqlite_under_instance(tmp_path, monkeypatch):
    for name in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    from commandcenter.settings import Settings

    settings = Settings.from_env()
    assert settings.database_url == f"sqlite:///{tmp_path / 'commandcenter.db'}"
    assert settings.mode == "embedded" and settings.redis_url is None
    assert settings.timezone == "Asia/Shanghai"
    key = (tmp_path / "secret_key").read_text()
    assert len(key) == 64 and Settings.from_env().secret_key == key  # generated once, kept


def test_create_admin_refuses_weak_password_and_accepts_strong(runner, app):
    from commandcenter.db import db
    from commandcenter.models import Account

    weak = runner.invoke(args=["create-admin", "--username", "root1", "--password", "password"])
    assert weak.exit_code != 0 and "password" in weak.output
    strong = runner.invoke(args=["create-admin", "--username", "root1", "--password", "Str0ng!Pass"])
    assert strong.exit_code == 0, strong.output
    account = db.query(Account).filter_by(username="root1").one()
    assert account.role == "admin" and account.password_hash.startswith("$argon2")


def test_demo_load_refused_in_server_mode(runner):
    result = runner.invoke(args=["demo", "load"])
    assert result.exit_code != 0 and "无默认口令" in result.output


def test_security_headers(client):
    response = client.get("/login")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]


@pytest.mark.parametrize("path", ["/", "/password"])
def test_pages_need_login(client, path):
    response = client.get(path)
    assert response.status_code == 302 and "/login" in response.headers["Location"]


@pytest.mark.postgres
def test_the_engine_is_the_apps_and_sized_by_the_settings(pg_url, tmp_path):
    from commandcenter.db import get_engine
    from tests.conftest import make_settings

    app = create_app(make_settings(tmp_path, pg_url, db_pool_size=7, db_max_overflow=3, db_pool_timeout=4))
    with app.app_context():
        engine = get_engine()
        assert engine is app.extensions["commandcenter.engine"]
        assert (engine.pool.size(), engine.pool._max_overflow, engine.pool._timeout) == (7, 3, 4)


def test_domain_modules_do_not_reach_for_the_request():
    """The loop, the assessment and the counters are called by workers and the CLI too: no current_app, no
    abort() in them (the views translate domain errors into answers)."""
    import inspect

    from commandcenter import counters
    from commandcenter.assessment import service
    from commandcenter.cases import loop

    for module in (loop, service, counters):
        source = inspect.getsource(module)
        assert "current_app" not in source and "abort(" not in source, module.__name__
