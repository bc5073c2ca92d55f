"""What the wall's panels show, for one viewer's place.

Where each figure comes from
----------------------------
- today's event figures (上报事件, 已办结, 办结率, 逾期事件, 安全隐患, 矛盾纠纷) and the per-grid load on the map:
  ``stats.event_figures`` — the very query the drill-down and /m/ run for the same place and day — over today's
  rows only (``ix_cases_reported_at``; a town ``ix_cases_town_reported``), so that a figure has one number on
  every screen (catalogue: commandcenter/figures/catalogue.py, page /figures/);
- today's steps (当期结案, 当期立案, 新增逾期, 当期流转): the case counters (``commandcenter.counters``: one
  HGETALL per place; no table is read); 当前逾期在办: a count of the open overdue cases (``ix_cases_state``);
- the rankings below the city: 处理及时率 (indicator 8) of this month so far from ``stats.event_children``
  (one GROUP BY over the month's rows of the place, ``ix_cases_town_reported`` / ``ix_cases_village_reported``);
- online / signed-in gridworkers and admin logins: the presence counters (sorted sets and sets in Redis),
  divided by the number of gridworker / center_admin accounts of each unit (a GROUP BY over ``accounts``,
  a table of a few thousand rows that does not grow with the events);
- the hourly chart: two indexed range queries on ``cases.reported_at`` (today so far, and the same local
  day a week ago), grouped by UTC hour in SQL and mapped to the local hour here. Their cost is that of one
  day's rows, whatever the size of the table (``ix_cases_reported_at``; a town uses ``ix_cases_town_reported``);
- the city's ranking of towns: this month's assessment so far (commandcenter.assessment), cached in Redis for
  two minutes and shared by every wall;
- the points on the map: today's open cases (the same index, at most `max_points`) and the cases with an
  open alert; the ticker: the open alerts (``ix_alerts_open``). Both are bounded by today's / the open rows.

Scope
-----
A viewer sees his own place: a city account every town, a town account its town and its villages, a village
account its grids. "Units" are the places one level below the viewer's, the rows of the bar charts and the
rankings (towns for the city, villages for a town, grids for a village).

The counters are primed after a restart by priming.py; the grid polygons come from geojson.py; the
thresholds and sizes of the panels from config.py.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, literal_column, select

from .. import counters, stats
from ..db import db, get_engine
from ..figures.catalogue import ALERT_FIGURES, alert_figure  # noqa: F401  (ALERT_FIGURES: the ticker order, for views)
from ..hierarchy import in_place
from ..measures import Period, month_key
from ..models import Account, Alert, Case, Category, Place
from ..ranking import competition_ranks
from ..redis_conn import as_text
from ..timeutil import day_bounds_utc, local
from ..vocabulary import OPEN_STATES

log = logging.getLogger(__name__)

# --- scope ---------------------------------------------------------------------------------------------

UNIT_LEVEL = {"city": "town", "town": "village", "village": "grid", "grid": "grid"}
OWN_LEVEL_NAME = {"city": "市本级", "town": "镇街本级", "village": "村社本级", "grid": "本网格"}


@dataclass(frozen=True)
class Unit:
    id: int
    name: str
    kind: str | None = None


@dataclass
class Scope:
    place_id: int
    level: str  # the viewer's place level
    name: str
    city_id: int | None
    town_id: int | None
    units: list[Unit] = field(default_factory=list)

    @property
    def unit_level(self) -> str:
        return UNIT_LEVEL[self.level]

    def cases(self, stmt, model=Case):
        """Restrict a statement on a model with town_id / village_id / grid_id to the scope
        (one city per installation: a city sees everything, as access.scope says)."""
        if self.level == "town":
            return stmt.where(model.town_id == self.place_id)
        if self.level == "village":
            return stmt.where(model.village_id == self.place_id)
        if self.level == "grid":
            return stmt.where(model.grid_id == self.place_id)
        return stmt

    def grids(self, stmt):
        """Restrict a statement on Place to the active grids of the scope."""
        stmt = stmt.where(Place.level == "grid", Place.active.is_(True))
        column = {"city": Place.city_id, "town": Place.town_id, "village": Place.village_id, "grid": Place.id}
        return stmt.where(column[self.level] == self.place_id)


def scope_of_place(place: Place) -> Scope:
    scope = Scope(place_id=place.id, level=place.level, name=place.name, city_id=place.city_id, town_id=place.town_id)
    if place.level == "grid":
        scope.units = [Unit(place.id, place.name, place.kind)]
        return scope
    rows = db.execute(
        in_place(
            select(Place.id, Place.name, Place.kind).where(Place.level == scope.unit_level, Place.active.is_(True)),
            Place,
            place,
        ).order_by(Place.code)
    ).all()
    scope.units = [Unit(pid, name, kind) for pid, name, kind in rows]
    return scope


def scope_of(account: Account) -> Scope:
    return scope_of_place(account.place)


# --- panel 4: today's counts and the hourly chart --------------------------------------------------------

# (catalogue key, counter field or None) — the label of each tile is the catalogue's name of its key. The first
# group counts today's *reports* (stats.event_figures, as the drill-down and /m/ do); the second today's *steps*
# (the counters); the last is the state right now.
COUNT_TILES = (
    ("reported", None),
    ("closed", None),
    ("closure_rate", None),
    ("overdue", None),
    ("hazard", None),
    ("dispute", None),
    ("closures", "closed"),
    ("registrations", "registered"),
    ("overdue_new", "overdue"),
    ("escalations_town", "escalated:town"),
    ("escalations_city", "escalated:city"),
    ("overdue_open", None),
)


def day_period(now: datetime, tz: str) -> Period:
    today = local(now, tz).date()
    return Period(today, today, "day")


def overdue_open(scope: Scope) -> int:
    """当前逾期在办: open cases of the scope marked overdue, whenever reported."""
    return db.scalar(
        scope.cases(select(func.count(Case.id)).where(Case.state.in_(OPEN_STATES), Case.overdue.is_(True)))
    )


def today_counts(r, scope: Scope, now: datetime, tz: str) -> dict:
    """The tiles, by catalogue key: today's reports and what became of them from ``stats.event_figures`` (the
    drill-down's and /m/'s function: duplicates left out, closure rate = closed of today's reports / today's
    reports), today's steps from the counters, and the open overdue cases now."""
    period = day_period(now, tz)
    fig = stats.event_figures(db.get(Place, scope.place_id), period)
    raw = counters.case_counts(r, scope.place_id, day=period.start, tz=tz)
    out = {
        "reported": fig.reported,
        "closed": fig.closed,
        "closure_rate": fig.closure_rate,
        "overdue": fig.overdue,
        "hazard": fig.by_kind.get("hazard", 0),
        "dispute": fig.by_kind.get("dispute", 0),
        "overdue_open": overdue_open(scope),
    }
    out.update({key: raw[fld] for key, fld in COUNT_TILES if fld})
    return out


