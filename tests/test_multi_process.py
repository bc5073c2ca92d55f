"""Server mode as a city runs it: two web processes and two RQ workers, joined only through PostgreSQL
and Redis. A report posted to one web process reaches the duty officers connected to either, once; the
live counters count it once; a retry of the same report on the other process creates nothing."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import requests

from commandcenter import counters
from commandcenter.db import db
from commandcenter.models import Alert, Case
from tests.conftest import (
    ARTIFACTS,
    LiveServer,
    WorkerProcess,
    free_port,
    login_session,
    pushed,
    socket_client,
    wait_for,
)

pytestmark = [pytest.mark.live, pytest.mark.redis, pytest.mark.slow]

REPORTS = 12


@pytest.fixture
def two_by_two(app, server_env):
    ARTIFACTS.mkdir(exist_ok=True)
    webs = [LiveServer(server_env, free_port(), ARTIFACTS / f"multi-web{i}.log").start() for i in (1, 2)]
    workers = [WorkerProcess(server_env, ARTIFACTS / f"multi-worker{i}.log").start() for i in (1, 2)]
    yield webs, workers
    for process in [*workers, *webs]:
        process.stop()


def token_for(base_url: str, username: str) -> str:
    from tests.conftest import PASSWORD

    response = requests.post(base_url + "/api/v1/tokens", json={"username": username, "password": PASSWORD}, timeout=10)
    assert response.status_code in (200, 201), response.text
    return response.json()["token"]


def test_two_web_two_workers_push_once_and_count_once(world, two_by_two, redis_conn, app):
    (web1, web2), _workers = two_by_two
    city_duty, city_events = socket_client(web1.url, login_session(web1.url, "city_duty_officer"))
    town_duty, town_events = socket_client(web2.url, login_session(web2.url, "town0_duty"))
    try:
        token = token_for(web2.url, "gw0")
        lat, lon = world.grid_point(0)
        discovered = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
        # the parking report was found 50 minutes ago: its warning (15 minutes before the hour) is due at once
        parking_found = (datetime.now(UTC) - timedelta(minutes=50)).isoformat()
        numbers = []
        for i in range(REPORTS):
            web = (web1, web2)[i % 2]  # reports arrive on both processes
            body = {
                "client_key": f"multi-report-{i}",
                "category_code": "0101" if i else "0401",
                "description": f"多进程测试上报 {i}",
                "lat": lat,
                "lon": lon,
                "discovered_at": discovered if i else parking_found,
            }
            response = requests.post(
                web.url + "/api/v1/cases", json=body, timeout=10, headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code in (200, 201), response.text
            numbers.append(response.json()["number"])
        # the app retries the first report on the other process: the same case, nothing new
        retry = requests.post(
            web2.url + "/api/v1/cases",
            json={
                "client_key": "multi-report-0",
                "category_code": "0401",
                "description": "多进程测试上报 0",
                "lat": lat,
                "lon": lon,
                "discovered_at": discovered,
            },
            timeout=10,
            headers={"Authorization": f"Bearer {token}"},
        )
        assert retry.status_code == 200 and retry.json()["number"] == numbers[0]

        def reported_pushes(events):
            return Counter(
                d["number"]
                for e, d in pushed(events)
                if e == "case" and d.get("number") in numbers and d.get("action", "report") == "report"
            )

        for events in (city_events, town_events):
            seen = wait_for(
                lambda events=events: len(reported_pushes(events)) == REPORTS and reported_pushes(events), 30, step=0.2
            )
            assert seen and set(seen) == set(numbers), f"missing pushes: {set(numbers) - set(seen or {})}"
            assert max(seen.values()) == 1, f"a push arrived twice: {seen}"
            # one batch per tick per room, flushed by one process whichever holds the socket: numbered 1, 2, 3…
            seqs = [d["seq"] for e, d in events if e == "batch"]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) and len(seqs) < REPORTS, seqs

        with app.app_context():
            assert db.query(Case).count() == REPORTS
            town_id = world.towns[0].id
            counted = wait_for(
                lambda: counters.case_counts(redis_conn, town_id, tz="Asia/Shanghai")["reported"] == REPORTS,
                30,
                step=0.2,
            )
            assert counted, counters.case_counts(redis_conn, town_id, tz="Asia/Shanghai")
            time.sleep(1.0)  # both workers had the time to apply anything twice: they must not have
            assert counters.case_counts(redis_conn, town_id, tz="Asia/Shanghai")["reported"] == REPORTS
            assert counters.case_counts(redis_conn, world.city.id, tz="Asia/Shanghai")["reported"] == REPORTS
            # the parking report (0401) is warned about once, not once per worker or per sweep
            parking = db.query(Case).filter_by(number=numbers[0]).one()

            def alerts_of_parking() -> int:
                db.expire_all()
                return db.query(Alert).filter_by(case_id=parking.id).count()

            assert wait_for(lambda: alerts_of_parking() >= 1, 30, step=0.2), "the parking warning was never raised"
            time.sleep(2.0)  # both workers and a sweep had the time to raise it again: they must not have
            assert alerts_of_parking() == 1
            db.remove()
    finally:
        city_duty.disconnect()
        town_duty.disconnect()
