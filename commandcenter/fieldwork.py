"""The gridworker's daily work that is measured (domain §3): heartbeats (online), sign-ins (attendance),
patrols (≥ 1 h each workday) and visits. Each write also records an outbox row, so that the live
counters follow it even if Redis is down at that moment. Heartbeats are the exception: they go to Redis
and reach the database in batches (commandcenter/heartbeats.py)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from flask import current_app, has_app_context
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .audit import audit
from .cases.loop import TransitionError
from .db import db
from .geo import distance_m
from .models import Account, Outbox, Patrol, Person, SignIn, Site, Visit
from .persons.visibility import visible_person
from .timeutil import current_tz, local, utcnow

MAX_TRACK_POINTS = 5000
MAX_PATROL_HOURS = 16
# the track of a patrol reported by the app: a point at least every 10 minutes of the claimed patrol,
# each inside [start, end] give or take a minute (GPS fix, rounding), in time order (see check_track)
TRACK_MAX_GAP_MINUTES = 10
TRACK_SLACK_SECONDS = 60
# the app reports patrols of the last days only; older history comes in through `flask import patrols`
DEFAULT_PATROL_MAX_AGE_DAYS = 2
# a sign-in sent later from the phone's queue carries the time it was taken (sign_in's `at`): this recent only
SIGN_IN_MAX_AGE_HOURS = 12
SIGN_IN_SLACK_MINUTES = 5


def _existing(model, client_key: str, account: Account):
    """The row this app already sent with this key (a retry), refused if another account owns the key."""
    row = db.execute(select(model).where(model.client_key == client_key)).scalar_one_or_none()
    if row is not None and row.gridworker_id != account.id:
        raise TransitionError("该幂等键已被其他账号使用，请换一个", "client_key")
    return row


def _outbox(topic: str, payload: dict) -> None:
    db.add(Outbox(topic=topic, payload=payload))


def heartbeat(account: Account, lat: float | None, lon: float | None, now: datetime | None = None) -> None:
    """An app check-in: straight to Redis, written to the database in batches (commandcenter.heartbeats);
    while Redis is unreachable, a row, last_seen_at and an outbox row as before."""
    from . import heartbeats

    heartbeats.record(account, lat, lon, now)


def sign_in(
    account: Account,
    lat: float | None,
    lon: float | None,
    now: datetime | None = None,
    at: datetime | None = None,
) -> tuple[SignIn, bool]:
    """签到: once per local day; a second sign-in the same day returns the first.

    `at` (naive UTC) is when the phone took it, for a sign-in sent later from its offline queue: not in the
    future (beyond SIGN_IN_SLACK_MINUTES) and not older than SIGN_IN_MAX_AGE_HOURS; the day signed in is the
    local day of `at`, whenever it arrives."""
    now = now or utcnow()
    if at is None:
        at = now
    elif at > now + timedelta(minutes=SIGN_IN_SLACK_MINUTES):
        raise TransitionError("签到时间不能晚于当前时间", "at")
    elif at < now - timedelta(hours=SIGN_IN_MAX_AGE_HOURS):
        raise TransitionError(f"只能补发 {SIGN_IN_MAX_AGE_HOURS} 小时内的签到", "at")
    day = local(at, current_tz()).date()
    existing = db.execute(select(SignIn).where(SignIn.account_id == account.id, SignIn.day == day)).scalar_one_or_none()
    if existing is not None:
        return existing, False
    row = SignIn(account_id=account.id, town_id=account.town_id, day=day, at=at, lat=lat, lon=lon)
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


def patrol_max_age_days() -> int:
    return current_app.config["SETTINGS"].patrol_max_age_days if has_app_context() else DEFAULT_PATROL_MAX_AGE_DAYS


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_track_point(index: int, point) -> None:
    """One point [lon, lat, unix seconds]: finite numbers, a longitude and a latitude that exist."""
    field = f"track[{index}]"
    if not isinstance(point, list | tuple) or len(point) != 3:
        raise TransitionError("轨迹点须为 [经度, 纬度, unix 秒]", field)
    if not all(_number(x) for x in point):
        raise TransitionError("轨迹点须为有限数字（不能是 NaN 或 Infinity）", field)
    lon, lat, _ts = point
    if not -180 <= lon <= 180:
        raise TransitionError("经度须在 -180 到 180 之间", field)
    if not -90 <= lat <= 90:
        raise TransitionError("纬度须在 -90 到 90 之间", field)


def check_track(track: list, started_at: datetime, ended_at: datetime) -> None:
    """The track must fit the patrol it claims (the rule of the app, not of imported history):

    - every point is [lon, lat, unix seconds] with finite, existing coordinates;
    - the points lie inside [start, end] (± TRACK_SLACK_SECONDS) and are in time order;
    - a point at least every TRACK_MAX_GAP_MINUTES: the first within that long of the start, the last
      within that long of the end, and no two successive points further apart. A one-hour patrol thus
      needs at least 5 points; an empty track, or one point, is refused for any patrol over 20 minutes.
    """
    if not track:
        raise TransitionError(f"巡查须附轨迹：每 {TRACK_MAX_GAP_MINUTES} 分钟至少一个轨迹点", "track")
    for index, point in enumerate(track):
        check_track_point(index, point)
    start = started_at.replace(tzinfo=UTC).timestamp()
    end = ended_at.replace(tzinfo=UTC).timestamp()
    gap = TRACK_MAX_GAP_MINUTES * 60
    previous = None
    for index, (_lon, _lat, ts) in enumerate(track):
        if not start - TRACK_SLACK_SECONDS <= ts <= end + TRACK_SLACK_SECONDS:
            raise TransitionError("轨迹点时间须在巡查开始与结束时间之间", f"track[{index}]")
        if previous is not None and ts < previous:
            raise TransitionError("轨迹点须按时间先后排列", f"track[{index}]")
        if previous is not None and ts - previous > gap:
            raise TransitionError(f"与上一个轨迹点相隔超过 {TRACK_MAX_GAP_MINUTES} 分钟", f"track[{index}]")
        previous = ts
    if track[0][2] - start > gap:
        raise TransitionError(f"巡查开始后 {TRACK_MAX_GAP_MINUTES} 分钟内须有轨迹点", "track[0]")
    if end - track[-1][2] > gap:
        raise TransitionError(f"巡查结束前 {TRACK_MAX_GAP_MINUTES} 分钟内须有轨迹点", f"track[{len(track) - 1}]")


def record_patrol(
    account: Account,
    client_key: str,
    started_at: datetime,
    ended_at: datetime,
    track: list[list[float]],
    now: datetime | None = None,
) -> tuple[Patrol, bool]:
    """巡查 with its track ([lon, lat, unix_ts] points) reported by the app; idempotent on the app's key.

    Only recent patrols are taken (``PATROL_MAX_AGE_DAYS``, default 2): history comes in through the
    import (``flask import patrols``), which writes its rows directly and is not bound by these rules.
    """
    now = now or utcnow()
    existing = _existing(Patrol, client_key, account)
    if existing is not None:
        return existing, False
    if ended_at <= started_at:
        raise TransitionError("结束时间须晚于开始时间", "ended_at")
    if ended_at > now + timedelta(minutes=5):
        raise TransitionError("结束时间不能晚于当前时间", "ended_at")
    max_age = patrol_max_age_days()
    if started_at < now - timedelta(days=max_age):
        raise TransitionError(f"只能上报 {max_age} 天内的巡查；更早的巡查记录请由管理员通过数据导入补录", "started_at")
    if ended_at - started_at > timedelta(hours=MAX_PATROL_HOURS):
        raise TransitionError(f"单次巡查不能超过 {MAX_PATROL_HOURS} 小时", "ended_at")
    if len(track) > MAX_TRACK_POINTS:
        raise TransitionError(f"轨迹点不能超过 {MAX_TRACK_POINTS} 个", "track")
    check_track(track, started_at, ended_at)
    track = [[float(lon), float(lat), float(ts)] for lon, lat, ts in track]
    length = _track_length(track)
    grid_id = account.place_id if account.place.level == "grid" else None
    patrol = Patrol(
        gridworker_id=account.id,
        grid_id=grid_id,
        town_id=account.town_id,
        started_at=started_at,
        ended_at=ended_at,
        track=track,
        distance_m=round(length, 1) if math.isfinite(length) else None,
        client_key=client_key,
    )
    db.add(patrol)
    _outbox(
        "patrol",
        {
            "account_id": account.id,
            "town_id": account.town_id,
            "started_at": started_at.isoformat(),
            "ended_at": ended_at.isoformat(),
        },
    )
    try:
        db.commit()
    except IntegrityError:
        db.rollback()
        return db.execute(select(Patrol).where(Patrol.client_key == client_key)).scalar_one(), False
    return patrol, True


NOT_VISIBLE = "走访对象不存在或不在本账号辖区"


def _visible_site(account: Account, site_id: int) -> Site | None:
    """A site of the account's grid, assigned to it, or inside its village or town."""
    site = db.get(Site, site_id)
    if (
        site is None
        or not site.active
        or not (
            site.assigned_to_id == account.id
            or site.grid_id == account.place_id
            or account.place.level in ("village", "town")
            and account.place_id in (site.village_id, site.town_id)
        )
    ):
        return None
    return site


