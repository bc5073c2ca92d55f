"""Centers and departments (issue 13, section 3): the rules of the administration pages /admin/departments,
/admin/centers, /admin/police-beats and /admin/hotline.

- A department (职能部门) serves the places listed for it in ``department_places`` (the city, towns,
  villages): dispatch offers it for a case whose grid, village, town or city is among them, and nowhere
  else. A department without rows serves nothing. ``Department.place_id`` is its home (where it sits), not
  the rule.
- A 综治中心 / 联动站 sits in a city, town or village (never a grid) and takes that place's level.
- A grid may be linked to one police beat (警格); 警网关联率 = active grids linked / active grids.
- The link to the 12345 hotline platform is the SettingValue "hotline".

Every change is audited with the object before and after (JSON in the audit row's detail), in the same
transaction as the change. Refusals raise OrgError whose ``problems`` map a form field to its message.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from sqlalchemy import func, select

from .audit import audit
from .db import db
from .models import Account, Case, Center, Department, DepartmentPlace, Place, PoliceBeat, SettingValue

CODE = re.compile(r"^[A-Za-z0-9_.-]+$")
CODE_MAX, NAME_MAX = 32, 100
SERVED_LEVELS = ("city", "town", "village")  # a department serves whole places, not single grids
CENTER_LEVELS = ("city", "town", "village")
HOTLINE_KEY = "hotline"
HOTLINE_DEFAULTS = {"platform_name": "", "work_order_url": "", "api_intake": False}
HOTLINE_URL_MAX = 300
HOTLINE_API_PATH = "/api/v1/hotline/work-orders"  # commandcenter/api/views.py: hotline_work_order


class OrgError(Exception):
    """A refused change; ``problems``: form field → message (in Chinese, naming the field)."""

    def __init__(self, problems: dict[str, str]):
        super().__init__("；".join(problems.values()))
        self.problems = problems


def _audit(action: str, object_type: str, object_id, before, after, account: Account) -> None:
    detail = json.dumps({"before": before, "after": after}, ensure_ascii=False, sort_keys=True)
    audit(action, object_type, object_id, detail=detail[:4000], account=account)


def _text(value, field: str, label: str, limit: int, problems: dict, *, required: bool = True) -> str:
    text = " ".join(str(value or "").split())
    if required and not text:
        problems[field] = f"{label}（{field}）不能为空"
    elif len(text) > limit:
        problems[field] = f"{label}（{field}）不能超过 {limit} 个字符"
    return text


def _code(value, field: str, label: str, problems: dict) -> str:
    code = (value or "").strip()
    if not code:
        problems[field] = f"{label}（{field}）不能为空"
    elif len(code) > CODE_MAX:
        problems[field] = f"{label}（{field}）不能超过 {CODE_MAX} 个字符"
    elif not CODE.match(code):
        problems[field] = f"{label}（{field}）只能由字母、数字、点、下划线和连字符组成"
    return code


def _ids(values) -> list[int]:
    out = []
    for v in values or ():
        try:
            out.append(int(v))
        except (TypeError, ValueError):
            out.append(-1)  # reported as an unknown place
    return list(dict.fromkeys(out))


# --- departments ---------------------------------------------------------------------------------------


def served_place_choices() -> list[Place]:
    """The places a department may serve: the city, the towns and the villages, in hierarchy order."""
    rows = db.execute(select(Place).where(Place.level.in_(SERVED_LEVELS), Place.active.is_(True))).scalars().all()
    rank = {lv: i for i, lv in enumerate(SERVED_LEVELS)}
    return sorted(rows, key=lambda p: (p.town_id or 0, rank[p.level], p.code))


def served_place_ids(department_id: int) -> list[int]:
    return list(
        db.execute(
            select(DepartmentPlace.place_id)
            .where(DepartmentPlace.department_id == department_id)
            .order_by(DepartmentPlace.place_id)
        ).scalars()
    )


def department_snapshot(department: Department) -> dict:
    served = served_place_ids(department.id) if department.id else []
    codes = dict(db.execute(select(Place.id, Place.code).where(Place.id.in_(served))).all()) if served else {}
    return {
        "code": department.code,
        "name": department.name,
        "home_place_id": department.place_id,
        "places": sorted(codes.get(p, str(p)) for p in served),
    }


def list_departments() -> list[tuple[Department, list[Place]]]:
    """Every department with the places it serves."""
    departments = db.execute(select(Department).order_by(Department.code)).scalars().all()
    links = db.execute(select(DepartmentPlace.department_id, DepartmentPlace.place_id)).all()
    places = {p.id: p for p in db.execute(select(Place).where(Place.id.in_({pid for _, pid in links}))).scalars()}
    served: dict[int, list[Place]] = {}
    for did, pid in links:
        if pid in places:
            served.setdefault(did, []).append(places[pid])
    rank = {lv: i for i, lv in enumerate(SERVED_LEVELS)}
    return [(d, sorted(served.get(d.id, []), key=lambda p: (rank.get(p.level, 9), p.code))) for d in departments]


def save_department(account: Account, department: Department | None, *, code: str, name: str, place_ids) -> Department:
    """Create (department None) or edit a department and the places it serves; audited before/after.
    The caller commits."""
    problems: dict[str, str] = {}
    code = _code(code, "code", "部门代码", problems)
    name = _text(name, "name", "部门名称", NAME_MAX, problems)
    ids = _ids(place_ids)
    if "code" not in problems:
        other = db.execute(select(Department.id).where(Department.code == code)).scalar_one_or_none()
        if other is not None and (department is None or other != department.id):
            problems["code"] = f"部门代码（code）“{code}”已被其他部门使用"
    places = {p.id: p for p in db.execute(select(Place).where(Place.id.in_(ids))).scalars()} if ids else {}
    wrong = [i for i in ids if i not in places or places[i].level not in SERVED_LEVELS or not places[i].active]
    if wrong:
        problems["places"] = "服务区域（places）只能选择市、镇街或村社（不能选网格或不存在的区划）"
    if problems:
        raise OrgError(problems)
    before = department_snapshot(department) if department is not None else None
    if department is None:
        department = Department(code=code, name=name)
        # its home: the broadest place it serves (as the old single place_id meant)
        rank = {lv: i for i, lv in enumerate(SERVED_LEVELS)}
        home = min(places.values(), key=lambda p: (rank[p.level], p.code), default=None)
        department.place_id = home.id if home else None
        db.add(department)
        db.flush()
    else:
        department.code, department.name = code, name
    current = set(served_place_ids(department.id))
    wanted = set(ids)
    for pid in current - wanted:
        db.delete(db.get(DepartmentPlace, (department.id, pid)))
    for pid in sorted(wanted - current):
        db.add(DepartmentPlace(department_id=department.id, place_id=pid))
    db.flush()
    _audit(
        "org.department_create" if before is None else "org.department_edit",
        "department",
        department.id,
        before,
        department_snapshot(department),
        account,
    )
    return department


def case_place_ids(case: Case) -> set[int]:
    """The case's grid, village, town and city (those it has)."""
    ids = {case.grid_id, case.village_id, case.town_id}
    city = None
    if case.grid_id is not None:
        city = db.execute(select(Place.city_id).where(Place.id == case.grid_id)).scalar_one_or_none()
    elif case.town_id is not None:
        city = db.execute(select(Place.city_id).where(Place.id == case.town_id)).scalar_one_or_none()
    else:  # a case not yet placed (a hotline call without an address): the city, when there is only one
        cities = db.execute(select(Place.id).where(Place.level == "city").limit(2)).scalars().all()
        city = cities[0] if len(cities) == 1 else None
    ids.add(city)
    return {i for i in ids if i is not None}


