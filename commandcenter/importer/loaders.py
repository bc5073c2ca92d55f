"""One loader per file kind: check each typed record against the database and the run, then bulk-insert.

A loader never builds an ORM object per row: lookups (codes → ids) are loaded once into dicts, rows are
plain dicts written with Core ``insert()`` in batches. Natural keys make a second run a no-op:
place code, center (place, name), username, person/site code, case number, (case, at, action) of a step,
``import:<id>`` client keys of patrols and visits, (account, day) of a sign-in, ``import:<id>`` import keys
of logins.
"""

from __future__ import annotations

import io
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from types import SimpleNamespace

from sqlalchemy import JSON, Boolean, Date, DateTime, String, Text, bindparam, insert, select, type_coerce, update

from .. import alerts, labels
from ..db import db
from ..models import (
    PLACE_LEVELS,
    Account,
    BaseDataCount,
    Case,
    CaseStep,
    Category,
    Center,
    Department,
    Dispute,
    LoginRecord,
    Patrol,
    Person,
    Place,
    SignIn,
    Site,
    StandardAddress,
    Visit,
)
from ..security import hash_password
from ..timeutil import utcnow
from ..vocabulary import FINAL_STATES, OPEN_STATES
from .formats import FORMATS, GRID_KINDS, TOWN_KINDS, VILLAGE_KINDS
from .validation import ID_NUMBER, LocalClock, Record, RowError

BATCH = 5_000
COPY_BATCH = 20_000
COPY_MIN_ROWS = 2_000  # PostgreSQL: files at least this long are written with COPY, smaller ones with insert()
EXISTING = object()  # check(): the row is already in the database
KINDS_OF_LEVEL = {"city": (), "town": TOWN_KINDS, "village": VILLAGE_KINDS, "grid": GRID_KINDS}
DEFAULT_PERSON_FREQUENCY = {"empty_nest_elderly": "weekly"}
DEFAULT_SITE_FREQUENCY = {"rental_house": "quarterly"}


NO_CATEGORIES = (
    "系统中还没有任何事件类别，无法导入事件：请先运行 flask categories install-default 安装默认类别树"
    "（或由系统管理员在“事件类别”页面建立），再重新导入"
)


def by_code(mapping: dict, code: str):
    """(value, code as stored) of a code in a lookup; a number whose leading zeros Excel dropped ("101" for
    "0101") matches the shortest zero-padded code of the lookup. (None, code) when nothing matches."""
    found = mapping.get(code)
    if found is not None or not code.isdigit():
        return found, code
    for width in range(len(code) + 1, 33):
        padded = code.zfill(width)
        found = mapping.get(padded)
        if found is not None:
            return found, padded
    return None, code


@dataclass
class PlaceRef:
    id: int | None  # None until written (a row earlier in the same file)
    level: str
    city_id: int | None
    town_id: int | None
    village_id: int | None
    geometry: dict | None = None


@dataclass
class AccountRef:
    id: int
    role: str
    place_id: int
    town_id: int | None
    village_id: int | None
    grid_id: int | None  # the account's place when it is a grid


class Run:
    """What one `flask import` run knows: the lookups, filled from the database on first use and
    extended by every file the run imports."""

    def __init__(self, tz: str):
        self.clock = LocalClock(tz)
        self.tz = tz
        self.now = utcnow().replace(microsecond=0)
        self.touched: set[str] = set()

    def forget(self) -> None:
        """Drop every lookup (after a file was refused: it may have noted rows that were never written)."""
        for name in (
            "places",
            "place_codes",
            "grid_tree",
            "centers",
            "accounts",
            "categories",
            "warn_rules",
            "departments",
            "persons",
            "sites",
            "cases",
        ):
            self.__dict__.pop(name, None)

    @cached_property
    def places(self) -> dict[str, PlaceRef]:
        rows = db.execute(select(Place.code, Place.id, Place.level, Place.city_id, Place.town_id, Place.village_id))
        return {r.code: PlaceRef(r.id, r.level, r.city_id, r.town_id, r.village_id) for r in rows}

    @cached_property
    def place_codes(self) -> dict[int, str]:
        return {ref.id: code for code, ref in self.places.items()}

    @cached_property
    def grid_tree(self):
        """(STRtree, grid ids) of every grid with a boundary, to place a case by its coordinates."""
        from shapely import STRtree
        from shapely.geometry import shape

        rows = db.execute(select(Place.id, Place.geometry).where(Place.level == "grid", Place.active.is_(True)))
        ids, shapes = [], []
        for r in rows:
            if r.geometry:
                ids.append(r.id)
                shapes.append(shape(r.geometry))
        return (STRtree(shapes) if shapes else None), ids

    def locate(self, lat: float, lon: float) -> int | None:
        from shapely.geometry import Point

        tree, ids = self.grid_tree
        if tree is None:
            return None
        for index in tree.query(Point(lon, lat), predicate="intersects"):
            return ids[int(index)]
        return None

    @cached_property
    def centers(self) -> dict[str, list[tuple[int, str]]]:
        """place code → [(center id, name)]"""
        out: dict[str, list[tuple[int, str]]] = {}
        for r in db.execute(select(Center.id, Center.name, Center.place_id)):
            out.setdefault(self.place_codes.get(r.place_id, ""), []).append((r.id, r.name))
        return out

    @cached_property
    def accounts(self) -> dict[str, AccountRef]:
        grids = {ref.id for ref in self.places.values() if ref.level == "grid"}
        rows = db.execute(
            select(Account.username, Account.id, Account.role, Account.place_id, Account.town_id, Account.village_id)
        )
        return {
            r.username: AccountRef(
                r.id, r.role, r.place_id, r.town_id, r.village_id, r.place_id if r.place_id in grids else None
            )
            for r in rows
        }

    @cached_property
    def categories(self) -> dict[str, tuple[int, str, int]]:
        return {
            r.code: (r.id, r.kind, r.depth)
            for r in db.execute(select(Category.code, Category.id, Category.kind, Category.depth))
        }

    @cached_property
    def warn_rules(self) -> dict[int, SimpleNamespace]:
        """Category id → its warning settings, as commandcenter.alerts reads them from a Category."""
        rows = db.execute(select(Category.id, Category.warn_before_minutes, Category.warn_ratio))
        return {r.id: SimpleNamespace(warn_before_minutes=r.warn_before_minutes, warn_ratio=r.warn_ratio) for r in rows}

    @cached_property
    def departments(self) -> dict[str, int]:
        return dict(db.execute(select(Department.code, Department.id)).all())

    @cached_property
    def persons(self) -> dict[str, tuple[int, int | None]]:
        return {
            r.code: (r.id, r.town_id)
            for r in db.execute(select(Person.code, Person.id, Person.town_id).where(Person.code.is_not(None)))
        }

    @cached_property
    def sites(self) -> dict[str, tuple[int, int | None]]:
        return {
            r.code: (r.id, r.town_id)
            for r in db.execute(select(Site.code, Site.id, Site.town_id).where(Site.code.is_not(None)))
        }

    @cached_property
    def cases(self) -> dict[str, tuple[int, datetime]]:
        return {r.number: (r.id, r.reported_at) for r in db.execute(select(Case.number, Case.id, Case.reported_at))}

    @cached_property
    def unusable_hash(self) -> str:
        """The password hash of imported accounts: argon2 of a random secret nobody ever sees.

        One per run (argon2 is slow on purpose; a thousand accounts would take minutes): the secret is
        discarded at once, so the hash matches no password anybody can type."""
        return hash_password(secrets.token_urlsafe(48))


