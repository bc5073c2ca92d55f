"""Where the gridworkers are (issue 14 §3): live positions, the nearest online ones, a day's patrol track.

A position is personal data. Every read goes through this module, which checks the role (``position.view``)
and the jurisdiction (the viewer's place: a town sees only its own gridworkers; a gridworker or a department
sees none), and writes an audit row — folded to one row per viewer, kind and object per minute, so that the
wall's polling does not flood the log while every viewer and every minute of viewing stays on record.

- online: a heartbeat within the wall's window (the wall setting ``online_window_s``, the same figure the
  wall's attendance panel counts);
- patrolling: online, with a patrol started today (local day) and not ended, or with heartbeats of the
  window more than MOVING_M apart (walking his grid with the app open);
- offline: the last heartbeat is older than the window; the last known position of today is still shown.
The position is the newest heartbeat with coordinates (WGS-84, as the app sends them): read from the live
trails in Redis (every heartbeat, issue 15 §2), else from the Heartbeat rows (one per account and
PRESENCE_PERSIST_SECONDS; history loaded into the database; Redis unreachable).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from redis.exceptions import RedisError
from sqlalchemy import func, select

from .access import Forbidden, has_permission, in_jurisdiction
from .audit import audit
from .db import db
from .geo import distance_m, frame_for, rings_of
from .hierarchy import in_place
from .models import Account, AuditLog, Case, Heartbeat, Patrol, Place
from .timeutil import current_tz, day_bounds_utc, local, utcnow

log = logging.getLogger(__name__)
STATES = ("patrolling", "online", "offline")
STATE_LABEL = {"patrolling": "巡查中", "online": "在线", "offline": "离线"}
NEAREST_LIMIT = 5
AUDIT_FOLD_S = 60
LAST_OF_DAY_POINTS = 10  # live points read back for an offline worker's last position of the day
MOVING_M = 30  # heartbeats of the window this far apart: on the move (巡查中) even without a patrol started


@dataclass
class Position:
    account_id: int
    name: str
    grid: str | None
    town_id: int | None
    lat: float
    lon: float
    at: datetime  # of the heartbeat that gave the position
    last_seen_at: datetime | None
    state: str
    distance_m: float | None = None

    def out(self, tz: str) -> dict:
        return {
            "id": self.account_id,
            "name": self.name,
            "grid": self.grid,
            "lat": round(self.lat, 6),
            "lon": round(self.lon, 6),
            "state": self.state,
            "state_label": STATE_LABEL[self.state],
            "seen": local(self.last_seen_at or self.at, tz).strftime("%H:%M"),
            **({"distance_m": round(self.distance_m)} if self.distance_m is not None else {}),
        }


def online_window_s() -> int:
    """The wall's window: a gridworker is online while his last heartbeat is this recent."""
    from .wall.config import wall_settings

    return int(wall_settings()["online_window_s"])


def check_viewer(account: Account | None) -> None:
    if not has_permission(account, "position.view"):
        raise Forbidden("本账号的角色无权查看网格员位置")


def _log(viewer: Account, kind: str, object_type: str, object_id, detail: str, now: datetime) -> None:
    """One audit row per viewer, kind and object per minute (the wall polls every 30 s)."""
    recent = db.execute(
        select(AuditLog.id)
        .where(
            AuditLog.account_id == viewer.id,
            AuditLog.action == kind,
            AuditLog.object_type == object_type,
            AuditLog.object_id == str(object_id),
            AuditLog.at >= now - timedelta(seconds=AUDIT_FOLD_S),
        )
        .limit(1)
    ).first()
    if recent is None:
        audit(kind, object_type, object_id, detail=detail, account=viewer)
        db.commit()