def departments_serving(case: Case) -> list[Department]:
    """The departments offered for dispatch: those serving the case's grid, village, town or city."""
    places = case_place_ids(case)
    if not places:
        return []
    served = select(DepartmentPlace.department_id).where(DepartmentPlace.place_id.in_(places))
    return list(db.execute(select(Department).where(Department.id.in_(served)).order_by(Department.code)).scalars())


# --- centers -------------------------------------------------------------------------------------------


def center_snapshot(center: Center) -> dict:
    return {"name": center.name, "place_id": center.place_id, "level": center.level}


def list_centers() -> list[tuple[Place, list[Center]]]:
    """(place, its centers) for every city, town and village, in hierarchy order (places without one too)."""
    places = served_place_choices()
    centers: dict[int, list[Center]] = {}
    for c in db.execute(select(Center).order_by(Center.name)).scalars():
        centers.setdefault(c.place_id, []).append(c)
    return [(p, centers.get(p.id, [])) for p in places]


def create_center(account: Account, *, place_id, name: str) -> Center:
    problems: dict[str, str] = {}
    name = _text(name, "name", "中心名称", NAME_MAX, problems)
    place = db.get(Place, _ids([place_id])[0]) if place_id not in (None, "") else None
    if place is None or place.level not in CENTER_LEVELS:
        problems["place_id"] = "所在区划（place_id）须是市、镇街或村社（网格不设综治中心）"
    elif "name" not in problems and _center_named(place.id, name):
        problems["name"] = f"中心名称（name）“{name}”在{place.name}已有"
    if problems:
        raise OrgError(problems)
    center = Center(place_id=place.id, name=name, level=place.level)
    db.add(center)
    db.flush()
    _audit("org.center_create", "center", center.id, None, center_snapshot(center), account)
    return center