class Loader:
    kind: str

    def __init__(self, run: Run, name: str):
        self.run = run
        self.name = name
        self.fmt = FORMATS[self.kind]
        self.errors: list[RowError] = []
        self.seen: dict = {}  # natural key → line, within this file

    def err(self, line: int, column: str | None, message: str) -> None:
        self.errors.append(RowError(self.name, line, column, message))

    def once(self, key, line: int, column: str, what: str) -> bool:
        """False (with an error) if the key already appeared earlier in this file."""
        first = self.seen.get(key)
        if first is not None:
            self.err(line, column, f"{what}与第 {first} 行重复")
            return False
        self.seen[key] = line
        return True

    def account(self, rec: Record, column: str) -> AccountRef | None:
        username = rec.values[column]
        if username is None:
            return None
        ref = self.run.accounts.get(username)
        if ref is None:
            self.err(rec.line, column, f"账号“{username}”不存在（须已在系统中或在 accounts.csv 中）")
        return ref

    def place(self, rec: Record, column: str, level: str | None = None) -> PlaceRef | None:
        code = rec.values[column]
        if code is None:
            return None
        ref, rec.values[column] = by_code(self.run.places, code)
        if ref is None:
            self.err(rec.line, column, f"区划代码“{code}”不存在（须已在系统中或在 places.csv 中）")
            return None
        if level and ref.level != level:
            self.err(
                rec.line, column, f"“{code}”是{labels.PLACE_LEVEL[ref.level]}，此处须填{labels.PLACE_LEVEL[level]}代码"
            )
            return None
        return ref

    def center(self, rec: Record, column: str) -> int | None:
        code = rec.values[column]
        if code is None:
            return None
        found, rec.values[column] = by_code(self.run.centers, code)
        found = found or []
        if not found:
            self.err(rec.line, column, f"区划“{code}”没有综治中心（须已在系统中或在 centers.csv 中）")
            return None
        if len(found) > 1:
            self.err(rec.line, column, f"区划“{code}”有 {len(found)} 个中心，无法确定是哪一个")
            return None
        return found[0][0]

    def check(self, rec: Record):  # -> dict | EXISTING | None
        raise NotImplementedError

    def finalize(self, rows: list[dict]) -> tuple[list[dict], int]:
        """After every row is checked: (rows still to write, how many turned out to exist already)."""
        return rows, 0

    def write(self, rows: list[dict], bar) -> None:
        raise NotImplementedError

    def _insert(self, table, rows: list[dict], bar, key: tuple[str, ...] | None = None) -> list[int]:
        """Insert in batches (executemany: one multi-row statement per batch); with ``key``, return the new
        ids in the order of ``rows``, read back by their natural key (RETURNING with a guaranteed order
        would make SQLite insert row by row)."""
        if rows and len(rows) >= COPY_MIN_ROWS and db.get_bind().dialect.name == "postgresql":
            _copy(table, rows, bar)
        else:
            stmt = insert(table)
            for i in range(0, len(rows), BATCH):
                chunk = rows[i : i + BATCH]
                db.execute(stmt, _trim(table, chunk))
                if bar is not None:
                    bar.update(len(chunk))
        if not key:
            return []
        cols = [table.c[k] for k in key]
        found: dict[tuple, int] = {}
        for i in range(0, len(rows), BATCH):
            first = sorted({r[key[0]] for r in rows[i : i + BATCH]})
            for r in db.execute(select(table.c.id, *cols).where(cols[0].in_(first))):
                found[tuple(r[1:])] = r[0]
        return [found[tuple(r[k] for k in key)] for r in rows]


