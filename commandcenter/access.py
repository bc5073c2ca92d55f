"""Role *and* jurisdiction, checked by every view and API.

An account belongs to one place; it sees and acts only inside it. Roles grant actions (least
privilege, 三权分立: the system admin manages accounts, the security admin locks and grants,
the auditor reads the audit log; none of them operates cases).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import wraps

from flask import abort, g, request
from sqlalchemy import Select

from .db import db
from .hierarchy import covers, in_place, place_contains
from .models import ROLES, Account, Place

ALL_STAFF = frozenset({"duty_officer", "operator", "center_admin", "department", "supervisor", "leader"})

PERMISSIONS: dict[str, frozenset[str]] = {
    "case.view": ALL_STAFF | {"gridworker"},
    "case.report": frozenset({"gridworker", "volunteer", "operator", "center_admin", "department", "leader"}),
    "case.register": frozenset({"operator", "center_admin", "supervisor"}),
    "case.dispatch": frozenset({"operator", "center_admin"}),
    "case.handle": frozenset({"department", "gridworker", "center_admin", "operator"}),
    "case.escalate": frozenset({"gridworker", "center_admin", "operator"}),
    "case.verify": frozenset({"operator", "center_admin", "supervisor"}),
    "case.mark_outstanding": frozenset({"supervisor"}),
    "case.pause": frozenset({"operator", "center_admin"}),
    "hotline.take": frozenset({"operator"}),
    "wall.view": frozenset({"duty_officer", "operator", "supervisor", "leader", "center_admin"}),
    "drill.view": frozenset({"supervisor", "leader", "duty_officer", "center_admin"}),
    "alert.ack": frozenset({"duty_officer", "operator"}),
    "mobile.view": frozenset({"leader", "supervisor", "duty_officer"}),
    "assessment.view": frozenset({"supervisor", "leader", "duty_officer", "center_admin"}),
    "assessment.close": frozenset({"supervisor"}),  # closing a month freezes it (a city supervisor)
    "points.view": frozenset({"supervisor", "leader", "duty_officer", "center_admin"}),
    "bulletin.view": frozenset({"supervisor", "leader", "center_admin"}),
    "bulletin.edit": frozenset({"supervisor", "center_admin"}),
    "rules.edit": frozenset({"admin"}),  # assessment weights and the points rulebook
    "person.view": frozenset({"gridworker", "center_admin", "supervisor"}),
    "person.unmask": frozenset({"center_admin", "supervisor"}),  # plus the account's can_unmask grant
    "account.manage": frozenset({"admin"}),
    "account.lock": frozenset({"security_admin"}),
    "audit.read": frozenset({"auditor"}),
    "category.edit": frozenset({"admin"}),
    "calendar.edit": frozenset({"admin"}),  # the working calendar: holidays and make-up workdays
    "org.edit": frozenset({"admin"}),  # departments and the places they serve, centers, police beats, 12345 link
    "place.edit": frozenset({"admin"}),  # places and grids: boundaries, merge/split, 一长五员 positions
    "map.edit": frozenset({"admin"}),  # the basemap of every map (blank by default)
    "notify.edit": frozenset({"admin"}),  # notification channels and the delivery log
    "ops.view": frozenset({"admin"}),
    "fieldwork.app": frozenset({"gridworker"}),  # /g/: the gridworker's phone pages
    "dept.queue": frozenset({"department"}),  # /dept/: a department's work queue
    "dept.extend.decide": frozenset({"operator", "center_admin"}),  # approve or refuse a department's 延期
    "position.view": frozenset({"duty_officer", "operator", "supervisor", "center_admin"}),  # live positions
    "account.self": frozenset(ROLES),  # one's own password and tokens
}


class Forbidden(Exception):
    """Raised by domain code when an account may not take a step; the views turn it into 403."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def has_permission(account: Account | None, permission: str) -> bool:
    if account is None or not account.active:
        return False
    return account.role in PERMISSIONS[permission]


def in_jurisdiction(
    account: Account,
    *,
    grid_id: int | None = None,
    village_id: int | None = None,
    town_id: int | None = None,
    place: Place | None = None,
) -> bool:
    """Does the account's place cover this object (given by its denormalised ancestors, or as a place)?"""
    if place is not None:
        return place_contains(account.place, place)
    return covers(account.place, grid_id=grid_id, village_id=village_id, town_id=town_id)


def scope(stmt: Select, account: Account, model) -> Select:
    """Restrict a query on a model with town_id/village_id/grid_id columns to the account's place."""
    return in_place(stmt, model, account.place)


def current_account() -> Account | None:
    return g.get("account")


def require(permission: str) -> Callable:
    """View decorator: a login (or API token) and the permission. Jurisdiction is checked per object."""

    def decorator(view: Callable) -> Callable:
        view._permission = permission  # read by the route × role test

        @wraps(view)
        def wrapped(*args, **kwargs):
            account = current_account()
            if account is None:
                if request.path.startswith("/api/"):
                    from .api.errors import api_error

                    return api_error(401, "需要登录或有效的访问令牌", field="Authorization")
                from flask import redirect, url_for

                return redirect(url_for("auth.login", next=request.full_path))
            if not has_permission(account, permission):
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorator


def public(view: Callable) -> Callable:
    """Marks a view that needs no login on purpose (login page, health check, Open311 reads)."""
    view._permission = "public"
    return view


def require_place(place_id: int) -> Place:
    """Load a place and refuse (404, not 403, to not reveal it exists) if outside the jurisdiction."""
    place = db.get(Place, place_id)
    account = current_account()
    if place is None or account is None or not place_contains(account.place, place):
        abort(404)
    return place


def roles_with(permission: str) -> Iterable[str]:
    return sorted(PERMISSIONS[permission])