def rename_center(account: Account, center: Center, name: str) -> Center:
    problems: dict[str, str] = {}
    name = _text(name, "name", "中心名称", NAME_MAX, problems)
    if "name" not in problems and name != center.name and _center_named(center.place_id, name):
        problems["name"] = f"中心名称（name）“{name}”在同一区划已有"
    if problems:
        raise OrgError(problems)
    before = center_snapshot(center)
    center.name = name
    db.flush()
    _audit("org.center_rename", "center", center.id, before, center_snapshot(center), account)
    return center


def _center_named(place_id: int, name: str) -> bool:
    stmt = select(Center.id).where(Center.place_id == place_id, Center.name == name)
    return db.execute(stmt).first() is not None


# --- police beats (警格) and 警网关联率 ----------------------------------------------------------------------


@dataclass
class LinkRate:
    linked: int
    grids: int

    @property
    def percent(self) -> float | None:
        """警网关联率 in percent (2 decimals); None when there are no grids."""
        return round(100 * self.linked / self.grids, 2) if self.grids else None


def link_rates() -> tuple[LinkRate, dict[int, LinkRate]]:
    """警网关联率 of the whole city and per town: active grids linked to a beat / active grids."""
    rows = db.execute(
        select(Place.town_id, func.count(Place.id), func.count(Place.police_beat_id))
        .where(Place.level == "grid", Place.active.is_(True))
        .group_by(Place.town_id)
    ).all()
    towns = {town: LinkRate(linked, total) for town, total, linked in rows}
    return LinkRate(sum(r.linked for r in towns.values()), sum(r.grids for r in towns.values())), towns


def beat_snapshot(beat: PoliceBeat) -> dict:
    return {"code": beat.code, "name": beat.name, "town_id": beat.town_id}


def create_beat(account: Account, *, code: str, name: str, town_id) -> PoliceBeat:
    problems: dict[str, str] = {}
    code = _code(code, "code", "警格代码", problems)
    name = _text(name, "name", "警格名称", NAME_MAX, problems)
    town = None
    if town_id not in (None, ""):
        town = db.get(Place, _ids([town_id])[0])
        if town is None or town.level != "town":
            problems["town_id"] = "所属镇街（town_id）须是一个镇街"
    if "code" not in problems and db.execute(select(PoliceBeat.id).where(PoliceBeat.code == code)).first():
        problems["code"] = f"警格代码（code）“{code}”已存在"
    if problems:
        raise OrgError(problems)
    beat = PoliceBeat(code=code, name=name, town_id=town.id if town else None)
    db.add(beat)
    db.flush()
    _audit("org.beat_create", "police_beat", beat.id, None, beat_snapshot(beat), account)
    return beat


