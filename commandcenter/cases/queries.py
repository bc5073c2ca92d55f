"""Read side of the case screens: what an account may see, filtered, paged and shaped for a page.

Nothing here changes a case; the steps live in loop.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from sqlalchemy import Select, and_, false, func, or_, select
from sqlalchemy.orm import joinedload, selectinload

from ..access import scope
from ..categories import descendants
from ..db import db
from ..hierarchy import place_at, place_names, places_inside
from ..models import CASE_LEVELS, Account, Case, CaseStep, Category, Department, Place
from ..timeutil import current_tz, day_bounds_utc, utcnow
from ..vocabulary import RUNNING_STATES
from .loop import LEVEL_RANK, may_see, probable_duplicates

PAGE_SIZE = 50
QUEUE_LIMIT = 200


# --- who sees what -------------------------------------------------------------------------------


def visible_cases(account: Account) -> Select:
    """select(Case) restricted to the account: its place, or for a department the cases sent to it."""
    stmt = select(Case)
    if account.role == "department":
        if account.department_id is None:
            return stmt.where(false())
        return stmt.where(Case.department_id == account.department_id)
    if account.role in ("gridworker", "volunteer") and account.place.level == "grid":
        # his own grid, and what he reported next door (as loop.may_see allows)
        return stmt.where(
            or_(Case.grid_id == account.place_id, Case.reporter_id == account.id, Case.assignee_id == account.id)
        )
    return scope(stmt, account, Case)


def get_visible_case(account: Account, case_id: int, *, full: bool = False) -> Case | None:
    """The case, or None when it does not exist or lies outside the account's jurisdiction."""
    options = [joinedload(Case.category), joinedload(Case.grid)]
    if full:
        options += [
            selectinload(Case.steps).joinedload(CaseStep.actor),
            selectinload(Case.photos),
            joinedload(Case.reporter),
        ]
    case = db.execute(select(Case).options(*options).where(Case.id == case_id)).unique().scalar_one_or_none()
    if case is None or not may_see(account, case):
        return None
    return case


# --- the list ------------------------------------------------------------------------------------


def overdue_clause(now: datetime):
    """逾期: marked by the sweep, or already past the handling limit and not paused."""
    return or_(
        Case.overdue.is_(True),
        and_(
            Case.state.in_(RUNNING_STATES),
            Case.paused_at.is_(None),
            Case.handle_due.is_not(None),
            Case.handle_due < now,
        ),
    )


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def filtered_cases(account: Account, f, now: datetime | None = None) -> Select:
    """The visible cases with the list filters applied (f: forms.CaseFilters)."""
    now = now or utcnow()
    stmt = visible_cases(account)
    if f.state:
        stmt = stmt.where(Case.state == f.state)
    if f.kind:
        stmt = stmt.where(Case.kind == f.kind)
    if f.category_id:
        stmt = stmt.where(Case.category_id.in_(descendants(f.category_id)))
    if f.source:
        stmt = stmt.where(Case.source == f.source)
    if f.level:
        stmt = stmt.where(Case.level == f.level)
    if f.town_id:
        stmt = stmt.where(Case.town_id == f.town_id)
    if f.village_id:
        stmt = stmt.where(Case.village_id == f.village_id)
    if f.overdue:
        stmt = stmt.where(overdue_clause(now))
    if f.date_from:
        stmt = stmt.where(Case.reported_at >= day_bounds_utc(f.date_from, current_tz())[0])
    if f.date_to:
        stmt = stmt.where(Case.reported_at < day_bounds_utc(f.date_to, current_tz())[1])
    if f.q:
        pattern = _like(f.q)
        stmt = stmt.where(
            or_(
                Case.number.ilike(pattern, escape="\\"),
                Case.address.ilike(pattern, escape="\\"),
                Case.external_ref.ilike(pattern, escape="\\"),
            )
        )
    return stmt


@dataclass
class Page:
    rows: list[Case]
    total: int
    page: int
    pages: int


def list_cases(account: Account, f, now: datetime | None = None) -> Page:
    stmt = filtered_cases(account, f, now)
    total = db.execute(stmt.with_only_columns(func.count(Case.id)).order_by(None)).scalar_one()
    pages = max(1, math.ceil(total / PAGE_SIZE))
    page = min(max(1, f.page), pages)
    rows = (
        db.execute(
            stmt.options(joinedload(Case.category), joinedload(Case.grid))
            .order_by(Case.reported_at.desc(), Case.id.desc())
            .offset((page - 1) * PAGE_SIZE)
            .limit(PAGE_SIZE)
        )
        .scalars()
        .all()
    )
    return Page(rows=list(rows), total=total, page=page, pages=pages)


def category_paths() -> dict[int, str]:
    """id → '大类 / 小类 / 细项', for the 类别 column (the tree is small)."""
    rows = {c.id: c for c in db.execute(select(Category)).scalars()}

    def path(c: Category) -> str:
        names = []
        while c is not None and len(names) < 4:
            names.append(c.name)
            c = rows.get(c.parent_id) if c.parent_id else None
        return " / ".join(reversed(names))

    return {cid: path(c) for cid, c in rows.items()}


