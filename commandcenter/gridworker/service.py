"""What the gridworker's phone shows: today's sign-in and patrol, his cases, his persons and sites and their due dates.

Reads only: every write of the phone goes through the JSON API (the same domain functions, the same
idempotency keys), see ``static/js/gridworker.js``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import and_, func, or_, select

from ..db import db
from ..models import Account, Case, Category, Patrol, Person, Place, SignIn, Site, Visit
from ..persons.visibility import visible_persons
from ..timeutil import current_tz, day_bounds_utc, local, local_today, utcnow

PATROL_GOAL_MINUTES = 60  # 每个工作日至少巡查一小时 (domain §3)
DUE_SOON_DAYS = 2  # a visit due within this many days is "falling due" (到期提醒)
CASES_SHOWN = 30


@dataclass
class Today:
    day: date
    signed_in_at: datetime | None
    patrol_minutes: float
    patrols: int

    @property
    def patrol_percent(self) -> int:
        return min(100, int(self.patrol_minutes * 100 // PATROL_GOAL_MINUTES))


def today_of(account: Account, now: datetime | None = None) -> Today:
    """Today's sign-in and the minutes of the patrols recorded today (the running one is added by the phone)."""
    now = now or utcnow()
    tz = current_tz()
    day = local_today(tz, now)
    start, end = day_bounds_utc(day, tz)
    sign_in = db.execute(select(SignIn).where(SignIn.account_id == account.id, SignIn.day == day)).scalar_one_or_none()
    rows = db.execute(
        select(Patrol.started_at, Patrol.ended_at).where(
            Patrol.gridworker_id == account.id,
            Patrol.ended_at.is_not(None),
            Patrol.ended_at > start,
            Patrol.started_at < end,
        )
    ).all()
    minutes = sum((min(e, end) - max(s, start)).total_seconds() / 60 for s, e in rows)
    return Today(
        day=day, signed_in_at=sign_in.at if sign_in else None, patrol_minutes=round(minutes, 1), patrols=len(rows)
    )


# --- my cases ---------------------------------------------------------------------------------------


@dataclass
class MyCases:
    rework: list[Case]  # 返工: sent back to me (the handler) by verification
    tasks: list[Case]  # 待办: dispatched to me, not yet fed back (rework ones excluded)
    awaiting_check: list[Case]  # 待核查: my reports whose handler fed back; the center verifies them
    reported: list[Case]  # my latest reports

    @property
    def count(self) -> int:
        return len(self.rework) + len(self.tasks)


def my_cases(account: Account) -> MyCases:
    """A gridworker checks no case himself (``case.verify`` is the center's): "waiting for my check" is read as
    his own reports in 处理反馈, which the center verifies on the ground he reported."""
    mine = Case.assignee_id == account.id
    open_ = Case.state.in_(("dispatched", "handling"))

    def rows(*where):
        return list(db.execute(select(Case).where(*where).order_by(Case.id.desc()).limit(CASES_SHOWN)).scalars())

    return MyCases(
        rework=rows(mine, Case.state == "handling", Case.rework_count > 0),
        tasks=rows(mine, open_, or_(Case.state == "dispatched", Case.rework_count == 0)),
        awaiting_check=rows(Case.reporter_id == account.id, Case.state == "feedback"),
        reported=rows(Case.reporter_id == account.id),
    )


# --- persons to visit --------------------------------------------------------------------------------