def link_grid(account: Account, *, grid_id, beat_id) -> Place:
    """Link a grid to a police beat (beat_id empty: unlink). A beat of a town takes grids of that town only."""
    problems: dict[str, str] = {}
    grid = db.get(Place, _ids([grid_id])[0]) if grid_id not in (None, "") else None
    if grid is None or grid.level != "grid":
        problems["grid_id"] = "网格（grid_id）不存在"
    beat = None
    if beat_id not in (None, ""):
        beat = db.get(PoliceBeat, _ids([beat_id])[0])
        if beat is None:
            problems["beat_id"] = "警格（beat_id）不存在"
        elif grid is not None and "grid_id" not in problems and beat.town_id not in (None, grid.town_id):
            problems["beat_id"] = f"警格（beat_id）“{beat.name}”属于另一个镇街，不能关联本镇街的网格"
    if problems:
        raise OrgError(problems)
    before = {"grid": grid.code, "police_beat_id": grid.police_beat_id}
    grid.police_beat_id = beat.id if beat else None
    db.flush()
    after = {"grid": grid.code, "police_beat_id": grid.police_beat_id}
    _audit("org.grid_beat", "place", grid.id, before, after, account)
    return grid


# --- the link to the 12345 hotline platform ---------------------------------------------------------------


def hotline_settings() -> dict:
    """The stored link settings over the defaults."""
    row = db.get(SettingValue, HOTLINE_KEY)
    stored = row.value if row is not None and isinstance(row.value, dict) else {}
    return {k: stored.get(k, default) for k, default in HOTLINE_DEFAULTS.items()}


def save_hotline(account: Account, *, platform_name: str, work_order_url: str, api_intake: bool) -> dict:
    """Store the link to the 12345 platform: its name, the address of one work order ({no} stands for the
    work-order number) and whether work orders arrive by the API (POST /api/v1/hotline/work-orders)."""
    problems: dict[str, str] = {}
    name = _text(platform_name, "platform_name", "热线平台名称", NAME_MAX, problems, required=False)
    url = (work_order_url or "").strip()
    if url:
        if len(url) > HOTLINE_URL_MAX:
            problems["work_order_url"] = f"工单地址模板（work_order_url）不能超过 {HOTLINE_URL_MAX} 个字符"
        elif not re.match(r"^https?://[^\s/]+", url) or any(c.isspace() for c in url):
            problems["work_order_url"] = "工单地址模板（work_order_url）须以 http:// 或 https:// 开头，不含空格"
        elif "{no}" not in url:
            problems["work_order_url"] = "工单地址模板（work_order_url）须包含 {no}（代表工单号）"
    if problems:
        raise OrgError(problems)
    before = hotline_settings()
    value = {"platform_name": name, "work_order_url": url, "api_intake": bool(api_intake)}
    row = db.get(SettingValue, HOTLINE_KEY)
    if row is None:
        db.add(SettingValue(key=HOTLINE_KEY, value=value, updated_by_id=account.id))
    else:
        row.value = value
        row.updated_by_id = account.id
    db.flush()
    _audit("org.hotline", "setting", HOTLINE_KEY, before, value, account)
    return value


def work_order_link(external_ref: str | None) -> str | None:
    """The address of a 12345 work order on the hotline platform, when a pattern is configured."""
    pattern = hotline_settings()["work_order_url"]
    if not pattern or not external_ref:
        return None
    from urllib.parse import quote

    return pattern.replace("{no}", quote(external_ref, safe=""))
