"""Warnings before a deadline is missed: raised once, at the right moment, cleared when the case moves on."""

from __future__ import annotations

from datetime import datetime, timedelta

from commandcenter import alerts, jobs
from commandcenter.cases import loop
from commandcenter.db import db
from commandcenter.models import Account, Alert, Case

T0 = datetime(2026, 11, 23, 2, 0)  # 10:00 in Asia/Shanghai, a Monday


def account(username: str) -> Account:
    return db.query(Account).filter_by(username=username).one()


def parking_case(world, discovered: datetime, now: datetime) -> Case:
    lat, lon = world.grid_point(0)
    data = loop.ReportInput(
        category_id=world.category("0401").id, description="机动车占用盲道", lat=lat, lon=lon, discovered_at=discovered
    )
    case, _ = loop.report_case(data, actor=account("gw0"), source="app", client_key=None, now=now)
    return case


def test_parking_report_warns_at_45_minutes_once_and_clears_on_transfer(ctx, world):
    case = parking_case(world, discovered=T0, now=T0 + timedelta(minutes=5))
    assert case.transfer_due == T0 + timedelta(minutes=60)
    assert case.transfer_warn_at == T0 + timedelta(minutes=45)
    assert alerts.sweep(T0 + timedelta(minutes=44)) == []  # at 44 minutes: nothing yet
    assert jobs.check_case_alerts(case.id, T0 + timedelta(minutes=44)) == 0
    raised = alerts.sweep(T0 + timedelta(minutes=45))
    assert [(a.case_id, a.kind) for a in raised] == [(case.id, "parking_due")]
    for minute in range(46, 56):  # ten more sweeps and a retried job: still one alert
        assert alerts.sweep(T0 + timedelta(minutes=minute)) == []
    assert jobs.check_case_alerts(case.id, T0 + timedelta(minutes=50)) == 0
    assert db.query(Alert).count() == 1
    loop.transfer_to_city(db.get(Case, case.id), account("town0_operator"), now=T0 + timedelta(minutes=50))
    alert = db.query(Alert).one()
    assert alert.cleared_at == T0 + timedelta(minutes=50)
    assert alerts.open_alerts() == []


def test_unescalated_gas_hazard_alerts_once_near_its_limit(ctx, world):
    lat, lon = world.grid_point(1)
    data = loop.ReportInput(category_id=world.category("1002").id, description="闻到燃气味", lat=lat, lon=lon)
    case, _ = loop.report_case(data, actor=account("gw1"), source="app", client_key=None, now=T0)
    loop.register(case, account("town0_operator"), now=T0)
    assert case.escalate_due == T0 + timedelta(hours=2)
    warn = case.escalate_warn_at
    assert warn == T0 + timedelta(minutes=96)  # 80 % of two hours
    assert alerts.sweep(warn - timedelta(seconds=1)) == []
    for i in range(10):
        alerts.sweep(warn + timedelta(seconds=i))
    # a worker killed after raising but before its push: the job runs again, nothing new is raised
    assert jobs.check_case_alerts(case.id, warn + timedelta(minutes=1)) == 0
    assert [(a.kind, a.due_at) for a in db.query(Alert).all()] == [("escalation_due", case.escalate_due)]
    loop.escalate(
        db.get(Case, case.id),
        account("gw1"),
        to_level="town",
        note="燃气泄漏需镇街协调处置",
        now=warn + timedelta(minutes=2),
    )
    assert db.query(Alert).one().cleared_at is not None
    assert db.get(Case, case.id).escalate_warn_at is None


def test_overdue_case_raises_overdue_alert_and_closing_clears_it(ctx, world):
    lat, lon = world.grid_point(2)
    data = loop.ReportInput(category_id=world.category("0501").id, description="井盖缺失", lat=lat, lon=lon)
    case, _ = loop.report_case(data, actor=account("gw2"), source="app", client_key=None, now=T0)
    loop.register(case, account("town0_operator"), now=T0)
    late = case.handle_due + timedelta(minutes=1)
    loop.sweep_deadlines(now=late)
    raised = alerts.sweep(late)
    assert [a.kind for a in raised] == ["overdue"]
    assert alerts.sweep(late + timedelta(minutes=5)) == []
    case = db.get(Case, case.id)
    loop.reject(case, account("town0_operator"), reason="测试作废", now=late + timedelta(minutes=10))
    assert db.query(Alert).one().cleared_at is not None


def test_acknowledge_records_who_and_when(ctx, world):
    case = parking_case(world, discovered=T0, now=T0)
    alert = alerts.sweep(T0 + timedelta(minutes=46))[0]
    alerts.acknowledge(alert, account("city_duty_officer"), T0 + timedelta(minutes=47))
    alert = db.get(Alert, alert.id)
    assert alert.acknowledged_by_id == account("city_duty_officer").id
    assert alert.acknowledged_at == T0 + timedelta(minutes=47)
    assert case.id == alert.case_id


