"""The live simulator: new events, their progress through the loop, check-ins, patrols and logins.

``run_simulator(app, speed, duration, stop_event)`` loops until stopped. Every tick (about a second)
runs ``Simulator.tick(now, dt)``, which calls one small function per activity with ``dt`` simulated
seconds (real seconds × speed). New cases and every step go through the domain code
(``commandcenter.cases.loop``), so the wall, alerts and outbox see exactly what a real report does.

Pace: a district of ~1,370 gridworkers reports ~33,000 events a month, i.e. ~1,100 a day, peaking at
~70 an hour around 10 and 15 o'clock and near zero at night; ``speed`` multiplies every rate.
Patrols last a real hour or two whatever the speed (their length is what compliance measures).
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
import uuid
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta

import shapely
from shapely.geometry import shape
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from .. import fieldwork
from ..cases.loop import TransitionError
from ..db import db
from ..models import Account, Case, Category, Department, LoginRecord, Patrol, Place, SignIn
from ..timeutil import current_tz, from_local, local, utcnow
from ..vocabulary import OPEN_STATES
from ..workcalendar import is_workday
from . import names, texts
from .loader import FULL_CASES, FULL_GRIDWORKERS, HISTORY_DAYS, HOUR_WEIGHTS, category_leaves

log = logging.getLogger(__name__)

DAILY_CASES_FULL = FULL_CASES / HISTORY_DAYS  # ~1,100 a day for 1,370 gridworkers
STEPS_PER_CASE = 5.0  # register, dispatch, accept, feedback, close
HEARTBEAT_EVERY_S = 300
LOG_EVERY_S = 60


@dataclass
class Counts:
    reports: int = 0
    steps: int = 0
    skipped: int = 0
    heartbeats: int = 0
    sign_ins: int = 0
    patrols_started: int = 0
    patrols_ended: int = 0
    logins: int = 0

    def add(self, other: Counts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))


@dataclass
class SimWorker:
    id: int
    grid_id: int
    town_id: int | None
    village_id: int | None


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw (Knuth for small means, a rounded normal for large ones)."""
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


