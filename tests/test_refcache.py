"""Categories and places cached per process (refcache.py, issue 15 §3): a report reads neither from the
database, yet a change made through the application is obeyed at once here and within a second elsewhere,
and the report's one statement still numbers the case as every other door does."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine, event, text, update

from commandcenter import create_app, refcache
from commandcenter.db import db, get_engine
from commandcenter.models import Case, Category, Outbox, Place
from commandcenter.timeutil import local
from tests.conftest import make_settings, token_for
from tests.test_api import report_body


def _post(client, world, headers, **overrides):
    return client.post("/api/v1/cases", json=report_body(world, **overrides), headers=headers)


def _refused_on_category(response) -> bool:
    return response.status_code == 422 and response.get_json()["error"]["field"] == "category_code"


def test_a_category_deactivated_in_this_process_is_refused_at_once(world, client, app):
    headers = token_for(client, "gw0")
    assert _post(client, world, headers).status_code == 201  # the category is cached now
    with app.app_context():
        db.query(Category).filter_by(code="0101").one().active = False
        db.commit()
    assert _refused_on_category(_post(client, world, headers))
    with app.app_context():
        db.query(Category).filter_by(code="0101").one().active = True
        db.commit()
    assert _post(client, world, headers).status_code == 201


def test_a_category_deactivated_by_a_statement_is_refused_at_once(world, client, app):
    headers = token_for(client, "gw0")
    assert _post(client, world, headers).status_code == 201
    with app.app_context():
        db.execute(update(Category).where(Category.code == "0101").values(active=False))
        db.commit()
    assert _refused_on_category(_post(client, world, headers))


def test_a_renamed_category_shows_its_new_name_on_the_next_case(world, client, app):
    headers = token_for(client, "gw0")
    assert _post(client, world, headers).get_json()["category_name"] == "暴露垃圾"
    with app.app_context():
        db.query(Category).filter_by(code="0101").one().name = "暴露垃圾（含建筑垃圾）"
        db.commit()
    assert _post(client, world, headers).get_json()["category_name"] == "暴露垃圾（含建筑垃圾）"


def test_a_grid_moved_to_another_village_files_its_next_case_there(world, client, app):
    headers = token_for(client, "gw0")
    first = _post(client, world, headers).get_json()
    with app.app_context():
        before = db.get(Case, first["id"]).village_id
        grid = db.get(Place, world.grids[0].id)
        other = next(v for v in world.villages if v.town_id == grid.town_id and v.id != grid.village_id)
        grid.village_id = other.id
        grid.parent_id = other.id
        db.commit()
        other_id = other.id
    second = _post(client, world, headers).get_json()
    with app.app_context():
        assert before != other_id
        assert db.get(Case, second["id"]).village_id == other_id


def test_a_change_rolled_back_leaves_nothing_in_the_cache(world, client, app):
    headers = token_for(client, "gw0")
    with app.app_context():
        category = db.query(Category).filter_by(code="0101").one()
        category.name = "未提交的名字"
        db.flush()
        assert refcache.category(category.id).name == "未提交的名字"  # read inside the transaction…
        db.rollback()
        db.remove()
    # … and gone with it
    assert _post(client, world, headers).get_json()["category_name"] == "暴露垃圾"


@pytest.mark.redis
def test_a_change_made_in_another_process_is_seen_within_a_second(pg_url, redis_conn, tmp_path):
    from tests.conftest import TEST_REDIS_URL, _truncate_all
    from tests.world import build_world

    app = create_app(make_settings(tmp_path, pg_url, redis_url=TEST_REDIS_URL))
    with app.app_context():
        _truncate_all()
        world = build_world()
    client = app.test_client()
    headers = token_for(client, "gw0")
    assert _post(client, world, headers).status_code == 201  # cached
    from commandcenter.settings import normalize_database_url

    other = create_engine(normalize_database_url(pg_url))  # the other process: its own connection…
    with other.begin() as conn:
        conn.execute(text("UPDATE categories SET active = false WHERE code = '0101'"))
    other.dispose()
    assert _post(client, world, headers).status_code == 201  # (this process cannot know yet)
    redis_conn.incr(refcache.GENERATION_KEY)  # … and its commit's announcement
    time.sleep(refcache.remote.check_s + 0.1)
    assert _refused_on_category(_post(client, world, headers))
    db.remove()


@pytest.mark.redis
def test_a_change_made_here_is_announced_to_the_other_processes(world, pg_url, redis_conn, tmp_path):
    from tests.conftest import TEST_REDIS_URL

    app = create_app(make_settings(tmp_path, pg_url, redis_url=TEST_REDIS_URL))
    with app.app_context():
        assert redis_conn.get(refcache.GENERATION_KEY) is None
        db.query(Category).filter_by(code="0101").one().active = False
        db.commit()
        assert int(redis_conn.get(refcache.GENERATION_KEY)) == 1
        db.get(Place, world.grids[0].id).name = "改名网格"
        db.commit()
        assert int(redis_conn.get(refcache.GENERATION_KEY)) == 2
        db.remove()


def _statements_of(action) -> list[str]:
    seen: list[str] = []

    def note(_conn, _cursor, statement, *_args):
        seen.append(statement)

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", note)
    try:
        action()
    finally:
        event.remove(engine, "before_cursor_execute", note)
    return seen


def test_a_report_is_one_statement_and_numbers_its_case_as_before(world, client, app):
    headers = token_for(client, "gw0")
    assert _post(client, world, headers).status_code == 201  # warm: token, category, grid cached
    answers = []
    with app.app_context():
        statements = _statements_of(lambda: answers.append(_post(client, world, headers)))
    assert len(statements) == 1, statements  # the case, its step and its outbox row; nothing read
    body = answers[0].get_json()
    with app.app_context():
        case = db.get(Case, body["id"])
        day = local(case.reported_at, app.config["SETTINGS"].timezone)
        assert case.number == body["number"] == f"SJ{day:%Y%m%d}{case.id:07d}"
        payloads = [o.payload for o in db.query(Outbox).filter(Outbox.topic == "case.changed")]
        assert {p["case_id"] for p in payloads} == {c.id for c in db.query(Case)}
        assert [s.action for s in case.steps] == ["report"]


def test_a_case_number_keeps_every_digit_past_ten_million(world, client, app):
    headers = token_for(client, "gw0")
    with app.app_context():
        db.execute(text("SELECT setval(pg_get_serial_sequence('cases', 'id'), 12345677)"))
        db.commit()
    body = _post(client, world, headers).get_json()
    assert body["id"] == 12345678
    assert body["number"].endswith("12345678") and len(body["number"]) == len("SJ20261203") + 8


def test_the_drain_reads_a_batch_in_a_fixed_number_of_statements(world, client, app):
    """Its cases in one query, its categories and places from the cache, its rows marked in one UPDATE:
    the statements of a drain do not grow with the number of reports in it."""
    from commandcenter.jobs import process_outbox

    headers = token_for(client, "gw0")

    def drain_after(n: int) -> int:
        for _ in range(n):
            assert _post(client, world, headers).status_code == 201
        with app.app_context():
            statements = _statements_of(process_outbox)
            assert db.query(Outbox).filter(Outbox.processed_at.is_(None)).count() == 0
            db.remove()
        return len(statements)

    drain_after(1)  # warm
    assert drain_after(3) == drain_after(30)


def test_a_connection_dropped_while_idle_is_replaced_without_an_error(world, client, app, monkeypatch, pg_url):
    """Pooled connections are pinged only after lying idle (commandcenter.db.PING_IF_IDLE_S), not before every
    request; one that the server or a firewall dropped meanwhile is replaced, and the report still succeeds."""
    import psycopg2

    from commandcenter import db as db_module

    monkeypatch.setattr(db_module, "PING_IF_IDLE_S", 0.2)
    headers = token_for(client, "gw0")
    assert _post(client, world, headers).status_code == 201
    killer = psycopg2.connect(pg_url.replace("postgresql+psycopg2", "postgresql"))
    killer.autocommit = True
    with killer.cursor() as cur:
        cur.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cur.fetchone()[0] >= 1  # the pool's idle connection(s)
    killer.close()
    time.sleep(0.3)
    try:
        assert _post(client, world, headers).status_code == 201
    finally:
        get_engine().dispose()  # the pool's other killed connections are not the next test's