def test_duty_officer_acknowledges_on_the_alert_desk(app, world):
    from tests.conftest import AuthActions, csrf_from

    with app.app_context():
        parking_case(world, discovered=T0, now=T0)
        alert_id = alerts.sweep(T0 + timedelta(minutes=46))[0].id
    client = app.test_client()
    AuthActions(client).login("town1_duty")
    page = client.get("/alerts/").get_data(as_text=True)
    assert "当前没有未解除的预警" in page  # town 1 does not see town 0's alert
    assert client.post(f"/alerts/{alert_id}/ack", data={"csrf_token": csrf_from(page)}).status_code == 404
    client = app.test_client()
    AuthActions(client).login("town0_duty")
    page = client.get("/alerts/").get_data(as_text=True)
    assert "乱停车一小时临期" in page
    assert client.post(f"/alerts/{alert_id}/ack", data={"csrf_token": csrf_from(page)}).status_code == 302
    alert = db.get(Alert, alert_id)
    db.refresh(alert)
    assert alert.acknowledged_by_id == account("town0_duty").id and alert.acknowledged_at is not None
    assert "已确认" in client.get("/alerts/").get_data(as_text=True)


def self_handled_report(world, who: str, grid: int, at: datetime, description: str) -> Case:
    """A report marked 自办自结 by gridworker `who` in grid `grid` at `at`, through the loop."""
    case, _ = loop.report_case(
        loop.ReportInput(
            category_id=world.category("0201").id,
            description=description,
            lat=world.grid_point(grid)[0],
            lon=world.grid_point(grid)[1],
            self_handled=True,
        ),
        actor=account(who),
        source="app",
        client_key=None,
        now=at,
    )
    return case


def test_self_handled_report_left_open_is_warned_before_midnight_and_overdue_after(ctx, world):
    """Issue 12 §3a: 自办自结 must be closed the same day. Left open, it is due at the end of its local day,
    warned about before it (120 minutes by default) and overdue after it, with an alert each time."""
    from commandcenter import labels
    from tests.conftest import shanghai

    reported = shanghai(2026, 3, 10, 10, 0)
    case = self_handled_report(world, "gw0", 0, reported, "电线杆上有小广告")
    assert case.handle_due == shanghai(2026, 3, 11, 0, 0)
    assert alerts.sweep(shanghai(2026, 3, 10, 21, 59)) == []
    warned = alerts.sweep(shanghai(2026, 3, 10, 22, 0))
    assert [(a.case_id, a.kind, a.due_at) for a in warned] == [(case.id, "self_handled_due", case.handle_due)]
    assert labels.ALERT_KIND["self_handled_due"] == "自办自结当日临期"
    assert alerts.sweep(shanghai(2026, 3, 10, 23, 0)) == []  # once
    # after midnight the deadline sweep marks it overdue, with a step saying why, and the overdue alert rises
    assert loop.sweep_deadlines(shanghai(2026, 3, 11, 0, 1))["overdue"] == 1
    fresh = db.get(Case, case.id)
    assert fresh.overdue is True and fresh.state == "reported"
    assert "自办自结未在上报当日办结" in fresh.steps[-1].note
    assert [a.kind for a in alerts.sweep(shanghai(2026, 3, 11, 0, 2))] == ["overdue"]
    # closing it late clears the alerts; it earns no points (closed after its day)
    loop.self_close(fresh, account("gw0"), "次日处理完毕", now=shanghai(2026, 3, 11, 9, 0))
    assert db.query(Alert).filter(Alert.case_id == case.id, Alert.cleared_at.is_(None)).count() == 0
    assert loop.self_closed_same_day(db.get(Case, case.id)) is False


def test_self_handled_report_closed_in_time_raises_nothing(ctx, world):
    from tests.conftest import shanghai

    case = self_handled_report(world, "gw1", 1, shanghai(2026, 3, 10, 20, 0), "路灯下有小广告")
    loop.self_close(case, account("gw1"), "已清除", now=shanghai(2026, 3, 10, 20, 30))
    assert alerts.sweep(shanghai(2026, 3, 10, 23, 0)) == []
    assert loop.sweep_deadlines(shanghai(2026, 3, 11, 1, 0))["overdue"] == 0


def test_a_self_handled_alert_shows_on_the_alert_desk_and_the_wall(app, world):
    from tests.conftest import logged_in, shanghai

    with app.app_context():
        self_handled_report(world, "gw0", 0, shanghai(2026, 3, 10, 10, 0), "墙面小广告")
        assert [a.kind for a in alerts.sweep(shanghai(2026, 3, 10, 22, 30))] == ["self_handled_due"]
    client = logged_in(app.test_client(), "city_duty_officer")
    desk = client.get("/alerts/")
    assert desk.status_code == 200 and "自办自结当日临期" in desk.get_data(as_text=True)
    wall = client.get("/wall/panel/alerts")
    assert wall.status_code == 200 and "自办自结当日临期" in wall.get_data(as_text=True)
