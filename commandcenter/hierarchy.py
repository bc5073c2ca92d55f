"""The hierarchy of places (city → town → village → grid), and every question the code asks of it:
which place contains which, how a statement is narrowed to what lies inside a place, the places of a
level inside a place, their names. One city per installation: `city_id` is how any code finds it.

Accounts are checked against it in access.py (role *and* jurisdiction); this module knows places only."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import defer

from .models import Account, Place


def _session(session):
    if session is None:
        from .db import db

        return db
    return session


def city_id(session=None) -> int | None:
    """The id of the installation's city (None before any place exists)."""
    return _session(session).execute(select(Place.id).where(Place.level == "city").order_by(Place.id).limit(1)).scalar()


def place_contains(outer: Place, inner: Place) -> bool:
    """True if `inner` is `outer` or lies below it in the hierarchy."""
    if outer.id == inner.id:
        return True
    if outer.level == "city":
        return inner.city_id == outer.id
    if outer.level == "town":
        return inner.town_id == outer.id
    if outer.level == "village":
        return inner.village_id == outer.id
    return False  # a grid contains only itself


def covers(
    place: Place, *, grid_id: int | None = None, village_id: int | None = None, town_id: int | None = None
) -> bool:
    """Does `place` cover an object given by its denormalised ancestors (a case, an alert, a person)?"""
    if place.level == "city":
        return True  # one city per installation
    if place.level == "town":
        return town_id == place.id
    if place.level == "village":
        return village_id == place.id
    return grid_id == place.id


def place_column(model, level: str):
    """The column of `model` naming its ancestor at `level`: town_id / village_id, and at grid level grid_id
    (a Place names itself, an Account its place)."""
    if level == "town":
        return model.town_id
    if level == "village":
        return model.village_id
    if level == "grid":
        if model is Place:
            return Place.id
        if model is Account:
            return Account.place_id
        return model.grid_id
    raise ValueError(level)


def in_place(stmt, model, place: Place):
    """Restrict a statement on a model with town_id / village_id / grid_id to what lies inside `place`
    (one city per installation: a city contains every row; places are restricted to the city's own)."""
    if place.level == "city":
        return stmt.where(Place.city_id == place.id) if model is Place else stmt
    return stmt.where(place_column(model, place.level) == place.id)


def places_inside(place: Place, level: str) -> list[Place]:
    """The active places of `level` inside `place` (the place itself when it is of that level), by code.
    Their polygons are loaded only if read."""
    stmt = select(Place).where(Place.level == level, Place.active.is_(True)).options(defer(Place.geometry))
    from .db import db

    return list(db.scalars(in_place(stmt, Place, place).order_by(Place.code, Place.id)))


def place_at(place_id: int, level: str, inside: Place) -> Place | None:
    """The place `place_id` if it is of `level` and lies inside `inside`; None otherwise (never say which)."""
    from .db import db

    place = db.get(Place, place_id)
    if place is None or place.level != level or not place_contains(inside, place):
        return None
    return place


def place_names(ids: Iterable[int | None]) -> dict[int, str]:
    from .db import db

    ids = {i for i in ids if i}
    if not ids:
        return {}
    return dict(db.execute(select(Place.id, Place.name).where(Place.id.in_(ids))).all())