def category_tree(active_only: bool = True) -> list[tuple[Category, list[tuple[Category, list[Category]]]]]:
    """[(big class, [(small class, [items])])] ordered by code, for the selects."""
    stmt = select(Category).order_by(Category.code)
    if active_only:
        stmt = stmt.where(Category.active.is_(True))
    cats = db.execute(stmt).scalars().all()
    by_parent: dict[int | None, list[Category]] = {}
    for c in cats:
        by_parent.setdefault(c.parent_id, []).append(c)
    return [
        (big, [(small, by_parent.get(small.id, [])) for small in by_parent.get(big.id, [])])
        for big in by_parent.get(None, [])
        if big.depth == 1
    ]


def places_within(account: Account, level: str) -> list[Place]:
    """Towns, villages or grids inside the account's own place (for the selects)."""
    return places_inside(account.place, level)


def place_in_jurisdiction(account: Account, place_id: int, level: str) -> Place | None:
    return place_at(place_id, level, account.place)


# --- deadlines as the screens show them ------------------------------------------------------------


def current_due(case: Case) -> datetime | None:
    """The limit that runs now: the parking hour, the dispatch limit, or the handling limit."""
    if case.state in ("reported", "registered") and case.transfer_due and case.transferred_at is None:
        return case.transfer_due
    if case.state == "registered":
        return case.dispatch_due or case.handle_due
    if case.state in RUNNING_STATES:
        return case.handle_due
    return None


def is_overdue(case: Case, now: datetime | None = None) -> bool:
    now = now or utcnow()
    return bool(
        case.overdue
        or (
            case.state in RUNNING_STATES
            and case.paused_at is None
            and case.handle_due is not None
            and case.handle_due < now
        )
    )


def minutes_left(due: datetime | None, now: datetime | None = None) -> int | None:
    if due is None:
        return None
    return math.floor(((due - (now or utcnow())).total_seconds()) / 60)


# --- the operator's queue ------------------------------------------------------------------------


def _actionable_levels(account: Account) -> tuple[str, ...]:
    """A center works on cases at or below its own level (loop.may_act_on)."""
    home_level = account.place.level
    if account.role in ("center_admin", "operator") and home_level in LEVEL_RANK:
        return tuple(lv for lv in CASE_LEVELS if LEVEL_RANK[lv] <= LEVEL_RANK[home_level])
    return CASE_LEVELS


@dataclass
class Queue:
    reported: list[Case]
    reported_total: int
    registered: list[Case]
    registered_total: int


def register_queue(account: Account) -> Queue:
    """待立案 (parking cases first, by their hour; then oldest first) and 已立案待派遣."""
    base = visible_cases(account).where(Case.level.in_(_actionable_levels(account)))
    opts = (joinedload(Case.category), joinedload(Case.grid))
    parking_first = and_(Case.transfer_due.is_not(None), Case.transferred_at.is_(None))
    reported_q = base.where(Case.state == "reported")
    reported = (
        db.execute(
            reported_q.options(*opts)
            .order_by(parking_first.desc(), Case.transfer_due.asc().nulls_last(), Case.reported_at, Case.id)
            .limit(QUEUE_LIMIT)
        )
        .scalars()
        .all()
    )
    registered_q = base.where(Case.state == "registered")
    registered = (
        db.execute(
            registered_q.options(*opts)
            .order_by(parking_first.desc(), Case.transfer_due.asc().nulls_last(), Case.registered_at, Case.id)
            .limit(QUEUE_LIMIT)
        )
        .scalars()
        .all()
    )
    count = lambda q: db.execute(q.with_only_columns(func.count(Case.id)).order_by(None)).scalar_one()  # noqa: E731
    return Queue(list(reported), count(reported_q), list(registered), count(registered_q))


# --- the case page -------------------------------------------------------------------------------


def departments_for(case: Case) -> list[Department]:
    """Departments offered for dispatch: those serving the case's grid, village, town or city through
    department_places (a department without rows serves nothing); the rule is org_admin.departments_serving."""
    from ..org_admin import departments_serving

    return departments_serving(case)


def visible_duplicates(account: Account, case: Case) -> list[tuple[Case, float]]:
    """Probable duplicates the account may see (never reveal another town's cases)."""
    if case.state != "reported":
        return []
    settings = current_app.config["SETTINGS"]
    return [
        (other, d)
        for other, d in probable_duplicates(case, settings.duplicate_radius_m, settings.duplicate_window_hours)
        if may_see(account, other)
    ]


def find_case_by_number(number: str) -> Case | None:
    return db.execute(select(Case).where(Case.number == number)).scalar_one_or_none()


def case_places(case: Case) -> dict[str, str | None]:
    names = place_names((case.town_id, case.village_id, case.grid_id))
    return {"town": names.get(case.town_id), "village": names.get(case.village_id), "grid": names.get(case.grid_id)}


def map_figure(
    grid: Place | None, lat: float | None, lon: float | None, width: int = 360, height: int = 260, pad: int = 16
) -> dict | None:
    """An SVG drawing of the grid polygon (GeoJSON, WGS-84 lon/lat) and the case point: no tiles."""
    from ..geo import frame_for, rings_of

    rings = rings_of(grid.geometry if grid is not None else None)
    point = (float(lon), float(lat)) if lat is not None and lon is not None else None
    every = [p for ring in rings for p in ring] + ([point] if point else [])
    frame = frame_for(every, width, height, pad)
    if frame is None:
        return None
    # a scale bar: the width of the drawing in metres, rounded
    metres = (max(p[0] for p in every) - frame.lon0) * frame.kx * 111_320
    return {
        "width": width,
        "height": height,
        "path": frame.path(rings),
        "point": frame.xy(*point) if point else None,
        "span_m": int(round(metres, -1)) if metres else None,
    }
