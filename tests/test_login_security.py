"""Issue 11, items 7, 8 and 10: login locks per account and address, one answer for every refused login,
the real client address behind a proxy, and separation of duties (三权分立) when enabling and disabling accounts.

Tests marked `security` failed before their fix; the others guard what must stay as it was.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from commandcenter import create_app
from commandcenter.accounts import create_account
from commandcenter.db import db
from commandcenter.models import (
    Account,
    ApiToken,
    AuditLog,
    LoginLock,
    LoginRecord,
    SecurityAlert,
    WebSession,
)
from commandcenter.security import hash_password
from tests.conftest import PASSWORD, csrf_from, make_settings

WRONG = "Wrong@pass1"


def login_from(client, username: str, password: str = PASSWORD, address: str = "127.0.0.1", headers=None):
    """The real login form, as if sent from `address` (the TCP peer, REMOTE_ADDR)."""
    env = {"REMOTE_ADDR": address}
    page = client.get("/login", environ_base=env, headers=headers or {})
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": csrf_from(page.get_data(as_text=True))},
        environ_base=env,
        headers=headers or {},
    )


def token_from(client, username: str, password: str = PASSWORD, address: str = "127.0.0.1"):
    return client.post(
        "/api/v1/tokens",
        json={"username": username, "password": password, "device_name": "测试手机"},
        environ_base={"REMOTE_ADDR": address},
    )


def last_reason(username: str) -> str | None:
    db.expire_all()
    row = db.query(LoginRecord).filter_by(username=username).order_by(LoginRecord.id.desc()).first()
    return row.reason if row else None


def lock_out(client, username: str, address: str, times: int = 5) -> None:
    for _ in range(times):
        assert login_from(client, username, WRONG, address).status_code == 400


def account(username: str) -> Account:
    db.expire_all()
    return db.query(Account).filter_by(username=username).one()


def add_account(username: str, role: str, *, active: bool = True) -> Account:
    city = account("city_admin").place
    row = create_account(
        username=username,
        display_name=username,
        password="",
        role=role,
        place=city,
        password_hash=hash_password(PASSWORD),
    )
    row.active = active
    db.commit()
    return row


# --- item 7: lockout ----------------------------------------------------------------------------------


@pytest.mark.security
@pytest.mark.parametrize("username", ["gw0", "city_admin"])
def test_failures_from_one_address_do_not_lock_the_owner_out_elsewhere(world, client, username):
    lock_out(client, username, "203.0.113.5")
    assert last_reason(username) == "bad_password_locked"
    # from the attacker's address even the right password is refused now …
    assert login_from(client, username, PASSWORD, "203.0.113.5").status_code == 400
    assert last_reason(username) == "locked"
    # … but the owner, from their own desk, logs in
    assert login_from(client, username, PASSWORD, "198.51.100.20").status_code == 302
    assert last_reason(username) is None  # success
    lock = db.query(LoginLock).filter_by(account_id=account(username).id).one()
    assert lock.address == "203.0.113.5" and lock.failures == 5 and lock.locked_until is not None
    assert account(username).locked_until is None and account(username).failed_logins == 0


@pytest.mark.security
def test_guessing_from_many_addresses_raises_one_alert_and_locks_no_one(world, client):
    target = account("city_admin")
    login_from(client, "city_admin", WRONG, "203.0.113.1")
    login_from(client, "city_admin", WRONG, "203.0.113.2")
    assert db.query(SecurityAlert).count() == 0
    login_from(client, "city_admin", WRONG, "203.0.113.3")
    alert = db.query(SecurityAlert).one()
    assert alert.account_id == target.id and alert.kind == "login_many_addresses"
    assert "3 个不同地址" in alert.detail and alert.acknowledged_at is None
    audit_row = db.query(AuditLog).filter_by(action="security.alert").one()
    assert audit_row.object_id == str(target.id) and audit_row.success is False
    for i in range(4, 9):  # the attack goes on: still one alert for this window
        login_from(client, "city_admin", WRONG, f"203.0.113.{i}")
    assert db.query(SecurityAlert).count() == 1
    assert db.query(AuditLog).filter_by(action="security.alert").count() == 1
    # a new window, a new alert
    db.query(SecurityAlert).update({SecurityAlert.at: SecurityAlert.at - timedelta(minutes=16)})
    db.commit()
    login_from(client, "city_admin", WRONG, "203.0.113.9")
    assert db.query(SecurityAlert).count() == 2
    # the administrator was never locked out
    assert login_from(client, "city_admin", PASSWORD, "198.51.100.20").status_code == 302


@pytest.mark.security
def test_security_admin_sees_alerts_and_locks_acknowledges_and_lifts(world, client, app):
    attacker = app.test_client()
    lock_out(attacker, "gw0", "203.0.113.5")
    for i in range(1, 4):
        login_from(attacker, "gw1", WRONG, f"198.51.100.{i}")
    alert = db.query(SecurityAlert).one()

    # not for the system administrator (三权分立)
    admin = app.test_client()
    assert login_from(admin, "city_admin").status_code == 302
    assert admin.get("/admin/security").status_code == 403
    token = csrf_from(admin.get("/").get_data(as_text=True))
    assert (
        admin.post(
            f"/admin/security/locks/{account('gw0').id}/lift", data={"address": "203.0.113.5", "csrf_token": token}
        ).status_code
        == 403
    )
    assert db.query(LoginLock).filter_by(address="203.0.113.5").one().locked_until is not None

    assert login_from(client, "city_security_admin").status_code == 302
    page = client.get("/admin/security")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "安全管理" in html
    assert "203.0.113.5" in html and "gw0" in html and alert.detail in html
    token = csrf_from(html)

    response = client.post(
        f"/admin/security/alerts/{alert.id}/ack", data={"note": "已核实，通知本人", "csrf_token": token}
    )
    assert response.status_code == 302
    db.expire_all()
    alert = db.get(SecurityAlert, alert.id)
    assert alert.acknowledged_at is not None and alert.acknowledged_by_id == account("city_security_admin").id
    ack = db.query(AuditLog).filter_by(action="security.alert_ack").one()
    assert ack.username == "city_security_admin" and ack.object_id == str(alert.id) and ack.detail == "已核实，通知本人"

    response = client.post(
        f"/admin/security/locks/{account('gw0').id}/lift", data={"address": "203.0.113.5", "csrf_token": token}
    )
    assert response.status_code == 302
    assert db.query(LoginLock).filter_by(account_id=account("gw0").id).count() == 0
    unlock = db.query(AuditLog).filter_by(action="login.unlock").one()
    assert unlock.username == "city_security_admin" and "203.0.113.5" in unlock.detail
    assert login_from(attacker, "gw0", PASSWORD, "203.0.113.5").status_code == 302
    html = client.get("/admin/security").get_data(as_text=True)
    assert "最近确认的告警" in html and "解除锁定" not in html


def _normalized(html: str) -> str:
    """The page without what differs by request (CSRF token, the echoed user name)."""
    html = re.sub(r'name="csrf-token" content="[^"]+"', "", html)
    return re.sub(r'value="[^"]*"', 'value=""', html)


def _refusal_scenarios(client, via):
    """(expected reason, response) for an unknown user, a wrong password, a locked and a deactivated account,
    each from its own address (so that the login rate limit stays out of the way)."""
    lock_out(client, "gw1", "203.0.113.21")
    gw2 = account("gw2")
    gw2.active = False
    db.commit()
    return [
        ("unknown_user", "nobody", via(client, "nobody", WRONG, "203.0.113.20")),
        ("bad_password", "gw0", via(client, "gw0", WRONG, "203.0.113.22")),
        ("locked", "gw1", via(client, "gw1", PASSWORD, "203.0.113.21")),
        ("disabled", "gw2", via(client, "gw2", PASSWORD, "203.0.113.23")),
        ("unknown_user", "nobody2", via(client, "nobody2", PASSWORD, "203.0.113.24")),
    ]


@pytest.mark.security
def test_every_refused_login_gets_the_same_page(world, client):
    outcomes = _refusal_scenarios(client, login_from)
    pages = set()
    for reason, username, response in outcomes:
        assert response.status_code == 400, reason
        assert last_reason(username) == reason  # the truth is kept in the records
        html = response.get_data(as_text=True)
        assert "用户名或密码错误" in html and "锁定" not in html and "停用" not in html, reason
        pages.add(_normalized(html))
    assert len(pages) == 1, "the page must not tell one refusal from another"


@pytest.mark.security
def test_every_refused_token_request_gets_the_same_answer(world, client):
    outcomes = _refusal_scenarios(client, token_from)
    bodies = set()
    for reason, username, response in outcomes:
        assert response.status_code == 401, (reason, response.get_json())
        assert last_reason(username) == reason
        bodies.add(response.get_data(as_text=True))
    assert len(bodies) == 1, bodies
    message = outcomes[0][2].get_json()["error"]["message"]
    assert message.startswith("用户名或密码错误")


@pytest.mark.security
def test_locked_and_disabled_accounts_still_verify_the_password(world, client, monkeypatch):
    """The time of the answer must not say 'locked' or 'deactivated': every attempt does one slow hash check."""
    from commandcenter.auth import service

    calls = []
    real = service.verify_password
    monkeypatch.setattr(service, "verify_password", lambda h, p: calls.append(h) or real(h, p))
    outcomes = _refusal_scenarios(client, login_from)
    # 5 failures to lock gw1, then one check per scenario
    assert len(calls) == 5 + len(outcomes)
    assert calls[5 + 2] == account("gw1").password_hash  # the locked account's own hash was checked
    assert calls[5 + 3] == account("gw2").password_hash  # and the deactivated one's


@pytest.mark.security
def test_login_page_shows_the_configured_rules_and_keeps_them(world, pg_url, tmp_path):
    app = create_app(
        make_settings(tmp_path / "rules", pg_url, login_max_failures=3, login_lock_minutes=7, session_idle_minutes=20)
    )
    client = app.test_client()
    html = client.get("/login").get_data(as_text=True)
    assert "连续 3 次密码错误" in html and "7 分钟" in html and "20 分钟无操作" in html
    assert "连续 5 次" not in html and "15 分钟" not in html
    lock_out(client, "gw0", "203.0.113.30", times=3)
    lock = db.query(LoginLock).filter_by(account_id=account("gw0").id).one()
    assert lock.failures == 3
    locked_at = db.query(LoginRecord).filter_by(reason="bad_password_locked").one().at
    assert lock.locked_until - locked_at == timedelta(minutes=7)


# --- item 8: the real client address behind nginx -------------------------------------------------------


@pytest.mark.security
def test_behind_a_trusted_proxy_each_client_has_its_own_address(world, pg_url, tmp_path):
    app = create_app(make_settings(tmp_path / "proxy", pg_url, trusted_proxies=1, login_rate_limit="3 per minute"))
    client = app.test_client()
    proxy = "10.0.0.1"  # nginx: every request comes from it

    def via_proxy(client_address: str, password: str = WRONG, spoofed: str | None = None):
        # nginx's $proxy_add_x_forwarded_for appends the peer to whatever the client sent
        forwarded = f"{spoofed}, {client_address}" if spoofed else client_address
        return login_from(client, "gw0", password, proxy, headers={"X-Forwarded-For": forwarded})

    for _ in range(3):
        assert via_proxy("198.51.100.1").status_code == 400
    assert via_proxy("198.51.100.1").status_code == 429  # this client's bucket is full …
    assert via_proxy("198.51.100.2").status_code == 400  # … the rest of the city still logs in
    # a client cannot pick its bucket by sending its own X-Forwarded-For: the proxy's entry counts
    assert via_proxy("198.51.100.1", spoofed="192.0.2.77").status_code == 429

    addresses = {r.address for r in db.query(LoginRecord).filter_by(username="gw0")}
    assert addresses == {"198.51.100.1", "198.51.100.2"}
    audit_addresses = {r.address for r in db.query(AuditLog).filter_by(action="login")}
    assert audit_addresses == {"198.51.100.1", "198.51.100.2"}
    locks = {lk.address: lk.failures for lk in db.query(LoginLock)}
    assert locks == {"198.51.100.1": 3, "198.51.100.2": 1}
    # a successful login: its web session and audit rows carry the client's address, not the proxy's
    assert via_proxy("198.51.100.3", PASSWORD).status_code == 302
    assert db.query(WebSession).one().address == "198.51.100.3"


def test_without_trusted_proxies_forwarded_headers_are_ignored(world, pg_url, tmp_path):
    """TRUSTED_PROXIES=0 (the default): anyone could send X-Forwarded-For, so it changes nothing."""
    app = create_app(make_settings(tmp_path / "noproxy", pg_url, login_rate_limit="3 per minute"))
    client = app.test_client()
    for i in range(3):
        response = login_from(client, "gw0", WRONG, "127.0.0.1", headers={"X-Forwarded-For": f"198.51.100.{i}"})
        assert response.status_code == 400
    # a new header value does not buy a new bucket
    assert login_from(client, "gw0", WRONG, "127.0.0.1", headers={"X-Forwarded-For": "198.51.100.9"}).status_code == 429
    assert {r.address for r in db.query(LoginRecord)} == {"127.0.0.1"}
    assert {r.address for r in db.query(AuditLog).filter_by(action="login")} == {"127.0.0.1"}


# --- item 10: separation of duties when enabling and disabling accounts ---------------------------------


def _post_active(client, path: str, active: bool):
    token = csrf_from(client.get("/").get_data(as_text=True))
    return client.post(path, data={"active": "1" if active else "0", "csrf_token": token})


def _flash(client) -> str:
    return client.get("/").get_data(as_text=True)


def _has_button(html: str, path: str) -> bool:
    return f'action="{path}' in html


@pytest.mark.security
@pytest.mark.parametrize("username", ["city_security_admin", "city_auditor"])
def test_system_admin_cannot_disable_security_admin_or_auditor(world, client, username):
    add_account(f"{username}2", account(username).role)  # not the last of the role: the role rule alone refuses
    target = account(username)
    assert login_from(client, "city_admin").status_code == 302
    html = client.get("/admin/accounts").get_data(as_text=True)
    assert target.username in html
    assert not _has_button(html, f"/admin/accounts/{target.id}/active"), "a refused button must not be shown"
    assert _has_button(html, f"/admin/accounts/{account('gw3').id}/active")
    response = _post_active(client, f"/admin/accounts/{target.id}/active", False)
    assert response.status_code == 302
    assert "三权分立" in _flash(client)
    assert account(username).active is True
    refused = db.query(AuditLog).filter_by(action="account.disable", object_id=str(target.id)).one()
    assert refused.success is False and refused.username == "city_admin"


@pytest.mark.security
def test_system_admin_cannot_enable_an_auditor_either(world, client):
    spare = add_account("auditor_spare", "auditor", active=False)
    assert login_from(client, "city_admin").status_code == 302
    _post_active(client, f"/admin/accounts/{spare.id}/active", True)
    assert account("auditor_spare").active is False


@pytest.mark.security
def test_security_admin_enables_and_disables_auditors_but_never_the_last(world, client):
    auditor = account("city_auditor")
    assert login_from(client, "city_security_admin").status_code == 302
    html = client.get("/admin/security").get_data(as_text=True)
    assert "city_auditor" in html
    assert not _has_button(html, f"/admin/security/accounts/{auditor.id}/active"), "the last auditor has no button"
    _post_active(client, f"/admin/security/accounts/{auditor.id}/active", False)
    assert "最后一个启用的审计员账号" in _flash(client)
    assert account("city_auditor").active is True

    spare = add_account("auditor_spare", "auditor", active=False)
    html = client.get("/admin/security").get_data(as_text=True)
    assert _has_button(html, f"/admin/security/accounts/{spare.id}/active")
    _post_active(client, f"/admin/security/accounts/{spare.id}/active", True)
    assert account("auditor_spare").active is True
    _post_active(client, f"/admin/security/accounts/{auditor.id}/active", False)
    assert account("city_auditor").active is False
    assert db.query(AuditLog).filter_by(action="account.disable", object_id=str(auditor.id), success=True).count() == 1
    # now the spare is the last one
    _post_active(client, f"/admin/security/accounts/{spare.id}/active", False)
    assert account("auditor_spare").active is True


@pytest.mark.security
def test_the_last_system_admin_and_security_admin_cannot_be_disabled(world, client, app):
    assert login_from(client, "city_admin").status_code == 302
    own = account("city_admin")
    assert not _has_button(client.get("/admin/accounts").get_data(as_text=True), f"/admin/accounts/{own.id}/active")
    _post_active(client, f"/admin/accounts/{own.id}/active", False)
    assert "最后一个启用的系统管理员账号" in _flash(client)
    assert account("city_admin").active is True

    sec = app.test_client()
    assert login_from(sec, "city_security_admin").status_code == 302
    own = account("city_security_admin")
    _post_active(sec, f"/admin/security/accounts/{own.id}/active", False)
    assert "最后一个启用的安全管理员账号" in _flash(sec)
    assert account("city_security_admin").active is True

    # with a second administrator: each may disable the other, never themselves
    other = add_account("admin_two", "admin")
    _post_active(client, f"/admin/accounts/{own.id}/active", False)  # security admin: not the system admin's
    assert account("city_security_admin").active is True
    _post_active(client, f"/admin/accounts/{account('city_admin').id}/active", False)
    assert "本人" in _flash(client) and account("city_admin").active is True
    _post_active(client, f"/admin/accounts/{other.id}/active", False)
    assert account("admin_two").active is False


def test_security_admin_cannot_change_ordinary_accounts(world, client):
    assert login_from(client, "city_security_admin").status_code == 302
    gw3 = account("gw3")
    _post_active(client, f"/admin/security/accounts/{gw3.id}/active", False)
    assert account("gw3").active is True
    assert _post_active(client, f"/admin/accounts/{gw3.id}/active", False).status_code == 403
    assert account("gw3").active is True


@pytest.mark.security
def test_disabling_ends_the_accounts_sessions_and_tokens(world, client, app):
    phone = app.test_client()
    assert token_from(phone, "gw3").status_code == 201
    browser = app.test_client()
    assert login_from(browser, "gw3").status_code == 302
    assert login_from(client, "city_admin").status_code == 302
    gw3 = account("gw3")
    _post_active(client, f"/admin/accounts/{gw3.id}/active", False)
    db.expire_all()
    assert account("gw3").active is False
    assert all(ws.ended_at is not None for ws in db.query(WebSession).filter_by(account_id=gw3.id))
    assert db.query(WebSession).filter_by(account_id=gw3.id).count() == 1
    assert all(t.revoked for t in db.query(ApiToken).filter_by(account_id=gw3.id))
    assert db.query(AuditLog).filter_by(action="session.end_all", object_id=str(gw3.id)).count() == 1
    response = browser.get("/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_parallel_guesses_are_all_counted_and_raise_one_alert(world, app):
    """Guesses sent at once cannot slip past the count (the counter row is locked), and a burst from many
    addresses raises one alert, not one per request."""
    from concurrent.futures import ThreadPoolExecutor

    from commandcenter.auth.service import authenticate

    def attempt(username: str, address: str) -> None:
        with app.test_request_context("/login", environ_base={"REMOTE_ADDR": address}):
            try:
                assert authenticate(username, WRONG, address).account is None
            finally:
                db.remove()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: attempt("gw0", "203.0.113.40"), range(8)))
        list(pool.map(lambda i: attempt("gw1", f"198.51.100.{40 + i}"), range(8)))
    db.expire_all()
    reasons = sorted(r.reason for r in db.query(LoginRecord).filter_by(username="gw0"))
    assert reasons == ["bad_password"] * 4 + ["bad_password_locked"] + ["locked"] * 3
    assert db.query(LoginLock).filter_by(account_id=account("gw0").id).one().failures == 5
    assert db.query(SecurityAlert).filter_by(account_id=account("gw1").id).count() == 1
