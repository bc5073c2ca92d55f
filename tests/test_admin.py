"""Administration pages, each for its own role only (三权分立)."""

from __future__ import annotations

from commandcenter.db import db
from commandcenter.models import Account, AuditLog, LoginRecord
from tests.conftest import csrf_from


def test_ops_page_shows_queues_workers_and_periodic_jobs(world, client, auth, app):
    from workers import jobs

    with app.app_context():
        jobs.sweep_deadlines()  # a periodic job run leaves its trace
    auth.login("city_admin")
    html = client.get("/admin/ops").get_data(as_text=True)
    assert "定时任务" in html and "sweep_deadlines" in html and "成功" in html
    assert "outbox" in html


def test_audit_log_is_for_the_auditor_and_is_itself_audited(world, client, auth):
    auth.login("city_auditor")
    html = client.get("/admin/audit?username=city_auditor").get_data(as_text=True)
    assert "审计日志" in html and "login" in html
    assert db.query(AuditLog).filter_by(action="audit.read").count() == 1


def test_admin_disables_an_account_and_it_can_no_longer_log_in(world, client, auth, app):
    auth.login("city_admin")
    target = db.query(Account).filter_by(username="gw3").one()
    page = client.get("/admin/accounts?q=gw3")
    assert "gw3" in page.get_data(as_text=True)
    response = client.post(
        f"/admin/accounts/{target.id}/active",
        data={"active": "0", "csrf_token": csrf_from(page.get_data(as_text=True))},
    )
    assert response.status_code == 302
    db.expire_all()
    assert db.get(Account, target.id).active is False
    other = app.test_client()
    token = csrf_from(other.get("/login").get_data(as_text=True))
    response = other.post("/login", data={"username": "gw3", "password": "Test@2026pw", "csrf_token": token})
    # the same answer as a wrong password (issue 11 item 7: "已停用" told a stranger the password was right);
    # the true reason is in the login record
    assert response.status_code == 400 and "用户名或密码错误" in response.get_data(as_text=True)
    assert "停用" not in response.get_data(as_text=True)
    assert db.query(LoginRecord).filter_by(username="gw3").order_by(LoginRecord.id.desc()).first().reason == "disabled"


def test_roles_are_kept_apart(world, client, auth):
    auth.login("city_auditor")
    assert client.get("/admin/accounts").status_code == 403
    assert client.get("/admin/ops").status_code == 403
    auth.login("city_admin")
    assert client.get("/admin/audit").status_code == 403
    assert client.get("/cases/").status_code == 403
