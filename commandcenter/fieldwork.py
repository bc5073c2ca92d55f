"""The gridworker's daily work that is measured (domain §3): heartbeats (online), sign-ins (attendance),
patrols (≥ 1 h each workday) and visits. Each write also records an outbox row, so that the live
counters follow it even if Redis is down at that moment."""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app, has_app_context
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .cases.loop import TransitionError
from .db import db
from .geo import distance_m
from .models import Account, Heartbeat, Outbox, Patrol, Person, SignIn, Site, Visit
from .timeutil import DEFAULT_TZ, local, utcnow

MAX_TRACK_POINTS = 5000
MAX_PATROL_HOURS = 16


def _tz() -> str:
    return current_app.config["SETTINGS"].timezone if has_app_context() else DEFAULT_TZ


def _existing(model, client_key: str, account: Account):
    """The row this app already sent with this key (a retry), refused if another account owns the key."""
    row = db.execute(select(model).where(model.client_key == client_key)).scalar_one_or_none()
    if row is not None and row.gridworker_id != account.id:
        raise TransitionError("该幂等键已被其他账号使用，请换一个", "client_key")
    return row


def _outbox(topic: str, payload: dict) -> None:
    db.add(Outbox(topic=topic, payload=payload))


def heartbeat(account: Account, lat: float | None, lon: float | None, now: datetime | None = None) -> None:
    now = now or utcnow()
    db.add(Heartbeat(account_id=account.id, at=now, lat=lat, lon=lon))
    account.last_seen_at = now
    _outbox("presence.heartbeat", {"account_id": account.id, "town_id": account.town_id, "at": now.isoformat()})
    db.commit()


def sign_in(account: Account, lat: float | None, lon: float | None, now: datetime | None = None) -> tuple[SignIn, bool]:
    """签到: once per local day; a second sign-in the same day returns the first."""
    now = now or utcnow()
    day = local(now, _tz()).date()
    existing = db.execute(select(SignIn).where(SignIn.account_id == account.id, SignIn.day == day)).scalar_one_or_none()
    if existing is not None:
        return existing, False
    row = SignIn(account_id=account.id, town_id=account.town_id, day=day, at=now, lat=lat, lon=lon)
    db.add(row)
    _outbox("presence.sign_in", {"account_id": account.id, "town_id": account.town_id, "day": day.isoformat()})
    try:
        db.commit()
    except IntegrityError:
        db.rollback()
        return db.execute(select(SignIn).where(SignIn.account_id == account.id, SignIn.day == day)).scalar_one(), False
    return row, True


def _track_length(track: list[list[float]]) -> float:
    return sum(distance_m(a[1], a[0], b[1], b[0]) for a, b in zip(track, track[1:], strict=False))


def record_patrol(account: Account, client_key: str, started_at: datetime, ended_at: datetime,
                  track: list[list[float]], now: datetime | None = None) -> tuple[Patrol, bool]:
    """巡查 with its track ([lon, lat, unix_ts] points); idempotent on the app's key."""
    now = now or utcnow()
    existing = _existing(Patrol, client_key, account)
    if existing is not None:
        return existing, False
    if ended_at <= started_at:
        raise TransitionError("结束时间须晚于开始时间", "ended_at")
    if ended_at > now + timedelta(minutes=5):
        raise TransitionError("结束时间不能晚于当前时间", "ended_at")
    if ended_at - started_at > timedelta(hours=MAX_PATROL_HOURS):
        raise TransitionError(f"单次巡查不能超过 {MAX_PATROL_HOURS} 小时", "ended_at")
    if len(track) > MAX_TRACK_POINTS:
        raise TransitionError(f"轨迹点不能超过 {MAX_TRACK_POINTS} 个", "track")
    grid_id = account.place_id if account.place.level == "grid" else None
    patrol = Patrol(gridworker_id=account.id, grid_id=grid_id, town_id=account.town_id, started_at=started_at,
                    ended_at=ended_at, track=track, distance_m=round(_track_length(track), 1), client_key=client_key)
    db.add(patrol)
    _outbox("patrol", {"account_id": account.id, "town_id": account.town_id,
                       "started_at": started_at.isoformat(), "ended_at": ended_at.isoformat()})
    try:
        db.commit()
    except IntegrityError:
        db.rollback()
        return db.execute(select(Patrol).where(Patrol.client_key == client_key)).scalar_one(), False
    return patrol, True


def record_visit(account: Account, client_key: str, at: datetime, person_id: int | None, site_id: int | None,
                 note: str | None, lat: float | None = None, lon: float | None = None) -> tuple[Visit, bool]:
    """走访 of a person or a site the gridworker may see (his grid, or assigned to him)."""
    existing = _existing(Visit, client_key, account)
    if existing is not None:
        return existing, False
    if (person_id is None) == (site_id is None):
        raise TransitionError("请指定走访对象：人员或场所（二选一）", "person_id")
    target = db.get(Person, person_id) if person_id is not None else db.get(Site, site_id)
    field = "person_id" if person_id is not None else "site_id"
    if target is None or not target.active or not (
            target.assigned_to_id == account.id or target.grid_id == account.place_id
            or account.place.level in ("village", "town") and account.place_id in (target.village_id, target.town_id)):
        raise TransitionError("走访对象不存在或不在本账号辖区", field)
    if at > utcnow() + timedelta(minutes=5):
        raise TransitionError("走访时间不能晚于当前时间", "at")
    visit = Visit(gridworker_id=account.id, person_id=person_id, site_id=site_id, town_id=target.town_id, at=at,
                  note=note, lat=lat, lon=lon, client_key=client_key)
    db.add(visit)
    try:
        db.commit()
    except IntegrityError:
        db.rollback()
        return db.execute(select(Visit).where(Visit.client_key == client_key)).scalar_one(), False
    return visit, True
