"""Issue 13 §4: accounts administered on /admin/accounts — create with a one-time password, edit with validation,
reset, unlock, move a gridworker, sessions and tokens, `flask accounts reset-password`, and 三权分立."""

from __future__ import annotations

import re

import pytest

from commandcenter.db import db
from commandcenter.models import Account, ApiToken, AuditLog, Case, LoginLock, WebSession
from tests.conftest import PASSWORD, AuthActions, csrf_from, logged_in, report, token_for
from tests.test_login_security import lock_out, login_from

pytestmark = pytest.mark.postgres
NEW_PASSWORD = "Renewed@2026pw"


def account(username: str) -> Account:
    db.expire_all()
    return db.query(Account).filter_by(username=username).one()


def one_time(html: str) -> str:
    match = re.search(r'<code class="one-time-password">([^<]+)</code>', html)
    assert match, html[:2000]
    return match.group(1)


def post_form(client, page_path: str, action: str, data: dict):
    token = csrf_from(client.get(page_path).get_data(as_text=True))
    return client.post(action, data={"csrf_token": token, **data})


def change_password(client, old: str, new: str = NEW_PASSWORD):
    token = csrf_from(client.get("/password").get_data(as_text=True))
    return client.post(
        "/password", data={"csrf_token": token, "old_password": old, "new_password": new, "new_password_again": new}
    )


def edit(client, target: Account, area: str = "accounts", **changes):
    """The account page's edit form as it stands, with `changes`."""
    fields = {
        "display_name": target.display_name,
        "role": target.role,
        "place_id": str(target.place_id),
        "phone": target.phone or "",
        "post": target.post or "",
        "center_id": str(target.center_id or ""),
        "department_id": str(target.department_id or ""),
    }
    path = f"/admin/{area}/{target.id}"
    return post_form(client, path if area == "accounts" else "/admin/security", f"{path}/edit", fields | changes)


def audit_rows(action: str) -> list[AuditLog]:
    db.expire_all()
    return db.query(AuditLog).filter_by(action=action).order_by(AuditLog.id).all()


