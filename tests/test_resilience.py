"""Nothing is lost when Redis is down: the report is accepted, its follow-up waits in the outbox and
runs when Redis is back; a retried or repeated drain counts nothing twice."""

from __future__ import annotations

import pytest

from commandcenter import counters, create_app, jobs
from commandcenter.db import db
from commandcenter.models import Case, Outbox
from commandcenter.timeutil import local_today
from tests.conftest import TEST_REDIS_URL, make_settings, token_for
from tests.test_api import report_body

pytestmark = pytest.mark.redis


def test_reports_accepted_while_redis_is_down_and_caught_up_after(world, pg_url, redis_conn, tmp_path):
    down = create_app(make_settings(tmp_path / "down", pg_url, redis_url="redis://127.0.0.1:1/0"))
    client = down.test_client()
    headers = token_for(client, "gw0")
    ids = []
    for _ in range(5):
        response = client.post("/api/v1/cases", json=report_body(world), headers=headers)
        assert response.status_code == 201, response.get_json()
        ids.append(response.get_json()["id"])
    assert client.get("/healthz").get_json() == {"status": "degraded"}
    assert db.query(Case).count() == 5
    pending = db.query(Outbox).filter(Outbox.processed_at.is_(None), Outbox.topic == "case.changed").count()
    assert pending == 5, "the follow-up work must wait in the outbox"

    back = create_app(make_settings(tmp_path / "back", pg_url, redis_url=TEST_REDIS_URL))
    with back.app_context():
        from workers import jobs as worker_jobs

        worker_jobs.drain_outbox_catch_up()
        worker_jobs.drain_outbox_catch_up()  # a second run (a retry) changes nothing
        town = world.towns[0].id
        figures = counters.case_counts(jobs.counters_redis(), town, day=local_today())
    assert figures["reported"] == 5
    assert db.query(Outbox).filter(Outbox.processed_at.is_(None), Outbox.topic == "case.changed").count() == 0


def test_presence_follows_the_app_and_survives_a_second_drain(world, pg_url, redis_conn, tmp_path):
    from commandcenter.timeutil import utcnow

    app = create_app(make_settings(tmp_path, pg_url, redis_url=TEST_REDIS_URL))
    client = app.test_client()
    for name in ("gw0", "gw1"):
        headers = token_for(client, name)
        assert client.post("/api/v1/heartbeats", json={}, headers=headers).status_code == 204
        assert client.post("/api/v1/sign-ins", json={}, headers=headers).status_code == 201
    with app.app_context():
        jobs.process_outbox()
        jobs.process_outbox()
        r = jobs.counters_redis()
        town = world.towns[0].id
        assert counters.online_count(r, town, utcnow()) == 2
        assert counters.attendance_count(r, local_today(), town) == 2
        assert counters.online_count(r, world.towns[1].id, utcnow()) == 0


def test_the_nightly_reconcile_runs_once_a_night_whatever_restarts_rq_cron(
    world, pg_url, redis_conn, tmp_path, monkeypatch
):
    """`rq cron` runs every interval job as it starts; the reconcile (which pauses the drains) must not run
    again each time it is restarted by day, only once after 03:00 local time (and again if it failed)."""
    from datetime import datetime

    from commandcenter.models import JobRun
    from workers import jobs as worker_jobs

    app = create_app(make_settings(tmp_path / "w", pg_url, redis_url=TEST_REDIS_URL))
    with app.app_context():
        assert worker_jobs.reconcile_counters() is not None  # never ran: runs now
        assert worker_jobs.reconcile_counters() is None  # a restart of rq cron a minute later: nothing
        run = db.get(JobRun, "reconcile_counters")
        assert run.runs == 1 and run.last_status == "ok"

        # local = UTC+8: ran at 03:10 local (19:10 UTC the day before)
        run.last_started_at = datetime(2026, 3, 9, 19, 10)
        db.commit()
        assert not jobs.nightly_due("reconcile_counters", 3, now=datetime(2026, 3, 10, 6, 0))  # 14:00 the same day
        assert not jobs.nightly_due("reconcile_counters", 3, now=datetime(2026, 3, 10, 18, 59))  # 02:59 next night
        assert jobs.nightly_due("reconcile_counters", 3, now=datetime(2026, 3, 10, 19, 0))  # 03:00: due
        run.last_status = "failed"
        db.commit()
        assert jobs.nightly_due("reconcile_counters", 3, now=datetime(2026, 3, 10, 6, 0))  # failed: try again
        db.remove()


def test_reports_made_while_a_drain_is_queued_or_running_queue_no_second_job(
    world, pg_url, redis_conn, tmp_path, monkeypatch
):
    """Under load one drain job takes many reports a pass instead of one job per report: the kick flag
    stays set until a pass finds nothing, and a report made after that queues the next job."""
    from rq import Queue

    app = create_app(make_settings(tmp_path, pg_url, redis_url=TEST_REDIS_URL))
    client = app.test_client()
    headers = token_for(client, "gw0")
    queue = Queue("realtime", connection=redis_conn)

    def drains_queued() -> int:
        return sum(1 for job in queue.get_jobs() if job.func_name == "workers.jobs.process_outbox")

    for _ in range(6):
        assert client.post("/api/v1/cases", json=report_body(world), headers=headers).status_code == 201
    assert drains_queued() == 1, "the first report queued the drain; the five after it found it queued"
    with app.app_context():
        assert jobs.process_outbox() >= 6  # what the worker runs: all six (and the token's login) in one job
        assert db.query(Outbox).filter(Outbox.processed_at.is_(None)).count() == 0
        assert not redis_conn.exists(jobs.KICK_KEY)
        db.remove()
    assert client.post("/api/v1/cases", json=report_body(world), headers=headers).status_code == 201
    assert drains_queued() == 2, "once the flag is given back, the next report queues a drain again"

    # a job that has drained for DRAIN_JOB_MAX_S hands over to a fresh one instead of nearing its timeout
    monkeypatch.setattr(jobs, "DRAIN_JOB_MAX_S", 0)
    with app.app_context():
        assert jobs.process_outbox() == 1
        db.remove()
    assert drains_queued() == 3 and redis_conn.exists(jobs.KICK_KEY)
    with app.app_context():
        town = world.towns[0].id
        assert counters.case_counts(jobs.counters_redis(), town, day=local_today())["reported"] == 7
        db.remove()
