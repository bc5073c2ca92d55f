"""Who may see which person: the one rule, used by the person pages and by the visits API.

A person is visible to an account when the person is active, lies inside the account's place
(``access.scope``: its grid, village, town or the whole city) and, for the four special populations
(``SENSITIVE_PERSON_TYPES``), only when the account's role handles them (``SENSITIVE_ROLES``).

Everything that answers about a person it was given by id must go through ``visible_person`` and
treat ``None`` exactly like a person that does not exist: same status, same message, same field, and
nothing recorded. Otherwise the answer tells the caller that a hidden person exists (an oracle).
"""

from __future__ import annotations

from sqlalchemy import Select, func, select

from ..access import scope
from ..db import db
from ..models import SENSITIVE_PERSON_TYPES, Account, Person

# roles that handle the special populations and may see them at all (see the persons module's docstring)
SENSITIVE_ROLES = frozenset({"gridworker", "center_admin"})


def sees_sensitive(account: Account) -> bool:
    return account.role in SENSITIVE_ROLES


def visible_persons(account: Account) -> Select:
    """The persons this account may see: inside its place, special populations only for their handlers."""
    stmt = scope(select(Person), account, Person).where(Person.active.is_(True))
    if not sees_sensitive(account):
        stmt = stmt.where(Person.person_type.not_in(SENSITIVE_PERSON_TYPES))
    return stmt


def visible_person(account: Account, person_id: int | None) -> Person | None:
    """The person if this account may see it; None for a missing, inactive, out-of-place or hidden person."""
    if person_id is None:
        return None
    return db.execute(visible_persons(account).where(Person.id == person_id)).scalar_one_or_none()


def hidden_sensitive_count(account: Account) -> int:
    """How many special-population persons lie in the jurisdiction but are hidden from this role."""
    if sees_sensitive(account):
        return 0
    stmt = scope(select(func.count(Person.id)), account, Person).where(
        Person.active.is_(True), Person.person_type.in_(SENSITIVE_PERSON_TYPES)
    )
    return db.execute(stmt).scalar_one()