def _hour_bucket():
    """(SQL expression of the UTC hour of reported_at, parser of its value). A literal, not a bound
    parameter, so that GROUP BY repeats exactly the selected expression."""
    if get_engine().dialect.name == "postgresql":
        return func.date_trunc(literal_column("'hour'"), Case.reported_at), lambda v: v
    return (
        func.strftime(literal_column("'%Y-%m-%d %H'"), Case.reported_at),
        lambda v: datetime.strptime(v, "%Y-%m-%d %H"),
    )


def _reports_by_local_hour(scope: Scope, start: datetime, end: datetime, tz: str) -> list[int]:
    """上报事件 per local hour (duplicates left out, as everywhere: the hours add up to the 今日上报 tile)."""
    bucket, parse = _hour_bucket()
    stmt = scope.cases(
        select(bucket, func.count()).where(Case.reported_at >= start, Case.reported_at < end, Case.state != "duplicate")
    )
    hours = [0] * 24
    for value, n in db.execute(stmt.group_by(bucket)):
        hours[local(parse(value), tz).hour] += n
    return hours


def hourly_reports(scope: Scope, now: datetime, tz: str) -> dict:
    """Reports per local hour today (up to now) and on the same weekday a week ago (the whole day)."""
    today = local(now, tz).date()
    start, _ = day_bounds_utc(today, tz)
    week_start, week_end = day_bounds_utc(today - timedelta(days=7), tz)
    current_hour = local(now, tz).hour
    today_hours = _reports_by_local_hour(scope, start, now + timedelta(seconds=1), tz)[: current_hour + 1]
    return {
        "today": today_hours,
        "last_week": _reports_by_local_hour(scope, week_start, week_end, tz),
        "hour": current_hour,
        "last_week_day": (today - timedelta(days=7)).isoformat(),
    }


