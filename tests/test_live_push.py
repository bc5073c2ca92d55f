"""Pushes cross processes: an alert raised by a separate worker reaches a browser's Socket.IO client."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from commandcenter import create_app
from commandcenter.cases import loop
from commandcenter.db import db
from commandcenter.models import Account, Alert
from commandcenter.timeutil import utcnow
from tests.conftest import TEST_REDIS_URL, login_session, make_settings, socket_client, wait_for

pytestmark = [pytest.mark.live, pytest.mark.redis]


def test_alert_raised_in_worker_reaches_the_client(world, live_stack, pg_url, tmp_path):
    web, _worker = live_stack
    duty = login_session(web.url, "town0_duty")
    client, events = socket_client(web.url, duty)
    outsider, outsider_events = socket_client(web.url, login_session(web.url, "town1_duty"))
    try:
        # the report is committed by this test process (as another web process would), in server mode:
        # its follow-up goes through the outbox and RQ to the separate worker
        writer = create_app(make_settings(tmp_path / "writer", pg_url, redis_url=TEST_REDIS_URL))
        with writer.app_context():
            gw = db.query(Account).filter_by(username="gw0").one()
            lat, lon = world.grid_point(0)
            now = utcnow()
            data = loop.ReportInput(
                category_id=world.category("0401").id,
                description="车辆占用消防通道",
                lat=lat,
                lon=lon,
                discovered_at=now - timedelta(minutes=50),
            )
            case, _ = loop.report_case(data, actor=gw, source="app", client_key="live-parking-1", now=now)
        alert = wait_for(lambda: next((d for e, d in events if e == "alert"), None))
        assert alert is not None, f"no alert pushed; got {events}"
        assert alert["number"] == case.number and alert["kind"] == "parking_due"
        assert alert["seq"] > 0
        assert any(e == "case" and d["number"] == case.number for e, d in events)
        assert db.query(Alert).filter_by(case_id=case.id).count() == 1
        time.sleep(0.5)
        assert outsider_events == [], "a town-1 duty officer must not receive town 0's pushes"
    finally:
        client.disconnect()
        outsider.disconnect()


def test_socket_refuses_anonymous_and_volunteers(world, live_stack):
    """(A gridworker's /g/ page may connect since issue 14 §4, into his own room only: test_gridworker_pages.)"""
    import socketio

    web, _ = live_stack
    anonymous = socketio.Client(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        anonymous.connect(web.url, namespaces=["/live"], transports=["websocket"], wait_timeout=5)
    with pytest.raises(socketio.exceptions.ConnectionError):
        socket_client(web.url, login_session(web.url, "volunteer0"))


def test_each_wall_sees_its_own_room_numbered_without_gaps(world, live_stack, pg_url, tmp_path):
    """Sequence numbers are per room: a town's wall sees 1, 2, 3… for its own cases while other towns
    report too, so it never mistakes their cases for a gap and re-reads its panels for nothing."""
    web, _worker = live_stack
    town0, town0_events = socket_client(web.url, login_session(web.url, "town0_duty"))
    city, city_events = socket_client(web.url, login_session(web.url, "city_duty_officer"))
    try:
        writer = create_app(make_settings(tmp_path / "writer", pg_url, redis_url=TEST_REDIS_URL))
        numbers = []
        with writer.app_context():
            for k in range(6):
                grid = 0 if k % 2 == 0 else 4  # grids 0–3 are in town 0, 4–7 in town 1
                gw = db.query(Account).filter_by(username=f"gw{grid}").one()
                lat, lon = world.grid_point(grid)
                data = loop.ReportInput(
                    category_id=world.category("0101").id, description="路边暴露垃圾一堆", lat=lat, lon=lon
                )
                case, _ = loop.report_case(data, actor=gw, source="app", client_key=f"live-seq-{k:04d}")
                numbers.append(case.number)
            db.remove()

        def cases(events):
            return [d for e, d in events if e == "case"]

        assert wait_for(lambda: len(cases(city_events)) == 6 and len(cases(town0_events)) == 3), (
            f"town 0 got {len(cases(town0_events))}, the city {len(cases(city_events))}"
        )
        town_seqs = [d["seq"] for d in cases(town0_events)]
        city_seqs = [d["seq"] for d in cases(city_events)]
        assert sorted(town_seqs) == list(range(town_seqs[0], town_seqs[0] + 3)), town_seqs
        assert sorted(city_seqs) == list(range(city_seqs[0], city_seqs[0] + 6)), city_seqs
        assert {d["number"] for d in cases(town0_events)} == set(numbers[0::2])
    finally:
        town0.disconnect()
        city.disconnect()
