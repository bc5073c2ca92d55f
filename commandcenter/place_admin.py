"""Places and grids (issue 13 §2): the rules of /admin/places and of `flask places`.

- The hierarchy is city → town/street → village/community → grid; each place names its parent and carries
  its ancestors (city_id, town_id, village_id; each includes the place itself) and a centre point.
- Boundaries arrive as one GeoJSON FeatureCollection whose features carry ``code``, ``name``, ``level``,
  ``parent`` (the parent's code) and optionally ``kind``. ``check_upload`` reports, naming the feature's
  code: invalid geometry, unknown parent, duplicate codes, a level that is not one below the parent's,
  overlaps between grids of one village, grids outside their village (errors) and gaps in a village
  (warnings). ``apply_upload`` refuses a file with errors; a city feature updates the one city.
- Every change of a place bumps the places revision (a row of ``settings``) in the same transaction: the
  wall's GeoJSON and the grid index follow it in every process without a restart.
- Merge moves cases, persons, sites, accounts, positions and party organisations of grid A into grid B of
  the same village; B's boundary becomes the union; A is deactivated, never deleted; its patrols and the
  cases' steps stay as they were. Split gives A's cases to the new grid holding their location.
- Every change is audited with before and after (JSON in the audit row's detail), in the same transaction.
  Refusals raise PlaceError whose ``problems`` map a form field to its message.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from markupsafe import Markup, escape
from shapely.geometry import mapping, shape
from shapely.ops import unary_union
from sqlalchemy import Text, cast, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import defer

from . import labels
from .audit import audit
from .db import db
from .importer.validation import CellError, parse_geojson
from .models import (
    GRID_KINDS,
    GRID_POSITIONS,
    MULTI_HOLDER_POSITIONS,
    PLACE_LEVELS,
    TOWN_KINDS,
    VILLAGE_KINDS,
    Account,
    Case,
    GridPosition,
    PartyOrganization,
    Person,
    Place,
    SettingValue,
    Site,
)
from .security import mask_phone

CODE = re.compile(r"^[A-Za-z0-9_.-]+$")
CODE_MAX, NAME_MAX = 32, 100
KINDS = {"city": (), "town": TOWN_KINDS, "village": VILLAGE_KINDS, "grid": GRID_KINDS}
PARENT_LEVEL = {"town": "city", "village": "town", "grid": "village"}
CHILD_LEVEL = {"city": "town", "town": "village", "village": "grid"}
POSITION_LABEL = {**{p: labels.POST[p] for p in GRID_POSITIONS if p in labels.POST}, "volunteer": "网格志愿者"}
AREA_TOLERANCE_M2 = 1.0  # overlaps, parts outside and gaps smaller than this are drawing noise
UPLOAD_TTL_S = 3600
UPLOAD_MAX_BYTES = 20 * 1024 * 1024
REVISION_KEY = "places_revision"
OPEN_STATES = ("reported", "registered", "dispatched", "handling", "feedback")
PHONE = re.compile(r"^[0-9+\- ]{5,20}$")
AUDIT_MAX = 60_000


class PlaceError(Exception):
    """A refused change; ``problems``: form field → message (in Chinese, naming the field)."""

    def __init__(self, problems: dict[str, str]):
        super().__init__("；".join(problems.values()))
        self.problems = problems


def _audit(action: str, object_id, before, after, account: Account | None, **extra) -> None:
    detail = json.dumps({"before": before, "after": after, **extra}, ensure_ascii=False, sort_keys=True, default=str)
    audit(action, "place", object_id, detail=detail[:AUDIT_MAX], account=account)


# --- the places revision ------------------------------------------------------------------------------


def bump_revision() -> str:
    """Mark the places as changed (in the current transaction): caches keyed by `revision()` rebuild."""
    token = uuid.uuid4().hex
    row = db.get(SettingValue, REVISION_KEY)
    if row is None:
        try:
            with db.begin_nested():
                db.add(SettingValue(key=REVISION_KEY, value={"token": token}))
            return token
        except IntegrityError:  # another process created it meanwhile
            row = db.get(SettingValue, REVISION_KEY)
    row.value = {"token": token}
    return token


def revision(session=None) -> str:
    """The current places revision ("" before the first change through this module)."""
    value = (session or db).execute(select(SettingValue.value).where(SettingValue.key == REVISION_KEY)).scalar()
    return str(value.get("token", "")) if isinstance(value, dict) else ""


# --- geometry helpers ----------------------------------------------------------------------------------


def area_m2(geom) -> float:
    """Area in square metres, estimated from degrees² scaled at the geometry's latitude (good to a few
    per mille for a grid or a village)."""
    if geom is None or geom.is_empty:
        return 0.0
    lat = geom.centroid.y if not geom.centroid.is_empty else 0.0
    return geom.area * 111_320.0 * math.cos(math.radians(lat)) * 110_574.0


def geometry_digest(geometry: dict | None) -> dict | None:
    """What an audit row keeps of a boundary: type, bounding box, vertex count and a hash."""
    if not geometry:
        return None
    text = json.dumps(geometry, sort_keys=True, separators=(",", ":"))
    try:
        geom = shape(geometry)
        bbox = [round(x, 6) for x in geom.bounds]
        points = len(re.findall(r"\[-?\d", text))
    except Exception:  # noqa: BLE001 - a digest of an odd stored value is still a digest
        bbox, points = None, None
    return {
        "type": geometry.get("type"),
        "bbox": bbox,
        "points": points,
        "sha1": hashlib.sha1(text.encode()).hexdigest()[:12],
    }


def center_of(geom) -> tuple[float, float]:
    center = geom.centroid
    if not geom.contains(center):
        center = geom.representative_point()
    return round(center.y, 7), round(center.x, 7)


def place_snapshot(place: Place) -> dict:
    return {
        "code": place.code,
        "name": place.name,
        "level": place.level,
        "kind": place.kind,
        "parent_id": place.parent_id,
        "active": place.active,
        "geometry": geometry_digest(place.geometry),
        "center": [place.center_lat, place.center_lon] if place.center_lat is not None else None,
    }


def _text(value, field: str, label: str, limit: int, problems: dict, *, required: bool = True) -> str:
    text = " ".join(str(value or "").split())
    if required and not text:
        problems[field] = f"{label}（{field}）不能为空"
    elif len(text) > limit:
        problems[field] = f"{label}（{field}）不能超过 {limit} 个字符"
    return text


def _code_problem(code: str) -> str | None:
    if not code:
        return "不能为空"
    if len(code) > CODE_MAX:
        return f"不能超过 {CODE_MAX} 个字符"
    if not CODE.match(code):
        return "只能由字母、数字、点、下划线和连字符组成"
    return None


def kinds_text(level: str) -> str:
    return "、".join(f"{k}（{labels.PLACE_KIND[k]}）" for k in KINDS[level])


# --- the tree ------------------------------------------------------------------------------------------


@dataclass
class TreeRow:
    place: Place
    depth: int
    children: int
    has_boundary: bool = False


def tree() -> list[TreeRow]:
    """Every place in hierarchy order (parents before their children, siblings by code); the boundaries
    themselves are not loaded."""
    places = list(db.execute(select(Place).options(defer(Place.geometry)).order_by(Place.code, Place.id)).scalars())
    bounded = set(
        db.execute(select(Place.id).where(Place.geometry.is_not(None), cast(Place.geometry, Text) != "null")).scalars()
    )
    children: dict[int | None, list[Place]] = {}
    for p in places:
        children.setdefault(p.parent_id, []).append(p)
    known = {p.id for p in places}
    rows: list[TreeRow] = []

    def walk(p: Place, depth: int) -> None:
        rows.append(TreeRow(p, depth, len(children.get(p.id, [])), p.id in bounded))
        for c in children.get(p.id, []):
            walk(c, depth + 1)

    for root in [p for p in places if p.parent_id is None or p.parent_id not in known]:
        walk(root, 0)
    return rows


def grid_counts() -> dict[str, int]:
    rows = db.execute(select(Place.level, func.count(Place.id)).where(Place.active.is_(True)).group_by(Place.level))
    return {level: n for level, n in rows}


# --- checking an upload --------------------------------------------------------------------------------


@dataclass
class Item:
    """One feature of an uploaded FeatureCollection."""

    number: int  # 1-based, in file order
    code: str
    name: str
    level: str
    kind: str | None
    parent: str | None
    geometry: dict | None = None
    shape: object = None
    center: tuple[float, float] | None = None
    existing_id: int | None = None
    ok: bool = True  # fields readable (problems of its own are listed separately)

    @property
    def action(self) -> str:
        return "update" if self.existing_id else "create"


@dataclass
class Problem:
    severity: str  # error / warning
    code: str | None  # the feature it is about (None: the file as a whole)
    message: str
    area: object = None  # a shapely geometry to draw (an overlap, a gap, a part outside)

    @property
    def text(self) -> str:
        return (f"{self.code}：" if self.code else "") + self.message


@dataclass
class Check:
    filename: str
    items: list[Item] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def error(self, code, message, area=None) -> None:
        self.problems.append(Problem("error", code, message, area))

    def warning(self, code, message, area=None) -> None:
        self.problems.append(Problem("warning", code, message, area))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def creates(self) -> list[Item]:
        return [i for i in self.items if i.ok and not i.existing_id]

    @property
    def updates(self) -> list[Item]:
        return [i for i in self.items if i.ok and i.existing_id]

    def counts(self) -> dict[str, dict[str, int]]:
        out = {"create": dict.fromkeys(PLACE_LEVELS, 0), "update": dict.fromkeys(PLACE_LEVELS, 0)}
        for i in self.items:
            if i.ok:
                out[i.action][i.level] += 1
        return out

    @property
    def problem_codes(self) -> set[str]:
        return {p.code for p in self.errors if p.code}

    @property
    def warning_codes(self) -> set[str]:
        return {p.code for p in self.warnings if p.code}


def _prop(props: dict, key: str) -> str:
    value = props.get(key)
    if value is None:
        return ""
    return " ".join(str(value).split())


def parse_collection(check: Check, raw: bytes) -> list[dict]:
    """The features of a FeatureCollection, or [] with file-level errors in `check`."""
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        check.error(None, "文件（file）须是 UTF-8 编码的 GeoJSON")
        return []
    except ValueError as exc:
        check.error(None, f"文件（file）不是有效的 JSON：{exc.msg}（第 {exc.lineno} 行）")
        return []
    if (
        not isinstance(data, dict)
        or data.get("type") != "FeatureCollection"
        or not isinstance(data.get("features"), list)
    ):
        check.error(None, "文件（file）须是一个 GeoJSON FeatureCollection（含 features 列表）")
        return []
    if not data["features"]:
        check.error(None, "文件（file）中没有任何要素（features 为空）")
    return data["features"]


def _read_items(check: Check, features: list) -> None:
    for n, feature in enumerate(features, start=1):
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            check.error(None, f"第 {n} 个要素不是 GeoJSON Feature")
            continue
        props = feature.get("properties") if isinstance(feature.get("properties"), dict) else {}
        code, name = _prop(props, "code"), _prop(props, "name")
        level, kind, parent = _prop(props, "level").lower(), _prop(props, "kind").lower(), _prop(props, "parent")
        label = code or f"第 {n} 个要素"
        item = Item(n, code, name, level, kind or None, parent or None)
        problem = _code_problem(code)
        if problem:
            check.error(code or None, f"第 {n} 个要素的代码（code）{problem}")
            item.ok = False
        if not name:
            check.error(code or None, f"{label} 的名称（name）不能为空")
            item.ok = False
        elif len(name) > NAME_MAX:
            check.error(code or None, f"名称（name）不能超过 {NAME_MAX} 个字符")
            item.ok = False
        if level not in PLACE_LEVELS:
            check.error(code or None, f"{label} 的层级（level）应为 city、town、village、grid 之一，而不是“{level}”")
            item.ok = False
        elif kind and kind not in KINDS[level]:
            if level == "city":
                check.error(code or None, "市不填类型（kind）")
            else:
                check.error(
                    code or None,
                    f"{labels.PLACE_LEVEL[level]}的类型（kind）应为 {kinds_text(level)} 之一，而不是“{kind}”",
                )
            item.ok = False
        if level in PARENT_LEVEL and not parent:
            check.error(code or None, f"{labels.PLACE_LEVEL[level]}必须填写上级代码（parent）")
            item.ok = False
        geometry = feature.get("geometry")
        if geometry is not None:
            try:
                item.geometry, clat, clon = parse_geojson(json.dumps(geometry))
                item.shape = shape(item.geometry)
                item.center = (clat, clon)
            except (CellError, TypeError, ValueError) as exc:
                check.error(code or None, f"边界（geometry）无效：{exc}")
                item.ok = False
        elif level == "grid":
            check.warning(code or None, "网格没有边界（geometry），地图上不会显示")
        check.items.append(item)


def check_upload(raw: bytes, filename: str = "upload.geojson") -> Check:
    """Read and check an uploaded FeatureCollection against the places in the database."""
    check = Check(filename=filename)
    _read_items(check, parse_collection(check, raw))
    items = check.items
    # duplicate codes in the file
    seen: dict[str, Item] = {}
    for item in items:
        if not item.code:
            continue
        if item.code in seen:
            check.error(item.code, f"代码（code）重复：第 {seen[item.code].number} 与第 {item.number} 个要素都用了它")
            item.ok = False
        else:
            seen[item.code] = item
    by_code = {i.code: i for i in items if i.code and i.ok}
    codes = [i.code for i in items if i.code]
    existing = {p.code: p for p in db.execute(select(Place).where(Place.code.in_(codes))).scalars()} if codes else {}
    city = db.execute(select(Place).where(Place.level == "city").order_by(Place.id).limit(1)).scalar()
    cities = [i for i in items if i.level == "city"]
    if len(cities) > 1:
        for extra in cities[1:]:
            check.error(extra.code or None, "每个系统只有一个市：文件中只能有一个 level 为 city 的要素")
            extra.ok = False
    for item in items:
        if not item.ok and item.code not in by_code:
            continue
        old = existing.get(item.code)
        if item.level == "city":
            if city is not None:
                item.existing_id = city.id
                if old is not None and old.id != city.id:
                    check.error(item.code, f"代码（code）已被{labels.PLACE_LEVEL[old.level]}“{old.name}”使用")
                    item.ok = False
            continue
        if old is not None:
            if old.level != item.level:
                check.error(
                    item.code,
                    f"代码（code）已是{labels.PLACE_LEVEL[old.level]}“{old.name}”的代码，不能改为{labels.PLACE_LEVEL.get(item.level, item.level)}",
                )
                item.ok = False
            item.existing_id = old.id
    # parents
    parent_codes = {i.parent for i in items if i.parent and i.parent not in by_code}
    db_parents = (
        {p.code: p for p in db.execute(select(Place).where(Place.code.in_(parent_codes))).scalars()}
        if parent_codes
        else {}
    )
    city_item = next((i for i in cities if i.ok), None)
    for item in items:
        if item.level not in PARENT_LEVEL or not item.parent or not item.level:
            if item.level == "city" and item.parent:
                check.error(item.code or None, "市没有上级（parent 应为空）")
                item.ok = False
            continue
        parent_level = None
        parent_id = None
        if item.parent in by_code:
            parent_level = by_code[item.parent].level
            parent_id = by_code[item.parent].existing_id
        elif item.parent in db_parents:
            parent_level = db_parents[item.parent].level
            parent_id = db_parents[item.parent].id
            if city_item is not None and parent_level == "city":
                pass  # the city's old code still names it
        elif city is not None and city_item is not None and item.parent == city.code:
            parent_level, parent_id = "city", city.id
        if parent_level is None:
            check.error(item.code or None, f"上级代码（parent）“{item.parent}”不存在（文件和系统中都没有）")
            item.ok = False
            continue
        if parent_level != PARENT_LEVEL[item.level]:
            check.error(
                item.code or None,
                f"层级不对：{labels.PLACE_LEVEL[item.level]}的上级须是{labels.PLACE_LEVEL[PARENT_LEVEL[item.level]]}，"
                f"而“{item.parent}”是{labels.PLACE_LEVEL[parent_level]}",
            )
            item.ok = False
            continue
        old = existing.get(item.code)
        if old is not None and item.level != "city" and old.parent_id != parent_id:
            check.error(item.code, "上传不能改变已有区划的上级（parent）；请在区划页面处理（合并或拆分网格）")
            item.ok = False
    _check_geometry(check, by_code)
    return check


def _check_geometry(check: Check, by_code: dict[str, Item]) -> None:
    """Overlaps between grids of one village, grids outside their village (errors), gaps (warnings)."""
    file_grids = [i for i in by_code.values() if i.ok and i.level == "grid"]
    touched = {i.parent for i in file_grids} | {i.code for i in by_code.values() if i.ok and i.level == "village"}
    if not touched:
        return
    villages = {p.code: p for p in db.execute(select(Place).where(Place.code.in_(touched))).scalars()}
    village_ids = {p.id: p.code for p in villages.values() if p.level == "village"}
    grids: dict[str, list[tuple[str, object, bool]]] = {code: [] for code in touched}
    if village_ids:
        for code, geometry, vid in db.execute(
            select(Place.code, Place.geometry, Place.village_id).where(
                Place.level == "grid", Place.active.is_(True), Place.village_id.in_(village_ids)
            )
        ):
            if code in by_code or not geometry:
                continue
            try:
                grids[village_ids[vid]].append((code, shape(geometry), False))
            except Exception:  # noqa: BLE001 - a broken stored polygon is reported by `flask places check`
                continue
    for g in file_grids:
        if g.shape is not None and g.parent in grids:
            grids[g.parent].append((g.code, g.shape, True))
    for vcode in sorted(touched):
        item = by_code.get(vcode)
        vshape = item.shape if item is not None and item.level == "village" else None
        if vshape is None and vcode in villages and villages[vcode].geometry:  # kept when the file has none
            try:
                vshape = shape(villages[vcode].geometry)
            except Exception:  # noqa: BLE001
                vshape = None
        vfile = item is not None
        members = grids.get(vcode, [])
        _village_problems(check, vcode, vshape, members, vfile)


def _village_problems(check: Check, vcode: str, vshape, members: list, vfile: bool) -> None:
    for i, (code_a, a, file_a) in enumerate(members):
        for code_b, b, file_b in members[i + 1 :]:
            if not (file_a or file_b) or not a.intersects(b):
                continue
            overlap = a.intersection(b)
            m2 = area_m2(overlap)
            if m2 > AREA_TOLERANCE_M2:  # named on each uploaded one of the two
                area = overlap
                for named, other, uploaded in ((code_a, code_b, file_a), (code_b, code_a, file_b)):
                    if uploaded:
                        check.error(named, f"与网格 {other} 重叠约 {m2:,.0f} 平方米（同一村社的网格不能重叠）", area)
                        area = None
        if vshape is not None and (file_a or vfile):
            outside = a.difference(vshape)
            m2 = area_m2(outside)
            if m2 > AREA_TOLERANCE_M2:
                check.error(code_a, f"超出所属村社 {vcode} 的边界约 {m2:,.0f} 平方米", outside)
    if vshape is not None and members:
        gap = vshape.difference(unary_union([s for _, s, _ in members]))
        m2 = area_m2(gap)
        if m2 > AREA_TOLERANCE_M2:
            check.warning(vcode, f"村社内有约 {m2:,.0f} 平方米不属于任何网格（空隙）", gap)


def check_database() -> list[Problem]:
    """`flask places check`: the same geometry rules over every active village and grid in the database."""
    check = Check(filename="database")
    villages = db.execute(select(Place).where(Place.level == "village", Place.active.is_(True))).scalars().all()
    grids: dict[int, list] = {}
    for p in db.execute(select(Place).where(Place.level == "grid", Place.active.is_(True))).scalars():
        if not p.geometry:
            check.warning(p.code, "网格没有边界（geometry）")
            continue
        try:
            s = shape(p.geometry)
        except Exception as exc:  # noqa: BLE001
            check.error(p.code, f"边界（geometry）无效：{exc}")
            continue
        if not s.is_valid:
            check.error(p.code, "边界（geometry）不是有效的多边形")
            continue
        grids.setdefault(p.village_id, []).append((p.code, s, True))
    for v in sorted(villages, key=lambda v: v.code):
        vshape = shape(v.geometry) if v.geometry else None
        _village_problems(check, v.code, vshape, grids.get(v.id, []), True)
    return check.problems


# --- keeping an upload between check and apply -----------------------------------------------------------

TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,64}$")


def _upload_dir(instance_path) -> Path:
    path = Path(instance_path) / "place-uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def store_upload(instance_path, raw: bytes, filename: str, account_id: int | None, purpose: str) -> str:
    """Keep an uploaded file under the instance path with a random token (older than UPLOAD_TTL_S: removed)."""
    folder = _upload_dir(instance_path)
    now = time.time()
    for old in folder.glob("*.json"):
        try:
            if now - old.stat().st_mtime > UPLOAD_TTL_S:
                old.unlink()
        except OSError:
            pass
    token = secrets.token_urlsafe(24)
    meta = {"filename": filename[:200], "account_id": account_id, "purpose": purpose, "at": now}
    (folder / f"{token}.meta").write_text(json.dumps(meta), encoding="utf-8")
    (folder / f"{token}.json").write_bytes(raw)
    return token


def load_upload(instance_path, token: str, account_id: int | None, purpose: str) -> tuple[bytes, str] | None:
    """(raw, filename) of a kept upload of this account and purpose, or None (unknown, expired, someone else's)."""
    if not TOKEN.match(token or ""):
        return None
    folder = _upload_dir(instance_path)
    data, meta = folder / f"{token}.json", folder / f"{token}.meta"
    try:
        info = json.loads(meta.read_text(encoding="utf-8"))
        if time.time() - info["at"] > UPLOAD_TTL_S or info["account_id"] != account_id or info["purpose"] != purpose:
            return None
        return data.read_bytes(), info["filename"]
    except (OSError, ValueError, KeyError):
        return None


def drop_upload(instance_path, token: str) -> None:
    if TOKEN.match(token or ""):
        folder = _upload_dir(instance_path)
        for suffix in (".json", ".meta"):
            (folder / f"{token}{suffix}").unlink(missing_ok=True)


# --- applying an upload --------------------------------------------------------------------------------


def _ancestors(place: Place, parent: Place | None) -> None:
    place.city_id = parent.city_id if parent else None
    place.town_id = parent.town_id if parent else None
    place.village_id = parent.village_id if parent else None
    if place.level == "city":
        place.city_id = place.id
    elif place.level == "town":
        place.town_id = place.id
    elif place.level == "village":
        place.village_id = place.id


def apply_upload(account: Account | None, raw: bytes, filename: str) -> dict:
    """Check again (the database may have changed since) and create/update the places; audited. Raises
    PlaceError when the file has errors. The caller commits."""
    check = check_upload(raw, filename)
    if check.errors:
        raise PlaceError(
            {"file": f"文件有 {len(check.errors)} 个错误，未导入：" + "；".join(p.text for p in check.errors[:5])}
        )
    by_code: dict[str, Place] = {}
    created, updated, changes = 0, 0, []
    order = {lv: n for n, lv in enumerate(PLACE_LEVELS)}
    for item in sorted(check.items, key=lambda i: (order[i.level], i.number)):
        parent = None
        if item.parent:
            parent = by_code.get(item.parent) or db.execute(select(Place).where(Place.code == item.parent)).scalar()
        if item.existing_id:
            place = db.get(Place, item.existing_id)
            by_code[place.code] = place  # children may still name the city by its old code
            before = place_snapshot(place)
            place.code, place.name = item.code, item.name
            if item.kind:
                place.kind = item.kind
            if item.geometry is not None:
                place.geometry = item.geometry
                place.center_lat, place.center_lon = item.center
            after = place_snapshot(place)
            if after != before:
                updated += 1
                changes.append({"id": place.id, "code": place.code, "before": before, "after": after})
                _audit("place.update", place.id, before, after, account, source=filename)
        else:
            place = Place(
                code=item.code,
                name=item.name,
                level=item.level,
                kind=item.kind or ("comprehensive" if item.level == "grid" else None),
                parent_id=parent.id if parent else None,
                geometry=item.geometry,
                center_lat=item.center[0] if item.center else None,
                center_lon=item.center[1] if item.center else None,
                active=True,
            )
            db.add(place)
            db.flush()
            _ancestors(place, parent)
            created += 1
            after = place_snapshot(place)
            changes.append({"id": place.id, "code": place.code, "before": None, "after": after})
            _audit("place.create", place.id, None, after, account, source=filename)
        by_code[place.code] = place
        db.flush()
    bump_revision()
    summary = {
        "file": filename,
        "created": created,
        "updated": updated,
        "unchanged": len(check.items) - created - updated,
        "warnings": [p.text for p in check.warnings][:50],
        "by_level": check.counts(),
    }
    audit("place.import", "place", None, detail=json.dumps(summary, ensure_ascii=False)[:AUDIT_MAX], account=account)
    return summary


# --- editing one place ----------------------------------------------------------------------------------


def edit_place(account: Account, place: Place, *, name: str, kind: str, active: bool) -> Place:
    problems: dict[str, str] = {}
    name = _text(name, "name", "名称", NAME_MAX, problems)
    kind = (kind or "").strip() or None
    if place.level == "city":
        kind = None
    elif kind not in KINDS[place.level]:
        problems["kind"] = f"类型（kind）应为 {kinds_text(place.level)} 之一"
    if place.level == "city" and not active:
        problems["active"] = "市不能停用（active）"
    if place.active and not active and place.level != "city":
        children = db.execute(
            select(func.count(Place.id)).where(Place.parent_id == place.id, Place.active.is_(True))
        ).scalar()
        if children:
            problems["active"] = f"不能停用（active）：其下还有 {children} 个在用的下级区划，请先停用或合并它们"
        elif place.level == "grid":
            open_cases = db.execute(
                select(func.count(Case.id)).where(Case.grid_id == place.id, Case.state.in_(OPEN_STATES))
            ).scalar()
            accounts = db.execute(
                select(func.count(Account.id)).where(Account.place_id == place.id, Account.active.is_(True))
            ).scalar()
            if open_cases or accounts:
                problems["active"] = (
                    f"不能停用（active）：网格还有 {open_cases} 件未结案件、{accounts} 个在用账号；请用“合并网格”把它们并入相邻网格"
                )
    if problems:
        raise PlaceError(problems)
    before = place_snapshot(place)
    place.name, place.kind, place.active = name, kind, bool(active)
    db.flush()
    after = place_snapshot(place)
    if after != before:
        bump_revision()
        _audit("place.edit", place.id, before, after, account)
    return place


def add_child(account: Account, parent: Place, *, code: str, name: str, kind: str) -> Place:
    problems: dict[str, str] = {}
    level = CHILD_LEVEL.get(parent.level)
    if level is None:
        raise PlaceError({"code": "网格下不能再设下级区划"})
    code = (code or "").strip()
    problem = _code_problem(code)
    if problem:
        problems["code"] = f"代码（code）{problem}"
    elif db.execute(select(Place.id).where(Place.code == code)).first():
        problems["code"] = f"代码（code）“{code}”已被其他区划使用"
    name = _text(name, "name", "名称", NAME_MAX, problems)
    kind = (kind or "").strip()
    if kind not in KINDS[level]:
        problems["kind"] = f"类型（kind）应为 {kinds_text(level)} 之一"
    if not parent.active:
        problems["code"] = "上级区划已停用，不能新增下级"
    if problems:
        raise PlaceError(problems)
    place = Place(code=code, name=name, level=level, kind=kind, parent_id=parent.id, active=True)
    db.add(place)
    db.flush()
    _ancestors(place, parent)
    db.flush()
    bump_revision()
    _audit("place.create", place.id, None, place_snapshot(place), account)
    return place


# --- 一长五员 positions -------------------------------------------------------------------------------------


@dataclass
class PositionRow:
    id: int
    position: str
    label: str
    holder: str
    phone_masked: str
    account_id: int | None


def positions(grid: Place) -> list[PositionRow]:
    rows = db.execute(select(GridPosition).where(GridPosition.grid_id == grid.id).order_by(GridPosition.id)).scalars()
    order = {p: n for n, p in enumerate(GRID_POSITIONS)}
    out = []
    for r in rows:
        if r.account is not None:
            holder, phone = f"{r.account.display_name}（账号 {r.account.username}）", r.account.phone
        else:
            holder, phone = r.name or "", r.phone
        out.append(PositionRow(r.id, r.position, POSITION_LABEL[r.position], holder, mask_phone(phone), r.account_id))
    return sorted(out, key=lambda p: (order[p.position], p.id))


def position_snapshot(row: GridPosition) -> dict:
    return {
        "grid_id": row.grid_id,
        "position": row.position,
        "account_id": row.account_id,
        "name": row.name,
        "phone": mask_phone(row.phone) if row.phone else None,
    }


def grid_accounts(grid: Place) -> list[Account]:
    stmt = select(Account).where(Account.place_id == grid.id, Account.active.is_(True)).order_by(Account.username)
    return list(db.execute(stmt).scalars())


def add_position(account: Account, grid: Place, *, position: str, account_id, name: str, phone: str) -> GridPosition:
    problems: dict[str, str] = {}
    if grid.level != "grid":
        raise PlaceError({"position": "只有网格设一长五员岗位"})
    if position not in GRID_POSITIONS:
        problems["position"] = "岗位（position）应为 " + "、".join(POSITION_LABEL.values()) + " 之一"
    holder = None
    name = " ".join((name or "").split())
    phone = (phone or "").strip()
    if account_id not in (None, ""):
        try:
            holder = db.get(Account, int(account_id))
        except (TypeError, ValueError):
            holder = None
        if holder is None or holder.place_id != grid.id or not holder.active:
            problems["account_id"] = "账号（account_id）须是本网格的在用账号"
            holder = None
        if name or phone:
            problems["name"] = "选择了账号时不填姓名（name）和电话（phone）"
    else:
        if not name:
            problems["name"] = "请选择本网格的账号（account_id），或填写无账号人员的姓名（name）"
        elif len(name) > 64:
            problems["name"] = "姓名（name）不能超过 64 个字符"
        if not phone:
            problems["phone"] = "无账号人员须填写电话（phone）"
        elif not PHONE.match(phone):
            problems["phone"] = "电话（phone）只能含数字、+、- 和空格，5 到 20 个字符"
    if "position" not in problems and not problems:
        held = (
            db.execute(select(GridPosition).where(GridPosition.grid_id == grid.id, GridPosition.position == position))
            .scalars()
            .all()
        )
        if position not in MULTI_HOLDER_POSITIONS and held:
            problems["position"] = f"岗位（position）{POSITION_LABEL[position]}已有人担任，请先移除"
        elif holder is not None and any(h.account_id == holder.id for h in held):
            problems["account_id"] = f"账号（account_id）已担任{POSITION_LABEL[position]}"
        elif holder is None and any(h.name == name and h.phone == phone for h in held):
            problems["name"] = f"{name}已担任{POSITION_LABEL[position]}"
    if problems:
        raise PlaceError(problems)
    row = GridPosition(
        grid_id=grid.id,
        position=position,
        account_id=holder.id if holder else None,
        name=None if holder else name,
        phone=None if holder else phone,
        created_by_id=account.id if account else None,
    )
    db.add(row)
    db.flush()
    _audit("place.position_add", grid.id, None, position_snapshot(row), account)
    return row


def remove_position(account: Account, grid: Place, position_id) -> None:
    try:
        row = db.get(GridPosition, int(position_id))
    except (TypeError, ValueError):
        row = None
    if row is None or row.grid_id != grid.id:
        raise PlaceError({"position_id": "岗位记录（position_id）不存在"})
    before = position_snapshot(row)
    db.delete(row)
    db.flush()
    _audit("place.position_remove", grid.id, before, None, account)


# --- merge ------------------------------------------------------------------------------------------------


def _count(model, column, value) -> int:
    return db.execute(select(func.count()).select_from(model).where(column == value)).scalar() or 0


def merge_targets(grid: Place) -> list[Place]:
    stmt = select(Place).where(
        Place.level == "grid", Place.active.is_(True), Place.village_id == grid.village_id, Place.id != grid.id
    )
    return list(db.execute(stmt.order_by(Place.code)).scalars())


def merge_plan(a: Place, b_id) -> dict:
    """What moves when grid `a` is merged into grid `b_id` (PlaceError if not allowed)."""
    try:
        b = db.get(Place, int(b_id))
    except (TypeError, ValueError):
        b = None
    if a.level != "grid" or not a.active:
        raise PlaceError({"into": "只能合并在用的网格"})
    if b is None or b.level != "grid" or not b.active or b.id == a.id:
        raise PlaceError({"into": "合并到（into）须是另一个在用的网格"})
    if b.village_id != a.village_id:
        raise PlaceError({"into": "合并到（into）须是同一村社的网格"})
    held_b = set(db.execute(select(GridPosition.position).where(GridPosition.grid_id == b.id)).scalars()) - set(
        MULTI_HOLDER_POSITIONS
    )
    dropped = [
        p
        for p in db.execute(select(GridPosition).where(GridPosition.grid_id == a.id)).scalars()
        if p.position in held_b
    ]
    return {
        "a": a,
        "b": b,
        "cases": _count(Case, Case.grid_id, a.id),
        "open_cases": db.execute(
            select(func.count(Case.id)).where(Case.grid_id == a.id, Case.state.in_(OPEN_STATES))
        ).scalar(),
        "persons": _count(Person, Person.grid_id, a.id),
        "sites": _count(Site, Site.grid_id, a.id),
        "accounts": _count(Account, Account.place_id, a.id),
        "positions": _count(GridPosition, GridPosition.grid_id, a.id) - len(dropped),
        "dropped_positions": [POSITION_LABEL[p.position] for p in dropped],
        "party": _count(PartyOrganization, PartyOrganization.place_id, a.id),
    }


def merge(account: Account | None, a: Place, b_id) -> dict:
    """Merge grid `a` into grid `b_id` of the same village; audited. The caller commits, then rebuilds the
    counters (jobs.rebuild_counters)."""
    plan = merge_plan(a, b_id)
    b = plan["b"]
    before = {"a": place_snapshot(a), "b": place_snapshot(b)}
    moved_cases = list(db.execute(select(Case.id).where(Case.grid_id == a.id).order_by(Case.id)).scalars())
    db.execute(
        update(Case)
        .where(Case.grid_id == a.id)
        .values(grid_id=b.id, village_id=b.village_id, town_id=b.town_id, version=Case.version + 1)
        .execution_options(synchronize_session=False)
    )
    for model in (Person, Site):
        db.execute(
            update(model)
            .where(model.grid_id == a.id)
            .values(grid_id=b.id, village_id=b.village_id, town_id=b.town_id)
            .execution_options(synchronize_session=False)
        )
    db.execute(
        update(Account)
        .where(Account.place_id == a.id)
        .values(place_id=b.id, village_id=b.village_id, town_id=b.town_id)
        .execution_options(synchronize_session=False)
    )
    db.execute(
        update(PartyOrganization)
        .where(PartyOrganization.place_id == a.id)
        .values(place_id=b.id, town_id=b.town_id)
        .execution_options(synchronize_session=False)
    )
    held_b = set(db.execute(select(GridPosition.position).where(GridPosition.grid_id == b.id)).scalars())
    dropped = []
    for p in db.execute(select(GridPosition).where(GridPosition.grid_id == a.id)).scalars().all():
        if p.position not in MULTI_HOLDER_POSITIONS and p.position in held_b:
            dropped.append(position_snapshot(p))
            db.delete(p)
        else:
            p.grid_id = b.id
    shapes = [shape(g.geometry) for g in (a, b) if g.geometry]
    if shapes:
        union = unary_union(shapes)
        if not union.is_valid:
            union = union.buffer(0)
        b.geometry = mapping(union)
        b.geometry = json.loads(json.dumps(b.geometry))  # tuples → lists, as GeoJSON
        b.center_lat, b.center_lon = center_of(union)
    for attr in ("population", "households"):
        if getattr(a, attr) is not None:
            setattr(b, attr, (getattr(b, attr) or 0) + getattr(a, attr))
    if b.police_beat_id is None and a.police_beat_id is not None:
        b.police_beat_id = a.police_beat_id
    a.active = False
    db.flush()
    db.expire_all()
    bump_revision()
    a, b = db.get(Place, a.id), db.get(Place, b.id)
    after = {"a": place_snapshot(a), "b": place_snapshot(b)}
    moved = {k: plan[k] for k in ("cases", "persons", "sites", "accounts", "positions", "party")}
    _audit(
        "place.merge",
        a.id,
        before,
        after,
        account,
        into=b.id,
        moved=moved,
        case_ids=moved_cases[:2000],
        dropped_positions=dropped,
    )
    return {"into": b.id, **moved, "dropped_positions": dropped}


# --- split ------------------------------------------------------------------------------------------------


@dataclass
class SplitCheck:
    check: Check
    grid: Place
    assign: dict[str, int] = field(default_factory=dict)  # new grid code → cases located in it
    unlocated_cases: int = 0
    persons: int = 0
    sites: int = 0
    accounts: list[Account] = field(default_factory=list)


def check_split(a: Place, raw: bytes, filename: str) -> SplitCheck:
    """Check a split of grid `a` into the grids of an uploaded FeatureCollection (same format): all new grids
    of a's village, polygons covering a without overlap and without reaching beyond it."""
    check = Check(filename=filename)
    _read_items(check, parse_collection(check, raw))
    result = SplitCheck(check=check, grid=a)
    village = db.get(Place, a.village_id) if a.village_id else None
    if a.level != "grid" or not a.active:
        check.error(None, "只能拆分在用的网格")
        return result
    if not a.geometry:
        check.error(None, f"网格 {a.code} 没有边界，无法按位置拆分；请先上传它的边界")
        return result
    ashape = shape(a.geometry)
    seen: set[str] = set()
    codes = [i.code for i in check.items if i.code]
    taken = set(db.execute(select(Place.code).where(Place.code.in_(codes))).scalars()) if codes else set()
    for item in check.items:
        if item.code in seen:
            check.error(item.code, "代码（code）在文件中重复")
            item.ok = False
        seen.add(item.code)
        if item.level != "grid":
            check.error(item.code or None, "拆分文件中每个要素的层级（level）都须是 grid")
            item.ok = False
        if village is not None and item.parent and item.parent != village.code:
            check.error(item.code or None, f"上级代码（parent）须是原网格所在村社 {village.code}")
            item.ok = False
        if item.code in taken:
            check.error(item.code, "代码（code）已被其他区划使用；拆分出的网格须用新代码")
            item.ok = False
        if item.shape is None and item.level == "grid":
            check.error(item.code or None, "拆分出的网格须有边界（geometry）")
            item.ok = False
        item.parent = village.code if village is not None else item.parent
    good = [i for i in check.items if i.ok and i.shape is not None]
    if len(check.items) < 2:
        check.error(None, "拆分至少要有两个新网格")
    for n, x in enumerate(good):
        for y in good[n + 1 :]:
            if x.shape.intersects(y.shape):
                overlap = x.shape.intersection(y.shape)
                m2 = area_m2(overlap)
                if m2 > AREA_TOLERANCE_M2:
                    check.error(y.code, f"与新网格 {x.code} 重叠约 {m2:,.0f} 平方米", overlap)
        outside = x.shape.difference(ashape)
        m2 = area_m2(outside)
        if m2 > AREA_TOLERANCE_M2:
            check.error(x.code, f"超出原网格 {a.code} 的边界约 {m2:,.0f} 平方米", outside)
    if good:
        uncovered = ashape.difference(unary_union([i.shape for i in good]))
        m2 = area_m2(uncovered)
        if m2 > AREA_TOLERANCE_M2:
            check.error(None, f"新网格没有盖住原网格 {a.code}：约 {m2:,.0f} 平方米不属于任何新网格", uncovered)
    result.assign = {i.code: 0 for i in good}
    for _cid, lat, lon in db.execute(select(Case.id, Case.lat, Case.lon).where(Case.grid_id == a.id)):
        code = _containing(good, lat, lon)
        if code is None:
            result.unlocated_cases += 1
        else:
            result.assign[code] += 1
    result.persons = _count(Person, Person.grid_id, a.id)
    result.sites = _count(Site, Site.grid_id, a.id)
    result.accounts = grid_accounts(a)
    return result


def _containing(items: list[Item], lat, lon) -> str | None:
    if lat is None or lon is None or not items:
        return None
    from shapely.geometry import Point

    point = Point(lon, lat)
    for i in items:
        if i.shape.covers(point):
            return i.code
    nearest = min(items, key=lambda i: i.shape.distance(point))
    return nearest.code if nearest.shape.distance(point) < 0.0005 else None  # ~50 m: a point on the edge


def split(account: Account | None, a: Place, raw: bytes, filename: str, fallback_code: str) -> dict:
    """Split grid `a`: create the new grids, give each case the new grid holding its location, persons,
    sites and unlocated cases to `fallback_code`; deactivate `a`. The caller commits and rebuilds counters."""
    result = check_split(a, raw, filename)
    check = result.check
    if check.errors:
        raise PlaceError(
            {"file": f"拆分方案有 {len(check.errors)} 个错误：" + "；".join(p.text for p in check.errors[:5])}
        )
    good = [i for i in check.items if i.ok]
    if fallback_code not in {i.code for i in good}:
        raise PlaceError({"fallback": "请选择接收无位置案件、人员和场所的新网格（fallback）"})
    village = db.get(Place, a.village_id)
    before = place_snapshot(a)
    created: dict[str, Place] = {}
    for item in good:
        place = Place(
            code=item.code,
            name=item.name,
            level="grid",
            kind=item.kind or a.kind or "comprehensive",
            parent_id=village.id,
            geometry=item.geometry,
            center_lat=item.center[0],
            center_lon=item.center[1],
            police_beat_id=a.police_beat_id,
            active=True,
        )
        db.add(place)
        db.flush()
        _ancestors(place, village)
        created[item.code] = place
        _audit("place.create", place.id, None, place_snapshot(place), account, split_from=a.code)
    moved: dict[str, list[int]] = {code: [] for code in created}
    for cid, lat, lon in db.execute(select(Case.id, Case.lat, Case.lon).where(Case.grid_id == a.id)).all():
        code = _containing(good, lat, lon) or fallback_code
        moved[code].append(cid)
    for code, ids in moved.items():
        if ids:
            db.execute(
                update(Case)
                .where(Case.id.in_(ids))
                .values(grid_id=created[code].id, version=Case.version + 1)
                .execution_options(synchronize_session=False)
            )
    target = created[fallback_code]
    for model in (Person, Site):
        db.execute(
            update(model)
            .where(model.grid_id == a.id)
            .values(grid_id=target.id)
            .execution_options(synchronize_session=False)
        )
    a.active = False
    db.flush()
    db.expire_all()
    bump_revision()
    a = db.get(Place, a.id)
    summary = {
        "grids": {code: p.id for code, p in created.items()},
        "cases": {code: len(ids) for code, ids in moved.items()},
        "persons": result.persons,
        "sites": result.sites,
        "fallback": fallback_code,
        "accounts_to_move": [acc.id for acc in result.accounts],
    }
    _audit(
        "place.split",
        a.id,
        before,
        place_snapshot(a),
        account,
        **summary,
        case_ids={code: ids[:2000] for code, ids in moved.items()},
    )
    return summary


# --- the map ----------------------------------------------------------------------------------------------

LEVEL_STYLE = {  # fill, fill-opacity, stroke, stroke-width
    "city": ("none", 0, "#334155", 2.0),
    "town": ("none", 0, "#1d4ed8", 1.6),
    "village": ("#e0f2fe", 0.35, "#0369a1", 1.2),
    "grid": ("#bbf7d0", 0.55, "#15803d", 0.8),
}


def _rings(geom):
    polys = list(geom.geoms) if hasattr(geom, "geoms") else [geom]
    for poly in polys:
        if poly.is_empty or poly.geom_type != "Polygon":
            if hasattr(poly, "geoms"):
                yield from _rings(poly)
            continue
        yield poly.exterior.coords
        for hole in poly.interiors:
            yield hole.coords


def svg_map(items: list[Item], problems: list[Problem], bad: set[str], warn: set[str], width: int = 900) -> Markup:
    """An inline SVG of the uploaded polygons: problem features in red, warnings in orange, problem areas
    (overlaps, parts outside, gaps) hatched on top. Each shape carries data-code and a <title>."""
    shaped = [i for i in items if i.shape is not None]
    areas = [p for p in problems if p.area is not None and not p.area.is_empty]
    if not shaped:
        return Markup('<p class="muted">文件中没有可以画出的边界。</p>')
    minx = min(i.shape.bounds[0] for i in shaped)
    miny = min(i.shape.bounds[1] for i in shaped)
    maxx = max(i.shape.bounds[2] for i in shaped)
    maxy = max(i.shape.bounds[3] for i in shaped)
    k = math.cos(math.radians((miny + maxy) / 2))
    w_deg, h_deg = max((maxx - minx) * k, 1e-9), max(maxy - miny, 1e-9)
    scale = width / max(w_deg, h_deg)
    height = max(120, int(h_deg * scale) + 20)
    width_px = int(w_deg * scale) + 20

    pixel = 1 / scale  # degrees per pixel: finer detail is invisible and only makes the page heavy

    def path(geom) -> str:
        simple = geom.simplify(pixel, preserve_topology=True)
        geom = geom if simple.is_empty else simple
        parts = []
        for ring in _rings(geom):
            pts = [f"{(x - minx) * k * scale + 10:.1f},{(maxy - y) * scale + 10:.1f}" for x, y, *_ in ring]
            if pts:
                parts.append("M" + " L".join(pts) + " Z")
        return " ".join(parts)

    out = [
        f'<svg class="places-map" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width_px} {height}" '
        f'width="100%" style="max-height:640px;background:#f8fafc;border:1px solid #cbd5e1" role="img" '
        f'aria-label="上传的边界">'
    ]
    order = {lv: n for n, lv in enumerate(PLACE_LEVELS)}
    for i in sorted(shaped, key=lambda i: (order.get(i.level, 9), i.number)):
        fill, opacity, stroke, sw = LEVEL_STYLE.get(i.level, LEVEL_STYLE["grid"])
        cls = "feature"
        if i.code in bad:
            fill, opacity, stroke, sw, cls = "#ff4d4f", 0.55, "#b91c1c", 2.0, "feature problem"
        elif i.code in warn:
            fill, opacity, stroke, cls = "#fde68a", 0.6, "#b45309", "feature warning"
        out.append(
            f'<path class="{cls}" data-code="{escape(i.code)}" d="{path(i.shape)}" fill="{fill}" '
            f'fill-opacity="{opacity}" stroke="{stroke}" stroke-width="{sw}" fill-rule="evenodd">'
            f"<title>{escape(i.code)} {escape(i.name)}（{labels.PLACE_LEVEL.get(i.level, i.level)}）</title></path>"
        )
    for p in areas:
        color = "#dc2626" if p.severity == "error" else "#f59e0b"
        out.append(
            f'<path class="problem-area" data-code="{escape(p.code or "")}" d="{path(p.area)}" fill="{color}" '
            f'fill-opacity="0.85" stroke="{color}" stroke-width="1.5" fill-rule="evenodd">'
            f"<title>{escape(p.text)}</title></path>"
        )
    out.append("</svg>")
    return Markup("".join(out))


# --- flask places ----------------------------------------------------------------------------------------


def register_cli(app) -> None:
    """`flask places import-geojson FILE [--apply]` and `flask places check`."""
    import sys

    import click
    from flask.cli import AppGroup

    group = AppGroup("places", help="区划网格：上传边界（GeoJSON）、检查重叠与空隙。")

    def _by(username: str | None) -> Account | None:
        if not username:
            return None
        found = db.execute(select(Account).where(Account.username == username)).scalar()
        if found is None:
            raise click.ClickException(f"--by：账号“{username}”不存在")
        return found

    @group.command("import-geojson")
    @click.argument("path", type=click.Path(exists=True, dir_okay=False))
    @click.option("--apply", "do_apply", is_flag=True, help="检查通过后导入（不加则只检查）")
    @click.option("--by", "username", default=None, help="审计日志中记为此账号所做")
    def import_geojson(path: str, do_apply: bool, username: str | None) -> None:
        """Check a GeoJSON FeatureCollection of places (and import it with --apply)."""
        raw = Path(path).read_bytes()
        name = Path(path).name
        check = check_upload(raw, name)
        for p in check.problems:
            click.echo(f"{name}: {'错误' if p.severity == 'error' else '提醒'}：{p.text}", err=True)
        click.echo(
            f"将新建 {len(check.creates)} 个、更新 {len(check.updates)} 个区划；错误 {len(check.errors)} 个，提醒 {len(check.warnings)} 个"
        )
        if check.errors:
            sys.exit(1)
        if not do_apply:
            return
        try:
            summary = apply_upload(_by(username), raw, name)
        except PlaceError as exc:
            db.rollback()
            raise click.ClickException(str(exc)) from exc
        db.commit()
        click.echo(f"已导入：新建 {summary['created']} 个、更新 {summary['updated']} 个区划")

    @group.command("check")
    def check_cmd() -> None:
        """Check the places in the database: overlapping grids, grids outside their village, gaps."""
        problems = check_database()
        for p in problems:
            click.echo(f"{'错误' if p.severity == 'error' else '提醒'}：{p.text}")
        errors = sum(1 for p in problems if p.severity == "error")
        click.echo(f"错误 {errors} 个，提醒 {len(problems) - errors} 个")
        if errors:
            sys.exit(1)

    app.cli.add_command(group)