def _copy_cell(kind: str):
    """The CSV text of a value for PostgreSQL's COPY (NULL is an unquoted \\N, text is always quoted)."""
    if kind == "bool":
        return lambda v: "\\N" if v is None else ("t" if v else "f")
    if kind == "json":
        return lambda v: "\\N" if v is None else '"' + json.dumps(v, ensure_ascii=False).replace('"', '""') + '"'
    if kind == "text":
        return lambda v: "\\N" if v is None else '"' + v.replace('"', '""') + '"'
    if kind == "time":
        return lambda v: "\\N" if v is None else str(v)  # date: YYYY-MM-DD, datetime: YYYY-MM-DD HH:MM:SS
    return lambda v: "\\N" if v is None else repr(v)  # numbers


def _copy_kind(column) -> str:
    t = column.type
    if isinstance(t, Boolean):
        return "bool"
    if isinstance(t, JSON):
        return "json"
    if isinstance(t, String | Text):
        return "text"
    if isinstance(t, DateTime | Date):
        return "time"
    return "number"


def _copy(table, rows: list[dict], bar) -> None:
    """PostgreSQL: the rows through COPY … FROM STDIN in batches, inside the session's transaction.

    Several times faster than multi-row INSERTs (no SQL to render and parse per batch); the same rows,
    the same transaction. Every row carries every column (the loaders build them so), None is NULL."""
    names = list(rows[0])
    cells = [_copy_cell(_copy_kind(table.c[n])) for n in names]
    sql = f"COPY {table.name} ({', '.join(names)}) FROM STDIN WITH (FORMAT csv, NULL '\\N')"
    cursor = db.connection().connection.dbapi_connection.cursor()
    try:
        for i in range(0, len(rows), COPY_BATCH):
            chunk = rows[i : i + COPY_BATCH]
            buf = io.StringIO()
            buf.writelines(",".join([cell(r[n]) for cell, n in zip(cells, names, strict=True)]) + "\n" for r in chunk)
            buf.seek(0)
            cursor.copy_expert(sql, buf)
            if bar is not None:
                bar.update(len(chunk))
    finally:
        cursor.close()


def _as_datetime(value) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _trim(table, rows: list[dict]) -> list[dict]:
    """Leave out the columns that are None in every row and have no default: they are NULL anyway, and
    every column less is less work per row for SQLAlchemy and the driver."""
    if not rows:
        return rows
    empty = [
        k
        for k in rows[0]
        if table.c[k].default is None and table.c[k].server_default is None and all(r[k] is None for r in rows)
    ]
    if not empty:
        return rows
    # the first row's keys decide the columns of an executemany; the other rows' extra keys are ignored
    first = {k: v for k, v in rows[0].items() if k not in empty}
    return [first, *rows[1:]]


_PARENT = {"town": "city", "village": "town", "grid": "village"}


class PlacesLoader(Loader):
    kind = "places"

    def check(self, rec: Record):
        v, line = rec.values, rec.line
        code, level, kind = v["code"], v["level"], v["kind"]
        if not self.once(code, line, "code", "代码"):
            return None
        if code in self.run.places:
            return EXISTING
        ok = True
        if level == "city":
            if kind is not None:
                self.err(line, "kind", "市不填类型")
                ok = False
            if v["parent_code"] is not None:
                self.err(line, "parent_code", "市没有上级")
                ok = False
            parent = None
        else:
            if kind is not None and kind not in KINDS_OF_LEVEL[level]:
                self.err(line, "kind", f"{labels.PLACE_LEVEL[level]}的类型应为 {'、'.join(KINDS_OF_LEVEL[level])} 之一")
                ok = False
            parent = None
            if v["parent_code"] is None:
                self.err(line, "parent_code", f"{labels.PLACE_LEVEL[level]}必须填写上级代码")
                ok = False
            else:
                parent = self.place(rec, "parent_code", _PARENT[level])
                ok = ok and parent is not None
        if not ok:
            return None
        geometry, clat, clon = v["geometry"] or (None, None, None)
        ref = PlaceRef(
            None,
            level,
            parent.city_id if parent else None,
            parent.town_id if parent else None,
            parent.village_id if parent else None,
            geometry,
        )
        self.run.places[code] = ref  # later lines may name it as their parent
        return {
            "code": code,
            "name": v["name"],
            "level": level,
            "kind": kind,
            "_parent": v["parent_code"],
            "population": v["population"],
            "households": v["households"],
            "geometry": geometry,
            "center_lat": clat,
            "center_lon": clon,
            "active": True if v["active"] is None else v["active"],
            "police_beat_id": None,
        }

    def write(self, rows: list[dict], bar) -> None:
        places, table = self.run.places, Place.__table__
        for level in PLACE_LEVELS:
            batch = []
            for r in rows:
                if r["level"] != level:
                    continue
                parent = places[r["_parent"]] if r["_parent"] else None
                batch.append(
                    {k: val for k, val in r.items() if k != "_parent"}
                    | {
                        "parent_id": parent.id if parent else None,
                        "city_id": parent.city_id if parent else None,
                        "town_id": parent.town_id if parent else None,
                        "village_id": parent.village_id if parent else None,
                    }
                )
            if not batch:
                continue
            ids = self._insert(table, batch, bar, key=("code",))
            selfcol = {"city": "city_id", "town": "town_id", "village": "village_id"}.get(level)
            for pid, r in zip(ids, batch, strict=True):
                code = r["code"]
                ref = places[code]
                ref.id = pid
                if selfcol:
                    r[selfcol] = pid
                ref.city_id, ref.town_id, ref.village_id = r["city_id"], r["town_id"], r["village_id"]
                self.run.place_codes[pid] = code
            if selfcol:
                stmt = update(table).where(table.c.id == bindparam("_id")).values({selfcol: bindparam("_self")})
                db.execute(stmt, [{"_id": pid, "_self": pid} for pid in ids])
        if any(r["level"] == "grid" for r in rows):
            self.run.__dict__.pop("grid_tree", None)
        self.run.__dict__.pop("accounts", None)  # grid_id of accounts depends on the places
        from ..place_admin import bump_revision

        bump_revision()  # the wall's polygons and the grid index of every web process follow (same commit)