# --- panels 2 and 3: attendance and admin logins -----------------------------------------------------------


@dataclass
class Presence:
    unit: Unit
    workers: int = 0  # active gridworker accounts
    online: int = 0  # of them, with a heartbeat in the window
    attended: int = 0  # signed in (签到) today
    admins: int = 0  # active center_admin accounts
    logged_in: int = 0  # of them, logged in this month

    @property
    def attendance_rate(self) -> float | None:
        return self.attended / self.workers if self.workers else None

    @property
    def online_rate(self) -> float | None:
        return self.online / self.workers if self.workers else None

    @property
    def login_rate(self) -> float | None:
        return self.logged_in / self.admins if self.admins else None


def _role_counts(role: str, column, where) -> dict:
    stmt = select(column, func.count()).where(Account.role == role, Account.active.is_(True), *where).group_by(column)
    return dict(db.execute(stmt).all())


def presence(r, scope: Scope, now: datetime, tz: str, window_s: int = 300) -> tuple[list[Presence], Presence]:
    """Per unit and in total: gridworkers online now and signed in today, admin accounts logged in this
    month (counters), over the number of such accounts (accounts table)."""
    today = local(now, tz).date()
    total = Presence(Unit(scope.place_id, "合计"))
    if scope.level == "city":
        ids = [u.id for u in scope.units]
        live = counters.presence_many(r, [*ids, None], now, today, today, window_s=window_s)
        workers = _role_counts("gridworker", Account.town_id, ())
        admins = _role_counts("center_admin", Account.town_id, ())
        rows = []
        for unit in scope.units:
            rows.append(
                Presence(
                    unit,
                    workers=workers.get(unit.id, 0),
                    online=live[unit.id]["online"],
                    attended=live[unit.id]["attended"],
                    admins=admins.get(unit.id, 0),
                    logged_in=live[unit.id]["logged_in"],
                )
            )
        total.workers, total.admins = sum(workers.values()), sum(admins.values())
        total.online, total.attended, total.logged_in = (live[None][k] for k in ("online", "attended", "logged_in"))
        return rows, total
    # below the city the counters are kept by town: read the town's members and sort them into units
    town = scope.town_id
    d, m = today.strftime("%Y%m%d"), today.strftime("%Y%m")
    online_ids = set(counters.online_accounts(r, town, now, window_s=window_s))
    with r.pipeline(transaction=False) as pipe:  # key formats: see the counters module docstring
        pipe.smembers(f"cc:att:{d}:{town}")
        pipe.smembers(f"cc:login:{m}:{town}")
        attended_ids, login_ids = ({int(as_text(x)) for x in members} for members in pipe.execute())
    where = [Account.role.in_(("gridworker", "center_admin")), Account.active.is_(True), Account.town_id == town]
    if scope.level == "village":
        where.append(Account.village_id == scope.place_id)
    elif scope.level == "grid":
        where.append(Account.place_id == scope.place_id)
    stmt = select(Account.id, Account.role, Account.village_id, Account.place_id).where(*where)
    by_unit = {u.id: Presence(u) for u in scope.units}
    own = Presence(Unit(scope.place_id, OWN_LEVEL_NAME[scope.level]))
    for account_id, role, village_id, place_id in db.execute(stmt):
        unit_id = village_id if scope.level == "town" else place_id
        row = by_unit.get(unit_id, own)
        for target in (row, total):
            if role == "gridworker":
                target.workers += 1
                target.online += account_id in online_ids
                target.attended += account_id in attended_ids
            else:
                target.admins += 1
                target.logged_in += account_id in login_ids
    rows = list(by_unit.values())
    if own.workers or own.admins:
        rows.append(own)
    return rows, total


# --- panel 6: rankings --------------------------------------------------------------------------------------

ASSESSMENT_CACHE_S = 120  # the city's ranking is this month's assessment so far, recomputed at most this often