def record_visit(
    account: Account,
    client_key: str,
    at: datetime,
    person_id: int | None,
    site_id: int | None,
    note: str | None,
    lat: float | None = None,
    lon: float | None = None,
) -> tuple[Visit, bool]:
    """走访 of a person the account may see (``persons.visibility``, the rule of the person pages) or of a
    site of its place. Missing, hidden and out-of-place targets get one and the same refusal."""
    existing = _existing(Visit, client_key, account)
    if existing is not None:
        return existing, False
    if (person_id is None) == (site_id is None):
        raise TransitionError("请指定走访对象：人员或场所（二选一）", "person_id")
    if person_id is not None:
        # the one rule of the person pages: a person hidden from this account (outside its place, or a
        # special population its role does not handle) answers exactly like one that does not exist
        target, field = visible_person(account, person_id), "person_id"
    else:
        target, field = _visible_site(account, site_id), "site_id"
    if target is None:
        if person_id is not None and db.get(Person, person_id) is not None:
            # on record like a refused person page; the caller's answer does not differ
            audit(
                "visit.record",
                "person",
                person_id,
                success=False,
                account=account,
                commit=True,
                detail="拒绝：辖区外、已停用或本角色无权查看该类人员",
            )
        raise TransitionError(NOT_VISIBLE, field)
    if at > utcnow() + timedelta(minutes=5):
        raise TransitionError("走访时间不能晚于当前时间", "at")
    visit = Visit(
        gridworker_id=account.id,
        person_id=person_id,
        site_id=site_id,
        town_id=target.town_id,
        at=at,
        note=note,
        lat=lat,
        lon=lon,
        client_key=client_key,
    )
    db.add(visit)
    try:
        db.commit()
    except IntegrityError:
        db.rollback()
        return db.execute(select(Visit).where(Visit.client_key == client_key)).scalar_one(), False
    return visit, True