def test_admin_creates_an_account_and_its_owner_logs_in_with_the_one_time_password(world, client, app):
    logged_in(client, "city_admin")
    listing = client.get("/admin/accounts").get_data(as_text=True)
    assert 'href="/admin/accounts/new"' in listing
    assert f'href="/admin/accounts/{world.accounts["gw3"].id}"' in listing  # each row leads to its page
    form = client.get("/admin/accounts/new").get_data(as_text=True)
    assert "<optgroup" in form and world.grids[0].name in form
    assert 'value="auditor"' not in form and 'value="security_admin"' not in form  # 三权分立
    response = client.post(
        "/admin/accounts/new",
        data={
            "csrf_token": csrf_from(form),
            "username": "new_worker",
            "display_name": "新网格员",
            "role": "gridworker",
            "place_id": str(world.grids[2].id),
            "post": "full_time",
            "phone": "13900000001",
            "center_id": str(world.centers["town0"].id),  # ignored: not a center administrator
        },
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "只显示这一次" in html
    password = one_time(html)
    created = account("new_worker")
    assert created.must_change_password and created.place_id == world.grids[2].id and created.center_id is None
    assert created.town_id == world.towns[0].id and created.village_id == world.villages[1].id
    assert password not in created.password_hash
    row = audit_rows("account.create")[-1]
    assert row.username == "city_admin" and row.object_id == str(created.id) and "role: gridworker" in row.detail
    assert all(password not in (r.detail or "") for r in db.query(AuditLog))
    page = client.get(f"/admin/accounts/{created.id}").get_data(as_text=True)
    assert password not in page and "下次登录须修改密码" in page

    owner = app.test_client()
    response = AuthActions(owner).login("new_worker", password)
    assert response.status_code == 302 and response.headers["Location"].endswith("/password")
    assert owner.get("/cases/").headers["Location"].endswith("/password")  # nothing else before the change
    assert change_password(owner, password).status_code == 302
    assert owner.get("/cases/").status_code == 200
    assert account("new_worker").must_change_password is False


def test_creating_refuses_what_breaks_the_rules_naming_the_field(world, client):
    logged_in(client, "city_admin")
    form = client.get("/admin/accounts/new").get_data(as_text=True)
    base = {"csrf_token": csrf_from(form), "username": "bad_one", "display_name": "某人"}
    cases = [
        ({"role": "gridworker", "place_id": str(world.towns[0].id)}, "place", "网格"),
        ({"role": "department", "place_id": str(world.city.id)}, "department", "职能部门"),
        ({"role": "operator", "place_id": ""}, "place", "请选择"),
        ({"role": "auditor", "place_id": str(world.city.id)}, "role", "三权分立"),
        ({"role": "operator", "place_id": str(world.city.id), "username": "gw0"}, "username", "已存在"),
    ]
    for data, field, words in cases:
        response = client.post("/admin/accounts/new", data=base | data)
        html = response.get_data(as_text=True)
        assert response.status_code == 400, data
        error = re.search(rf'id="{field}-error"[^>]*>([^<]+)<', html)
        assert error and words in error.group(1), (data, field, html[:300])
    assert db.query(Account).filter_by(username="bad_one").count() == 0
    assert {r.success for r in audit_rows("account.create")} == {False}


def test_admin_edits_role_and_place_with_errors_naming_the_field(world, client):
    logged_in(client, "city_admin")
    gw3 = account("gw3")
    response = edit(client, gw3, place_id=str(world.towns[1].id))  # a gridworker outside a grid
    assert response.status_code == 400
    assert re.search(r'id="place-error"[^>]*>[^<]*网格', response.get_data(as_text=True))
    response = edit(client, gw3, role="department")
    assert response.status_code == 400 and 'id="department-error"' in response.get_data(as_text=True)
    response = edit(client, account("town0_admin"), center_id=str(world.centers["town1"].id))
    assert response.status_code == 400 and 'id="center-error"' in response.get_data(as_text=True)
    assert account("gw3").role == "gridworker" and account("town0_admin").center_id == world.centers["town0"].id

    response = edit(client, gw3, role="supervisor", place_id=str(world.towns[1].id), display_name="王督导")
    assert response.status_code == 302
    changed = account("gw3")
    assert (changed.role, changed.place_id, changed.town_id, changed.village_id, changed.post) == (
        "supervisor",
        world.towns[1].id,
        world.towns[1].id,
        None,
        None,
    )
    row = audit_rows("account.update")[-1]
    assert row.username == "city_admin" and row.object_id == str(gw3.id)
    assert "role: gridworker→supervisor" in row.detail and world.towns[1].code in row.detail
    assert "display_name: gw3→王督导" in row.detail and "username" not in row.detail

    response = edit(client, account("dept0"), department_id=str(world.departments[1].id), display_name="二号")
    assert response.status_code == 302 and account("dept0").department_id == world.departments[1].id
    # the phone: checked when changed, masked in the log, kept when the (masked) field is left empty
    response = edit(client, account("gw2"), phone="电话")
    assert response.status_code == 400 and 'id="phone-error"' in response.get_data(as_text=True)
    assert edit(client, account("gw2"), phone="13911112222").status_code == 302
    row = audit_rows("account.update")[-1]
    assert "139****2222" in row.detail and "13911112222" not in row.detail
    assert edit(client, account("gw2"), phone="", display_name="二号网格员").status_code == 302
    assert account("gw2").phone == "13911112222" and account("gw2").display_name == "二号网格员"
    # the e-mail for notifications: checked, masked on the page and in the log, kept when left empty
    response = edit(client, account("gw2"), email="不是邮箱")
    assert response.status_code == 400 and 'id="email-error"' in response.get_data(as_text=True)
    assert edit(client, account("gw2"), email="wang.gw2@example.gov.cn").status_code == 302
    assert account("gw2").email == "wang.gw2@example.gov.cn"
    row = audit_rows("account.update")[-1]
    assert "w***@example.gov.cn" in row.detail and "wang.gw2@" not in row.detail
    page = client.get(f"/admin/accounts/{account('gw2').id}").get_data(as_text=True)
    assert "w***@example.gov.cn" in page and "wang.gw2@" not in page
    assert edit(client, account("gw2"), email="").status_code == 302
    assert account("gw2").email == "wang.gw2@example.gov.cn"
    # nobody edits their own role
    response = edit(client, account("city_admin"), role="operator")
    assert response.status_code == 400 and "本人" in response.get_data(as_text=True)
    assert account("city_admin").role == "admin"


def test_reset_password_ends_sessions_and_tokens_and_keeps_the_password_out_of_the_audit(world, client, app):
    browser = logged_in(app.test_client(), "gw3")
    headers = token_for(app.test_client(), "gw3")
    logged_in(client, "city_admin")
    gw3 = account("gw3")
    page = client.get(f"/admin/accounts/{gw3.id}").get_data(as_text=True)
    assert "只在下一页显示一次" in page
    response = client.post(f"/admin/accounts/{gw3.id}/password", data={"csrf_token": csrf_from(page)})
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "密码已重置" in html
    password = one_time(html)
    assert account("gw3").must_change_password is True

    assert AuthActions(app.test_client()).login("gw3", PASSWORD).status_code == 400  # the old one is refused
    gone = browser.get("/cases/")
    assert gone.status_code == 302 and "/login" in gone.headers["Location"]
    assert app.test_client().get("/api/v1/me", headers=headers).status_code == 401
    assert db.query(WebSession).filter_by(account_id=gw3.id, ended_at=None).count() == 0
    assert db.query(ApiToken).filter_by(account_id=gw3.id, revoked=False).count() == 0
    row = audit_rows("password.reset")[-1]
    assert row.username == "city_admin" and row.object_id == str(gw3.id)
    assert all(password not in (r.detail or "") for r in db.query(AuditLog))
    assert client.get(f"/admin/accounts/{gw3.id}").get_data(as_text=True).count(password) == 0

    owner = app.test_client()
    response = AuthActions(owner).login("gw3", password)
    assert response.status_code == 302 and response.headers["Location"].endswith("/password")
    assert change_password(owner, password).status_code == 302


def test_unlock_lifts_the_accounts_login_locks(world, client, app):
    attacker = app.test_client()
    lock_out(attacker, "gw0", "203.0.113.5")
    lock_out(attacker, "gw0", "203.0.113.6", times=2)
    assert login_from(attacker, "gw0", PASSWORD, "203.0.113.5").status_code == 400
    logged_in(client, "city_admin")
    gw0 = account("gw0")
    page = client.get(f"/admin/accounts/{gw0.id}").get_data(as_text=True)
    assert "203.0.113.5" in page and "解除登录锁定" in page
    response = client.post(f"/admin/accounts/{gw0.id}/unlock", data={"csrf_token": csrf_from(page)})
    assert response.status_code == 302
    assert db.query(LoginLock).filter_by(account_id=gw0.id).count() == 0
    row = audit_rows("login.unlock")[-1]
    assert row.username == "city_admin" and "203.0.113.5" in row.detail and "203.0.113.6" in row.detail
    assert login_from(attacker, "gw0", PASSWORD, "203.0.113.5").status_code == 302


def test_moving_a_gridworker_keeps_his_history(world, client, app):
    with app.app_context():
        case = report(world, "gw0", grid=0)
        case_id, case_number = case.id, case.number
        db.commit()
    logged_in(client, "city_admin")
    gw0 = account("gw0")
    new_grid = world.grids[5]
    response = post_form(
        client, f"/admin/accounts/{gw0.id}", f"/admin/accounts/{gw0.id}/move", {"grid_id": new_grid.id}
    )
    assert response.status_code == 302
    moved = account("gw0")
    assert (moved.place_id, moved.village_id, moved.town_id) == (new_grid.id, new_grid.village_id, new_grid.town_id)
    db.expire_all()
    kept = db.get(Case, case_id)
    assert kept.reporter_id == gw0.id and kept.grid_id == world.grids[0].id and kept.town_id == world.towns[0].id
    row = audit_rows("account.move")[-1]
    assert row.username == "city_admin" and world.grids[0].code in row.detail and new_grid.code in row.detail
    # refused for anyone but a gridworker, and for a place that is not a grid
    op = account("town0_operator")
    post_form(client, f"/admin/accounts/{op.id}", f"/admin/accounts/{op.id}/move", {"grid_id": new_grid.id})
    assert account("town0_operator").place_id == world.towns[0].id
    post_form(client, f"/admin/accounts/{gw0.id}", f"/admin/accounts/{gw0.id}/move", {"grid_id": world.towns[0].id})
    assert account("gw0").place_id == new_grid.id

    supervisor = logged_in(app.test_client(), "city_supervisor")
    new_html = supervisor.get(f"/drill/{new_grid.id}").get_data(as_text=True)
    assert f"/drill/worker/{gw0.id}" in new_html
    old_html = supervisor.get(f"/drill/{world.grids[0].id}").get_data(as_text=True)
    assert f"/drill/worker/{gw0.id}" not in old_html
    assert case_number in supervisor.get(f"/cases/{case_id}").get_data(as_text=True)


def test_the_accounts_sessions_are_listed_and_ended_and_tokens_revoked(world, client, app):
    browser = app.test_client()
    assert login_from(browser, "gw1", PASSWORD, "198.51.100.7").status_code == 302
    headers = token_for(app.test_client(), "gw1", device_name="巡查手机")
    logged_in(client, "city_admin")
    gw1 = account("gw1")
    page = client.get(f"/admin/accounts/{gw1.id}").get_data(as_text=True)
    assert "198.51.100.7" in page and "巡查手机" in page
    assert gw1.phone not in page and "138****0001" in page  # the number is masked on the page too (PIPL)
    session_id = re.search(r'name="session_id" value="([0-9a-f]+)"', page).group(1)
    response = client.post(
        f"/admin/accounts/{gw1.id}/sessions/end", data={"csrf_token": csrf_from(page), "session_id": session_id}
    )
    assert response.status_code == 302
    gone = browser.get("/cases/")
    assert gone.status_code == 302 and "/login" in gone.headers["Location"]
    assert audit_rows("session.end")[-1].object_id == str(gw1.id)
    assert app.test_client().get("/api/v1/me", headers=headers).status_code == 200  # a token is not a session

    token_id = re.search(r'name="token_id" value="(\d+)"', page).group(1)
    response = client.post(
        f"/admin/accounts/{gw1.id}/tokens", data={"csrf_token": csrf_from(page), "token_id": token_id}
    )
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/admin/accounts/{gw1.id}")
    assert app.test_client().get("/api/v1/me", headers=headers).status_code == 401
    # another account's session or token is not this page's to end
    other = logged_in(app.test_client(), "gw2")
    other_session = db.query(WebSession).filter_by(account_id=account("gw2").id).one().id
    client.post(
        f"/admin/accounts/{gw1.id}/sessions/end", data={"csrf_token": csrf_from(page), "session_id": other_session}
    )
    assert other.get("/cases/").status_code == 200


def test_cli_reset_password_prints_a_one_time_password(world, runner, app):
    result = runner.invoke(args=["accounts", "reset-password", "gw4"])
    assert result.exit_code == 0, result.output
    password = re.search(r"：(\S+)$", result.output.strip()).group(1)
    assert account("gw4").must_change_password is True
    row = audit_rows("password.reset")[-1]
    assert row.username is None and "命令行" in row.detail and password not in row.detail
    response = AuthActions(app.test_client()).login("gw4", password)
    assert response.status_code == 302 and response.headers["Location"].endswith("/password")

    result = runner.invoke(args=["accounts", "reset-password", "nobody"])
    assert result.exit_code == 1 and "没有用户名为 nobody 的账号" in result.output


def test_cli_creates_an_account(world, runner, app):
    result = runner.invoke(
        args=["accounts", "create", "--username", "cli_gw", "--name", "命令行", "--role", "gridworker"]
        + ["--place-code", world.grids[1].code, "--post", "part_time"]
    )
    assert result.exit_code == 0, result.output
    password = re.search(r"：(\S+)$", result.output.strip()).group(1)
    assert account("cli_gw").place_id == world.grids[1].id
    assert AuthActions(app.test_client()).login("cli_gw", password).status_code == 302
    result = runner.invoke(
        args=["accounts", "create", "--username", "cli_x", "--name", "某", "--role", "gridworker"]
        + ["--place-code", world.towns[0].code]
    )
    assert result.exit_code == 1 and "place" in result.output and "网格" in result.output


@pytest.mark.security
def test_the_system_admin_cannot_touch_security_admin_or_auditor_accounts(world, client, app):
    logged_in(client, "city_admin")
    for username in ("city_security_admin", "city_auditor"):
        target = account(username)
        page = client.get(f"/admin/accounts/{target.id}").get_data(as_text=True)
        assert "三权分立" in page and f"/admin/accounts/{target.id}/edit" not in page
        assert f"/admin/accounts/{target.id}/password" not in page
        response = edit(client, target, display_name="改名")
        assert response.status_code == 400 and "三权分立" in response.get_data(as_text=True)
        assert account(username).display_name == username
        hash_before = target.password_hash
        post_form(client, f"/admin/accounts/{target.id}", f"/admin/accounts/{target.id}/password", {})
        assert account(username).password_hash == hash_before and account(username).must_change_password is False
    # nor make anyone an auditor or a security administrator
    gw3 = account("gw3")
    for role in ("auditor", "security_admin"):
        response = edit(client, gw3, role=role, place_id=str(world.city.id), post="")
        assert response.status_code == 400 and re.search(
            r'id="role-error"[^>]*>[^<]*三权分立', response.get_data(as_text=True)
        )
        assert account("gw3").role == "gridworker"
    assert {r.success for r in audit_rows("account.update")} == {False}
    # the security administrator's own area is closed to the system administrator
    assert client.get("/admin/security/accounts/new").status_code == 403


@pytest.mark.security
def test_the_security_admin_manages_auditors_and_nobody_else(world, client, app):
    sec = logged_in(app.test_client(), "city_security_admin")
    form = sec.get("/admin/security/accounts/new").get_data(as_text=True)
    assert 'value="auditor"' in form and 'value="operator"' not in form
    response = sec.post(
        "/admin/security/accounts/new",
        data={
            "csrf_token": csrf_from(form),
            "username": "auditor2",
            "display_name": "第二审计员",
            "role": "auditor",
            "place_id": str(world.city.id),
        },
    )
    assert response.status_code == 200 and one_time(response.get_data(as_text=True))
    auditor = account("city_auditor")
    response = edit(sec, auditor, area="security/accounts", display_name="审计员甲")
    assert response.status_code == 302 and account("city_auditor").display_name == "审计员甲"
    page = sec.get(f"/admin/security/accounts/{auditor.id}").get_data(as_text=True)
    response = sec.post(f"/admin/security/accounts/{auditor.id}/password", data={"csrf_token": csrf_from(page)})
    assert response.status_code == 200 and one_time(response.get_data(as_text=True))
    # an auditor never becomes an ordinary account by the security administrator's hand
    response = edit(sec, account("auditor2"), area="security/accounts", role="operator")
    assert response.status_code == 400 and "系统管理员管理" in response.get_data(as_text=True)
    # not the ordinary accounts, neither through its area nor the system administrator's
    gw3 = account("gw3")
    response = edit(sec, gw3, area="security/accounts", display_name="改名")
    assert response.status_code == 400 and account("gw3").display_name == "gw3"
    assert sec.get(f"/admin/accounts/{gw3.id}").status_code == 403
    assert sec.get("/admin/accounts/new").status_code == 403
    # nor its own role
    response = edit(sec, account("city_security_admin"), area="security/accounts", role="auditor")
    assert response.status_code == 400 and "本人" in response.get_data(as_text=True)


def test_the_old_tokens_address_still_leads_to_the_accounts_page(world, client):
    logged_in(client, "city_admin")
    gw3 = account("gw3")
    html = client.get(f"/admin/accounts/{gw3.id}/tokens").get_data(as_text=True)
    assert "访问令牌" in html and "登录会话" in html and gw3.username in html