def assessment_so_far(r, city_id: int, now: datetime, tz: str) -> dict:
    """This month's assessment table so far (commandcenter.assessment.service.month_table), kept in Redis for
    ASSESSMENT_CACHE_S so that every wall of the city shares one computation (it reads a month of rows)."""
    from ..assessment.service import month_table

    today = local(now, tz).date()
    month = month_key(today)
    key = f"cc:wall:assessment:{city_id}:{month}"
    cached = r.get(key)
    if cached is not None:
        return json.loads(cached)
    table = month_table(db.get(Place, city_id), month)
    r.set(key, json.dumps(table, ensure_ascii=False, default=str), ex=ASSESSMENT_CACHE_S)
    return table


def rankings(r, scope: Scope, now: datetime, tz: str) -> list[dict]:
    """The city's wall ranks its towns by the total of this month's ten-indicator assessment so far
    (domain.md §4; shared ranks 1, 1, 3), naming each town's weakest indicators.

    Below the city the units are villages or grids, which the assessment does not score: they are ranked by
    处理及时率 of this month so far, indicator 8's own definition (``stats.event_children``: of the cases
    *reported* this month, duplicates and invalid ones left out, those not overdue / all of them) — the number
    the drill-down shows for the unit and the month — as a percentage rounded to two decimals before ranking.
    Villages: 社区 and 村委 apart."""
    if scope.level == "city":
        table = assessment_so_far(r, scope.place_id, now, tz)
        names = {ind["key"]: ind["name"] for ind in table.get("indicators", [])}
        units = {u.id: u for u in scope.units}
        rows = [
            {
                "unit": units.get(row["town_id"]) or Unit(row["town_id"], row["town_name"]),
                "rank": row["rank"],
                "total": row["total"],
                "weakest": [names.get(k, k) for k in row.get("weakest", [])],
            }
            for row in table.get("rows", [])
        ]
        rows.sort(key=lambda row: (row["rank"], row["unit"].name))
        return [{"group": "", "measure": "assessment", "rows": rows}]
    today = local(now, tz).date()
    month = Period(today.replace(day=1), today, "month")
    place = db.get(Place, scope.place_id)
    if scope.level == "grid":
        figs = {place.id: stats.event_figures(place, month)}
    else:
        figs = {fig.place_id: fig for fig in stats.event_children(place, month)}
    groups: dict[str, list[dict]] = {}
    for unit in scope.units:
        fig = figs.get(unit.id)
        if fig is None:
            fig = stats.Figures(place_id=unit.id, place_name=unit.name, level=scope.unit_level, period=month)
        rate = round(100 * fig.timeliness, 2) if fig.timeliness is not None else None
        group = unit.kind if scope.unit_level == "village" and unit.kind in ("community", "village") else ""
        groups.setdefault(group, []).append(
            {"unit": unit, "assessed": fig.assessed, "overdue": fig.overdue, "rate": rate}
        )
    out = []
    for group in sorted(
        groups, key=lambda g: ("", "community", "village").index(g) if g in ("", "community", "village") else 9
    ):
        rows = groups[group]
        for row, rank in zip(rows, competition_ranks([row["rate"] for row in rows]), strict=True):
            row["rank"] = rank
        rows.sort(key=lambda row: (row["rank"] is None, row["rank"] or 0, row["unit"].name))
        out.append({"group": group, "measure": "timeliness", "rows": rows})
    return out


# --- panel 5: the alert ticker -------------------------------------------------------------------------------


def alert_ticker(scope: Scope, now: datetime, rows: int = 10) -> dict:
    """Open alerts of the scope: those still before their limit first (least time left first), then those
    past it (most recently past first). Also the newest raised, and the counts by catalogue key (by kind, an
    escalation alert past its limit counted as 逾期未流转 apart from those still before it)."""
    base = scope.cases(
        select(
            Alert.id,
            Alert.kind,
            Alert.due_at,
            Alert.raised_at,
            Alert.case_id,
            Case.number,
            Case.address,
            Case.town_id,
            Case.grid_id,
            Category.name,
        )
        .join(Case, Case.id == Alert.case_id)
        .join(Category, Category.id == Case.category_id)
        .where(Alert.cleared_at.is_(None))
    )
    keys = ("id", "kind", "due_at", "raised_at", "case_id", "number", "address", "town_id", "grid_id", "category")
    upcoming = db.execute(base.where(Alert.due_at >= now).order_by(Alert.due_at, Alert.id).limit(rows)).all()
    past = db.execute(base.where(Alert.due_at < now).order_by(Alert.due_at.desc(), Alert.id).limit(rows)).all()
    items = [dict(zip(keys, row, strict=True)) for row in [*upcoming, *past][:rows]]
    newest = db.execute(base.order_by(Alert.raised_at.desc(), Alert.id.desc()).limit(1)).first()
    past_limit = Alert.due_at < now
    by_kind: dict[str, int] = {}
    for kind, late, n in db.execute(
        scope.cases(
            select(Alert.kind, past_limit, func.count())
            .join(Case, Case.id == Alert.case_id)
            .where(Alert.cleared_at.is_(None))
        ).group_by(Alert.kind, past_limit)
    ):
        key = alert_figure(kind, late)
        by_kind[key] = by_kind.get(key, 0) + n
    for item in items:
        item["figure"] = alert_figure(item["kind"], item["due_at"] < now)
    if newest:
        newest = dict(zip(keys, newest, strict=True))
        newest["figure"] = alert_figure(newest["kind"], newest["due_at"] < now)
    return {
        "items": items,
        "newest": newest,
        "by_kind": by_kind,
        "total": sum(by_kind.values()),
    }


