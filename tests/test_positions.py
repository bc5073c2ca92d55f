"""Where the gridworkers are (issue 14 §3): positions on the wall within the viewer's jurisdiction, the
nearest online gridworkers on a case page and a dispatch to one of them, a day's patrol replay — each read
of a position refused to roles that may not see it, and audited."""

from __future__ import annotations

import re
from datetime import UTC, timedelta

import pytest

from commandcenter import fieldwork
from commandcenter import positions as positions_module
from commandcenter.db import db
from commandcenter.models import AuditLog, Case, Patrol
from commandcenter.timeutil import current_tz, local, utcnow
from tests.conftest import csrf_from
from tests.test_case_screens import account, html, new_case

pytestmark = [pytest.mark.postgres, pytest.mark.security]


def beat(app, world, username: str, grid: int, *, east_m: float = 0.0, ago: timedelta = timedelta(0)) -> None:
    """A heartbeat of `username` at the middle of grid `grid`, `east_m` metres east, `ago` ago."""
    with app.app_context():
        lat, lon = world.grid_point(grid)
        fieldwork.heartbeat(account(username), lat, lon + east_m / 95_000, now=utcnow() - ago)


def start_patrol(app, username: str) -> None:
    with app.app_context():
        worker = account(username)
        db.add(Patrol(gridworker_id=worker.id, grid_id=worker.place_id, town_id=worker.town_id, started_at=utcnow()))
        db.commit()


def positions(client) -> dict:
    return {p["name"]: p for p in client.get("/wall/positions").get_json()["items"]}


def test_a_town_wall_shows_only_its_own_gridworkers_coloured_by_state(app, world, client, auth):
    beat(app, world, "gw0", 0)
    start_patrol(app, "gw0")
    beat(app, world, "gw1", 1)
    beat(app, world, "gw2", 2, ago=timedelta(minutes=30))  # offline for over the window
    beat(app, world, "gw3", 3, ago=timedelta(minutes=2))  # walking: 200 m in two minutes, no patrol started
    beat(app, world, "gw3", 3, east_m=200)
    beat(app, world, "gw4", 4)  # the other town
    auth.login("town0_duty")
    seen = positions(client)
    assert set(seen) == {"gw0", "gw1", "gw2", "gw3"}
    states = {n: p["state"] for n, p in seen.items()}
    assert states == {"gw0": "patrolling", "gw1": "online", "gw2": "offline", "gw3": "patrolling"}
    lat, lon = world.grid_point(0)
    assert (seen["gw0"]["lat"], seen["gw0"]["lon"]) == (round(lat, 6), round(lon, 6))
    client.post("/logout", data={"csrf_token": csrf_from(html(client.get("/")))})
    auth.login("city_duty_officer")
    assert set(positions(client)) == {"gw0", "gw1", "gw2", "gw3", "gw4"}


@pytest.mark.parametrize("username", ["city_leader", "gw0", "dept0", "city_auditor"])
def test_roles_without_position_view_see_no_positions(app, world, client, auth, username):
    beat(app, world, "gw0", 0)
    auth.login(username)
    response = client.get("/wall/positions")
    assert response.status_code == 403
    assert f"{world.grid_point(0)[1]:.4f}" not in response.get_data(as_text=True)  # no coordinates leak
    with app.app_context():
        assert db.query(AuditLog).filter_by(action="position.view").count() == 0


def test_every_read_of_positions_is_audited_folded_per_minute(app, world, client, auth):
    beat(app, world, "gw0", 0)
    auth.login("town0_duty")
    client.get("/wall/positions")
    client.get("/wall/positions")  # the wall polls: one row per viewer per minute
    with app.app_context():
        rows = db.query(AuditLog).filter_by(action="position.view").all()
        assert len(rows) == 1
        assert rows[0].username == "town0_duty" and "1 人" in rows[0].detail
        # a minute later, the next read is a new row
        positions_module.live_positions(account("town0_duty"), now=utcnow() + timedelta(minutes=2))
        assert db.query(AuditLog).filter_by(action="position.view").count() == 2


