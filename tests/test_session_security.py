"""Issue 11, items 4 and 9: a password change ends the other sessions and every token; a forced change
allows nothing else; tokens are listed and revoked by their owner and the administrator; the API does
not take a cookie's word for a write without the CSRF header."""

from __future__ import annotations

import io
import re

import pytest

from commandcenter.db import db
from commandcenter.models import Account, ApiToken, Case
from tests.conftest import PASSWORD, AuthActions, csrf_from, token_for
from tests.test_api import PNG, report_body

pytestmark = [pytest.mark.postgres, pytest.mark.security]
NEW_PASSWORD = "Changed@2026pw"


def browser(app, username: str):
    client = app.test_client()
    assert AuthActions(client).login(username).status_code == 302
    return client


def change_password(client, old: str = PASSWORD, new: str = NEW_PASSWORD):
    token = csrf_from(client.get("/password").get_data(as_text=True))
    return client.post(
        "/password", data={"csrf_token": token, "old_password": old, "new_password": new, "new_password_again": new}
    )


def test_a_password_change_ends_the_other_sessions_and_revokes_every_token(app, world):
    here, elsewhere = browser(app, "town0_operator"), browser(app, "town0_operator")
    headers = token_for(app.test_client(), "town0_operator")
    assert app.test_client().get("/api/v1/me", headers=headers).status_code == 200

    response = change_password(here)
    assert response.status_code == 302, response.get_data(as_text=True)
    assert here.get("/cases/").status_code == 200  # the session that changed it goes on
    gone = elsewhere.get("/cases/")
    assert gone.status_code == 302 and "/login" in gone.headers["Location"]
    assert app.test_client().get("/api/v1/me", headers=headers).status_code == 401
    assert db.query(ApiToken).filter_by(revoked=False).count() == 0


def test_a_forced_change_allows_the_change_page_and_logout_and_nothing_else(app, world):
    with app.app_context():
        db.get(Account, world.accounts["city_supervisor"].id).must_change_password = True
        db.get(Account, world.accounts["gw0"].id).must_change_password = True
        db.commit()
    client = app.test_client()
    login = AuthActions(client).login("city_supervisor")
    assert login.status_code == 302 and login.headers["Location"].endswith("/password")
    for path in ("/cases/", "/persons/", "/drill/", "/wall", "/assessment/", "/m/", "/account/tokens"):
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"].endswith("/password"), path
    assert client.get("/password").status_code == 200

    refused = app.test_client().post("/api/v1/tokens", json={"username": "gw0", "password": PASSWORD})
    assert refused.status_code == 403 and refused.get_json()["error"]["field"] == "password"
    assert db.query(ApiToken).count() == 0

    assert change_password(client).status_code == 302
    assert client.get("/cases/").status_code == 200
    token = csrf_from(client.get("/").get_data(as_text=True))
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302


def test_an_expired_password_stops_a_token_already_issued(app, world):
    headers = token_for(app.test_client(), "gw0")
    with app.app_context():
        db.get(Account, world.accounts["gw0"].id).must_change_password = True
        db.commit()
    response = app.test_client().post("/api/v1/cases", json=report_body(world), headers=headers)
    assert response.status_code == 403 and "修改密码" in response.get_json()["error"]["message"]
    assert db.query(Case).count() == 0


def test_owner_lists_and_revokes_own_tokens_in_the_page_and_the_api(app, world):
    first = token_for(app.test_client(), "gw0")
    second = token_for(app.test_client(), "gw0")
    other = token_for(app.test_client(), "gw1")
    api = app.test_client()
    items = api.get("/api/v1/tokens", headers=first).get_json()["items"]
    assert len(items) == 2 and {t["name"] for t in items} == {"测试手机"}
    # gw1's token is not gw0's to revoke: the same answer as no token at all
    other_id = api.get("/api/v1/tokens", headers=other).get_json()["items"][0]["id"]
    assert api.delete(f"/api/v1/tokens/{other_id}", headers=first).status_code == 404
    assert api.get("/api/v1/me", headers=other).status_code == 200
    assert api.delete(f"/api/v1/tokens/{items[0]['id']}", headers=first).status_code == 204
    alive = [api.get("/api/v1/me", headers=h).status_code for h in (first, second)]
    assert sorted(alive) == [200, 401]  # the revoked one of the two phones is out, the other goes on

    # the page: a volunteer (no case.view) also sees and revokes its own tokens
    volunteer = token_for(app.test_client(), "volunteer0")
    client = browser(app, "volunteer0")
    page = client.get("/account/tokens").get_data(as_text=True)
    assert "测试手机" in page
    token_id = re.search(r"/account/tokens/(\d+)/revoke", page).group(1)
    assert client.post(f"/account/tokens/{other_id}/revoke", data={"csrf_token": csrf_from(page)}).status_code == 404
    assert client.post(f"/account/tokens/{token_id}/revoke", data={"csrf_token": csrf_from(page)}).status_code == 302
    assert api.get("/api/v1/me", headers=volunteer).status_code in (401, 403)
    assert "没有有效的访问令牌" in client.get("/account/tokens").get_data(as_text=True)


def test_the_administrator_revokes_an_accounts_token(app, world):
    headers = token_for(app.test_client(), "gw3")
    admin = browser(app, "city_admin")
    page = admin.get(f"/admin/accounts/{world.accounts['gw3'].id}/tokens").get_data(as_text=True)
    token_id = re.search(r'name="token_id" value="(\d+)"', page).group(1)
    response = admin.post(
        f"/admin/accounts/{world.accounts['gw3'].id}/tokens", data={"csrf_token": csrf_from(page), "token_id": token_id}
    )
    assert response.status_code == 302
    assert app.test_client().get("/api/v1/me", headers=headers).status_code == 401
    # the supervisor manages no accounts
    assert browser(app, "city_supervisor").get(f"/admin/accounts/{world.accounts['gw3'].id}/tokens").status_code == 403


def test_a_cookie_alone_cannot_write_through_the_api(app, world):
    client = browser(app, "gw0")
    response = client.post("/api/v1/cases", json=report_body(world))
    assert response.status_code == 403 and response.get_json()["error"]["field"] == "X-CSRFToken"
    assert db.query(Case).count() == 0
    # a page's own script would carry the token from its page: then the write is the user's own
    token = csrf_from(client.get("/account/tokens").get_data(as_text=True))
    created = client.post("/api/v1/cases", json=report_body(world), headers={"X-CSRFToken": token})
    assert created.status_code == 201, created.get_json()
    case_id = created.get_json()["id"]
    upload = client.post(
        f"/api/v1/cases/{case_id}/photos", data={"file": (io.BytesIO(PNG), "a.png")}, content_type="multipart/form-data"
    )
    assert upload.status_code == 403
    # reading with the cookie stays possible (no side effect, and no other site can read the answer)
    assert client.get(f"/api/v1/cases/{case_id}").status_code == 200