# --- panel 1: the map ----------------------------------------------------------------------------------------


def grid_loads(scope: Scope, grid_ids: list[int], day, tz: str) -> list[int]:
    """网格今日上报量: 上报事件 of `day` per grid (duplicates left out, as the 今日上报 tile; the loads add up to
    it), one GROUP BY over the day's rows."""
    start, end = day_bounds_utc(day, tz)
    by_grid = dict(
        db.execute(
            scope.cases(
                select(Case.grid_id, func.count()).where(
                    Case.reported_at >= start, Case.reported_at < end, Case.state != "duplicate"
                )
            ).group_by(Case.grid_id)
        ).all()
    )
    return [int(by_grid.get(gid, 0)) for gid in grid_ids]


def map_data(r, scope: Scope, now: datetime, tz: str, max_points: int = 5000) -> dict:
    """Grid loads (today's reports per grid, ``grid_loads``), grids with an open alert, and the points:
    today's open cases plus every case with an open alert, as compact rows
    [id, lat, lon, kind, flag, number, category, grid_id] where flag is 2 = alert, 1 = overdue, 0 = neither."""
    today = local(now, tz).date()
    grid_ids = list(db.execute(scope.grids(select(Place.id)).order_by(Place.id)).scalars())
    loads = grid_loads(scope, grid_ids, today, tz)
    alert_rows = db.execute(
        scope.cases(
            select(Alert.case_id, Case.grid_id).join(Case, Case.id == Alert.case_id).where(Alert.cleared_at.is_(None))
        )
    ).all()
    alert_cases = {case_id for case_id, _ in alert_rows}
    alert_grids = sorted({grid_id for _, grid_id in alert_rows if grid_id is not None})
    columns = (Case.id, Case.lat, Case.lon, Case.kind, Case.overdue, Case.number, Category.name, Case.grid_id)
    start, end = day_bounds_utc(today, tz)
    today_open = db.execute(
        scope.cases(
            select(*columns)
            .join(Category, Category.id == Case.category_id)
            .where(
                Case.reported_at >= start,
                Case.reported_at < end,
                Case.state.in_(OPEN_STATES),
                Case.lat.is_not(None),
                Case.lon.is_not(None),
            )
        )
        .order_by(Case.reported_at.desc(), Case.id.desc())
        .limit(max_points)
    ).all()
    seen = {row[0] for row in today_open}
    missing = sorted(alert_cases - seen)[:max_points]
    alerting = (
        db.execute(
            select(*columns)
            .join(Category, Category.id == Case.category_id)
            .where(Case.id.in_(missing), Case.lat.is_not(None))
        ).all()
        if missing
        else []
    )
    points = []
    for cid, lat, lon, kind, overdue, number, category, grid_id in [*reversed(today_open), *alerting]:
        flag = 2 if cid in alert_cases else 1 if overdue else 0
        points.append([cid, round(lat, 6), round(lon, 6), kind, flag, number, category, grid_id])
    return {
        "grids": [str(g) for g in grid_ids],
        "load": loads,
        "alert_grids": [str(g) for g in alert_grids],
        "points": points[-max_points:],
        "day": today.isoformat(),
        "max_points": max_points,
        "reported_today": sum(loads),
        "open_today": len(today_open),
        "alerting": len(alert_cases),
    }
