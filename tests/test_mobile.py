"""The leaders' phone summary (/m): today's and this month's numbers, the town ranking, open alerts, the trend,
in a page small enough for a slow phone."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from commandcenter.db import db
from commandcenter.models import Alert, Case
from commandcenter.timeutil import utcnow
from tests.conftest import report as shared_report
from tests.world import WorldView

pytestmark = pytest.mark.postgres


def report(v: WorldView, worker: str, grid: int, key: str, code: str = "0101", minutes_ago: int = 5) -> Case:
    now = utcnow()
    return shared_report(
        v,
        worker,
        code,
        now,
        grid=grid,
        key=key,
        description="道路暴露垃圾",
        discovered_at=now - timedelta(minutes=minutes_ago),
    )


@pytest.fixture
def reported(app, world):
    """Town 0 gets three reports today (one closed by its reporter the same day), town 1 one, plus an open alert."""
    with app.app_context():
        v = WorldView(world)
        cases = [
            report(v, "gw0", 0, "m-000001"),
            report(v, "gw1", 1, "m-000002"),
            report(v, "gw2", 2, "m-000003"),
            report(v, "gw4", 4, "m-000004"),
        ]
        db.add(Alert(case_id=cases[0].id, kind="overdue", town_id=world.towns[0].id, due_at=utcnow()))
        db.commit()
        db.remove()
    return world


def tile(html: str, key: str, section: str) -> str:
    """The value of the tile of catalogue figure `key` (its label is the catalogue's name, linked to /figures/)."""
    block = html.split(f'id="h-{section}"', 1)[1].split("</section>", 1)[0]
    match = re.search(r'data-figure="' + re.escape(key) + r'"><span class="v">(.*?)</span><span class="l">', block)
    assert match, f"no tile {key} in section {section}"
    return re.sub(r"<[^>]+>", "", match.group(1))


def test_city_leader_sees_today_month_ranking_and_alerts(client, auth, reported):
    auth.login("city_leader")
    response = client.get("/m/")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert tile(html, "reported", "today") == "4"
    assert tile(html, "reported", "month") == "4"
    assert tile(html, "alerts_open", "today") == "1"
    assert 'href="/figures/#alerts_open"' in html and ">未解除预警</a>" in html
    # the ranking lists both towns with a rank and a total
    ranking = html.split('id="h-rank"', 1)[1].split("</section>", 1)[0]
    for town in reported.towns:
        assert town.name in ranking
    assert len(re.findall(r'<span class="r">\d+</span>', ranking)) == 2
    # the trend is a server-drawn SVG with one bar per day of the last 30 days, today's bar the highest
    trend = html.split('id="h-trend"', 1)[1].split("</section>", 1)[0]
    assert trend.count("<rect") == 30
    assert "上报事件 4 件" in trend
    # a small page: no script at all, one small style sheet
    assert "<script" not in html
    assert len(response.data) < 30_000


def test_town_leader_sees_only_his_town(app, client, auth, reported):
    with app.app_context():
        from commandcenter.accounts import create_account
        from commandcenter.models import Place
        from commandcenter.security import hash_password
        from tests.conftest import PASSWORD

        create_account(
            username="town0_leader",
            display_name="town0_leader",
            password="",
            role="leader",
            place=db.get(Place, reported.towns[0].id),
            password_hash=hash_password(PASSWORD),
        )
        db.commit()
        db.remove()
    auth.login("town0_leader")
    html = client.get("/m/").get_data(as_text=True)
    assert tile(html, "reported", "today") == "3"
    ranking = html.split('id="h-rank"', 1)[1].split("</section>", 1)[0]
    assert reported.towns[0].name in ranking and reported.towns[1].name not in ranking
    assert "共 2 个镇街参与排名" in ranking


def test_other_roles_are_refused(client, auth, reported):
    auth.login("gw0")
    assert client.get("/m/").status_code == 403
