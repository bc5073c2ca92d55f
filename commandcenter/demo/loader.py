"""Load the demo district: geography, centers, accounts and a month of history, fast.

``load_demo(seed, scale, force, progress)`` needs an app context (or at least an initialised
engine). Rows are generated in memory and written with Core bulk inserts, one commit per table.
Primary keys are allocated here (max(id)+1 …) so that steps, disputes and visits can point at
their parents without a round trip; on PostgreSQL the id sequences are moved past them at the end.

The history mirrors the domain code in ``commandcenter.cases.loop``: each case is planned as a
sequence of steps (report → register → … → close, with escalations, transfers, rework, duplicates,
rejections and self-handled closes), the plan is cut at "now", and the case row is the result of
applying the steps that already happened with the same rules the loop applies (deadlines at
registration, the overdue sweep, the parking one-hour rule, dispute outcomes).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import accumulate
from zoneinfo import ZoneInfo

import numpy as np
import shapely
from sqlalchemy import bindparam, func, insert, inspect, select, text, update

from .. import labels
from ..alerts import DEFAULT_PARKING_WARN_MINUTES, warn_time
from ..db import Base, db
from ..models import (
    Account,
    Alert,
    BaseDataCount,
    Case,
    CaseStep,
    Category,
    Center,
    Department,
    DepartmentPlace,
    Dispute,
    Heartbeat,
    LoginRecord,
    PartyActivity,
    PartyOrganization,
    Patrol,
    Person,
    Place,
    PoliceBeat,
    SettingValue,
    SignIn,
    Site,
    Visit,
)
from ..security import hash_password
from ..timeutil import current_tz, from_local, local, utcnow
from ..vocabulary import OPEN_STATES
from ..workcalendar import deadline_utc, is_workday, same_day_before
from . import names, texts
from .geography import Area, Geography, build_geography

log = logging.getLogger(__name__)

DEMO_PASSWORD = "Demo@2026"
HISTORY_DAYS = 30  # the nominal month: FULL_CASES are reported in HISTORY_DAYS days
FULL_CASES = 33_071
FULL_GRIDWORKERS = 1_370
FULL_VOLUNTEERS = 50
CHUNK = 5_000

# city departments: key → name (the district's prefix is added); each town also has a 派出所
DEPARTMENTS = (
    ("urban", "城市管理局"),
    ("water", "水务局"),
    ("market", "市场监督管理局"),
    ("housing", "住房和城乡建设局"),
    ("environment", "生态环境局"),
    ("traffic", "公安交警大队"),
    ("emergency", "应急管理局"),
    ("fire", "消防救援大队"),
    ("greening", "园林和绿化管理局"),
    ("civil", "民政局"),
    ("hr", "人力资源和社会保障局"),
    ("justice", "司法局"),
)

# local hour of day → relative report volume (peaks 9–11 and 14–17, few at night)
HOUR_WEIGHTS = (
    0.15,
    0.08,
    0.05,
    0.05,
    0.06,
    0.15,
    0.5,
    1.4,
    3.2,
    5.2,
    5.6,
    4.6,
    2.0,
    2.6,
    4.8,
    5.2,
    4.9,
    3.2,
    1.6,
    1.2,
    1.0,
    0.7,
    0.4,
    0.25,
)
# disputes in the published proportion: one district screened 590 in a month (of ~33,000 events: 1.8 %) and
# resolved 98.8 % of them (the outcome drawn in write_cases)
KIND_SHARES = {"ordinary": 0.816, "hazard": 0.17, "dispute": 0.014}  # + the centers' own disputes
SCREENING_WEIGHTS = {"grid": 220, "village": 273, "town": 78}
PERSON_COUNTS = {  # per village: (min, max)
    "community_correction": (0, 2),
    "released_prisoner": (1, 3),
    "mental_risk": (0, 2),
    "drug_user": (0, 2),
    "key_youth": (0, 2),
    "key_petitioner": (0, 1),
    "key_other": (0, 2),
    "empty_nest_elderly": (4, 10),
}
SITE_COUNTS = {"key_place": (1, 3), "group_rental": (0, 3), "rental_house": (5, 14)}
SITE_FREQUENCY = {"key_place": "monthly", "group_rental": "monthly", "rental_house": "quarterly"}
SWEEP_STATES = ("registered", "dispatched", "handling", "feedback")
LEVEL_RANK = {"grid": 0, "village": 1, "town": 2, "city": 3}

STAGES = (
    "准备数据库",
    "镇街、村社、网格与警格",
    "综治中心与职能部门",
    "事件类别",
    "账号",
    "一个月的事件与处理步骤",
    "巡查与签到",
    "在线心跳与登录记录",
    "重点人员、场所与走访",
    "基础数据与党建",
    "收尾",
)


class DemoError(Exception):
    """The demo cannot be loaded (for example: the database already holds data)."""


# --- small helpers ---------------------------------------------------------------------------------


def _haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(math.sqrt(a))


def _ip(rng: random.Random) -> str:
    return f"10.{rng.randint(16, 31)}.{rng.randint(0, 255)}.{rng.randint(2, 254)}"


class PointPool:
    """Random points strictly inside each grid (a slightly shrunken polygon, so 6-decimal rounding
    cannot push a point out), drawn in vectorised batches."""

    def __init__(self, geo: Geography, nrng: np.random.Generator):
        self.polys = [g.polygon for g in geo.grids]
        self.inner = []
        for p in self.polys:
            inner = p.buffer(-0.00003)
            if inner.is_empty or inner.geom_type != "Polygon" or inner.area < p.area * 0.2:
                inner = p
            shapely.prepare(inner)
            self.inner.append(inner)
        self.nrng = nrng
        self.cache: dict[int, list[tuple[float, float]]] = defaultdict(list)

    def take(self, gi: int) -> tuple[float, float]:
        """(lon, lat) inside grid gi."""
        pool = self.cache[gi]
        if not pool:
            poly = self.inner[gi]
            minx, miny, maxx, maxy = poly.bounds
            while not pool:
                xs = np.round(self.nrng.uniform(minx, maxx, 96), 6)
                ys = np.round(self.nrng.uniform(miny, maxy, 96), 6)
                ok = shapely.contains_xy(poly, xs, ys)
                pool.extend(zip(xs[ok].tolist(), ys[ok].tolist(), strict=False))
        return pool.pop()


@dataclass
class Leaf:
    """A category cases are reported in, with what the demo needs to know about it."""

    id: int
    code: str
    name: str
    kind: str
    weight: float
    dept: str
    templates: tuple[str, ...] | None
    row: Category

    @property
    def parking(self) -> bool:
        return bool(self.row.transfer_limit_minutes)


@dataclass
class Worker:
    id: int
    username: str
    name: str
    grid: int  # index into geo.grids
    village: int
    town: int
    post: str
    activity: float = 1.0


@dataclass
class Plan:
    """One case while it is being generated."""

    idx: int
    source: str
    leaf: Leaf
    grid: int
    reported_at: datetime
    discovered_at: datetime
    reporter_id: int | None
    reporter_center_id: int | None = None
    description: str = ""
    address: str = ""
    lon: float = 0.0
    lat: float = 0.0
    caller_name: str | None = None
    caller_phone: str | None = None
    external_ref: str | None = None
    steps: list = field(default_factory=list)  # (at, action, actor_id, note, extra)
    screening: str | None = None
    id: int = 0


def category_leaves(cats: list[Category]) -> tuple[list[Leaf], dict[str, tuple[list[Leaf], list[float]]]]:
    """The categories cases are reported in (active leaves below the big classes), weighted by how
    often such events occur, and grouped by kind with cumulative weights for ``random.choices``."""
    by_id = {c.id: c for c in cats}
    has_child = {c.parent_id for c in cats if c.parent_id and c.active}
    leaves = [c for c in cats if c.active and c.id not in has_child and c.depth >= 2]
    siblings: dict[int, int] = defaultdict(int)
    for c in leaves:
        if c.depth >= 3:
            siblings[c.parent_id] += 1
    out: list[Leaf] = []
    for c in leaves:
        small = (by_id.get(c.parent_id) if c.depth >= 3 else c) or c
        big = by_id.get(small.parent_id)
        rule = texts.rule_for(small.name, big.name if big else "")
        weight, dept = (rule[0], rule[1]) if rule else (1.0, texts.DEFAULT_DEPARTMENT_KEY)
        if c.depth >= 3:
            weight /= max(1, siblings[c.parent_id])
        own = texts.rule_for(c.name) or rule
        out.append(Leaf(c.id, c.code, c.name, c.kind, weight, dept, own[2] if own else None, c))
    by_kind: dict[str, tuple[list[Leaf], list[float]]] = {}
    for kind in KIND_SHARES:
        mine = [lf for lf in out if lf.kind == kind]
        if mine:
            by_kind[kind] = (mine, list(accumulate(lf.weight for lf in mine)))
    if "ordinary" not in by_kind and out:
        by_kind["ordinary"] = (out, list(accumulate(lf.weight for lf in out)))
    return out, by_kind


# --- the loader ---------------------------------------------------------------------------------


class _Loader:
    def __init__(self, seed: int, scale: float, now: datetime, tz: str):
        self.seed, self.scale, self.now, self.tz = seed, scale, now.replace(microsecond=0), tz
        self.rng = random.Random(seed * 7 + 1)
        self.nrng = np.random.default_rng(seed + 11)
        self.local_now = local(self.now, tz)
        self.month_start = from_local(datetime(self.local_now.year, self.local_now.month, 1), tz)
        # the history starts on the first day of last month: the default assessment month and the bulletin's
        # month (last month) are whole, whatever the day the demo is loaded (28 to 62 days of history)
        prev = (self.local_now.replace(day=1) - timedelta(days=1)).replace(day=1)
        self.start = from_local(datetime(prev.year, prev.month, 1), tz)
        self.history_days = (self.now - self.start) / timedelta(days=1)
        self.offset = self._fixed_offset()
        self.next_id: dict[str, int] = {}
        self.summary: dict[str, int | str] = {}
        self._workday_cache: dict[date, bool] = {}
        self._due_cache: dict[tuple[date, int], datetime] = {}

    # ids -----------------------------------------------------------------------------------------
    def ids(self, model, n: int) -> list[int]:
        table = model.__tablename__
        if table not in self.next_id:
            self.next_id[table] = (db.execute(select(func.max(model.id))).scalar() or 0) + 1
        first = self.next_id[table]
        self.next_id[table] = first + n
        return list(range(first, first + n))

    def insert(self, model, rows: list[dict]) -> None:
        table = model.__table__
        for i in range(0, len(rows), CHUNK):
            db.execute(insert(table), rows[i : i + CHUNK])
        db.commit()

    def workday(self, d: date) -> bool:
        w = self._workday_cache.get(d)
        if w is None:
            w = self._workday_cache[d] = is_workday(d)
        return w

    def loc(self, dt: datetime) -> datetime:
        if self.offset is not None:
            return dt + self.offset
        return local(dt, self.tz)

    def utc(self, dt_local: datetime) -> datetime:
        if self.offset is not None:
            return dt_local - self.offset
        return from_local(dt_local, self.tz)

    def _fixed_offset(self) -> timedelta | None:
        """The zone's UTC offset if it does not change around the window (no DST: Asia/Shanghai), else None."""
        zone = ZoneInfo(self.tz)
        probes = [self.start + timedelta(hours=6 * i) for i in range((int(self.history_days) + 20) * 4)]
        offsets = {zone.utcoffset(t) for t in probes}
        return offsets.pop() if len(offsets) == 1 else None

    def local_days(self) -> list[date]:
        """Local calendar days of the history window, oldest first (today included)."""
        first = self.loc(self.start).date()
        last = self.local_now.date()
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]

    # 1. database ------------------------------------------------------------------------------
    def prepare(self, force: bool) -> None:
        has_places = db.execute(select(Place.id).limit(1)).first() is not None
        has_accounts = db.execute(select(Account.id).limit(1)).first() is not None
        if (has_places or has_accounts) and not force:
            raise DemoError("数据库中已有数据（地点或账号），未加载演示数据；如确需覆盖请使用 --force")
        if has_places or has_accounts or force:
            self.wipe()

    def wipe(self) -> None:
        """Empty every table the demo fills (categories, settings and the audit log are kept)."""
        keep = {"audit_log", "settings", "categories", "alembic_version"}
        bind = db.get_bind()
        if bind.dialect.name == "postgresql":
            # one TRUNCATE: row-by-row DELETEs make every foreign-key check scan the dead rows of the
            # children (minutes, not seconds). settings points at accounts, so its rows are kept aside.
            names = [t for t in inspect(bind).get_table_names() if t not in keep | {"settings"}]
            settings = [dict(r) for r in db.execute(select(SettingValue.__table__)).mappings()]
            db.execute(text("TRUNCATE " + ", ".join(f'"{n}"' for n in names + ["settings"]) + " RESTART IDENTITY"))
            if settings:
                db.execute(insert(SettingValue.__table__), [{**r, "updated_by_id": None} for r in settings])
            db.commit()
            return
        db.execute(update(SettingValue.__table__).values(updated_by_id=None))
        for table in reversed(Base.metadata.sorted_tables):
            if table.name in keep:
                continue
            if table.name == "places":
                db.execute(update(table).values(parent_id=None, police_beat_id=None))
            # each deleted row makes SQLite look for rows pointing at it: a self-reference without an
            # index (cases.duplicate_of_id) would scan the table once per row, so index it meanwhile
            temporary = []
            for fk in table.foreign_keys:
                if fk.column.table is table:
                    name = f"tmp_demo_wipe_{table.name}_{fk.parent.name}"
                    db.execute(text(f'CREATE INDEX IF NOT EXISTS {name} ON "{table.name}" ("{fk.parent.name}")'))
                    temporary.append(name)
            db.execute(table.delete())
            for name in temporary:
                db.execute(text(f"DROP INDEX IF EXISTS {name}"))
        db.commit()

    # 2. geography -----------------------------------------------------------------------------------
    def places(self) -> None:
        geo = self.geo = build_geography(self.seed, self.scale)
        self.pool = PointPool(geo, self.nrng)
        beat_ids = self.ids(PoliceBeat, len(geo.beats))
        self.city_id = self.ids(Place, 1)[0]
        self.town_ids = self.ids(Place, len(geo.towns))
        self.village_ids = self.ids(Place, len(geo.villages))
        self.grid_ids = self.ids(Place, len(geo.grids))
        self.beat_ids = beat_ids
        self.insert(
            PoliceBeat,
            [
                {"id": beat_ids[b.index], "code": b.code, "name": b.name, "town_id": self.town_ids[b.town]}
                for b in geo.beats
            ],
        )

        def row(area: Area, pid: int, parent: int | None, town: int | None, village: int | None, beat: int | None):
            lat, lon = area.center
            return {
                "id": pid,
                "code": area.code,
                "name": area.name,
                "level": area.level,
                "kind": area.kind,
                "parent_id": parent,
                "city_id": self.city_id,
                "town_id": town,
                "village_id": village,
                "population": area.population,
                "households": area.households or None,
                "geometry": area.geojson(),
                "center_lat": lat,
                "center_lon": lon,
                "police_beat_id": beat,
                "active": True,
            }

        rows = [row(geo.district, self.city_id, None, None, None, None)]
        rows += [row(t, self.town_ids[t.index], self.city_id, self.town_ids[t.index], None, None) for t in geo.towns]
        rows += [
            row(
                v,
                self.village_ids[v.index],
                self.town_ids[v.town],
                self.town_ids[v.town],
                self.village_ids[v.index],
                None,
            )
            for v in geo.villages
        ]
        rows += [
            row(
                g,
                self.grid_ids[g.index],
                self.village_ids[g.village],
                self.town_ids[g.town],
                self.village_ids[g.village],
                beat_ids[g.beat] if g.beat is not None else None,
            )
            for g in geo.grids
        ]
        self.insert(Place, rows)
        self.summary.update(
            {
                "镇街": len(geo.towns),
                "村社": len(geo.villages),
                "其中社区": sum(v.kind == "community" for v in geo.villages),
                "网格": len(geo.grids),
                "其中专属网格": sum(g.kind == "dedicated" for g in geo.grids),
                "警格": len(geo.beats),
                "警网关联网格": sum(g.beat is not None for g in geo.grids),
            }
        )

    # 3. centers and departments ----------------------------------------------------------------------
    def centers(self) -> None:
        geo = self.geo
        ids = self.ids(Center, 1 + len(geo.towns) + len(geo.villages))
        self.city_center = ids[0]
        self.town_centers = ids[1 : 1 + len(geo.towns)]
        self.village_centers = ids[1 + len(geo.towns) :]
        rows = [{"id": self.city_center, "place_id": self.city_id, "name": "市网格化服务管理中心", "level": "city"}]
        rows += [
            {
                "id": self.town_centers[t.index],
                "place_id": self.town_ids[t.index],
                "name": f"{t.name}综治中心",
                "level": "town",
            }
            for t in geo.towns
        ]
        for v in geo.villages:
            suffix = "综治中心" if v.kind == "community" or self.rng.random() < 0.5 else "联动站"
            rows.append(
                {
                    "id": self.village_centers[v.index],
                    "place_id": self.village_ids[v.index],
                    "name": f"{v.name}{suffix}",
                    "level": "village",
                }
            )
        self.insert(Center, rows)

        city_dept_ids = self.ids(Department, len(DEPARTMENTS))
        self.dept = {key: did for (key, _), did in zip(DEPARTMENTS, city_dept_ids, strict=False)}
        rows = [
            {"id": did, "code": f"D{i + 1:02d}", "name": f"{geo.district.name}{name}", "place_id": self.city_id}
            for i, ((key, name), did) in enumerate(zip(DEPARTMENTS, city_dept_ids, strict=False))
        ]
        ps_ids = self.ids(Department, len(geo.towns))
        self.police_station = ps_ids
        rows += [
            {
                "id": ps_ids[t.index],
                "code": f"PS{t.code}",
                "name": f"{t.short}派出所",
                "place_id": self.town_ids[t.index],
            }
            for t in geo.towns
        ]
        self.insert(Department, rows)
        # the places each serves: dispatch offers a department there only (city-wide ones: the city)
        self.insert(DepartmentPlace, [{"department_id": r["id"], "place_id": r["place_id"]} for r in rows])
        self.dept_names = {r["id"]: r["name"] for r in rows}
        self.summary.update({"综治中心": len(ids), "职能部门": len(rows)})

    # 4. categories -------------------------------------------------------------------------------------
    def categories(self) -> None:
        from ..categories import install_default_categories

        install_default_categories()
        db.commit()
        cats = db.execute(select(Category).where(Category.active.is_(True)).order_by(Category.code)).scalars().all()
        if not cats:
            raise DemoError("事件类别为空，无法生成事件")
        self.leaves, self.leaves_by_kind = category_leaves(cats)
        if not self.leaves:
            raise DemoError("没有可用的事件小类或细项，无法生成事件")
        self.summary["事件类别"] = len(cats)

    def pick_leaf(self, kind: str | None = None) -> Leaf:
        if kind is None:
            kind = self.rng.choices(list(KIND_SHARES), list(KIND_SHARES.values()))[0]
        leaves, cum = self.leaves_by_kind.get(kind) or self.leaves_by_kind["ordinary"]
        return self.rng.choices(leaves, cum_weights=cum)[0]

    # 5. accounts -----------------------------------------------------------------------------------------
    def accounts(self) -> None:
        geo, rng = self.geo, self.rng
        pw = hash_password(DEMO_PASSWORD)
        created = self.start - timedelta(days=45)
        rows: list[dict] = []
        self.account_role: dict[int, str] = {}

        def add(
            username: str,
            role: str,
            place_id: int,
            town: int | None,
            village: int | None,
            *,
            post: str | None = None,
            center: int | None = None,
            dept: int | None = None,
            name: str | None = None,
            unmask: bool = False,
        ) -> int:
            aid = self.ids(Account, 1)[0]
            rows.append(
                {
                    "id": aid,
                    "username": username,
                    "display_name": name or names.person_name(rng),
                    "password_hash": pw,
                    "role": role,
                    "post": post,
                    "place_id": place_id,
                    "town_id": town,
                    "village_id": village,
                    "center_id": center,
                    "department_id": dept,
                    "phone": names.mobile_phone(rng),
                    "can_unmask": unmask,
                    "active": True,
                    "failed_logins": 0,
                    "locked_until": None,
                    "password_changed_at": self.now - timedelta(days=rng.randint(1, 40)),
                    "must_change_password": False,
                    "totp_secret": None,
                    "last_login_at": None,
                    "last_seen_at": None,
                    "created_at": created,
                }
            )
            self.account_role[aid] = role
            return aid

        city = self.city_id
        self.admin = add("admin", "admin", city, None, None, name="系统管理员")
        self.secadmin = add("secadmin", "security_admin", city, None, None, name="安全管理员")
        self.auditor = add("auditor", "auditor", city, None, None, name="安全审计员")
        self.duty = add("duty", "duty_officer", city, None, None, center=self.city_center)
        self.operators = [add(f"operator{i}", "operator", city, None, None, center=self.city_center) for i in (1, 2)]
        self.supervisor = add("supervisor", "supervisor", city, None, None, center=self.city_center, unmask=True)
        self.leader = add("leader", "leader", city, None, None)
        self.town_admin, self.town_sup, self.town_duty = [], [], []
        for t in geo.towns:
            tid = self.town_ids[t.index]
            n = t.index + 1
            self.town_admin.append(
                add(f"town{n:02d}_admin", "center_admin", tid, tid, None, center=self.town_centers[t.index])
            )
            self.town_sup.append(
                add(f"town{n:02d}_sup", "supervisor", tid, tid, None, center=self.town_centers[t.index])
            )
            self.town_duty.append(
                add(f"town{n:02d}_duty", "duty_officer", tid, tid, None, center=self.town_centers[t.index])
            )
        self.village_admin = []
        for v in geo.villages:
            vid = self.village_ids[v.index]
            self.village_admin.append(
                add(
                    f"v{v.index + 1:03d}_admin",
                    "center_admin",
                    vid,
                    self.town_ids[v.town],
                    vid,
                    center=self.village_centers[v.index],
                )
            )
        self.dept_handler: dict[int, int] = {}
        dept_ids = list(self.dept.values()) + list(self.police_station)
        for i, did in enumerate(dept_ids, start=1):
            town = None
            if did in self.police_station:
                town = self.town_ids[self.police_station.index(did)]
            self.dept_handler[did] = add(f"dept{i:02d}", "department", town or city, town, None, dept=did)

        # gridworkers: one per grid (the village's first comprehensive grid holds its 网格长), extras in big grids
        n_workers = max(len(geo.grids), round(FULL_GRIDWORKERS * self.scale))
        extra = n_workers - len(geo.grids)
        big = sorted(range(len(geo.grids)), key=lambda gi: -geo.grids[gi].population)[:extra]
        slots = list(range(len(geo.grids))) + big
        slots.sort(key=lambda gi: geo.grids[gi].code)
        chief_done: set[int] = set()
        self.worker_names: dict[int, str] = {}
        self.workers: list[Worker] = []
        self.grid_workers: dict[int, list[Worker]] = defaultdict(list)
        town_activity = [rng.uniform(0.8, 1.2) for _ in geo.towns]
        for n, gi in enumerate(slots, start=1):
            g = geo.grids[gi]
            first_here = not self.grid_workers[gi]
            if first_here and g.kind == "comprehensive" and g.village not in chief_done:
                post = "grid_chief"
                chief_done.add(g.village)
            elif not first_here:
                post = rng.choice(("part_time", "part_time", "liaison", "grid_supervisor"))
            else:
                post = "full_time" if rng.random() < 0.8 else "part_time"
            name = names.person_name(rng)
            aid = add(
                f"gw{n:04d}",
                "gridworker",
                self.grid_ids[gi],
                self.town_ids[g.town],
                self.village_ids[g.village],
                post=post,
                name=name,
            )
            act = rng.lognormvariate(0, 0.45) * town_activity[g.town]
            if post == "part_time":
                act *= 0.6
            if g.kind == "dedicated":
                act *= 0.5
            w = Worker(aid, f"gw{n:04d}", name, gi, g.village, g.town, post, act)
            self.worker_names[aid] = name
            self.workers.append(w)
            self.grid_workers[gi].append(w)
        # volunteers live in comprehensive grids
        comp = [g.index for g in geo.grids if g.kind == "comprehensive"]
        self.volunteers: list[tuple[int, int]] = []
        for n in range(1, max(3, round(FULL_VOLUNTEERS * self.scale)) + 1):
            gi = rng.choice(comp)
            g = geo.grids[gi]
            aid = add(f"vol{n:03d}", "volunteer", self.grid_ids[gi], self.town_ids[g.town], self.village_ids[g.village])
            self.volunteers.append((aid, gi))
        self.insert(Account, rows)

        # which center admin accounts log in this month: the per-town login rate runs from ~35% to 100%
        n_towns = len(geo.towns)
        rates = [0.35 + 0.65 * i / max(1, n_towns - 1) for i in range(n_towns)]
        rng.shuffle(rates)
        if n_towns >= 4:  # a couple of towns at a clean 100%, one below 36%
            rates[rates.index(max(rates))] = 1.0
        self.town_login_rate = rates
        self.active_admins: set[int] = set()
        for t in geo.towns:
            accounts = [self.town_admin[t.index]] + [self.village_admin[v.index] for v in geo.villages_of(t.index)]
            k = max(1, round(rates[t.index] * len(accounts)))
            chosen = (
                [accounts[0]] + rng.sample(accounts[1:], min(len(accounts) - 1, k - 1))
                if rng.random() < 0.9
                else rng.sample(accounts, k)
            )
            self.active_admins.update(chosen[:k])
        self.summary.update({"账号": len(rows), "网格员": len(self.workers), "志愿者": len(self.volunteers)})

    def village_actor(self, vi: int) -> int:
        """Who acts for a village center: its admin if that account is in use, else the town's."""
        admin = self.village_admin[vi]
        return admin if admin in self.active_admins else self.town_admin[self.geo.villages[vi].town]

    # 6. cases ---------------------------------------------------------------------------------------------
    def report_times(self, n: int) -> list[datetime]:
        """n report times over the window: by hour of day, fewer on weekends and holidays."""
        slots, weights = [], []
        t = self.start.replace(minute=0, second=0)
        while t < self.now:
            lt = self.loc(t)
            w = HOUR_WEIGHTS[lt.hour] * (1.0 if self.workday(lt.date()) else 0.55)
            span = (min(t + timedelta(hours=1), self.now) - max(t, self.start)).total_seconds() / 3600
            if span > 0:
                slots.append(max(t, self.start))
                weights.append(w * span)
            t += timedelta(hours=1)
        p = np.array(weights) / sum(weights)
        chosen = self.nrng.choice(len(slots), size=n, p=p)
        out = []
        for i in chosen:
            s = slots[i]
            end = min(s.replace(minute=0, second=0) + timedelta(hours=1), self.now)
            out.append(s + timedelta(seconds=self.rng.uniform(0, max(1.0, (end - s).total_seconds() - 1))))
        out.sort()
        return [min(t.replace(microsecond=0), self.now - timedelta(seconds=1)) for t in out]

    def address(self, gi: int) -> str:
        g = self.geo.grids[gi]
        v = self.geo.villages[g.village]
        rng = self.rng
        if g.kind == "dedicated":
            return f"{v.name}{g.subject}{rng.choice(('东门', '南侧', '北门', '西侧', '内', '围墙外', '停车场'))}"
        if v.kind == "community":
            if rng.random() < 0.55:
                return f"{v.name}{rng.choice(g.compounds)}{rng.randint(1, 36)}幢{rng.randint(1, 4)}单元"
            return f"{v.name}{rng.choice(g.roads)}{rng.randint(1, 388)}号"
        return f"{v.name}{rng.choice(g.compounds)}{rng.randint(1, 120)}号"

    def pick_worker(self) -> Worker:
        return self.rng.choices(self.workers, cum_weights=self.worker_cum)[0]

    def cases(self) -> None:
        geo, rng = self.geo, self.rng
        n = max(50, round(FULL_CASES * self.scale * self.history_days / HISTORY_DAYS))
        times = self.report_times(n)
        self.worker_cum = list(accumulate(w.activity for w in self.workers))
        grid_cum = list(accumulate(math.sqrt(max(g.population, 30)) for g in geo.grids))
        grid_range = range(len(geo.grids))
        town_late = [rng.uniform(0.3, 2.0) for _ in geo.towns]
        self.town_late = town_late
        # the centers' own reports: a town center ~8–36 a month (indicator 4), a village center ~1–2 (mostly disputes)
        center_reports: list[tuple[str, int]] = []
        months = self.history_days / HISTORY_DAYS
        for t in geo.towns:
            center_reports += [("town", t.index)] * round(rng.randint(8, 36) * months)
        for v in geo.villages:
            own = np.random.default_rng(self.seed + v.index).poisson(1.6 * months)
            center_reports += [("village", v.index)] * min(round(4 * months), int(own))
        rng.shuffle(center_reports)
        center_slots = set(rng.sample(range(n), min(len(center_reports), n // 4)))
        center_iter = iter(center_reports)
        sources = ("app", "hotline", "volunteer", "department", "leader")
        source_w = (0.815, 0.11, 0.04, 0.028, 0.007)
        hotline_seq: dict[date, int] = defaultdict(int)
        plans: list[Plan] = []
        for i, t in enumerate(times):
            source = "center" if i in center_slots else rng.choices(sources, source_w)[0]
            kind = None
            reporter = center = None
            if source == "center":
                level, idx = next(center_iter)
                if level == "town":
                    center, reporter = self.town_centers[idx], self.town_admin[idx]
                    kind = rng.choices(("ordinary", "hazard", "dispute"), (0.5, 0.3, 0.2))[0]
                    village = rng.choice(geo.villages_of(idx))
                else:
                    center, reporter = self.village_centers[idx], self.village_admin[idx]
                    kind = "dispute" if rng.random() < 0.75 else None
                    village = geo.villages[idx]
                gi = rng.choice(geo.grids_of(village.index)).index
            elif source == "app":
                w = self.pick_worker()
                reporter, gi = w.id, w.grid
            elif source == "volunteer":
                reporter, home = rng.choice(self.volunteers)
                gi = home if rng.random() < 0.7 else rng.choice(geo.grids_of(geo.grids[home].village)).index
            else:
                gi = rng.choices(grid_range, cum_weights=grid_cum)[0]
                if source == "hotline":
                    reporter = rng.choice(self.operators)
                elif source == "department":
                    reporter = self.dept_handler[rng.choice(list(self.dept.values()))]
                else:
                    reporter = self.leader
            leaf = self.pick_leaf(kind)
            lon, lat = self.pool.take(gi)
            addr = self.address(gi)
            discovered = t - timedelta(minutes=rng.uniform(1, 25) if leaf.parking else rng.uniform(2, 240))
            p = Plan(
                idx=i,
                source=source,
                leaf=leaf,
                grid=gi,
                reported_at=t,
                discovered_at=discovered.replace(microsecond=0),
                reporter_id=reporter,
                reporter_center_id=center,
                address=addr,
                lon=lon,
                lat=lat,
                description=texts.describe(rng, leaf.templates, leaf.name, addr),
            )
            if source == "hotline":
                lt = self.loc(t)
                hotline_seq[lt.date()] += 1
                p.caller_name = names.person_name(rng)
                p.caller_phone = names.mobile_phone(rng)
                p.external_ref = f"12345-{lt:%Y%m%d}-{hotline_seq[lt.date()]:05d}"
                p.description = "市民来电反映：" + p.description
                p.discovered_at = t - timedelta(minutes=rng.uniform(1, 10))
            plans.append(p)
        self.plan_steps(plans)
        self.write_cases(plans)

    # planning the steps of each case ------------------------------------------------------------------
    def daytime(self, t: datetime, actor: int | None) -> datetime:
        """People at the village and town centers work by day: push night steps to the next morning."""
        if actor is None or self.account_role.get(actor) in ("operator", "duty_officer"):
            return t
        lt = self.loc(t)
        if 7 <= lt.hour < 22:
            return t
        day = lt.date() if lt.hour < 7 else lt.date() + timedelta(days=1)
        morning = datetime(day.year, day.month, day.day, 7, 30) + timedelta(minutes=self.rng.uniform(0, 100))
        return self.utc(morning)

    def plan_steps(self, plans: list[Plan]) -> None:
        geo, rng = self.geo, self.rng
        last_by_grid_cat: dict[tuple[int, int], Plan] = {}
        town_level: list[Plan] = []
        for p in plans:
            leaf, cat = p.leaf, p.leaf.row
            g = geo.grids[p.grid]
            vi, ti = g.village, g.town
            t0 = p.reported_at
            steps = p.steps
            steps.append((t0, "report", p.reporter_id, f"{labels.SOURCE.get(p.source, p.source)}：{leaf.name}", None))
            if leaf.kind == "dispute":
                p.screening = rng.choices(list(SCREENING_WEIGHTS), list(SCREENING_WEIGHTS.values()))[0]
            key = (vi, leaf.id)
            previous = last_by_grid_cat.get(key)
            last_by_grid_cat[key] = p
            # the parking rule: found more than an hour before the report → void at once
            if leaf.parking and rng.random() < 0.012:
                p.discovered_at = t0 - timedelta(minutes=rng.uniform(62, 200))
                steps.append((t0, "auto_reject", None, _parking_late_note(cat), None))
                continue
            # 自办自结: small matters the gridworker settles on the spot, closed the same day
            is_worker = self.account_role.get(p.reporter_id) == "gridworker"
            self_share = {"ordinary": 0.2, "hazard": 0.08, "dispute": 0.12}.get(leaf.kind, 0.1)
            if is_worker and not cat.must_escalate and not leaf.parking and rng.random() < self_share:
                lt = self.loc(t0)
                end_of_day = self.utc(datetime(lt.year, lt.month, lt.day, 23, 59))
                at = min(t0 + timedelta(minutes=rng.uniform(8, 90)), end_of_day)
                steps.append((at, "self_close", p.reporter_id, rng.choice(texts.SELF_CLOSE_NOTES), None))
                continue
            # who registers
            if p.source in ("hotline", "department", "leader") or (
                leaf.parking and self.loc(t0).hour not in range(7, 22)
            ):
                registrar = rng.choice(self.operators)
            elif p.source == "center" and p.reporter_center_id in self.town_centers:
                registrar = self.town_admin[ti]
            else:
                registrar = self.village_actor(vi)
            if leaf.parking:
                reg_at = t0 + timedelta(minutes=rng.uniform(2, 15))
            elif self.account_role[registrar] == "operator":
                reg_at = t0 + timedelta(minutes=rng.uniform(3, 25))
            else:
                reg_at = self.daytime(t0 + timedelta(minutes=rng.uniform(5, 60)), registrar)
            r = rng.random()
            if r < 0.014:
                steps.append((reg_at, "reject", registrar, rng.choice(texts.REJECT_REASONS), None))
                continue
            if (
                r < 0.024
                and previous is not None
                and previous.reported_at > t0 - timedelta(days=3)
                and not any(s[1] in ("reject", "duplicate", "auto_reject") for s in previous.steps)
            ):
                steps.append((reg_at, "duplicate", registrar, None, {"original": previous}))
                continue
            steps.append((reg_at, "register", registrar, None, None))
            handle_due = self.due(reg_at, cat.handle_limit or 5, cat.handle_unit or "work_days")
            span = max(handle_due - reg_at, timedelta(minutes=30))
            r = rng.random()
            late = self.town_late[ti]
            if r < 0.009 * late:
                u = rng.uniform(2.2, 9.0)  # stuck: long overdue, perhaps still open
            elif r < 0.03 * late:
                u = rng.uniform(1.05, 1.9)
            else:
                u = rng.uniform(0.15, 0.92)
            close_at = reg_at + span * u
            cursor = reg_at
            # parking: transfer to the city platform inside the hour
            if leaf.parking:
                transfer_due = p.discovered_at + timedelta(minutes=cat.transfer_limit_minutes)
                at = cursor + timedelta(minutes=rng.uniform(1, 8))
                if at >= transfer_due or rng.random() < 0.02:
                    steps.append(
                        (
                            transfer_due + timedelta(seconds=rng.randint(20, 90)),
                            "auto_reject",
                            None,
                            "乱停车事件未在发现后一小时内转报市平台，按规定自动作废",
                            None,
                        )
                    )
                    continue
                steps.append((at, "transfer", registrar, "已转报市平台", None))
                cursor = at
            # escalation chain
            target = self.escalation_target(p, cat)
            level = "grid"
            chain: list[str] = []
            # the city platform and the centers' own reports are handled where they are received, unless
            # their category must reach a level: then that center passes them straight up
            direct = p.source in ("hotline", "department", "leader", "center")
            if target != "grid" and not direct:
                # what must reach the city (危化品, 涉稳) goes straight up from the village
                chain = {"village": ["village"], "town": ["village", "town"], "city": ["village", "city"]}[target]
            elif direct and cat.must_escalate and target == cat.escalate_to:
                chain = [target]
            worker = self.grid_workers[p.grid][0].id
            for lvl in chain:
                gap = min(span * rng.uniform(0.01, 0.05), timedelta(minutes=rng.uniform(10, 240)))
                village_admin = self.village_admin[vi]
                if direct:
                    actor = registrar
                elif lvl == "village":  # the gridworker hands it to the village (or its center takes it up)
                    use_admin = village_admin in self.active_admins and (not is_worker or rng.random() < 0.4)
                    actor = village_admin if use_admin else (p.reporter_id if is_worker else worker)
                else:
                    # the village center hands it up; where its account is unused, the gridworker does
                    actor = village_admin if village_admin in self.active_admins else worker
                cursor = self.daytime(cursor + gap, actor)
                steps.append((cursor, "escalate", actor, rng.choice(texts.ESCALATE_NOTES[lvl]), {"to_level": lvl}))
                level = lvl
            if level == "town":
                town_level.append(p)
            # dispatch
            dispatcher, closer = self.handlers_for(p, level, registrar)
            department, assignee = self.dispatch_target(p, level)
            handler = self.dept_handler[department] if department else assignee
            t_dispatch = self.daytime(
                cursor + min(span * rng.uniform(0.02, 0.08), timedelta(hours=rng.uniform(0.2, 6))), dispatcher
            )
            steps.append(
                (
                    t_dispatch,
                    "dispatch",
                    dispatcher,
                    rng.choice(texts.DISPATCH_NOTES),
                    {"department_id": department, "assignee_id": assignee},
                )
            )
            t_accept = self.daytime(
                t_dispatch + min(span * rng.uniform(0.02, 0.1), timedelta(hours=rng.uniform(0.2, 8))), handler
            )
            steps.append((t_accept, "accept", handler, None, None))
            close_at = max(close_at, t_accept + timedelta(minutes=20))
            t_feedback = self.daytime(close_at - (close_at - t_accept) * rng.uniform(0.05, 0.35), handler)
            if rng.random() < 0.035:
                first = t_accept + (t_feedback - t_accept) * 0.5
                steps.append((first, "feedback", handler, rng.choice(texts.FEEDBACK_NOTES), None))
                back = first + (t_feedback - first) * 0.3
                steps.append((back, "rework", closer, rng.choice(texts.REWORK_NOTES), None))
            steps.append((t_feedback, "feedback", handler, rng.choice(texts.FEEDBACK_NOTES), None))
            steps.append((self.daytime(close_at, closer), "close", closer, rng.choice(texts.CLOSE_NOTES), None))
        # town centers pass a few of their cases on to the city (流转, indicator 7): ~5 per center a month
        by_town: dict[int, list[Plan]] = defaultdict(list)
        for p in town_level:
            by_town[self.geo.grids[p.grid].town].append(p)
        for ti, mine in by_town.items():
            k = min(len(mine), self.rng.randint(1, 9))
            for p in self.rng.sample(mine, k):
                self.add_city_escalation(p, ti)

    def due(self, start: datetime, amount: int, unit: str) -> datetime:
        """workcalendar.deadline_utc, memoised where that is exact: a work_days deadline depends only on
        the local date it starts from (chinese_calendar's lookups are slow enough to matter here)."""
        if unit != "work_days":
            return deadline_utc(start, amount, unit, self.tz)
        local_start = self.loc(start)
        cutoff = same_day_before()
        key = (local_start.date(), amount, cutoff is not None and local_start.time() < cutoff)
        hit = self._due_cache.get(key)
        if hit is None:
            hit = self._due_cache[key] = deadline_utc(start, amount, unit, self.tz)
        return hit

    def escalation_target(self, p: Plan, cat: Category) -> str:
        rng = self.rng
        if p.screening:
            base = p.screening
        else:
            r = rng.random()
            base = "grid" if r < 0.64 else "village" if r < 0.89 else "town"
        if cat.must_escalate and cat.escalate_to and rng.random() < 0.97:  # a few still wait for it (alerts)
            if LEVEL_RANK[cat.escalate_to] > LEVEL_RANK[base]:
                base = cat.escalate_to
        return base

    def handlers_for(self, p: Plan, level: str, registrar: int) -> tuple[int, int]:
        """(dispatcher, closer) for the level the case is handled at."""
        rng = self.rng
        g = self.geo.grids[p.grid]
        if level == "city" or self.account_role.get(registrar) == "operator" and level in ("grid", "village"):
            op = rng.choice(self.operators)
            return op, op if rng.random() < 0.8 else self.supervisor
        if level == "town" or (p.source == "center" and p.reporter_center_id in self.town_centers):
            admin = self.town_admin[g.town]
            return admin, admin if rng.random() < 0.7 else self.town_sup[g.town]
        actor = self.village_actor(g.village)
        return actor, actor

    def dispatch_target(self, p: Plan, level: str) -> tuple[int | None, int | None]:
        """(department_id, assignee_id)."""
        rng = self.rng
        g = self.geo.grids[p.grid]
        key = p.leaf.dept
        worker = self.grid_workers[p.grid][0].id

        def department() -> int:
            if key in ("police",):
                return self.police_station[g.town]
            return self.dept.get(key, self.dept["urban"])

        if p.leaf.kind == "dispute" and level in ("grid", "village"):
            return None, worker
        share = {"grid": 0.2, "village": 0.45, "town": 1.0, "city": 1.0}[level]
        if p.source in ("hotline", "department", "leader"):
            share = 0.8
        if p.leaf.parking:
            share = 0.85
        if rng.random() < share:
            return department(), None
        return None, worker

    def add_city_escalation(self, p: Plan, ti: int) -> None:
        """Insert a town → city escalation by the town center before the dispatch; the city handles it."""
        steps = p.steps
        di = next((i for i, s in enumerate(steps) if s[1] == "dispatch"), None)
        if di is None:
            return
        rng = self.rng
        esc = (
            steps[di][0],
            "escalate",
            self.town_admin[ti],
            rng.choice(texts.ESCALATE_NOTES["city"]),
            {"to_level": "city"},
        )
        op = rng.choice(self.operators)
        key = p.leaf.dept
        dept = self.police_station[ti] if key == "police" else self.dept.get(key, self.dept["urban"])
        handler = self.dept_handler[dept]
        shift = timedelta(minutes=rng.uniform(15, 120))
        new = steps[:di] + [esc]
        for at, action, actor, note, extra in steps[di:]:
            if action == "dispatch":
                actor, extra = op, {"department_id": dept, "assignee_id": None}
            elif action in ("accept", "feedback"):
                actor = handler
            elif action in ("close", "rework"):
                actor = op if rng.random() < 0.8 else self.supervisor
            new.append((at + shift, action, actor, note, extra))
        p.steps = new

    # applying the plan up to now ------------------------------------------------------------------------
    def write_cases(self, plans: list[Plan]) -> None:
        rng, now = self.rng, self.now
        case_ids = self.ids(Case, len(plans))
        for p, cid in zip(plans, case_ids, strict=False):
            p.id = cid
        case_rows, steps_out, disputes, alerts_out = [], [], [], []
        timelines: dict[int, list[tuple[datetime, str]]] = {}
        merges = []
        for p in plans:
            cat = p.leaf.row
            g = self.geo.grids[p.grid]
            c = {
                "id": p.id,
                "number": f"SJ{self.loc(p.reported_at):%Y%m%d}{p.id:07d}",
                "source": p.source,
                "client_key": None,
                "category_id": p.leaf.id,
                "kind": p.leaf.kind,
                "description": p.description,
                "address": p.address,
                "lat": p.lat,
                "lon": p.lon,
                "grid_id": self.grid_ids[p.grid],
                "village_id": self.village_ids[g.village],
                "town_id": self.town_ids[g.town],
                "reporter_id": p.reporter_id,
                "reporter_center_id": p.reporter_center_id,
                "caller_name": p.caller_name,
                "caller_phone": p.caller_phone,
                "external_ref": p.external_ref,
                "state": "reported",
                "level": "grid",
                "valid": None,
                "duplicate_of_id": None,
                "self_handled": False,
                "department_id": None,
                "assignee_id": None,
                "discovered_at": p.discovered_at,
                "reported_at": p.reported_at,
                "registered_at": None,
                "dispatched_at": None,
                "transferred_at": None,
                "closed_at": None,
                "dispatch_due": None,
                "handle_due": None,
                "escalate_due": None,
                "transfer_due": (
                    p.discovered_at + timedelta(minutes=cat.transfer_limit_minutes)
                    if cat.transfer_limit_minutes
                    else None
                ),
                "transfer_warn_at": None,
                "escalate_warn_at": None,
                "overdue": False,
                "overdue_at": None,
                "dispatch_late": False,
                "escalate_late": False,
                "paused_at": None,
                "pause_reason": None,
                "escalated_to_town": False,
                "escalated_to_city": False,
                "escalated_by_center_id": None,
                "rework_count": 0,
                "outstanding": False,
                "outstanding_story": None,
                "updated_at": p.reported_at,
                "version": 1,
            }
            timeline = timelines[p.id] = []
            raised: dict[str, dict] = {}  # the alerts of this case, by kind (one each, as the unique key says)
            last = None
            for at, action, actor, note, extra in _monotonic(p.steps, rng):
                if at > now:
                    break
                # the sweep marks a case overdue a little after its handling limit passes
                if (
                    not c["overdue"]
                    and c["handle_due"] is not None
                    and c["state"] in SWEEP_STATES
                    and c["handle_due"] + timedelta(seconds=45) < at
                ):
                    self.mark_overdue(c, steps_out, timeline)
                self.mark_stage_late(c, at, last, steps_out, timeline)
                self.raise_alerts(c, at, raised)
                step = self.apply(c, at, action, actor, note, extra, p, merges)
                steps_out.append(step)
                timeline.append((at, c["state"]))
                self.clear_alerts(c, at, raised)
                last = at
            if (
                not c["overdue"]
                and c["handle_due"] is not None
                and c["state"] in SWEEP_STATES
                and c["handle_due"] + timedelta(seconds=45) < now
            ):
                self.mark_overdue(c, steps_out, timeline)
            self.mark_stage_late(c, now, last, steps_out, timeline)
            self.raise_alerts(c, now, raised)
            alerts_out.extend(raised.values())
            c["updated_at"] = max(last or p.reported_at, c["overdue_at"] or p.reported_at)
            if p.leaf.kind == "dispute":
                outcome, mediated, mlevel = "pending", None, None
                if c["state"] == "closed":
                    outcome = "resolved" if rng.random() < 0.988 else "unresolved"
                    mediated = c["closed_at"]
                    mlevel = c["level"] if c["level"] != "city" else "town"
                    if c["self_handled"]:
                        mlevel = "grid"
                disputes.append(
                    {
                        "case_id": p.id,
                        "screening_level": p.screening or "grid",
                        "mediation_level": mlevel,
                        "outcome": outcome,
                        "mediated_at": mediated,
                    }
                )
            case_rows.append(c)
        # the original of each duplicate records the merge in its own timeline
        for at, original, dup_row, actor in merges:
            state = _state_at(timelines.get(original.id, []), at)
            steps_out.append(
                {
                    "case_id": original.id,
                    "at": at,
                    "actor_id": actor,
                    "action": "merge",
                    "from_state": state,
                    "to_state": state,
                    "from_level": None,
                    "to_level": None,
                    "note": f"合并重复案件 {dup_row['number']}（其处理记录一并保留）",
                }
            )
        self.outstanding(plans, case_rows, steps_out)
        steps_out.sort(key=lambda s: (s["at"], s["case_id"]))
        for s, sid in zip(steps_out, self.ids(CaseStep, len(steps_out)), strict=False):
            s["id"] = sid
        self.insert(Case, case_rows)
        self.insert(CaseStep, steps_out)
        self.insert(Dispute, disputes)
        self.acknowledge(alerts_out)
        alerts_out.sort(key=lambda a: a["raised_at"])
        for a, aid in zip(alerts_out, self.ids(Alert, len(alerts_out)), strict=False):
            a["id"] = aid
        self.insert(Alert, alerts_out)
        self.case_rows = case_rows
        self.summary.update(
            {
                "事件": len(case_rows),
                "处理步骤": len(steps_out),
                "矛盾纠纷": len(disputes),
                "已结案": sum(c["state"] == "closed" for c in case_rows),
                "逾期": sum(c["overdue"] for c in case_rows),
                "派遣超时": sum(c["dispatch_late"] for c in case_rows),
                "流转超时": sum(c["escalate_late"] for c in case_rows),
                "流转至镇街": sum(c["escalated_to_town"] for c in case_rows),
                "流转至市": sum(c["escalated_to_city"] for c in case_rows),
                "优秀事件": sum(c["outstanding"] for c in case_rows),
                "预警（历史）": len(alerts_out),
                "预警（未解除）": sum(a["cleared_at"] is None for a in alerts_out),
            }
        )

    def raise_alerts(self, c: dict, until: datetime, raised: dict[str, dict]) -> None:
        """The alerts the sweep (every 15 s, commandcenter.alerts.due_alerts) raised before `until` (the next
        step, or now), each at its own warning moment: the demo's history carries its alerts."""
        if c["state"] not in OPEN_STATES:
            return

        def add(kind: str, warn_at: datetime, due: datetime) -> None:
            warn_at = max(warn_at, c["reported_at"]).replace(microsecond=0)  # found late: warned at the report
            if kind in raised or warn_at >= until:
                return
            at = min(warn_at + timedelta(seconds=self.rng.randint(1, 15)), until - timedelta(seconds=1))
            raised[kind] = {
                "case_id": c["id"],
                "kind": kind,
                "town_id": c["town_id"],
                "due_at": due,
                "raised_at": max(at, warn_at),
                "cleared_at": None,
                "acknowledged_by_id": None,
                "acknowledged_at": None,
            }

        if c["transfer_warn_at"] is not None and c["transferred_at"] is None:
            add("parking_due", c["transfer_warn_at"], c["transfer_due"])
        if c["escalate_warn_at"] is not None and c["escalate_due"] is not None:
            add("escalation_due", c["escalate_warn_at"], c["escalate_due"])
        if c["overdue"]:
            add("overdue", c["overdue_at"], c["handle_due"])

    @staticmethod
    def clear_alerts(c: dict, at: datetime, raised: dict[str, dict]) -> None:
        """What commandcenter.alerts.clear_for_case does at each step: a finished case clears all; a transfer
        clears the parking warning; reaching the escalation target clears the escalation warning."""
        finished = c["state"] not in OPEN_STATES
        for kind, a in raised.items():
            if a["cleared_at"] is None and (
                finished
                or kind == "parking_due"
                and c["transferred_at"] is not None
                or kind == "escalation_due"
                and c["escalate_due"] is None
            ):
                a["cleared_at"] = at

    def acknowledge(self, alerts_out: list[dict]) -> None:
        """The town's duty officer acknowledges most alerts within half an hour; the newest wait."""
        rng, now = self.rng, self.now
        duty_of_town = {tid: self.town_duty[i] for i, tid in enumerate(self.town_ids)}
        for a in alerts_out:
            at = a["raised_at"] + timedelta(minutes=rng.uniform(1, 30))
            if at < now and rng.random() < 0.85:
                a["acknowledged_at"] = at.replace(microsecond=0)
                a["acknowledged_by_id"] = duty_of_town.get(a["town_id"], self.duty)

    def mark_overdue(self, c: dict, steps_out: list, timeline: list) -> None:
        at = c["handle_due"] + timedelta(seconds=self.rng.randint(5, 45))
        c["overdue"] = True
        c["overdue_at"] = at
        steps_out.append(
            {
                "case_id": c["id"],
                "at": at,
                "actor_id": None,
                "action": "overdue",
                "from_state": c["state"],
                "to_state": c["state"],
                "from_level": c["level"],
                "to_level": c["level"],
                "note": f"超过办理时限（{self.loc(c['handle_due']):%Y-%m-%d %H:%M}）",
            }
        )
        timeline.append((at, c["state"]))

    def mark_stage_late(self, c: dict, until: datetime, last: datetime | None, steps_out: list, timeline: list) -> None:
        """What the deadline sweep (every 60 s, loop.sweep_deadlines) records before `until`: a case still
        undispatched past its dispatch limit, or still below its escalation target past its escalation limit."""
        marks = []
        if (
            c["state"] == "registered"
            and c["dispatched_at"] is None
            and not c["dispatch_late"]
            and c["dispatch_due"] is not None
            and c["dispatch_due"] + timedelta(seconds=45) < until
        ):
            c["dispatch_late"] = True
            note = f"超过派遣时限（{self.loc(c['dispatch_due']):%Y-%m-%d %H:%M}）仍未派遣"
            marks.append((c["dispatch_due"], "dispatch_overdue", note))
        if (
            c["state"] in OPEN_STATES
            and not c["escalate_late"]
            and c["escalate_due"] is not None
            and c["escalate_due"] + timedelta(seconds=45) < until
        ):
            c["escalate_late"] = True
            marks.append(
                (
                    c["escalate_due"],
                    "escalate_overdue",
                    f"超过流转时限（{self.loc(c['escalate_due']):%Y-%m-%d %H:%M}）仍未流转",
                )
            )
        for due, action, note in sorted(marks):
            # after the last step taken (the sweep saw the case as it was then), before the next one
            at = due + timedelta(seconds=self.rng.randint(5, 45))
            if last is not None and at <= last:
                at = last + timedelta(seconds=1)
            steps_out.append(
                {
                    "case_id": c["id"],
                    "at": at,
                    "actor_id": None,
                    "action": action,
                    "from_state": c["state"],
                    "to_state": c["state"],
                    "from_level": c["level"],
                    "to_level": c["level"],
                    "note": note,
                }
            )
            timeline.append((at, c["state"]))

    def apply(
        self, c: dict, at: datetime, action: str, actor: int | None, note: str | None, extra, p: Plan, merges: list
    ) -> dict:
        """One step, with the rules of commandcenter.cases.loop; returns the CaseStep row."""
        cat = p.leaf.row
        from_state, from_level = c["state"], c["level"]
        if action == "report":
            from_state = from_level = None
            to_state = "reported"
            if c["transfer_due"] is not None:
                minutes = cat.warn_before_minutes or DEFAULT_PARKING_WARN_MINUTES
                c["transfer_warn_at"] = max(c["discovered_at"], c["transfer_due"] - timedelta(minutes=minutes))
        elif action == "auto_reject":
            to_state = "rejected"
            c["valid"], c["closed_at"] = False, at
        elif action == "self_close":
            to_state = "closed"
            c.update(self_handled=True, valid=True, registered_at=c["registered_at"] or at, closed_at=at)
        elif action == "register":
            to_state = "registered"
            c["registered_at"], c["valid"] = at, True
            if cat.dispatch_limit:
                c["dispatch_due"] = self.due(at, cat.dispatch_limit, cat.dispatch_unit)
            if cat.handle_limit:
                c["handle_due"] = self.due(at, cat.handle_limit, cat.handle_unit)
            if cat.must_escalate and cat.escalate_limit and not _reached(c["level"], cat.escalate_to):
                c["escalate_due"] = self.due(at, cat.escalate_limit, cat.escalate_unit)
                c["escalate_warn_at"] = warn_time(at, c["escalate_due"], cat)
        elif action == "reject":
            to_state = "rejected"
            c["valid"], c["closed_at"] = False, at
        elif action == "duplicate":
            to_state = "duplicate"
            original = extra["original"]
            c.update(valid=False, duplicate_of_id=original.id, closed_at=at)
            note = f"与 SJ{self.loc(original.reported_at):%Y%m%d}{original.id:07d} 重复"
            merges.append((at, original, c, actor))
        elif action == "transfer":
            to_state = from_state
            c["transferred_at"] = at
        elif action == "escalate":
            target = extra["to_level"]
            if target == "town" or from_level == "town":  # straight to the city does not pass the town
                c["escalated_to_town"] = True
            if target == "city":
                c["escalated_to_city"] = True
            if target == "city" and actor in self.town_admin:  # 流转 by the town center (indicator 7)
                c["escalated_by_center_id"] = self.town_centers[self.town_admin.index(actor)]
            to_state = "registered" if from_state != "reported" else "reported"
            if to_state == "registered":
                c["department_id"] = c["assignee_id"] = None
            note = f"由{labels.LEVEL[from_level]}流转至{labels.LEVEL[target]}：{note}"
            c["level"] = target
            if c["escalate_due"] is not None and _reached(target, cat.escalate_to):
                if at > c["escalate_due"]:
                    c["escalate_late"] = True
                c["escalate_due"] = c["escalate_warn_at"] = None
        elif action == "dispatch":
            to_state = "dispatched"
            c["department_id"] = extra["department_id"]
            c["assignee_id"] = extra["assignee_id"]
            c["dispatched_at"] = at
            if c["dispatch_due"] is not None and at > c["dispatch_due"]:
                c["dispatch_late"] = True
            target = (
                self.dept_names.get(extra["department_id"])
                if extra["department_id"]
                else self.worker_names.get(extra["assignee_id"], "")
            )
            note = f"派遣至 {target}" + (f"：{note}" if note else "")
        elif action == "accept":
            to_state = "handling"
        elif action == "feedback":
            to_state = "feedback"
        elif action == "rework":
            to_state = "handling"
            c["rework_count"] += 1
        elif action == "close":
            to_state = "closed"
            c["closed_at"] = at
        else:  # pragma: no cover
            raise ValueError(action)
        c["state"] = to_state
        return {
            "case_id": c["id"],
            "at": at,
            "actor_id": actor,
            "action": action,
            "from_state": from_state,
            "to_state": to_state,
            "from_level": from_level,
            "to_level": c["level"],
            "note": note,
        }

    def outstanding(self, plans: list[Plan], rows: list[dict], steps_out: list) -> None:
        """A couple of 优秀网格事件 per town this month, each with a short story."""
        rng = self.rng
        by_town: dict[int, list[int]] = defaultdict(list)
        since = self.month_start if self.now - self.month_start > timedelta(days=5) else self.start
        for i, (p, c) in enumerate(zip(plans, rows, strict=False)):
            if (
                c["state"] == "closed"
                and p.source == "app"
                and c["reported_at"] >= since
                and not c["self_handled"]
                and c["closed_at"] + timedelta(hours=30) < self.now
            ):
                by_town[self.geo.grids[p.grid].town].append(i)
        for mine in by_town.values():
            for i in rng.sample(mine, min(len(mine), rng.randint(1, 3))):
                p, c = plans[i], rows[i]
                g = self.geo.grids[p.grid]
                worker = self.worker_names.get(p.reporter_id, "")
                lt = self.loc(c["reported_at"])
                place = f"{self.geo.towns[g.town].name}{self.geo.villages[g.village].name}"
                found = p.description.split("。")[0].replace("市民来电反映：", "")
                c["outstanding"] = True
                c["outstanding_story"] = texts.outstanding_story(
                    rng, day=f"{lt.month}月{lt.day}日", place=place, worker=worker, found=found, kind=p.leaf.kind
                )
                at = c["closed_at"] + timedelta(hours=rng.uniform(2, 28))
                steps_out.append(
                    {
                        "case_id": c["id"],
                        "at": at,
                        "actor_id": self.town_sup[g.town],
                        "action": "outstanding",
                        "from_state": "closed",
                        "to_state": "closed",
                        "from_level": c["level"],
                        "to_level": c["level"],
                        "note": "标记为优秀网格事件",
                    }
                )
                c["updated_at"] = max(c["updated_at"], at)

    # 7. patrols and sign-ins --------------------------------------------------------------------------------
    def patrols(self) -> None:
        rng = self.rng
        days = [d for d in self.local_days() if self.workday(d)]
        patrol_rows, sign_rows = [], []
        town_compliance = [rng.uniform(0.84, 0.97) for _ in self.geo.towns]
        self.last_activity: dict[int, datetime] = {}
        for w in self.workers:
            compliant = rng.random() < town_compliance[w.town]
            missed = set() if compliant else set(rng.sample(days, min(len(days), rng.randint(1, 3))))
            short = set() if compliant else set(rng.sample(days, min(len(days), rng.randint(0, 2))))
            for d in days:
                # sign-in around 8 o'clock (~95% of workdays)
                s_local = datetime(d.year, d.month, d.day, 7, 45) + timedelta(minutes=rng.uniform(0, 80))
                s_at = self.utc(s_local)
                signed = (compliant and rng.random() < 0.985) or rng.random() < 0.93
                if signed and s_at < self.now:
                    lon, lat = self.pool.take(w.grid)
                    sign_rows.append(
                        {
                            "account_id": w.id,
                            "town_id": self.town_ids[w.town],
                            "day": d,
                            "at": s_at,
                            "lat": lat,
                            "lon": lon,
                        }
                    )
                    self.last_activity[w.id] = max(self.last_activity.get(w.id, s_at), s_at)
                if d in missed:
                    continue
                minutes = rng.uniform(50, 59) if d in short else rng.uniform(62, 120)
                start_local = datetime(d.year, d.month, d.day, 8, 40) + timedelta(minutes=rng.uniform(0, 390))
                start = self.utc(start_local)
                end = start + timedelta(minutes=minutes)
                if start >= self.now:
                    continue
                track, dist = self.track(w.grid, start, min(end, self.now))
                ongoing = end > self.now
                patrol_rows.append(
                    {
                        "gridworker_id": w.id,
                        "grid_id": self.grid_ids[w.grid],
                        "town_id": self.town_ids[w.town],
                        "started_at": start,
                        "ended_at": None if ongoing else end,
                        "track": track,
                        "distance_m": round(dist, 1),
                        "client_key": None,
                    }
                )
                self.last_activity[w.id] = max(self.last_activity.get(w.id, start), min(end, self.now))
        for row, pid in zip(patrol_rows, self.ids(Patrol, len(patrol_rows)), strict=False):
            row["id"] = pid
        for row, sid in zip(sign_rows, self.ids(SignIn, len(sign_rows)), strict=False):
            row["id"] = sid
        self.insert(Patrol, patrol_rows)
        self.insert(SignIn, sign_rows)
        self.summary.update({"巡查": len(patrol_rows), "签到": len(sign_rows)})

    def track(self, gi: int, start: datetime, end: datetime) -> tuple[list, float]:
        n = self.rng.randint(8, 12)
        pts = [self.pool.take(gi) for _ in range(n)]
        # order the points into a plausible round: by bearing around their mean
        cx = sum(p[0] for p in pts) / n
        cy = sum(p[1] for p in pts) / n
        route = sorted(pts, key=lambda p: math.atan2(p[1] - cy, p[0] - cx))
        t0, t1 = _unix(start), _unix(end)
        step = (t1 - t0) / (len(route) - 1)
        track = [[lon, lat, int(t0 + i * step)] for i, (lon, lat) in enumerate(route)]
        dist = sum(_haversine_m(a[0], a[1], b[0], b[1]) for a, b in zip(route, route[1:], strict=False))
        return track, dist

    # 8. heartbeats and logins ----------------------------------------------------------------------------------
    def presence(self) -> None:
        rng, now = self.rng, self.now
        lt = self.local_now
        if self.workday(lt.date()) and 8 <= lt.hour < 18:
            online_share = 0.8
        elif 7 <= lt.hour < 21:
            online_share = 0.35
        else:
            online_share = 0.05
        hb_rows, seen = [], {}
        for w in self.workers:
            r = rng.random()
            if r < online_share:  # online: the last check-in in the last few minutes
                last = now - timedelta(seconds=rng.uniform(5, 240))
            elif r < online_share + 0.08:  # went offline within the last two hours
                last = now - timedelta(minutes=rng.uniform(20, 110))
            else:
                continue
            k = rng.randint(3, 6)
            for j in range(k):
                at = last - timedelta(minutes=j * rng.uniform(4, 6))
                if at < now - timedelta(hours=2):
                    break
                lon, lat = self.pool.take(w.grid)
                hb_rows.append({"account_id": w.id, "at": at.replace(microsecond=0), "lat": lat, "lon": lon})
            seen[w.id] = last.replace(microsecond=0)
        for row, hid in zip(hb_rows, self.ids(Heartbeat, len(hb_rows)), strict=False):
            row["id"] = hid
        self.insert(Heartbeat, hb_rows)

        # logins ---------------------------------------------------------------------------------------
        login_rows: list[dict] = []
        last_login: dict[int, datetime] = {}
        days = self.local_days()

        month_login: set[int] = set()

        def login(aid: int, username: str, at: datetime, channel: str = "web") -> None:
            if at >= now:
                return
            if at >= self.month_start:
                month_login.add(aid)
            if rng.random() < 0.015:
                login_rows.append(
                    {
                        "account_id": aid,
                        "username": username,
                        "success": False,
                        "reason": "bad_password",
                        "at": at - timedelta(seconds=rng.randint(10, 60)),
                        "address": _ip(rng),
                        "channel": channel,
                    }
                )
            login_rows.append(
                {
                    "account_id": aid,
                    "username": username,
                    "success": True,
                    "reason": None,
                    "at": at,
                    "address": _ip(rng),
                    "channel": channel,
                }
            )
            last_login[aid] = max(last_login.get(aid, at), at)

        def at_on(d: date, h0: float, h1: float) -> datetime:
            return self.utc(datetime(d.year, d.month, d.day) + timedelta(hours=rng.uniform(h0, h1)))

        usernames = {row_id: name for row_id, name in db.execute(select(Account.id, Account.username))}
        month_days = [d for d in days if d >= self.loc(self.month_start).date()]
        before_days = [d for d in days if d not in month_days]
        admins = self.town_admin + self.village_admin
        for aid in admins:
            if aid in self.active_admins:
                picks = rng.sample(month_days, min(len(month_days), rng.randint(2, 14))) if month_days else []
                for d in picks:
                    login(aid, usernames[aid], at_on(d, 8.2, 11))
                if aid not in month_login:
                    # make sure the account really logged in this month, even on the 1st
                    span = max(60.0, (now - self.month_start).total_seconds() - 60)
                    login(aid, usernames[aid], self.month_start + timedelta(seconds=rng.uniform(30, span)))
            for d in rng.sample(before_days, min(len(before_days), rng.randint(0, 3))):
                login(aid, usernames[aid], at_on(d, 8.2, 11))
        staff = [
            self.duty,
            self.supervisor,
            self.leader,
            *self.operators,
            self.admin,
            self.secadmin,
            self.auditor,
            *self.town_sup,
            *self.town_duty,
            *self.dept_handler.values(),
        ]
        for aid in staff:
            for d in days:
                if rng.random() < (0.85 if self.workday(d) else 0.2):
                    login(aid, usernames[aid], at_on(d, 7.8, 10))
        for w in self.workers:
            d = days[0]
            while d <= days[-1]:
                login(w.id, w.username, at_on(d, 7.5, 8.5), channel="app")
                d += timedelta(days=rng.randint(3, 8))
        login_rows.sort(key=lambda r: r["at"])
        for row, lid in zip(login_rows, self.ids(LoginRecord, len(login_rows)), strict=False):
            row["id"] = lid
        self.insert(LoginRecord, login_rows)

        # last_login_at / last_seen_at on the accounts
        for aid, at in self.last_activity.items():
            seen[aid] = max(seen.get(aid, at), at)
        table = Account.__table__
        params = [
            {"b_id": aid, "b_login": last_login.get(aid), "b_seen": seen.get(aid)}
            for aid in set(last_login) | set(seen)
        ]
        if params:
            stmt = (
                update(table)
                .where(table.c.id == bindparam("b_id"))
                .values(last_login_at=bindparam("b_login"), last_seen_at=bindparam("b_seen"))
            )
            db.execute(stmt, params)
            db.commit()
        self.summary.update(
            {
                "在线网格员": sum(1 for s in seen.values() if now - s < timedelta(minutes=5)),
                "心跳": len(hb_rows),
                "登录记录": len(login_rows),
            }
        )

    # 9. persons, sites, visits ------------------------------------------------------------------------------
    def people(self) -> None:
        geo, rng = self.geo, self.rng
        person_rows, site_rows, visit_rows = [], [], []
        town_rate = [rng.uniform(0.85, 0.98) for _ in geo.towns]
        for v in geo.villages:
            grids = [g for g in geo.grids_of(v.index) if g.kind == "comprehensive"] or geo.grids_of(v.index)
            for ptype, (lo, hi) in PERSON_COUNTS.items():
                for _ in range(rng.randint(lo, hi)):
                    g = rng.choice(grids)
                    female = rng.random() < (0.55 if ptype == "empty_nest_elderly" else 0.25)
                    if ptype == "empty_nest_elderly":
                        born = names.birth_date(rng, 1935, 1958)
                    elif ptype == "key_youth":
                        born = names.birth_date(rng, 2006, 2012)
                    else:
                        born = names.birth_date(rng, 1960, 2000)
                    person_rows.append(
                        {
                            "name": names.person_name(rng, female),
                            "id_number": names.id_number(rng, geo.district_code, born, female),
                            "phone": names.mobile_phone(rng) if rng.random() < 0.9 else None,
                            "person_type": ptype,
                            "visit_frequency": "weekly" if ptype == "empty_nest_elderly" else "monthly",
                            "address": self.address(g.index),
                            "grid_id": self.grid_ids[g.index],
                            "village_id": self.village_ids[v.index],
                            "town_id": self.town_ids[v.town],
                            "assigned_to_id": self.grid_workers[g.index][0].id,
                            "active": True,
                            "_grid": g.index,
                        }
                    )
            for stype, (lo, hi) in SITE_COUNTS.items():
                for _ in range(rng.randint(lo, hi)):
                    g = rng.choice(grids)
                    if stype == "key_place":
                        name = f"{v.short}{rng.choice(names.KEY_PLACE_KINDS)}"
                    elif stype == "group_rental":
                        name = f"{rng.choice(g.compounds)}{rng.randint(1, 30)}幢{rng.randint(1, 6)}0{rng.randint(1, 4)}室（群租）"
                    else:
                        name = f"{rng.choice(g.compounds)}{rng.randint(1, 60)}号出租屋"
                    site_rows.append(
                        {
                            "name": name,
                            "site_type": stype,
                            "visit_frequency": SITE_FREQUENCY[stype],
                            "address": self.address(g.index),
                            "grid_id": self.grid_ids[g.index],
                            "village_id": self.village_ids[v.index],
                            "town_id": self.town_ids[v.town],
                            "assigned_to_id": self.grid_workers[g.index][0].id,
                            "active": True,
                            "_grid": g.index,
                        }
                    )
        for row, pid in zip(person_rows, self.ids(Person, len(person_rows)), strict=False):
            row["id"] = pid
        for row, sid in zip(site_rows, self.ids(Site, len(site_rows)), strict=False):
            row["id"] = sid

        grid_town = {self.grid_ids[g.index]: g.town for g in geo.grids}
        quarter_start = self.utc(datetime(self.local_now.year, 3 * ((self.local_now.month - 1) // 3) + 1, 1))

        def visit_at(lo: datetime, hi: datetime) -> datetime | None:
            lo, hi = max(lo, self.start), min(hi, self.now)
            if hi <= lo:
                return None
            first, last = self.loc(lo).date(), self.loc(hi).date()
            for _ in range(12):
                d = first + timedelta(days=rng.randint(0, (last - first).days))
                t = self.utc(datetime(d.year, d.month, d.day, 8, 30) + timedelta(minutes=rng.uniform(0, 540)))
                if lo <= t < hi:
                    return t.replace(microsecond=0)
            return None

        def add_visit(row: dict, kind_key: str, person: bool, lo: datetime, hi: datetime) -> None:
            at = visit_at(lo, hi)
            if at is None:
                return
            lon, lat = self.pool.take(row["_grid"])
            visit_rows.append(
                {
                    "gridworker_id": row["assigned_to_id"],
                    "person_id": row["id"] if person else None,
                    "site_id": None if person else row["id"],
                    "town_id": row["town_id"],
                    "at": at,
                    "note": rng.choice(texts.VISIT_NOTES[kind_key]),
                    "lat": lat,
                    "lon": lon,
                    "client_key": None,
                }
            )

        weeks = []
        d = self.loc(self.start).date()
        d -= timedelta(days=d.weekday())
        while d <= self.local_now.date():
            weeks.append(self.utc(datetime(d.year, d.month, d.day)))
            d += timedelta(days=7)
        for rows, person in ((person_rows, True), (site_rows, False)):
            for row in rows:
                kind_key = row["person_type"] if person else row["site_type"]
                rate = town_rate[grid_town[row["grid_id"]]]
                freq = row["visit_frequency"]
                if freq == "weekly":
                    for ws in weeks:
                        we = ws + timedelta(days=7)
                        covered = (min(we, self.now) - max(ws, self.start)) / timedelta(days=7)
                        if rng.random() < 0.93 * min(1.0, covered * 1.2):
                            add_visit(row, kind_key, person, ws, we)
                elif freq == "monthly":
                    if rng.random() < rate:
                        add_visit(row, kind_key, person, self.month_start, self.now)
                    if rng.random() < min(0.99, rate * rng.uniform(1.0, 1.08)):  # last month: the whole month
                        add_visit(row, kind_key, person, self.start, self.month_start)
                else:
                    if rng.random() < 0.62:
                        add_visit(row, kind_key, person, quarter_start, self.now)
        for rows in (person_rows, site_rows):
            for row in rows:
                del row["_grid"]
        visit_rows.sort(key=lambda r: r["at"])
        for row, vid in zip(visit_rows, self.ids(Visit, len(visit_rows)), strict=False):
            row["id"] = vid
        self.insert(Person, person_rows)
        self.insert(Site, site_rows)
        self.insert(Visit, visit_rows)
        self.summary.update(
            {"重点人员与关爱对象": len(person_rows), "走访场所": len(site_rows), "走访记录": len(visit_rows)}
        )

    # 10. base data and party building ----------------------------------------------------------------------
    def base_and_party(self) -> None:
        geo, rng = self.geo, self.rng
        month = f"{self.local_now:%Y-%m}"
        last_month = f"{self.loc(self.start):%Y-%m}"
        rows = []
        odd = rng.randrange(len(geo.villages))  # the one village whose figure is impossible (> 100%)
        for v in geo.villages:
            # registered (实有人口登记) is not the census: migrants are registered, some residents are away
            reg = round(v.population * rng.uniform(0.93, 1.12))
            linked = round(reg * 1.0188) if v.index == odd else round(reg * rng.uniform(0.90, 0.995))
            hh = v.households
            community = v.kind == "community"
            current = {
                "place_id": self.village_ids[v.index],
                "town_id": self.town_ids[v.town],
                "month": month,
                "registered_population": reg,
                "linked_persons": linked,
                "households": hh,
                "buildings": max(1, round(hh / (rng.uniform(30, 60) if community else rng.uniform(1.1, 1.6)))),
                "houses": round(hh * rng.uniform(1.0, 1.15)),
                "shops": round(reg / (rng.uniform(60, 120) if community else rng.uniform(150, 300))),
                "enterprises": rng.randint(2, 30) if community else rng.randint(5, 60),
            }
            # last month's row: a little less registered and linked (collection goes on every month)
            grown = rng.uniform(0.002, 0.012)
            before = current | {
                "month": last_month,
                "registered_population": round(reg / (1 + grown)),
                "linked_persons": round(linked / (1 + grown * rng.uniform(1.0, 1.8))),
                "houses": round(current["houses"] / (1 + grown / 2)),
            }
            rows += [before, current]
        for row, bid in zip(rows, self.ids(BaseDataCount, len(rows)), strict=False):
            row["id"] = bid
        self.insert(BaseDataCount, rows)
        self.odd_village = odd

        orgs = []
        for v in geo.villages:
            orgs.append(
                {
                    "name": f"中共{v.name}委员会" if v.population > 3000 else f"中共{v.name}总支部委员会",
                    "place_id": self.village_ids[v.index],
                    "town_id": self.town_ids[v.town],
                    "members": max(15, round(v.population * rng.uniform(0.012, 0.022))),
                }
            )
            for g in geo.grids_of(v.index):
                if g.kind == "comprehensive" and rng.random() < 0.65:
                    m = rng.randint(5, 32)
                    orgs.append(
                        {
                            "name": f"{g.name}{'党支部' if m >= 7 else '党小组'}",
                            "place_id": self.grid_ids[g.index],
                            "town_id": self.town_ids[g.town],
                            "members": m,
                        }
                    )
        org_ids = self.ids(PartyOrganization, len(orgs))
        for row, oid in zip(orgs, org_ids, strict=False):
            row["id"] = oid
        self.insert(PartyOrganization, orgs)
        # activities over the whole history, month by month (主题党日 every month at village level)
        today = self.local_now.date()
        months = [self.loc(self.start).date()]
        while (months[-1].replace(day=28) + timedelta(days=4)).replace(day=1) <= today:
            months.append((months[-1].replace(day=28) + timedelta(days=4)).replace(day=1))
        acts = []
        for first in months:
            last = min(today, (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1))
            span = (last - first).days
            for row in orgs:
                village_level = row["name"].startswith("中共")
                for _ in range(rng.randint(1, 3) if village_level else rng.randint(0, 1)):
                    acts.append(
                        {
                            "organization_id": row["id"],
                            "held_on": first + timedelta(days=rng.randint(0, span)),
                            "title": rng.choice(texts.PARTY_ACTIVITIES),
                        }
                    )
        for row, aid in zip(acts, self.ids(PartyActivity, len(acts)), strict=False):
            row["id"] = aid
        self.insert(PartyActivity, acts)
        self.summary.update(
            {
                "人房关联超100%的村社": geo.villages[odd].name,
                "党组织": len(orgs),
                "党员": sum(o["members"] for o in orgs),
                "党组织活动": len(acts),
            }
        )

    # 11. finish -----------------------------------------------------------------------------------------
    def finish(self) -> None:
        """Move PostgreSQL's id sequences past the ids given here, and give the planner statistics of the
        freshly loaded tables (without them it guesses 30 rows for 33,000 and the drill-down runs twice as slow
        until autovacuum gets round to them)."""
        from ..place_admin import bump_revision

        bump_revision()  # a reload replaces the places: running web processes rebuild their polygons
        db.commit()
        bind = db.get_bind()
        if bind.dialect.name != "postgresql":
            db.execute(text("ANALYZE"))
            db.commit()
            return
        for table in self.next_id:
            db.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
                )
            )
        db.commit()
        db.execute(text("ANALYZE"))
        db.commit()


def _parking_late_note(cat: Category) -> str:
    return f"乱停车事件须在发现后 {cat.transfer_limit_minutes} 分钟内上报并转报市平台，已超时，自动作废"


def _reached(level: str, target: str | None) -> bool:
    return target is None or LEVEL_RANK[level] >= LEVEL_RANK[target]


def _unix(dt_utc: datetime) -> float:
    return (dt_utc - datetime(1970, 1, 1)).total_seconds()


def _monotonic(steps: list, rng: random.Random) -> list:
    """Steps in plan order with strictly increasing times (a minute or two apart when they collide)."""
    out = []
    last = None
    for at, action, actor, note, extra in steps:
        at = at.replace(microsecond=0)
        if last is not None and at <= last:
            at = last + timedelta(seconds=rng.randint(40, 150))
        out.append((at, action, actor, note, extra))
        last = at
    return out


def _state_at(timeline: list[tuple[datetime, str]], at: datetime) -> str:
    state = "reported"
    for t, s in timeline:
        if t <= at:
            state = s
    return state


# --- the entry point ------------------------------------------------------------------------------


def load_demo(
    seed: int = 20261123, scale: float = 1.0, force: bool = False, progress: bool = False, now: datetime | None = None
) -> dict[str, int | str]:
    """Fill an empty database with the demo district and a month of history; return a summary.

    Raises DemoError if the database already holds places or accounts and ``force`` is False;
    with ``force`` those tables are emptied first (categories, settings and the audit log stay).
    """
    from tqdm import tqdm

    if scale <= 0 or scale > 5:
        raise DemoError("scale 须在 0 与 5 之间")
    started = time.monotonic()
    loader = _Loader(seed, scale, now or utcnow(), current_tz())
    steps = (
        lambda: loader.prepare(force),
        loader.places,
        loader.centers,
        loader.categories,
        loader.accounts,
        loader.cases,
        loader.patrols,
        loader.presence,
        loader.people,
        loader.base_and_party,
        loader.finish,
    )
    bar = tqdm(total=len(STAGES), disable=not progress, unit="步", desc="演示数据", leave=True)
    try:
        for label, step in zip(STAGES, steps, strict=False):
            bar.set_description(label)
            t = time.monotonic()
            step()
            log.info("demo: %s %.1fs", label, time.monotonic() - t)
            bar.update(1)
    except Exception:
        db.rollback()
        raise
    finally:
        bar.close()
    loader.summary["耗时（秒）"] = round(time.monotonic() - started, 1)
    loader.summary["演示登录"] = (
        f"口令均为 {DEMO_PASSWORD}：admin（系统管理员）、duty（值班员）、operator1（坐席员）、"
        f"supervisor（督导）、leader（领导）、town01_admin / town01_sup / town01_duty（镇街）、"
        f"v001_admin（村社）、dept01（职能部门）、gw0001（网格员）、vol001（志愿者）"
    )
    return loader.summary
