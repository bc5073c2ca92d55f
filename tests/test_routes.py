"""Every route carries an access rule, and every role gets exactly what the rule says."""

from __future__ import annotations

import pytest

from commandcenter.access import PERMISSIONS
from tests.conftest import PASSWORD, csrf_from


def rules_of(app) -> dict[str, str]:
    """endpoint → its permission ('public' or a key of PERMISSIONS)."""
    found = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        view = app.view_functions[rule.endpoint]
        found[rule.endpoint] = getattr(view, "_permission", None)
    return found


def test_every_route_has_an_access_rule(app):
    missing = [endpoint for endpoint, rule in rules_of(app).items() if rule is None]
    assert missing == [], f"routes without @require(...) or @public: {missing}"
    unknown = {rule for rule in rules_of(app).values() if rule not in PERMISSIONS and rule != "public"}
    assert unknown == set()


ROLE_ACCOUNTS = {
    "admin": "city_admin",
    "security_admin": "city_security_admin",
    "auditor": "city_auditor",
    "duty_officer": "city_duty_officer",
    "operator": "city_operator",
    "center_admin": "town0_admin",
    "department": "dept0",
    "supervisor": "city_supervisor",
    "leader": "city_leader",
    "gridworker": "gw0",
    "volunteer": "volunteer0",
}


def plain_get_routes(app) -> list[tuple[str, str, str]]:
    """(path, endpoint, permission) for GET routes without URL parameters."""
    routes = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.arguments or "GET" not in rule.methods:
            continue
        routes.append((rule.rule, rule.endpoint, getattr(app.view_functions[rule.endpoint], "_permission", None)))
    return sorted(routes)


@pytest.mark.parametrize("role", sorted(ROLE_ACCOUNTS))
def test_each_role_reaches_exactly_its_pages(app, world, role):
    client = app.test_client()
    page = client.get("/login")
    client.post(
        "/login",
        data={
            "username": ROLE_ACCOUNTS[role],
            "password": PASSWORD,
            "csrf_token": csrf_from(page.get_data(as_text=True)),
        },
    )
    for path, _endpoint, permission in plain_get_routes(app):
        if path in ("/logout",):
            continue
        response = client.get(path)
        if permission == "public":
            assert response.status_code in (200, 302), (role, path, response.status_code)
        elif role in PERMISSIONS[permission]:
            assert response.status_code in (200, 302), (role, path, response.status_code)
        else:
            assert response.status_code == 403, (role, path, response.status_code)


def test_anonymous_is_sent_to_login_or_refused(app, world):
    client = app.test_client()
    for path, _endpoint, permission in plain_get_routes(app):
        response = client.get(path)
        if permission == "public":
            assert response.status_code < 500, (path, response.status_code)
        elif path.startswith("/api/"):
            assert response.status_code == 401, path
        else:
            assert response.status_code == 302 and "/login" in response.headers["Location"], path