class CentersLoader(Loader):
    kind = "centers"

    def check(self, rec: Record):
        v, line = rec.values, rec.line
        place = self.place(rec, "place_code")
        if not self.once((v["place_code"], v["name"]), line, "name", "同一区划的同名中心"):
            return None
        if place is None:
            return None
        if any(name == v["name"] for _, name in self.run.centers.get(v["place_code"], [])):
            return EXISTING
        if place.level == "grid":
            self.err(line, "place_code", "网格不设综治中心，请填市、镇街或村社代码")
            return None
        level = v["level"] or place.level
        if level != place.level:
            self.err(line, "level", f"中心层级应与所在区划一致（{place.level}）")
            return None
        return {"place_id": place.id, "name": v["name"], "level": level, "_code": v["place_code"]}

    def write(self, rows: list[dict], bar) -> None:
        table = Center.__table__
        ids = self._insert(
            table, [{k: r[k] for k in ("place_id", "name", "level")} for r in rows], bar, key=("place_id", "name")
        )
        for cid, r in zip(ids, rows, strict=True):
            self.run.centers.setdefault(r["_code"], []).append((cid, r["name"]))


class AccountsLoader(Loader):
    kind = "accounts"

    def check(self, rec: Record):
        v, line = rec.values, rec.line
        username = v["username"]
        if not self.once(username, line, "username", "用户名"):
            return None
        if username in self.run.accounts:
            return EXISTING
        ok = True
        if v["post"] is not None and v["role"] != "gridworker":
            self.err(line, "post", "只有网格员（gridworker）有岗位")
            ok = False
        place = self.place(rec, "place_code")
        center_id = self.center(rec, "center_place_code")
        dept_id = None
        if v["department_code"] is not None:
            dept_id, v["department_code"] = by_code(self.run.departments, v["department_code"])
            if dept_id is None:
                self.err(line, "department_code", f"职能部门代码“{v['department_code']}”不存在")
                ok = False
        if place is None or (v["center_place_code"] is not None and center_id is None) or not ok:
            return None
        now = self.run.now
        return {
            "username": username,
            "display_name": v["display_name"],
            "password_hash": None,
            "role": v["role"],
            "post": v["post"],
            "place_id": place.id,
            "town_id": place.town_id,
            "village_id": place.village_id,
            "center_id": center_id,
            "department_id": dept_id,
            "phone": v["phone"],
            "can_unmask": False,
            "active": True if v["active"] is None else v["active"],
            "failed_logins": 0,
            "locked_until": None,
            "password_changed_at": now,
            "must_change_password": True,
            "totp_secret": None,
            "last_login_at": None,
            "last_seen_at": None,
            "created_at": v["created_at"] or now,
            "_grid": place.id if place.level == "grid" else None,
        }

    def write(self, rows: list[dict], bar) -> None:
        table = Account.__table__
        secret = self.run.unusable_hash
        ids = self._insert(
            table,
            [{k: val for k, val in r.items() if k != "_grid"} | {"password_hash": secret} for r in rows],
            bar,
            key=("username",),
        )
        for aid, r in zip(ids, rows, strict=True):
            self.run.accounts[r["username"]] = AccountRef(
                aid, r["role"], r["place_id"], r["town_id"], r["village_id"], r["_grid"]
            )


class _PeopleLoader(Loader):
    type_column: str
    defaults: dict[str, str]
    lookup: str
    model: type

    def check(self, rec: Record):
        v, line = rec.values, rec.line
        code = v["code"]
        if not self.once(code, line, "code", "编号"):
            return None
        if code in getattr(self.run, self.lookup):
            return EXISTING
        grid = self.place(rec, "grid_code", "grid")
        worker = self.account(rec, "assigned_to")
        extra = self.more(rec)
        if grid is None or (v["assigned_to"] is not None and worker is None) or extra is None:
            return None
        row = extra | {
            "code": code,
            "name": v["name"],
            self.type_column: v[self.type_column],
            "visit_frequency": v["visit_frequency"] or self.defaults.get(v[self.type_column], "monthly"),
            "address": v["address"],
            "grid_id": grid.id,
            "village_id": grid.village_id,
            "town_id": grid.town_id,
            "assigned_to_id": worker.id if worker else None,
            "active": True if v["active"] is None else v["active"],
        }
        return row

    def more(self, rec: Record) -> dict | None:
        """Columns of this kind only, checked; None after an error."""
        return {}

    def write(self, rows: list[dict], bar) -> None:
        table = self.model.__table__
        ids = self._insert(table, rows, bar, key=("code",))
        lookup = getattr(self.run, self.lookup)
        for pid, r in zip(ids, rows, strict=True):
            lookup[r["code"]] = (pid, r["town_id"])


class PersonsLoader(_PeopleLoader):
    kind, type_column, defaults, lookup, model = "persons", "person_type", DEFAULT_PERSON_FREQUENCY, "persons", Person

    def more(self, rec: Record) -> dict | None:
        number = rec.values["id_number"]
        if number is not None:
            number = number.upper()
            if not ID_NUMBER.match(number):
                self.err(rec.line, "id_number", "公民身份号码应为 18 位（末位可为 X）或 15 位数字")
                return None
        return {"id_number": number, "phone": rec.values["phone"]}