def _positions(place: Place, *, town_id: int | None = None, now: datetime) -> list[Position]:
    """Gridworkers inside `place` (and `town_id` if given) with a position today, each with its state."""
    tz = current_tz()
    day_start, _ = day_bounds_utc(local(now, tz).date(), tz)
    stmt = select(Account).where(Account.role == "gridworker", Account.active.is_(True))
    stmt = in_place(stmt, Account, place)
    if town_id is not None:
        stmt = stmt.where(Account.town_id == town_id)
    workers = {a.id: a for a in db.execute(stmt).scalars()}
    if not workers:
        return []
    window = timedelta(seconds=online_window_s())
    # the live trails (Redis: every heartbeat); the Heartbeat rows (one per account and persist period)
    # for those without a live point today: Redis lost or unreachable, or history loaded into the database
    live, seen_live = _live(workers, day_start, now - window)
    newest_of: dict[int, tuple[datetime, float, float]] = {}
    recent: dict[int, list[tuple[float, float]]] = {}  # points of the window, newest first
    for account_id, points in live.items():
        located = [(ts, lat, lon) for ts, lat, lon in points if lat is not None and lon is not None]
        if located:
            ts, lat, lon = located[0]
            newest_of[account_id] = (_naive(ts), lat, lon)
            recent[account_id] = [(la, lo) for t, la, lo in located if t >= _ts(now - window)]
    rest = [a for a in workers if a not in newest_of]
    if rest:
        newest = (
            select(Heartbeat.account_id, func.max(Heartbeat.at).label("at"))
            .where(
                Heartbeat.account_id.in_(rest),
                Heartbeat.at >= day_start,
                Heartbeat.lat.is_not(None),
                Heartbeat.lon.is_not(None),
            )
            .group_by(Heartbeat.account_id)
            .subquery()
        )
        for account_id, at, lat, lon in db.execute(
            select(Heartbeat.account_id, Heartbeat.at, Heartbeat.lat, Heartbeat.lon).join(
                newest, (Heartbeat.account_id == newest.c.account_id) & (Heartbeat.at == newest.c.at)
            )
        ):
            newest_of.setdefault(account_id, (at, lat, lon))
        for account_id, lat, lon in db.execute(
            select(Heartbeat.account_id, Heartbeat.lat, Heartbeat.lon)
            .where(
                Heartbeat.account_id.in_(rest),
                Heartbeat.at >= now - window,
                Heartbeat.lat.is_not(None),
                Heartbeat.lon.is_not(None),
            )
            .order_by(Heartbeat.account_id, Heartbeat.at.desc())
        ):
            recent.setdefault(account_id, []).append((lat, lon))
    patrolling = set(
        db.execute(
            select(Patrol.gridworker_id).where(
                Patrol.gridworker_id.in_(workers), Patrol.ended_at.is_(None), Patrol.started_at >= day_start
            )
        ).scalars()
    )
    # heartbeats moving: a point of the window lies more than MOVING_M from the newest one
    for account_id, points in recent.items():
        if any(distance_m(*points[0], *p) > MOVING_M for p in points[1:]):
            patrolling.add(account_id)
    grid_names = dict(
        db.execute(select(Place.id, Place.name).where(Place.id.in_({a.place_id for a in workers.values()}))).all()
    )
    out: dict[int, Position] = {}
    for account_id, (at, lat, lon) in newest_of.items():
        worker = workers[account_id]
        seen = max(filter(None, (worker.last_seen_at, at, seen_live.get(account_id))))
        online = now - seen <= window
        state = ("patrolling" if account_id in patrolling else "online") if online else "offline"
        out[account_id] = Position(
            account_id=account_id,
            name=worker.display_name,
            grid=grid_names.get(worker.place_id),
            town_id=worker.town_id,
            lat=lat,
            lon=lon,
            at=at,
            last_seen_at=seen,
            state=state,
        )
    return sorted(out.values(), key=lambda p: (STATES.index(p.state), p.name))


def _ts(at: datetime) -> float:
    return at.replace(tzinfo=UTC).timestamp()


def _naive(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC).replace(tzinfo=None)


def _live(workers, day_start: datetime, window_start: datetime) -> tuple[dict[int, list], dict[int, datetime]]:
    """The live points of today, newest first: those of the window (a handful each for the online), and for
    a worker without a position among them the last few of the day (his last known place). Also the newest
    heartbeat (with or without a position) of each. Nothing if Redis cannot be reached (the rows answer)."""
    from . import counters
    from .jobs import counters_redis

    try:
        r = counters_redis()
        trails = counters.live_trails(r, list(workers), max(day_start, window_start))
        located = {a for a, points in trails.items() if any(p[1] is not None and p[2] is not None for p in points)}
        rest = [a for a in workers if a not in located]
        if rest:
            trails.update(counters.live_trails(r, rest, day_start, limit=LAST_OF_DAY_POINTS))
    except (RedisError, OSError) as exc:
        log.warning("positions: Redis unreachable (%s); read from the heartbeat rows", exc.__class__.__name__)
        return {}, {}
    return trails, {a: _naive(points[0][0]) for a, points in trails.items()}


def live_positions(viewer: Account, now: datetime | None = None) -> list[Position]:
    """The gridworkers the viewer may see on the map: those of its own place (a town wall: its town only)."""
    check_viewer(viewer)
    now = now or utcnow()
    found = _positions(viewer.place, now=now)
    _log(viewer, "position.view", "place", viewer.place_id, f"网格员实时位置 {len(found)} 人", now)
    return found


def nearest_for_case(viewer: Account, case: Case, limit: int = NEAREST_LIMIT, now: datetime | None = None) -> list:
    """就近派遣: the `limit` nearest online gridworkers inside the case's town (and the viewer's place),
    with their distance in metres. Empty for a viewer who may not see positions."""
    if not has_permission(viewer, "position.view") or case.lat is None or case.lon is None:
        return []
    if not in_jurisdiction(viewer, grid_id=case.grid_id, village_id=case.village_id, town_id=case.town_id):
        return []
    now = now or utcnow()
    found = [p for p in _positions(viewer.place, town_id=case.town_id, now=now) if p.state != "offline"]
    for p in found:
        p.distance_m = distance_m(case.lat, case.lon, p.lat, p.lon)
    found.sort(key=lambda p: p.distance_m)
    found = found[:limit]
    _log(viewer, "position.nearest", "case", case.id, f"就近网格员 {len(found)} 人（{case.number}）", now)
    return found


