"""The hierarchy of places (city → town → village → grid): questions every part of the code asks of it.

One city per installation: `city_id` is how any code finds it (the counters, the jobs, the wall)."""

from __future__ import annotations

from sqlalchemy import select

from .models import Place


def city_id(session=None) -> int | None:
    """The id of the installation's city (None before any place exists)."""
    if session is None:
        from .db import db

        session = db
    return session.execute(select(Place.id).where(Place.level == "city").order_by(Place.id).limit(1)).scalar()