class SitesLoader(_PeopleLoader):
    kind, type_column, defaults, lookup, model = "sites", "site_type", DEFAULT_SITE_FREQUENCY, "sites", Site


class CasesLoader(Loader):
    kind = "cases"

    def __init__(self, run: Run, name: str):
        super().__init__(run, name)
        self.duplicates: list[tuple[str, str]] = []  # (number, number of the original)
        self.disputes: dict[str, dict] = {}  # number → the Dispute row without its case_id
        self.told_no_categories = False

    def check(self, rec: Record):  # noqa: C901 - one rule after the other, in the order of the columns
        v, line, run = rec.values, rec.line, self.run
        number = v["number"]
        if not self.once(number, line, "number", "案卷号"):
            return None
        if number in run.cases:
            return EXISTING
        ok = True
        if not run.categories:
            if not self.told_no_categories:  # once for the file, not once per row
                self.told_no_categories = True
                self.errors.append(RowError(self.name, None, "category_code", NO_CATEGORIES))
            return None
        cat, v["category_code"] = by_code(run.categories, v["category_code"])
        if cat is None:
            self.err(line, "category_code", f"事件类别“{v['category_code']}”不存在")
            return None
        cat_id, kind, depth = cat
        if depth == 1:
            self.err(line, "category_code", "请使用小类或细项代码，而不是大类")
            ok = False
        lat, lon = v["lat"], v["lon"]
        if (lat is None) != (lon is None):
            self.err(line, "lat" if lat is None else "lon", "经纬度须同时填写或同时不填")
            ok = False
        grid_id = village_id = town_id = None
        if v["grid_code"] is not None:
            grid = self.place(rec, "grid_code", "grid")
            if grid is None:
                return None
            grid_id, village_id, town_id = grid.id, grid.village_id, grid.town_id
        elif lat is not None and lon is not None:
            grid_id = run.locate(lat, lon)
            if grid_id is not None:
                grid = run.places[run.place_codes[grid_id]]
                village_id, town_id = grid.village_id, grid.town_id
        reporter = self.account(rec, "reporter")
        assignee = self.account(rec, "assignee")
        if (v["reporter"] and reporter is None) or (v["assignee"] and assignee is None):
            ok = False
        reporter_center = self.center(rec, "reporter_center")
        by_center = self.center(rec, "escalated_by_center")
        if (v["reporter_center"] and reporter_center is None) or (v["escalated_by_center"] and by_center is None):
            ok = False
        dept = None
        if v["department_code"] is not None:
            dept, v["department_code"] = by_code(run.departments, v["department_code"])
            if dept is None:
                self.err(line, "department_code", f"职能部门代码“{v['department_code']}”不存在")
                ok = False
        state, level = v["state"], v["level"] or "grid"
        reported = v["reported_at"]
        discovered = v["discovered_at"] or reported
        if discovered > reported:
            self.err(line, "discovered_at", "发现时间不能晚于上报时间")
            ok = False
        for col in ("registered_at", "dispatched_at", "transferred_at", "closed_at", "overdue_at"):
            if v[col] is not None and v[col] < reported:
                self.err(line, col, "不能早于上报时间 reported_at")
                ok = False
        closed = v["closed_at"]
        if state in FINAL_STATES and closed is None:
            self.err(line, "closed_at", f"状态为 {state} 的事件必须填写结案/作废时间")
            ok = False
        if state in OPEN_STATES and closed is not None:
            self.err(line, "closed_at", f"状态为 {state}（未办结）的事件不能有结案时间")
            ok = False
        if state == "reported" and v["registered_at"] is not None:
            self.err(line, "registered_at", "状态为 reported（待立案）的事件不能有立案时间")
            ok = False
        valid = v["valid"]
        if valid is None:
            valid = False if state in ("rejected", "duplicate") else (None if state == "reported" else True)
        elif valid and state in ("rejected", "duplicate"):
            self.err(line, "valid", f"状态为 {state} 的事件不能是有效事件")
            ok = False
        to_town = v["escalated_to_town"]
        to_city = v["escalated_to_city"]
        if to_city is None:
            to_city = level == "city"
        elif not to_city and level == "city":
            self.err(line, "escalated_to_city", "当前层级为 city 的事件必然流转过市中心")
            ok = False
        # a city case may or may not have passed the town (domain.md §6: straight from the grid is a city case too),
        # so the town flag does not follow from the city flag: only from what shows the case was at the town
        at_town = level == "town" or by_center is not None
        if to_town is None:
            to_town = at_town
        elif not to_town and at_town:
            self.err(
                line,
                "escalated_to_town",
                "当前层级为 town、或由镇街中心流转（escalated_by_center）的事件，escalated_to_town 须为 是",
            )
            ok = False
        overdue = v["overdue"]
        if overdue is None:
            overdue = v["overdue_at"] is not None
        elif not overdue and v["overdue_at"] is not None:
            self.err(line, "overdue_at", "未逾期（overdue 为 否）的事件不能有逾期时间")
            ok = False
        if v["duplicate_of"] is not None:
            if v["duplicate_of"] == number:
                self.err(line, "duplicate_of", "不能是自己的重复")
                ok = False
            elif v["duplicate_of"] not in run.cases and v["duplicate_of"] not in self.seen:
                self.err(line, "duplicate_of", f"原案卷号“{v['duplicate_of']}”不存在（须在数据库中或本文件更靠前的行）")
                ok = False
        if v["outstanding_story"] is not None and not v["outstanding"]:
            self.err(line, "outstanding_story", "只有优秀事件（outstanding 为 是）才有事迹")
            ok = False
        dispute_cols = ("dispute_screening_level", "dispute_mediation_level", "dispute_outcome", "dispute_mediated_at")
        if kind != "dispute":
            for col in dispute_cols:
                if v[col] is not None:
                    self.err(line, col, "只有矛盾纠纷类事件才填写纠纷信息")
                    ok = False
        if not ok:
            return None
        times = [
            t
            for t in (reported, v["registered_at"], v["dispatched_at"], v["transferred_at"], closed, v["overdue_at"])
            if t is not None
        ]
        # the warning moments, planned as the case loop plans them, so open imported cases are warned about
        rules = run.warn_rules[cat_id]
        transfer_warn = (
            alerts.parking_warn_time(discovered, v["transfer_due"], rules) if v["transfer_due"] is not None else None
        )
        escalate_warn = (
            alerts.warn_time(v["registered_at"], v["escalate_due"], rules)
            if v["escalate_due"] is not None and v["registered_at"] is not None
            else None
        )
        row = {
            "number": number,
            "source": v["source"],
            "client_key": None,
            "category_id": cat_id,
            "kind": kind,
            "description": v["description"],
            "address": v["address"],
            "lat": lat,
            "lon": lon,
            "grid_id": grid_id,
            "village_id": village_id,
            "town_id": town_id,
            "reporter_id": reporter.id if reporter else None,
            "reporter_center_id": reporter_center,
            "caller_name": v["caller_name"],
            "caller_phone": v["caller_phone"],
            "external_ref": v["external_ref"],
            "state": state,
            "level": level,
            "valid": valid,
            "duplicate_of_id": None,
            "self_handled": bool(v["self_handled"]),
            "department_id": dept,
            "assignee_id": assignee.id if assignee else None,
            "discovered_at": discovered,
            "reported_at": reported,
            "registered_at": v["registered_at"],
            "dispatched_at": v["dispatched_at"],
            "transferred_at": v["transferred_at"],
            "closed_at": closed,
            "dispatch_due": v["dispatch_due"],
            "handle_due": v["handle_due"],
            "escalate_due": v["escalate_due"],
            "transfer_due": v["transfer_due"],
            "transfer_warn_at": transfer_warn,
            "escalate_warn_at": escalate_warn,
            "overdue": overdue,
            "overdue_at": v["overdue_at"],
            "paused_at": None,
            "pause_reason": None,
            "escalated_to_town": to_town,
            "escalated_to_city": to_city,
            "escalated_by_center_id": by_center,
            "rework_count": v["rework_count"] or 0,
            "outstanding": bool(v["outstanding"]),
            "outstanding_story": v["outstanding_story"],
            "updated_at": max(times),
            "version": 1,
        }
        if v["duplicate_of"] is not None:
            self.duplicates.append((number, v["duplicate_of"]))
        if kind == "dispute":
            outcome = v["dispute_outcome"] or ("resolved" if state == "closed" else "pending")
            self.disputes[number] = {
                "screening_level": v["dispute_screening_level"] or "grid",
                "mediation_level": v["dispute_mediation_level"]
                or ((level if level != "city" else "town") if outcome != "pending" else None),
                "outcome": outcome,
                "mediated_at": v["dispute_mediated_at"] or (closed if outcome != "pending" else None),
            }
        return row

    def write(self, rows: list[dict], bar) -> None:
        table = Case.__table__
        ids = self._insert(table, rows, bar, key=("number",))
        cases = self.run.cases
        written = set()
        for cid, r in zip(ids, rows, strict=True):
            cases[r["number"]] = (cid, r["reported_at"])
            written.add(r["number"])
        dups = [{"_id": cases[n][0], "_dup": cases[d][0]} for n, d in self.duplicates if n in written]
        if dups:
            db.execute(
                update(table).where(table.c.id == bindparam("_id")).values(duplicate_of_id=bindparam("_dup")), dups
            )
        disputes = [d | {"case_id": cases[n][0]} for n, d in self.disputes.items() if n in written]
        self._insert(Dispute.__table__, disputes, None)
        self.run.touched.add("cases")


