"""Issue 16 §2: each piece of shared vocabulary has one definition, and every module uses that one."""

from __future__ import annotations

import random
from datetime import datetime

import pytest

from commandcenter import hierarchy, jobs, ranking, timeutil, vocabulary, web


def test_case_state_groups_are_defined_once():
    from commandcenter import alerts
    from commandcenter.cases import loop, queries
    from commandcenter.demo import simulator
    from commandcenter.importer import loaders
    from commandcenter.open311 import service
    from commandcenter.wall import queries as wall_queries

    for module in (alerts, loop, simulator, loaders, wall_queries):
        assert module.OPEN_STATES is vocabulary.OPEN_STATES, module.__name__
    for module in (loop, loaders, service):
        assert module.FINAL_STATES is vocabulary.FINAL_STATES, module.__name__
    assert queries.RUNNING_STATES is vocabulary.RUNNING_STATES


def test_queue_names_are_defined_once():
    from commandcenter.bulletin import jobs as bulletin_jobs
    from workers.schedule import SCHEDULE

    assert {queue for _job, queue, _interval in SCHEDULE} <= set(vocabulary.QUEUES)
    assert bulletin_jobs.QUEUE == vocabulary.QUEUE_REPORTS
    import inspect

    from commandcenter import jobs as follow_up
    from commandcenter.admin import views as admin_views

    for module in (follow_up, admin_views):  # no queue named by a literal
        assert not any(f'"{name}"' in inspect.getsource(module) for name in vocabulary.QUEUES), module.__name__


def test_one_competition_ranking_serves_every_table():
    from commandcenter.assessment.rules import rank
    from commandcenter.points.rules import ranked

    rng = random.Random(16)
    for _ in range(200):
        values = [float(rng.randint(0, 5)) for _ in range(rng.randint(0, 12))]
        expected = ranking.competition_ranks(values)
        assert list(rank(dict(enumerate(values))).values()) == expected
        rows = ranked([{"id": i, "total": v} for i, v in enumerate(values)])
        assert {row["id"]: row["rank"] for row in rows} == dict(enumerate(expected))
    assert ranking.competition_ranks([90.0, 90.0, 80.0, None]) == [1, 1, 3, None]


def test_one_htmx_fragment_check():
    from commandcenter.bulletin import views as bulletin_views
    from commandcenter.cases import views as case_views
    from commandcenter.drill import views as drill_views

    for module in (case_views, bulletin_views, drill_views):
        assert module.wants_fragment is web.wants_fragment, module.__name__


def test_one_set_of_place_level_labels():
    """The importer's messages and the drill-down's titles name the levels as labels.PLACE_LEVEL does."""
    import inspect

    from commandcenter import labels
    from commandcenter.drill import views as drill_views
    from commandcenter.importer import loaders

    assert labels.PLACE_LEVEL == {"city": "市", "town": "镇街", "village": "村社", "grid": "网格"}
    for module in (drill_views, loaders):
        source = inspect.getsource(module)
        assert '"镇街", "village": "村社"' not in source, module.__name__
        assert "labels.PLACE_LEVEL" in source, module.__name__


def test_one_category_subtree_and_one_city(app, world):
    from commandcenter import categories, stats
    from commandcenter.cases import queries
    from commandcenter.models import Category

    assert stats.descendants is categories.descendants and queries.descendants is categories.descendants
    with app.app_context():
        big = world.category("01")
        below = categories.descendants(big.id)
        from commandcenter.db import db

        assert below == {big.id} | {
            c.id for c in db.query(Category).all() if c.code.startswith("01") and c.id != big.id
        }
        assert hierarchy.city_id() == jobs.city_id() == world.city.id


def test_every_clock_honours_cc_timezone(monkeypatch):
    """Outside an application (workers' helpers, scripts) CC_TIMEZONE decides; inside, the app's setting."""
    monkeypatch.setenv("CC_TIMEZONE", "Asia/Urumqi")
    assert timeutil.current_tz() == "Asia/Urumqi"
    noon_utc = datetime(2026, 12, 3, 12, 0)
    assert timeutil.local(noon_utc) == datetime(2026, 12, 3, 18, 0)  # UTC+6
    assert timeutil.fmt(noon_utc) == "2026-12-03 18:00"
    monkeypatch.delenv("CC_TIMEZONE")
    assert timeutil.current_tz() == timeutil.DEFAULT_TZ


@pytest.mark.postgres
def test_the_nightly_job_runs_after_its_hour_in_the_citys_time(app, monkeypatch):
    from commandcenter.db import db
    from commandcenter.models import JobRun

    with app.app_context():
        monkeypatch.setattr(app.config["SETTINGS"], "timezone", "Asia/Urumqi")
        # it last ran at 20:30 UTC: 02:30 in Urumqi (before a 03:00 job's hour), 04:30 in Shanghai (after it)
        db.add(JobRun(name="test-job", last_status="ok", last_started_at=datetime(2026, 12, 2, 20, 30), runs=1))
        db.commit()
        # at 21:30 UTC (03:30 in Urumqi) the city's night has come again; by Shanghai's clock it had not
        assert jobs.nightly_due("test-job", 3, now=datetime(2026, 12, 2, 21, 30))
        monkeypatch.setattr(app.config["SETTINGS"], "timezone", "Asia/Shanghai")
        assert not jobs.nightly_due("test-job", 3, now=datetime(2026, 12, 2, 21, 30))


def test_place_scoping_has_one_home():
    """Which place contains which, and how a statement is narrowed to a place: hierarchy.py, for every screen."""
    from commandcenter import access, measures, stats
    from commandcenter.bulletin import builder
    from commandcenter.bulletin import service as bulletin_service
    from commandcenter.cases import queries
    from commandcenter.drill import views as drill_views
    from commandcenter.points import service as points_service
    from commandcenter.wall import queries as wall_queries

    for module in (access, drill_views, bulletin_service):
        assert module.place_contains is hierarchy.place_contains, module.__name__
    for module in (access, measures, stats, builder, drill_views, points_service, wall_queries):
        assert module.in_place is hierarchy.in_place, module.__name__
    assert queries.place_names is hierarchy.place_names
    for module in (access, measures, queries, stats):
        assert "def place_contains" not in __import__("inspect").getsource(module)
        assert "def in_place" not in __import__("inspect").getsource(module)