# --- patrol replay --------------------------------------------------------------------------------------


def patrol_track(viewer: Account, worker: Account, day: date, now: datetime | None = None) -> list[dict]:
    """A gridworker's patrols of a local day, each with its track [[lon, lat, unix], ...], for the replay.
    The viewer must be allowed to see positions and the gridworker must be inside its place."""
    check_viewer(viewer)
    if worker.role != "gridworker" or not in_jurisdiction(viewer, place=worker.place):
        raise Forbidden("该网格员不在本账号辖区内")
    tz = current_tz()
    start, end = day_bounds_utc(day, tz)
    patrols = (
        db.execute(
            select(Patrol)
            .where(Patrol.gridworker_id == worker.id, Patrol.started_at >= start, Patrol.started_at < end)
            .order_by(Patrol.started_at)
        )
        .scalars()
        .all()
    )
    _log(
        viewer,
        "position.replay",
        "account",
        worker.id,
        f"巡查轨迹回放 {worker.display_name} {day.isoformat()}",
        now or utcnow(),
    )
    return [
        {
            "id": p.id,
            "started": local(p.started_at, tz).strftime("%H:%M"),
            "ended": local(p.ended_at, tz).strftime("%H:%M") if p.ended_at else None,
            "distance_m": round(p.distance_m or 0),
            "track": [pt[:3] for pt in (p.track or []) if isinstance(pt, list | tuple) and len(pt) >= 3],
        }
        for p in patrols
    ]


# --- drawing without tiles: an equirectangular frame for SVG (the replay, the location picker) -----------


def replay_figure(worker: Account, patrols: list[dict]) -> dict:
    """The drawing of a day's patrols over the gridworker's grid: SVG paths and [x, y, unix] points."""
    rings = rings_of(worker.place.geometry if worker.place else None)
    every = [p for ring in rings for p in ring] + [(pt[0], pt[1]) for p in patrols for pt in p["track"]]
    frame = frame_for(every)
    if frame is None:
        return {"frame": None, "grid_path": "", "patrols": patrols}
    for p in patrols:
        p["points"] = [[*frame.xy(pt[0], pt[1]), pt[2]] for pt in p["track"]]
    return {"frame": frame.out(), "grid_path": frame.path(rings), "patrols": patrols}


# --- locating a caller's event: a tap on the grids' map, or the standard address list ---------------------

ADDRESS_RESULTS = 10
ADDRESS_QUERY_MAX = 50


def locate_map(viewer: Account, width: int = 640, height: int = 420) -> dict | None:
    """The grids inside the viewer's place as SVG paths (with their ids and names) and the frame that
    turns a tap back into lon/lat: the hotline form's location picker. None without any polygon."""
    grids = db.execute(
        in_place(select(Place).where(Place.level == "grid", Place.active.is_(True)), Place, viewer.place).order_by(
            Place.code
        )
    ).scalars()
    shapes = [(g, rings_of(g.geometry)) for g in grids]
    shapes = [(g, rings) for g, rings in shapes if rings]
    frame = frame_for([p for _, rings in shapes for ring in rings for p in ring], width, height)
    if frame is None:
        return None
    return {
        "frame": frame.out(),
        "grids": [{"id": g.id, "name": g.name, "path": frame.path(rings)} for g, rings in shapes],
    }


def search_addresses(viewer: Account, text: str) -> list[dict]:
    """标准地址 entries inside the viewer's place whose address contains every word typed."""
    from .models import StandardAddress

    words = [w for w in (text or "").strip()[:ADDRESS_QUERY_MAX].split() if w]
    if not words:
        return []
    stmt = select(StandardAddress).where(StandardAddress.active.is_(True), StandardAddress.lat.is_not(None))
    for word in words:
        escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(StandardAddress.address.ilike(f"%{escaped}%", escape="\\"))
    stmt = in_place(stmt, StandardAddress, viewer.place).order_by(StandardAddress.address).limit(ADDRESS_RESULTS)
    rows = db.execute(stmt).scalars().all()
    names = dict(db.execute(select(Place.id, Place.name).where(Place.id.in_({r.grid_id for r in rows} or {0}))).all())
    return [
        {
            "id": r.id,
            "address": r.address,
            "lat": r.lat,
            "lon": r.lon,
            "grid_id": r.grid_id,
            "grid": names.get(r.grid_id),
        }
        for r in rows
    ]