class HistoryLoader(Loader):
    kind = "history"

    def check(self, rec: Record):
        v, line = rec.values, rec.line
        case = self.run.cases.get(v["case_number"])
        if case is None:
            self.err(line, "case_number", f"案卷号“{v['case_number']}”不存在（须在数据库中或 cases.csv 中）")
            return None
        actor = self.account(rec, "actor")
        if v["actor"] is not None and actor is None:
            return None
        case_id, reported = case
        if v["at"] < reported - timedelta(minutes=1):
            self.err(line, "at", "处理记录的时间不能早于事件的上报时间")
            return None
        if v["action"] == "report" and v["from_state"] is not None:
            self.err(line, "from_state", "上报（report）没有原状态")
            return None
        if not self.once((case_id, v["at"], v["action"]), line, "action", "同一事件同一时间的同一动作"):
            return None
        return {
            "case_id": case_id,
            "at": v["at"],
            "actor_id": actor.id if actor else None,
            "action": v["action"],
            "from_state": v["from_state"],
            "to_state": v["to_state"],
            "from_level": v["from_level"],
            "to_level": v["to_level"] or v["from_level"],
            "note": v["note"],
        }

    def finalize(self, rows: list[dict]) -> tuple[list[dict], int]:
        """Drop the steps already in the database (same case, time and action)."""
        case_ids = sorted({r["case_id"] for r in rows})
        existing = set()
        for i in range(0, len(case_ids), BATCH):
            chunk = case_ids[i : i + BATCH]
            # the time as the driver gives it: SQLAlchemy's own parsing of SQLite's strings is slow
            rows_at = db.execute(
                select(CaseStep.case_id, type_coerce(CaseStep.at, String), CaseStep.action).where(
                    CaseStep.case_id.between(chunk[0], chunk[-1])
                )
            )
            existing.update((cid, _as_datetime(at), action) for cid, at, action in rows_at)
        if not existing:
            return rows, 0
        keep = [r for r in rows if (r["case_id"], r["at"], r["action"]) not in existing]
        return keep, len(rows) - len(keep)

    def write(self, rows: list[dict], bar) -> None:
        rows.sort(key=lambda r: (r["at"], r["case_id"]))
        self._insert(CaseStep.__table__, rows, bar)
        self.run.touched.add("cases")