def period_bounds(frequency: str, day: date) -> tuple[date, date]:
    """The visit period (first and last day) that contains `day`: ISO week, calendar month or quarter."""
    if frequency == "weekly":
        first = day - timedelta(days=day.weekday())
        return first, first + timedelta(days=6)
    if frequency == "quarterly":
        month = 3 * ((day.month - 1) // 3) + 1
        first = date(day.year, month, 1)
        months = 3
    else:
        first = date(day.year, day.month, 1)
        months = 1
    year, month = divmod(first.month - 1 + months, 12)
    return first, date(first.year + year, month + 1, 1) - timedelta(days=1)


@dataclass
class VisitDue:
    person: Person
    last_visit: datetime | None
    due: date  # the last day of the period in which the next visit must be made
    done: bool  # visited in the current period

    def days_left(self, today: date) -> int:
        return (self.due - today).days


def my_persons(account: Account, today: date | None = None) -> list[VisitDue]:
    """The persons this gridworker visits (assigned to him, or unassigned in his grid), each with its due date:
    the end of the current period (每周 / 每月 / 每季度) if not yet visited in it, else the end of the next one.
    The visit rate counts distinct persons visited per period, so this is the date that counts."""
    today = today or local_today(current_tz())
    stmt = visible_persons(account).where(
        or_(
            Person.assigned_to_id == account.id,
            and_(Person.assigned_to_id.is_(None), Person.grid_id == account.place_id),
        )
    )
    persons = list(db.execute(stmt.order_by(Person.id)).scalars())
    last = _last_visits(Visit.person_id, [p.id for p in persons])
    tz = current_tz()
    out = []
    for person in persons:
        last_at = last.get(person.id)
        due, done = _due(person.visit_frequency, today, last_at, tz)
        out.append(VisitDue(person=person, last_visit=last_at, due=due, done=done))
    out.sort(key=lambda v: (v.done, v.due, v.person.id))
    return out


def visits_falling_due(account: Account, today: date | None = None) -> list[VisitDue]:
    today = today or local_today(current_tz())
    return [v for v in my_persons(account, today) if not v.done and v.days_left(today) <= DUE_SOON_DAYS]


def _last_visits(column, ids: list[int]) -> dict[int, datetime]:
    """The last visit of each person (column Visit.person_id) or site (Visit.site_id) of `ids`."""
    if not ids:
        return {}
    return dict(db.execute(select(column, func.max(Visit.at)).where(column.in_(ids)).group_by(column)).all())


def _due(frequency: str, today: date, last_at: datetime | None, tz) -> tuple[date, bool]:
    """(due, done): the end of the current period if not yet visited in it, else the end of the next one."""
    first, end = period_bounds(frequency, today)
    done = last_at is not None and local(last_at, tz).date() >= first
    return (period_bounds(frequency, end + timedelta(days=1))[1] if done else end), done


# --- sites to visit (重点场所, 群租房, 出租屋) ------------------------------------------------------------


@dataclass
class SiteDue:
    site: Site
    last_visit: datetime | None
    due: date
    done: bool

    def days_left(self, today: date) -> int:
        return (self.due - today).days


def my_sites(account: Account, today: date | None = None) -> list[SiteDue]:
    """The active sites this gridworker visits (assigned to him, or unassigned in his grid), each with its due
    date, counted like the persons' (the visit rate counts distinct sites visited per period of their frequency,
    ``stats.visit_windows``). A visit to one of them goes through ``fieldwork.record_visit`` with its site_id."""
    today = today or local_today(current_tz())
    stmt = select(Site).where(
        Site.active.is_(True),
        or_(
            Site.assigned_to_id == account.id,
            and_(Site.assigned_to_id.is_(None), Site.grid_id == account.place_id),
        ),
    )
    sites = list(db.execute(stmt.order_by(Site.id)).scalars())
    last = _last_visits(Visit.site_id, [s.id for s in sites])
    tz = current_tz()
    out = []
    for site in sites:
        due, done = _due(site.visit_frequency, today, last.get(site.id), tz)
        out.append(SiteDue(site=site, last_visit=last.get(site.id), due=due, done=done))
    out.sort(key=lambda v: (v.done, v.due, v.site.id))
    return out


def sites_falling_due(account: Account, today: date | None = None) -> list[SiteDue]:
    today = today or local_today(current_tz())
    return [v for v in my_sites(account, today) if not v.done and v.days_left(today) <= DUE_SOON_DAYS]


# --- the report form --------------------------------------------------------------------------------


def leaf_categories() -> list[Category]:
    """The categories a report may carry (small classes and items, not big classes), with their path."""
    rows = list(db.execute(select(Category).where(Category.active.is_(True)).order_by(Category.code)).scalars())
    return [c for c in rows if c.depth > 1]


def category_paths(categories: list[Category]) -> dict[int, str]:
    parents = {
        c.id: c.name
        for c in db.execute(select(Category).where(Category.id.in_({c.parent_id for c in categories}))).scalars()
    }
    return {c.id: f"{parents.get(c.parent_id, '')} / {c.name}".strip(" /") for c in categories}


@dataclass
class GridMap:
    """The grid polygon in an SVG whose user units are (lon·cos φ, −lat): the phone inverts a tap exactly."""

    path: str
    view_box: str
    kx: float
    center: tuple[float, float] | None  # (lat, lon)


def grid_map(place: Place) -> GridMap | None:
    from ..geo import rings_of

    rings = rings_of(place.geometry)
    if not rings:
        return None
    lats = [p[1] for r in rings for p in r]
    lons = [p[0] for r in rings for p in r]
    kx = math.cos(math.radians((min(lats) + max(lats)) / 2))
    x0, x1 = min(lons) * kx, max(lons) * kx
    y0, y1 = -max(lats), -min(lats)
    pad = max(x1 - x0, y1 - y0) * 0.05
    path = " ".join("M" + " L".join(f"{lon * kx:.7f},{-lat:.7f}" for lon, lat in r) + " Z" for r in rings)
    center = (place.center_lat, place.center_lon) if place.center_lat is not None else None
    return GridMap(
        path=path,
        view_box=f"{x0 - pad:.7f} {y0 - pad:.7f} {x1 - x0 + 2 * pad:.7f} {y1 - y0 + 2 * pad:.7f}",
        kx=kx,
        center=center,
    )