class Simulator:
    """State kept between ticks; every ``tick_*`` method is one activity for ``dt`` simulated seconds."""

    def __init__(self, seed: int | None = None, speed: float = 1.0):
        self.rng = random.Random(seed)
        self.speed = speed
        self.loaded = False
        self.tz = current_tz()
        self.online: set[int] = set()
        self.signed: set[int] = set()
        self.patrolled: set[int] = set()
        # patrol → (worker, started, planned end): an int key is an open Patrol row of the loaded history, a str
        # key a patrol in progress on the "phone" (recorded through fieldwork.record_patrol when it ends)
        self.ongoing: dict[int | str, tuple[int, datetime, datetime]] = {}
        self.routes: dict[int, list[list[float]]] = {}  # worker → the planned track of his patrol in progress
        self.spot: dict[int, tuple[float | None, float | None]] = {}  # worker → where he stands when not patrolling
        self.day: date | None = None
        self.pending_self_close: list[tuple[datetime, int, int]] = []  # (when, case id, reporter id)
        self.hotline_seq = 0

    # --- loading what the simulator needs ------------------------------------------------------------
    def load(self) -> bool:
        """Read gridworkers, grids, categories and staff; False when the database has no district yet."""
        self.tz = current_tz()
        rows = db.execute(
            select(Account.id, Account.place_id, Account.town_id, Account.village_id).where(
                Account.role == "gridworker", Account.active.is_(True)
            )
        ).all()
        if not rows:
            return False
        self.workers = {r.id: SimWorker(r.id, r.place_id, r.town_id, r.village_id) for r in rows}
        self.worker_ids = list(self.workers)
        self.grid_worker: dict[int, int] = {}
        for w in self.workers.values():
            self.grid_worker.setdefault(w.grid_id, w.id)
        self.grids = {}
        for pid, geom in db.execute(
            select(Place.id, Place.geometry).where(Place.level == "grid", Place.active.is_(True))
        ):
            if geom:
                poly = shape(geom)
                inner = poly.buffer(-0.00003)
                self.grids[pid] = inner if inner.geom_type == "Polygon" and not inner.is_empty else poly
        self.grid_names = {
            r.id: (r.name, r.village_id, r.town_id)
            for r in db.execute(
                select(Place.id, Place.name, Place.village_id, Place.town_id).where(
                    Place.level.in_(("grid", "village"))
                )
            )
        }
        cats = db.execute(select(Category)).scalars().all()
        _, self.leaves = category_leaves(cats)
        self.leaf_by_id = {lf.id: lf for kind in self.leaves.values() for lf in kind[0]}
        staff = db.execute(
            select(
                Account.id,
                Account.role,
                Account.place_id,
                Account.town_id,
                Account.village_id,
                Account.center_id,
                Account.department_id,
            ).where(Account.active.is_(True))
        ).all()
        levels = dict(db.execute(select(Place.id, Place.level)).all())
        self.operators = [a.id for a in staff if a.role == "operator"]
        self.volunteers = [(a.id, a.place_id) for a in staff if a.role == "volunteer"]
        self.village_admin = {
            a.village_id: (a.id, a.center_id)
            for a in staff
            if a.role == "center_admin" and levels.get(a.place_id) == "village"
        }
        self.town_admin = {
            a.town_id: (a.id, a.center_id)
            for a in staff
            if a.role == "center_admin" and levels.get(a.place_id) == "town"
        }
        self.dept_handler = {a.department_id: a.id for a in staff if a.role == "department" and a.department_id}
        depts = db.execute(select(Department.id, Department.code, Department.name, Department.place_id)).all()
        self.departments = {d.id: (d.code, d.place_id) for d in depts}
        self.dept_by_key = self._department_keys(depts)
        self.police_by_town = {place: did for did, (code, place) in self.departments.items() if code.startswith("PS")}
        self.staff_ids = [a.id for a in staff if a.role not in ("gridworker", "volunteer")]
        self.usernames = dict(db.execute(select(Account.id, Account.username)).all())
        self.rate_factor = len(self.workers) / FULL_GRIDWORKERS
        # who is online right now, and today's sign-ins and patrols
        recent = utcnow() - timedelta(minutes=10)
        self.online = {
            r[0]
            for r in db.execute(select(Account.id).where(Account.role == "gridworker", Account.last_seen_at >= recent))
        } | self._online_live(recent)
        for pid, wid, started in db.execute(
            select(Patrol.id, Patrol.gridworker_id, Patrol.started_at).where(Patrol.ended_at.is_(None))
        ):
            self.ongoing[pid] = (wid, started, started + timedelta(minutes=self.rng.uniform(62, 120)))
        self.loaded = True
        return True

    @staticmethod
    def _department_keys(depts) -> dict[str, int]:
        """The demo's department keys (urban, water, police …) → department ids, matched by name."""
        from .loader import DEPARTMENTS

        out = {}
        for key, name in DEPARTMENTS:
            for d in depts:
                if d.name.endswith(name):
                    out[key] = d.id
                    break
        if "urban" not in out and depts:
            out["urban"] = depts[0].id
        return out

    def _new_day(self, now: datetime) -> None:
        today = local(now, self.tz).date()
        if today == self.day:
            return
        self.day = today
        start = from_local(datetime(today.year, today.month, today.day), self.tz)
        self.signed = {r[0] for r in db.execute(select(SignIn.account_id).where(SignIn.day == today))}
        self.patrolled = {r[0] for r in db.execute(select(Patrol.gridworker_id).where(Patrol.started_at >= start))}

    # --- helpers -----------------------------------------------------------------------------------------
    def point_in(self, grid_id: int) -> tuple[float | None, float | None]:
        poly = self.grids.get(grid_id)
        if poly is None:
            return None, None
        minx, miny, maxx, maxy = poly.bounds
        for _ in range(50):
            x, y = round(self.rng.uniform(minx, maxx), 6), round(self.rng.uniform(miny, maxy), 6)
            if shapely.contains_xy(poly, x, y):
                return x, y
        rp = poly.representative_point()
        return round(rp.x, 6), round(rp.y, 6)

    def address(self, grid_id: int) -> str:
        name, village_id, _ = self.grid_names.get(grid_id, ("", None, None))
        village = self.grid_names.get(village_id, ("", None, None))[0] if village_id else ""
        return f"{village}{names.road(self.rng)}{self.rng.randint(1, 300)}号"

    def hour_rate(self, now: datetime) -> float:
        """Expected new cases per simulated hour at this local time."""
        lt = local(now, self.tz)
        day_factor = 1.0 if is_workday(lt.date()) else 0.55
        mean_weight = sum(HOUR_WEIGHTS) / 24
        return DAILY_CASES_FULL / 24 * self.rate_factor * HOUR_WEIGHTS[lt.hour] / mean_weight * day_factor

    def pick_leaf(self):
        kinds = [k for k in ("ordinary", "hazard", "dispute") if k in self.leaves]
        kind = self.rng.choices(kinds, [{"ordinary": 0.75, "hazard": 0.17, "dispute": 0.08}[k] for k in kinds])[0]
        leaves, cum = self.leaves[kind]
        return self.rng.choices(leaves, cum_weights=cum)[0]

    # --- activities ----------------------------------------------------------------------------------
    def tick_reports(self, now: datetime, dt: float) -> Counts:
        """New cases through commandcenter.cases.loop.report_case."""
        from ..cases.loop import ReportInput, TransitionError, report_case

        counts = Counts()
        if not self.leaves:
            return counts
        for _ in range(poisson(self.rng, self.hour_rate(now) * dt / 3600)):
            rng = self.rng
            source = rng.choices(("app", "hotline", "volunteer", "center"), (0.85, 0.08, 0.04, 0.03))[0]
            leaf = self.pick_leaf()
            center_id = None
            if source == "app":
                worker = self.workers[rng.choice(self.worker_ids)]
                actor_id, grid_id = worker.id, worker.grid_id
            elif source == "volunteer" and self.volunteers:
                actor_id, grid_id = rng.choice(self.volunteers)
            elif source == "center" and self.village_admin:
                worker = self.workers[rng.choice(self.worker_ids)]
                grid_id = worker.grid_id
                actor_id, center_id = self.village_admin.get(worker.village_id, (None, None))
                if actor_id is None:
                    actor_id, grid_id, source = worker.id, worker.grid_id, "app"
            else:
                source = "hotline"
                worker = self.workers[rng.choice(self.worker_ids)]
                grid_id = worker.grid_id
                actor_id = rng.choice(self.operators) if self.operators else None
            lon, lat = self.point_in(grid_id)
            addr = self.address(grid_id)
            description = texts.describe(rng, leaf.templates, leaf.name, addr)
            cat = leaf.row
            self_handled = (
                source == "app" and not cat.must_escalate and not cat.transfer_limit_minutes and rng.random() < 0.15
            )
            data = ReportInput(
                category_id=leaf.id,
                description=description,
                lat=lat,
                lon=lon,
                address=addr,
                grid_id=grid_id,
                discovered_at=now - timedelta(minutes=rng.uniform(1, 30)),
                self_handled=self_handled,
            )
            if source == "hotline":
                self.hotline_seq += 1
                data.caller_name = names.person_name(rng)
                data.caller_phone = names.mobile_phone(rng)
                data.external_ref = f"12345-{local(now, self.tz):%Y%m%d}-{90000 + self.hotline_seq % 10000:05d}"
                data.description = "市民来电反映：" + description
            actor = db.get(Account, actor_id) if actor_id else None
            try:
                case, created = report_case(
                    data,
                    actor=actor,
                    source=source,
                    client_key=f"sim-{uuid.uuid4().hex}",
                    now=now,
                    reporter_center_id=center_id,
                )
            except (TransitionError, PermissionError, ValueError, IntegrityError) as exc:
                db.rollback()
                log.debug("simulator: report skipped: %s", exc)
                counts.skipped += 1
                continue
            except Exception as exc:  # Forbidden and friends from the domain code
                db.rollback()
                log.debug("simulator: report refused: %s", exc)
                counts.skipped += 1
                continue
            counts.reports += int(created)
            if self_handled and created:
                self.pending_self_close.append(
                    (now + timedelta(minutes=rng.uniform(10, 60) / max(self.speed, 1e-6)), case.id, actor_id)
                )
            if actor_id in self.workers:
                self.online.add(actor_id)
        return counts

    def tick_advance(self, now: datetime, dt: float) -> Counts:
        """Move some open cases one step on: register, dispatch, accept, feedback, close."""
        from ..cases import loop

        counts = Counts()
        # self-handled cases close themselves a little after the report
        due = [p for p in self.pending_self_close if p[0] <= now]
        self.pending_self_close = [p for p in self.pending_self_close if p[0] > now]
        for _, case_id, actor_id in due:
            if hasattr(loop, "self_close"):
                note = self.rng.choice(texts.SELF_CLOSE_NOTES)
                counts.add(self._step(lambda c, a, note=note: loop.self_close(c, a, note, now=now), case_id, actor_id))
        lt = local(now, self.tz)
        staffed = 1.0 if 7 <= lt.hour < 22 else 0.15
        n = poisson(self.rng, self.hour_rate(now) * STEPS_PER_CASE * staffed * dt / 3600 * 1.1)
        if n == 0:
            return counts
        # the centers work on what just came in and on their backlog alike
        ready = select(Case.id).where(
            Case.state.in_(OPEN_STATES), Case.updated_at <= now - timedelta(minutes=3 / max(self.speed, 1.0))
        )
        limit = max(20, n * 2)
        newest = db.execute(ready.order_by(Case.updated_at.desc()).limit(limit)).scalars().all()
        oldest = db.execute(ready.order_by(Case.updated_at).limit(limit)).scalars().all()
        candidates = sorted(set(newest) | set(oldest))
        for case_id in self.rng.sample(candidates, min(n, len(candidates))):
            counts.add(self.advance_one(case_id, now))
        return counts

    def advance_one(self, case_id: int, now: datetime) -> Counts:
        from ..cases import loop

        case = db.get(Case, case_id)
        if case is None or case.state not in OPEN_STATES:
            return Counts()
        rng = self.rng
        village_actor = self.village_admin.get(case.village_id, (None, None))[0]
        town_actor = self.town_admin.get(case.town_id, (None, None))[0]
        center_actor = {"grid": village_actor, "village": village_actor, "town": town_actor}.get(case.level)
        if center_actor is None or case.level == "city" or case.source == "hotline":
            center_actor = rng.choice(self.operators) if self.operators else town_actor
        handler = (
            self.dept_handler.get(case.department_id) if case.department_id else case.assignee_id
        ) or self.grid_worker.get(case.grid_id)
        leaf = self.leaf_by_id.get(case.category_id)
        cat = case.category
        state = case.state
        if state == "reported":
            return self._step(lambda c, a: loop.register(c, a, now=now), case_id, center_actor)
        if state == "registered":
            if cat.transfer_limit_minutes and case.transferred_at is None and hasattr(loop, "transfer_to_city"):
                return self._step(lambda c, a: loop.transfer_to_city(c, a, now=now), case_id, center_actor)
            if cat.must_escalate and cat.escalate_to and case.escalate_due is not None and hasattr(loop, "escalate"):
                note = rng.choice(texts.ESCALATE_NOTES.get(cat.escalate_to, texts.ESCALATE_NOTES["town"]))
                return self._step(
                    lambda c, a: loop.escalate(c, a, to_level=cat.escalate_to, note=note, now=now),
                    case_id,
                    center_actor,
                )
            department_id = assignee_id = None
            if case.level in ("town", "city") or (leaf and leaf.kind != "dispute" and rng.random() < 0.4):
                key = leaf.dept if leaf else "urban"
                department_id = (
                    (self.police_by_town.get(case.town_id) if key == "police" else None)
                    or self.dept_by_key.get(key)
                    or self.dept_by_key.get("urban")
                )
            if department_id is None:
                assignee_id = self.grid_worker.get(case.grid_id)
            return self._step(
                lambda c, a: loop.dispatch(
                    c, a, department_id=department_id, assignee_id=assignee_id, note=None, now=now
                ),
                case_id,
                center_actor,
            )
        if state == "dispatched":
            return self._step(lambda c, a: loop.accept(c, a, now=now), case_id, handler)
        if state == "handling":
            note = rng.choice(texts.FEEDBACK_NOTES)
            return self._step(lambda c, a: loop.feedback(c, a, note, now=now), case_id, handler)
        note = rng.choice(texts.CLOSE_NOTES)
        return self._step(lambda c, a: loop.close(c, a, note=note, now=now), case_id, center_actor)

    def _step(self, fn, case_id: int, actor_id: int | None) -> Counts:
        from ..cases.loop import TransitionError

        counts = Counts()
        case = db.get(Case, case_id)
        actor = db.get(Account, actor_id) if actor_id else None
        if case is None or actor is None:
            counts.skipped += 1
            return counts
        try:
            fn(case, actor)
            counts.steps += 1
        except TransitionError as exc:
            db.rollback()
            log.debug("simulator: step skipped on %s: %s", case_id, exc.message)
            counts.skipped += 1
        except Exception as exc:  # Forbidden (jurisdiction), a concurrent change (version conflict)
            db.rollback()
            log.debug("simulator: step refused on %s: %s", case_id, exc)
            counts.skipped += 1
        return counts

    def online_share(self, now: datetime) -> float:
        lt = local(now, self.tz)
        if is_workday(lt.date()) and 8 <= lt.hour < 18:
            return 0.8
        if 7 <= lt.hour < 21:
            return 0.35
        return 0.05

    def _online_live(self, since: datetime) -> set[int]:
        """Heartbeats reach the database in batches (commandcenter/heartbeats.py): the newest are in Redis."""
        from .. import counters
        from ..jobs import counters_redis

        try:
            seen = counters.online_accounts(counters_redis(), None, utcnow(), int((utcnow() - since).total_seconds()))
        except Exception:  # Redis unreachable: the accounts' last_seen_at answers alone
            return set()
        return set(seen) & set(self.worker_ids)

    def tick_heartbeats(self, now: datetime, dt: float) -> Counts:
        """Online gridworkers check in every few minutes; some come online or go offline."""
        counts = Counts()
        rng = self.rng
        target = self.online_share(now) * len(self.workers)
        drift = (target - len(self.online)) * min(1.0, dt / 600)
        if drift > 0:
            offline = [w for w in self.worker_ids if w not in self.online]
            for w in rng.sample(offline, min(len(offline), poisson(rng, drift))):
                self.online.add(w)
        elif drift < 0:
            for w in rng.sample(sorted(self.online), min(len(self.online), poisson(rng, -drift))):
                self.online.discard(w)
        k = poisson(rng, len(self.online) * dt / HEARTBEAT_EVERY_S)
        if not k or not self.online:
            return counts
        chosen = rng.sample(sorted(self.online), min(k, len(self.online)))
        for wid in chosen:  # through the app's own code path (POST /api/v1/heartbeats → fieldwork.heartbeat)
            account = db.get(Account, wid)
            if account is None or not account.active:
                continue
            lon, lat = self.position(wid, now)
            fieldwork.heartbeat(account, lat, lon, now)
            counts.heartbeats += 1
        return counts

    def position(self, wid: int, now: datetime) -> tuple[float | None, float | None]:
        """Where a gridworker is: along the track of his patrol in progress, else at his spot (a few metres of
        drift), so that his point moves on the wall's map as a real one would."""
        route = self.routes.get(wid)
        if route:
            t = (now - datetime(1970, 1, 1)).total_seconds()
            for a, b in zip(route, route[1:], strict=False):
                if a[2] <= t <= b[2]:
                    f = (t - a[2]) / max(1.0, b[2] - a[2])
                    return a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f
            last = route[-1] if t > route[-1][2] else route[0]
            return last[0], last[1]
        if wid not in self.spot:
            self.spot[wid] = self.point_in(self.workers[wid].grid_id)
        lon, lat = self.spot[wid]
        if lon is None:
            return None, None
        return lon + self.rng.uniform(-0.00005, 0.00005), lat + self.rng.uniform(-0.00005, 0.00005)

    def tick_sign_ins(self, now: datetime, dt: float) -> Counts:
        """签到 on workday mornings, once a day per gridworker."""
        counts = Counts()
        self._new_day(now)
        lt = local(now, self.tz)
        if not is_workday(lt.date()) or not (7.6 <= lt.hour + lt.minute / 60 < 10.5):
            return counts
        waiting = [w for w in self.worker_ids if w not in self.signed]
        p = min(1.0, dt / 1800)
        for wid in waiting:
            if self.rng.random() >= p * 0.97:
                continue
            account = db.get(Account, wid)
            if account is None or not account.active:
                continue
            lon, lat = self.position(wid, now)
            _row, created = fieldwork.sign_in(account, lat, lon, now)  # the app's path (POST /api/v1/sign-ins)
            counts.sign_ins += int(created)
            self.signed.add(wid)
            self.online.add(wid)
        return counts

    def tick_patrols(self, now: datetime, dt: float) -> Counts:
        """Start one patrol per gridworker per workday; end each after its (real) hour or two."""
        counts = Counts()
        self._new_day(now)
        rng = self.rng
        for pid, (wid, started, end) in list(self.ongoing.items()):
            if now < end:
                continue
            del self.ongoing[pid]
            if isinstance(pid, str):  # a patrol of the phone: recorded as the app records it
                route = self.routes.pop(wid, [])
                self.spot[wid] = (route[-1][0], route[-1][1]) if route else self.point_in(self.workers[wid].grid_id)
                account = db.get(Account, wid)
                if account is None or not route:
                    continue
                ended = min(now, end)  # a coarse tick may come after the planned end
                t_end = (ended - datetime(1970, 1, 1)).total_seconds()
                track = [p for p in route if p[2] <= t_end] or route[:1]
                if track[-1][2] < t_end - 60:
                    track.append([track[-1][0], track[-1][1], int(t_end)])
                try:
                    fieldwork.record_patrol(account, pid, started, ended, track, now=now)
                except TransitionError as exc:  # would be a bug of the simulator: say so, do not stop the demo
                    log.warning("simulated patrol of %s refused: %s", wid, exc)
                    db.rollback()
                    continue
                counts.patrols_ended += 1
                continue
            patrol = db.get(Patrol, pid)
            if patrol is None or patrol.ended_at is not None:
                continue
            track, dist = self.track(self.workers.get(wid), started, now)
            patrol.ended_at = now
            patrol.track = track
            patrol.distance_m = dist
            db.commit()
            counts.patrols_ended += 1
        lt = local(now, self.tz)
        hour = lt.hour + lt.minute / 60
        if not is_workday(lt.date()) or not (8.6 <= hour < 16.3):
            return counts
        remaining = max(600.0, (16.3 - hour) * 3600)  # simulated seconds left to start today's patrol
        p = min(1.0, dt / remaining * 1.05)
        for wid in self.worker_ids:
            if wid in self.patrolled or rng.random() >= p:
                continue
            w = self.workers[wid]
            end = now + timedelta(minutes=rng.uniform(62, 120))
            route = self.route(w, now, end)
            if not route:
                continue
            self.patrolled.add(wid)
            self.routes[wid] = route
            self.ongoing[f"sim-{uuid.uuid4().hex}"] = (wid, now, end)
            self.online.add(wid)
            counts.patrols_started += 1
        return counts

    def track(self, worker: SimWorker | None, start: datetime, end: datetime) -> tuple[list, float]:
        if worker is None:
            return [], 0.0
        pts = [self.point_in(worker.grid_id) for _ in range(self.rng.randint(8, 12))]
        cx = sum(p[0] for p in pts) / len(pts)
        cy = sum(p[1] for p in pts) / len(pts)
        pts.sort(key=lambda p: math.atan2(p[1] - cy, p[0] - cx))
        t0 = (start - datetime(1970, 1, 1)).total_seconds()
        t1 = (end - datetime(1970, 1, 1)).total_seconds()
        step = (t1 - t0) / max(1, len(pts) - 1)
        track = [[x, y, int(t0 + i * step)] for i, (x, y) in enumerate(pts)]
        from ..geo import distance_m

        dist = sum(distance_m(a[1], a[0], b[1], b[0]) for a, b in zip(pts, pts[1:], strict=False))
        return track, round(dist, 1)

    def route(self, worker: SimWorker, start: datetime, end: datetime) -> list[list[float]]:
        """The planned walk of a patrol: the waypoints of `track`, a point every two minutes between them (the
        app takes a point every 15 s; the rule is one at least every 10 minutes)."""
        waypoints, _ = self.track(worker, start, end)
        if len(waypoints) < 2:
            return []
        out = []
        for a, b in zip(waypoints, waypoints[1:], strict=False):
            n = max(1, int((b[2] - a[2]) // 120))
            for i in range(n):
                f = i / n
                out.append([a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, int(a[2] + (b[2] - a[2]) * f)])
        out.append(list(waypoints[-1]))
        return out

    def tick_logins(self, now: datetime, dt: float) -> Counts:
        """Occasional successful logins by staff (web) and gridworkers (app)."""
        counts = Counts()
        lt = local(now, self.tz)
        per_hour = (60 if 7 <= lt.hour < 20 else 4) * max(0.05, self.rate_factor)
        for _ in range(poisson(self.rng, per_hour * dt / 3600)):
            if self.staff_ids and self.rng.random() < 0.5:
                aid, channel = self.rng.choice(self.staff_ids), "web"
            else:
                aid, channel = self.rng.choice(self.worker_ids), "app"
            db.add(
                LoginRecord(
                    account_id=aid,
                    username=self.usernames.get(aid, "?"),
                    success=True,
                    reason=None,
                    at=now,
                    address=f"10.{self.rng.randint(16, 31)}.{self.rng.randint(0, 255)}.{self.rng.randint(2, 254)}",
                    channel=channel,
                )
            )
            db.execute(
                update(Account).where(Account.id == aid).values(last_login_at=now),
                execution_options={"synchronize_session": False},
            )
            db.commit()
            counts.logins += 1
        return counts

    def tick(self, now: datetime, dt: float) -> Counts:
        """One tick of every activity; each runs on its own so that one failure does not stop the rest."""
        total = Counts()
        for activity in (
            self.tick_reports,
            self.tick_advance,
            self.tick_heartbeats,
            self.tick_sign_ins,
            self.tick_patrols,
            self.tick_logins,
        ):
            try:
                total.add(activity(now, dt))
            except Exception:
                db.rollback()
                log.exception("simulator: %s failed", activity.__name__)
        return total


def run_simulator(
    app,
    speed: float = 1.0,
    duration: float | None = None,
    stop_event: threading.Event | None = None,
    tick_seconds: float = 1.0,
    seed: int | None = None,
) -> Counts:
    """Run until ``stop_event`` is set or ``duration`` real seconds have passed; return the totals."""
    if speed <= 0:
        raise ValueError("speed must be positive")
    stop_event = stop_event or threading.Event()
    sim = Simulator(seed=seed, speed=speed)
    started = last = time.monotonic()
    last_log = started
    window, total = Counts(), Counts()
    log.info("模拟器启动：速度 ×%s%s", speed, f"，运行 {duration} 秒" if duration else "")
    while not stop_event.is_set():
        now_m = time.monotonic()
        if duration is not None and now_m - started >= duration:
            break
        dt = (now_m - last) * speed
        last = now_m
        with app.app_context():
            try:
                if not sim.loaded and not sim.load():
                    if now_m - last_log >= LOG_EVERY_S:
                        log.warning("模拟器：数据库中还没有网格员，请先加载演示数据（flask demo load）")
                        last_log = now_m
                else:
                    counts = sim.tick(utcnow(), dt)
                    window.add(counts)
                    total.add(counts)
            except Exception:
                db.rollback()
                log.exception("simulator tick failed")
            finally:
                db.remove()
        if time.monotonic() - last_log >= LOG_EVERY_S:
            log.info(
                "模拟器：新事件 %d，推进步骤 %d（跳过 %d），心跳 %d，签到 %d，巡查开始 %d / 结束 %d，登录 %d；"
                "在线网格员 %d，巡查中 %d",
                window.reports,
                window.steps,
                window.skipped,
                window.heartbeats,
                window.sign_ins,
                window.patrols_started,
                window.patrols_ended,
                window.logins,
                len(sim.online),
                len(sim.ongoing),
            )
            window = Counts()
            last_log = time.monotonic()
        stop_event.wait(tick_seconds)
    log.info("模拟器停止：共新事件 %d，推进步骤 %d", total.reports, total.steps)
    return total