class _KeyedLoader(Loader):
    """Patrols and visits: the file's id becomes client_key = "import:<id>"."""

    model: type
    key_column = "client_key"

    @cached_property
    def existing(self) -> set[str]:
        col = getattr(self.model, self.key_column)
        return set(db.execute(select(col).where(col.like("import:%"))).scalars())

    def key(self, rec: Record) -> str | None:
        key = "import:" + rec.values["id"]
        if not self.once(key, rec.line, "id", "编号"):
            return None
        return key


class PatrolsLoader(_KeyedLoader):
    kind, model = "patrols", Patrol

    def check(self, rec: Record):
        v, line = rec.values, rec.line
        key = self.key(rec)
        if key is None:
            return None
        if key in self.existing:
            return EXISTING
        worker = self.account(rec, "gridworker")
        grid = self.place(rec, "grid_code", "grid")
        if worker is None or (v["grid_code"] is not None and grid is None):
            return None
        start, end = v["started_at"], v["ended_at"]
        if end is not None and end < start:
            self.err(line, "ended_at", "结束时间不能早于开始时间")
            return None
        if end is not None and end - start > timedelta(hours=24):
            self.err(line, "ended_at", "一次巡查不能超过 24 小时")
            return None
        track = v["track"]
        if track is not None and not (
            isinstance(track, list)
            and all(isinstance(p, list) and len(p) >= 2 and all(isinstance(x, int | float) for x in p) for p in track)
        ):
            self.err(line, "track", "轨迹应为 [[经度, 纬度, unix 秒], …]")
            return None
        grid_id = grid.id if grid else worker.grid_id
        town_id = grid.town_id if grid else worker.town_id
        return {
            "gridworker_id": worker.id,
            "grid_id": grid_id,
            "town_id": town_id,
            "started_at": start,
            "ended_at": end,
            "track": track,
            "distance_m": v["distance_m"],
            "client_key": key,
        }

    def write(self, rows: list[dict], bar) -> None:
        self._insert(Patrol.__table__, rows, bar)


class VisitsLoader(_KeyedLoader):
    kind, model = "visits", Visit

    def check(self, rec: Record):
        v, line = rec.values, rec.line
        key = self.key(rec)
        if key is None:
            return None
        if key in self.existing:
            return EXISTING
        worker = self.account(rec, "gridworker")
        if (v["person_code"] is None) == (v["site_code"] is None):
            self.err(line, "person_code", "person_code 与 site_code 须且只能填一个")
            return None
        person = site = None
        if v["person_code"] is not None:
            person = self.run.persons.get(v["person_code"])
            if person is None:
                self.err(line, "person_code", f"人员编号“{v['person_code']}”不存在（须在数据库中或 persons.csv 中）")
                return None
        else:
            site = self.run.sites.get(v["site_code"])
            if site is None:
                self.err(line, "site_code", f"场所编号“{v['site_code']}”不存在（须在数据库中或 sites.csv 中）")
                return None
        if worker is None:
            return None
        if (v["lat"] is None) != (v["lon"] is None):
            self.err(line, "lat", "经纬度须同时填写或同时不填")
            return None
        return {
            "gridworker_id": worker.id,
            "person_id": person[0] if person else None,
            "site_id": site[0] if site else None,
            "town_id": (person or site)[1],
            "at": v["at"],
            "note": v["note"],
            "lat": v["lat"],
            "lon": v["lon"],
            "client_key": key,
        }

    def write(self, rows: list[dict], bar) -> None:
        self._insert(Visit.__table__, rows, bar)


class LoginsLoader(_KeyedLoader):
    kind, model, key_column = "logins", LoginRecord, "import_key"

    def check(self, rec: Record):
        v, line = rec.values, rec.line
        key = self.key(rec)
        if key is None:
            return None
        if key in self.existing:
            return EXISTING
        success = True if v["success"] is None else v["success"]
        ref = self.run.accounts.get(v["username"])
        if ref is None and success:
            self.err(line, "username", f"账号“{v['username']}”不存在；成功的登录必须属于已有账号")
            return None
        return {
            "account_id": ref.id if ref else None,
            "username": v["username"],
            "success": success,
            "reason": v["reason"],
            "at": v["at"],
            "address": v["address"],
            "channel": v["channel"] or "web",
            "import_key": key,
        }

    def write(self, rows: list[dict], bar) -> None:
        self._insert(LoginRecord.__table__, rows, bar)


class SignInsLoader(Loader):
    kind = "signins"

    @cached_property
    def existing(self) -> set[tuple[int, object]]:
        return {tuple(r) for r in db.execute(select(SignIn.account_id, SignIn.day))}

    def check(self, rec: Record):
        v, line = rec.values, rec.line
        worker = self.account(rec, "gridworker")
        if worker is None:
            return None
        day = v["day"] or self.run.clock.to_local(v["at"]).date()
        if v["day"] is not None and self.run.clock.to_local(v["at"]).date() != day:
            self.err(line, "day", "签到日与签到时间（本地）的日期不一致")
            return None
        if not self.once((worker.id, day), line, "day", "同一账号同一天的签到"):
            return None
        if (worker.id, day) in self.existing:
            return EXISTING
        if (v["lat"] is None) != (v["lon"] is None):
            self.err(line, "lat", "经纬度须同时填写或同时不填")
            return None
        return {
            "account_id": worker.id,
            "town_id": worker.town_id,
            "day": day,
            "at": v["at"],
            "lat": v["lat"],
            "lon": v["lon"],
        }

    def write(self, rows: list[dict], bar) -> None:
        self._insert(SignIn.__table__, rows, bar)