def test_nearest_online_gridworkers_of_the_case_town_and_a_dispatch_to_one(app, world, client, auth):
    case = new_case(app, world, grid=0, state="registered")
    beat(app, world, "gw1", 0, east_m=300)  # another grid's gridworker, 300 m away
    beat(app, world, "gw0", 0, east_m=800)
    beat(app, world, "gw2", 0, east_m=50, ago=timedelta(minutes=30))  # nearest, but offline
    beat(app, world, "gw4", 0, east_m=10)  # next to it, but of the other town
    auth.login("town0_operator")
    page = html(client.get(f"/cases/{case.id}"))
    section = page[page.index("就近派遣") :]
    names = re.findall(r'<tr data-worker="([^"]+)">', section)
    assert names == ["gw1", "gw0"]
    distances = [int(d) for d in re.findall(r'class="nowrap distance">(\d+) 米', section)]
    assert 280 <= distances[0] <= 320 and 760 <= distances[1] <= 840
    with app.app_context():
        assert db.query(AuditLog).filter_by(action="position.nearest", object_id=str(case.id)).count() == 1
        gw1_id = account("gw1").id
    response = client.post(
        f"/cases/{case.id}/actions/dispatch",
        data={"csrf_token": csrf_from(page), "assignee_id": str(gw1_id), "note": "就近派遣"},
    )
    assert response.status_code == 302
    with app.app_context():
        got = db.get(Case, case.id)
        assert (got.state, got.assignee_id, got.department_id) == ("dispatched", gw1_id, None)
    # the gridworker of the neighbouring grid sees the case and may take it on
    client.post("/logout", data={"csrf_token": csrf_from(html(client.get("/")))})
    auth.login("gw1")
    mine = client.get(f"/cases/{case.id}")
    assert mine.status_code == 200 and "签收处理" in html(mine)


def test_nearest_is_not_offered_to_whom_may_not_dispatch(app, world, client, auth):
    case = new_case(app, world, grid=0, state="registered")
    beat(app, world, "gw1", 0, east_m=300)
    auth.login("town0_supervisor")  # may register, not dispatch
    assert "就近派遣" not in html(client.get(f"/cases/{case.id}"))


def test_a_patrol_replay_of_a_day_within_the_jurisdiction(app, world, client, auth):
    with app.app_context():
        worker = account("gw0")
        lat, lon = world.grid_point(0)
        start = utcnow() - timedelta(hours=2)
        t0 = int(start.replace(tzinfo=UTC).timestamp())
        track = [[lon + i * 0.001, lat, t0 + 600 * i] for i in range(7)]
        db.add(
            Patrol(
                gridworker_id=worker.id,
                grid_id=worker.place_id,
                town_id=worker.town_id,
                started_at=start,
                ended_at=start + timedelta(hours=1),
                track=track,
                distance_m=640,
            )
        )
        db.commit()
        day = local(start, current_tz()).date().isoformat()
        worker_id = worker.id
    auth.login("town0_supervisor")
    body = client.get(f"/drill/worker/{worker_id}/patrols.json?day={day}").get_json()
    assert len(body["patrols"]) == 1 and len(body["patrols"][0]["points"]) == 7
    xs = [p[0] for p in body["patrols"][0]["points"]]
    assert xs == sorted(xs) and body["grid_path"].startswith("M")  # west to east, over his grid
    page = html(client.get(f"/drill/worker/{worker_id}"))
    assert "巡查轨迹回放" in page and "js/replay.js" in page
    assert client.get(f"/drill/worker/{worker_id}/patrols.json?day=2026-13-01").status_code == 400
    with app.app_context():
        assert db.query(AuditLog).filter_by(action="position.replay", object_id=str(worker_id)).count() == 1
    client.post("/logout", data={"csrf_token": csrf_from(html(client.get("/")))})
    auth.login("town1_supervisor")  # another town's gridworker does not exist for him
    assert client.get(f"/drill/worker/{worker_id}/patrols.json").status_code == 404
    client.post("/logout", data={"csrf_token": csrf_from(html(client.get("/")))})
    auth.login("city_leader")  # drills down, but sees no positions
    assert client.get(f"/drill/worker/{worker_id}/patrols.json").status_code == 403
    assert "巡查轨迹回放" not in html(client.get(f"/drill/worker/{worker_id}"))


def test_the_hotline_form_locates_by_map_or_standard_address_within_the_jurisdiction(app, world, client, auth):
    from commandcenter.models import StandardAddress

    with app.app_context():
        for i, (grid, text) in enumerate(((0, "东湖路 1 号"), (1, "东湖路 9 号"), (4, "东湖路 100 号（西湖街道）"))):
            g = world.grids[grid]
            db.add(
                StandardAddress(
                    code=f"A{i}",
                    address=text,
                    grid_id=g.id,
                    village_id=g.village_id,
                    town_id=g.town_id,
                    lat=g.center_lat,
                    lon=g.center_lon,
                )
            )
        db.commit()
    auth.login("town0_operator")
    page = html(client.get("/hotline/new"))
    assert page.count('class="map-grid locate-grid"') == 4  # his town's grids to tap, not the other town's
    found = client.get("/hotline/addresses.json?q=东湖路").get_json()["items"]
    assert [f["address"] for f in found] == ["东湖路 1 号", "东湖路 9 号"]
    assert found[0]["grid_id"] == world.grids[0].id
    assert client.get("/hotline/addresses.json?q=1 号").get_json()["items"][0]["address"] == "东湖路 1 号"
    assert client.get("/hotline/addresses.json?q=%25").get_json()["items"] == []  # a wildcard is a character
    client.post("/logout", data={"csrf_token": csrf_from(html(client.get("/")))})
    auth.login("dept0")
    assert client.get("/hotline/addresses.json?q=东湖路").status_code == 403