MONTH = re.compile(r"^(\d{4})-(\d{2})$")
BASE_FIGURES = ("registered_population", "linked_persons", "households", "buildings", "houses", "shops", "enterprises")


class _UpsertLoader(Loader):
    """Rows keyed by a natural key that a second run updates (figures and lists that are corrected over
    time): an identical row is left alone (EXISTING); a changed one is updated in place (its `_id`)."""

    model: type
    fields: tuple[str, ...]

    def existing(self) -> dict:  # natural key → {"id": …, field: value}
        raise NotImplementedError

    @cached_property
    def current(self) -> dict:
        return self.existing()

    def settle(self, key, row: dict):
        """EXISTING when the stored row holds the same values, else the row (with `_id` when it is an update)."""
        old = self.current.get(key)
        if old is None:
            return row
        if all(old.get(f) == row[f] for f in self.fields):
            return EXISTING
        return row | {"_id": old["id"]}

    def write(self, rows: list[dict], bar) -> None:
        new = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows if not r.get("_id")]
        changed = [{"id": r["_id"], **{f: r[f] for f in self.fields}} for r in rows if r.get("_id")]
        if new:
            self._insert(self.model.__table__, new, bar)
        if changed:
            db.execute(update(self.model), changed)
            if bar is not None:
                bar.update(len(changed))


class BaseDataLoader(_UpsertLoader):
    kind, model = "base_data", BaseDataCount
    fields = BASE_FIGURES + ("town_id",)

    def existing(self) -> dict:
        cols = [getattr(BaseDataCount, f) for f in self.fields]
        return {
            (r.place_id, r.month): {"id": r.id, **{f: getattr(r, f) for f in self.fields}}
            for r in db.execute(select(BaseDataCount.id, BaseDataCount.place_id, BaseDataCount.month, *cols))
        }

    def check(self, rec: Record):
        v, line = rec.values, rec.line
        month = MONTH.match(v["month"])
        if month is None or not (2000 <= int(month[1]) <= 2100 and 1 <= int(month[2]) <= 12):
            self.err(line, "month", f"统计月份应写作 YYYY-MM（如 2026-11），而不是“{v['month'][:20]}”")
            return None
        place = self.place(rec, "place_code", "village")
        if place is None or not self.once((v["place_code"], v["month"]), line, "month", "同一村社同一月份"):
            return None
        if place.id is None:  # cannot happen: places come from the database or an earlier file of the run
            self.err(line, "place_code", "村社尚未写入数据库")
            return None
        row = {"place_id": place.id, "month": v["month"], "town_id": place.town_id}
        row |= {f: v[f] or 0 for f in BASE_FIGURES}
        return self.settle((place.id, v["month"]), row)


class AddressesLoader(_UpsertLoader):
    kind, model = "addresses", StandardAddress
    fields = ("address", "grid_id", "village_id", "town_id", "lat", "lon", "active")

    def existing(self) -> dict:
        cols = [getattr(StandardAddress, f) for f in self.fields]
        return {
            r.code: {"id": r.id, **{f: getattr(r, f) for f in self.fields}}
            for r in db.execute(select(StandardAddress.id, StandardAddress.code, *cols))
        }

    def check(self, rec: Record):
        v, line = rec.values, rec.line
        if not self.once(v["code"], line, "code", "标准地址编码"):
            return None
        if (v["lat"] is None) != (v["lon"] is None):
            self.err(line, "lat", "经纬度须同时填写或同时不填")
            return None
        located = self.run.locate(v["lat"], v["lon"]) if v["lat"] is not None else None
        grid = self.place(rec, "grid_code", "grid") if v["grid_code"] is not None else None
        if v["grid_code"] is not None and grid is None:
            return None
        if grid is None:
            if v["lat"] is None:
                self.err(line, "grid_code", "网格代码与经纬度至少填一项")
                return None
            if located is None:
                self.err(line, "lat", f"经纬度（{v['lon']}, {v['lat']}）不在任何网格内，请填写 grid_code")
                return None
            code = self.run.place_codes.get(located)
            grid = self.run.places.get(code) if code else None
            if grid is None:  # a grid written by this run after the lookup was built
                grid = next(ref for ref in self.run.places.values() if ref.id == located)
        elif located is not None and located != grid.id:
            self.err(line, "grid_code", f"经纬度落在另一网格（{self.run.place_codes.get(located, located)}）内")
            return None
        row = {
            "code": v["code"],
            "address": v["address"],
            "grid_id": grid.id,
            "village_id": grid.village_id,
            "town_id": grid.town_id,
            "lat": v["lat"],
            "lon": v["lon"],
            "active": True if v["active"] is None else v["active"],
        }
        return self.settle(v["code"], row)


LOADERS: dict[str, type[Loader]] = {
    cls.kind: cls
    for cls in (
        PlacesLoader,
        CentersLoader,
        AccountsLoader,
        BaseDataLoader,
        AddressesLoader,
        PersonsLoader,
        SitesLoader,
        CasesLoader,
        HistoryLoader,
        PatrolsLoader,
        SignInsLoader,
        VisitsLoader,
        LoginsLoader,
    )
}
