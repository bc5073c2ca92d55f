"""Points (积分) from the data: tallies per gridworker by a few GROUP BY queries, priced by the rulebook.

Definitions (docs/points.md):
- the gridworkers of a place are `measures.gridworkers(place)`; a gridworker's points go to his own grid,
  its village and its town (the account's place, not the place of each case);
- sign-in: days with a SignIn row in the period;
- event: reports of the gridworker made in the period (reported_at) that are valid (`valid` is true, not a
  duplicate); a self-handled case (自办自结) counts only when it was closed on the local day it was reported;
- hazard / dispute: the same valid reports of kind hazard / dispute, on top of the event points;
- escalation bonus: cases the gridworker reported that were escalated to the town or city center and closed
  there (level town or city), closed in the period (closed_at);
- visit: Visit rows of the gridworker in the period (person or site);
- collection: per village, the increase of registered persons + houses in `BaseDataCount` from the newest
  month before the period to the newest month within it; credited to the village and its town only.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from sqlalchemy import and_, func, or_, select

from ..db import db
from ..hierarchy import in_place, places_inside
from ..measures import Period, gridworkers, month_key
from ..models import Account, BaseDataCount, Case, Place, SettingValue, SignIn, Visit
from ..timeutil import current_tz, local
from .rules import (
    DEFAULT_RULES,
    KIND_KEYS,
    POINT_KINDS,
    Tally,
    add_points,
    collection_points,
    empty_points,
    gridworker_points,
    merge_rules,
    ranked,
    top_bottom,
    total,
    validate_rules,
)

__all__ = [
    "DEFAULT_RULES",
    "KIND_KEYS",
    "SETTING_KEY",
    "collection_added",
    "compute",
    "places_inside",
    "rankings",
    "ranked",
    "rulebook",
    "save_rulebook",
    "stored_rulebook",
    "tallies",
    "top_bottom",
]

log = logging.getLogger(__name__)
SETTING_KEY = "points_rules"


# --- the rulebook ----------------------------------------------------------------------------------


def stored_rulebook() -> SettingValue | None:
    return db.get(SettingValue, SETTING_KEY)


def rulebook() -> dict[str, float]:
    """The defaults overridden by SettingValue "points_rules"; a bad stored value is ignored with a warning."""
    row = stored_rulebook()
    rules, problems = merge_rules(row.value if row is not None else None)
    if problems:
        log.warning("points rulebook: ignoring bad stored values (defaults used instead): %s", "; ".join(problems))
    return rules


def save_rulebook(data: dict, account: Account | None) -> tuple[dict[str, float], dict[str, str]]:
    """Validate and store a rulebook (the caller commits). Returns (rules, errors); nothing is stored on errors."""
    rules, errors = validate_rules(data)
    if errors:
        return rules, errors
    row = stored_rulebook()
    if row is None:
        row = SettingValue(key=SETTING_KEY, value=rules, updated_by_id=account.id if account else None)
        db.add(row)
    else:
        row.value = rules
        row.updated_by_id = account.id if account else None
    return rules, errors


# --- the places inside a place -------------------------------------------------------------------


def _gridworker_query(stmt, place: Place):
    stmt = stmt.where(Account.role == "gridworker", Account.active.is_(True))
    return in_place(stmt, Account, place)


def tallies(place: Place, period: Period, worker_ids: list[int] | None = None) -> dict[int, Tally]:
    """What each gridworker inside `place` did in `period`, keyed by account id (every gridworker present)."""
    tz = current_tz()
    begin, finish = period.bounds_utc(tz)
    if worker_ids is None:
        worker_ids = [worker.id for worker in gridworkers(place)]
    out: dict[int, Tally] = {worker_id: Tally() for worker_id in worker_ids}

    def known(worker_id: int | None) -> Tally | None:
        return out.get(worker_id) if worker_id is not None else None

    signins = _gridworker_query(
        select(SignIn.account_id, func.count(func.distinct(SignIn.day)))
        .join(Account, Account.id == SignIn.account_id)
        .where(SignIn.day >= period.start, SignIn.day <= period.end),
        place,
    ).group_by(SignIn.account_id)
    for worker_id, days in db.execute(signins):
        if (t := known(worker_id)) is not None:
            t.signin_days = int(days)

    valid = and_(Case.valid.is_(True), Case.state != "duplicate", Case.reported_at >= begin, Case.reported_at < finish)
    # ordinary reports: counted in SQL by reporter and kind
    reports = _gridworker_query(
        select(Case.reporter_id, Case.kind, func.count())
        .join(Account, Account.id == Case.reporter_id)
        .where(valid, Case.self_handled.is_(False)),
        place,
    ).group_by(Case.reporter_id, Case.kind)
    counts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for worker_id, kind, n in db.execute(reports):
        counts[worker_id][kind] += int(n)
    # self-handled reports: they count only when closed on their local day, judged in Python (time zones)
    self_handled = _gridworker_query(
        select(Case.reporter_id, Case.kind, Case.reported_at, Case.closed_at)
        .join(Account, Account.id == Case.reporter_id)
        .where(valid, Case.self_handled.is_(True), Case.state == "closed", Case.closed_at.is_not(None)),
        place,
    )
    for worker_id, kind, reported_at, closed_at in db.execute(self_handled):
        if local(reported_at, tz).date() == local(closed_at, tz).date():
            counts[worker_id][kind] += 1
    for worker_id, by_kind in counts.items():
        if (t := known(worker_id)) is not None:
            t.valid_reports = sum(by_kind.values())
            t.hazard_reports = by_kind.get("hazard", 0)
            t.dispute_reports = by_kind.get("dispute", 0)

    escalated = _gridworker_query(
        select(Case.reporter_id, func.count())
        .join(Account, Account.id == Case.reporter_id)
        .where(
            Case.state == "closed",
            Case.closed_at >= begin,
            Case.closed_at < finish,
            or_(Case.escalated_to_town.is_(True), Case.escalated_to_city.is_(True)),
            Case.level.in_(("town", "city")),
        ),
        place,
    ).group_by(Case.reporter_id)
    for worker_id, n in db.execute(escalated):
        if (t := known(worker_id)) is not None:
            t.escalated_closed = int(n)

    visits = _gridworker_query(
        select(Visit.gridworker_id, func.count())
        .join(Account, Account.id == Visit.gridworker_id)
        .where(Visit.at >= begin, Visit.at < finish, or_(Visit.person_id.is_not(None), Visit.site_id.is_not(None))),
        place,
    ).group_by(Visit.gridworker_id)
    for worker_id, n in db.execute(visits):
        if (t := known(worker_id)) is not None:
            t.visits = int(n)
    return out


def collection_added(villages: list[Place], period: Period) -> dict[int, int]:
    """Registry records (persons + houses) added per village: newest count within the period's months
    minus newest count before the period. No count before the period (no baseline) → 0."""
    if not villages:
        return {}
    first, last = month_key(period.start), month_key(period.end)
    ids = [v.id for v in villages]
    size = BaseDataCount.registered_population + BaseDataCount.houses
    newest_in = {}
    newest_before = {}
    for i in range(0, len(ids), 900):
        chunk = ids[i : i + 900]
        rows = db.execute(
            select(BaseDataCount.place_id, BaseDataCount.month, size)
            .where(BaseDataCount.place_id.in_(chunk), BaseDataCount.month <= last)
            .order_by(BaseDataCount.place_id, BaseDataCount.month)
        )
        for place_id, month, records in rows:  # ascending months: the last one seen wins
            if month >= first:
                newest_in[place_id] = int(records or 0)
            else:
                newest_before[place_id] = int(records or 0)
    return {
        vid: max(0, newest_in[vid] - newest_before[vid]) for vid in ids if vid in newest_in and vid in newest_before
    }


# --- the points -----------------------------------------------------------------------------------


def _row(place: Place, points: dict[str, float], **extra) -> dict:
    return {"id": place.id, "name": place.name, "kind": place.kind, "points": points, "total": total(points), **extra}


def compute(place: Place, period: Period, rules: dict[str, float] | None = None) -> dict:
    """Points of the gridworkers, grids, villages and towns inside `place` for `period`.

    {"kinds": [{"key", "name"}...], "rules": {...}, "gridworkers": [...], "grids": [...], "villages": [...],
     "towns": [...]}; a row is {"id", "name", "kind", "points": {kind: float}, "total": float} (gridworker rows
    add grid_id/grid_name/village_id/village_name/town_id; grids add village_id; villages add town_id)."""
    rules = rules or rulebook()
    towns = places_inside(place, "town")
    villages = places_inside(place, "village")
    grids = places_inside(place, "grid")
    names = {p.id: p.name for p in (*towns, *villages, *grids)}
    for extra in db.scalars(select(Place).where(Place.id.in_({place.id, place.town_id or place.id}))):
        names.setdefault(extra.id, extra.name)
    workers = {w.id: w for w in gridworkers(place)}
    counted = tallies(place, period, list(workers))
    grid_ids = {g.id for g in grids}

    worker_rows = []
    for worker_id, worker in workers.items():
        points = gridworker_points(counted.get(worker_id, Tally()), rules)
        grid_id = worker.place_id if worker.place_id in grid_ids else None
        worker_rows.append(
            {
                "id": worker_id,
                "name": worker.display_name,
                "kind": worker.post,
                "points": points,
                "total": total(points),
                "grid_id": grid_id,
                "grid_name": names.get(grid_id, ""),
                "village_id": worker.village_id,
                "village_name": names.get(worker.village_id, ""),
                "town_id": worker.town_id,
                "town_name": names.get(worker.town_id, ""),
            }
        )

    by_grid: dict[int, dict[str, float]] = defaultdict(empty_points)
    by_village: dict[int, dict[str, float]] = defaultdict(empty_points)
    by_town: dict[int, dict[str, float]] = defaultdict(empty_points)
    for row in worker_rows:
        if row["grid_id"] is not None:
            add_points(by_grid[row["grid_id"]], row["points"])
        if row["village_id"] is not None:
            add_points(by_village[row["village_id"]], row["points"])
        if row["town_id"] is not None:
            add_points(by_town[row["town_id"]], row["points"])

    added = collection_added(villages, period)
    for village in villages:
        extra = collection_points(added.get(village.id, 0), rules)
        if extra:
            by_village[village.id]["collection"] = round(by_village[village.id]["collection"] + extra, 2)
            if village.town_id is not None:
                by_town[village.town_id]["collection"] = round(by_town[village.town_id]["collection"] + extra, 2)

    grid_rows = [_row(g, dict(by_grid[g.id]), village_id=g.village_id, town_id=g.town_id) for g in grids]
    village_rows = [
        _row(v, dict(by_village[v.id]), town_id=v.town_id, town_name=names.get(v.town_id, "")) for v in villages
    ]
    town_rows = [_row(t, dict(by_town[t.id])) for t in towns]
    return {
        "kinds": [{"key": key, "name": name} for key, name in POINT_KINDS],
        "rules": dict(rules),
        "period": {"start": period.start.isoformat(), "end": period.end.isoformat(), "label": period.label},
        "gridworkers": worker_rows,
        "grids": grid_rows,
        "villages": village_rows,
        "towns": town_rows,
    }


def rankings(result: dict, key: str = "total", n: int = 3) -> dict:
    """Ranked tables of a `compute` result: 社区 and 村委 apart, plus towns, grids and gridworkers, each
    with the ids of the top and bottom n as sets (ties included). Used by the page and the bulletin."""
    out: dict[str, dict] = {}
    groups = {
        "community": [r for r in result["villages"] if r["kind"] == "community"],
        "village": [r for r in result["villages"] if r["kind"] != "community"],
        "towns": result["towns"],
        "grids": result["grids"],
        "gridworkers": result["gridworkers"],
    }
    for name, rows in groups.items():
        top, bottom = top_bottom(rows, key, n)
        out[name] = {"rows": ranked(rows, key), "top": {r["id"] for r in top}, "bottom": {r["id"] for r in bottom}}
    return out


def ends(group: dict, limit: int = 10) -> list[dict | int]:
    """The top rows, then the bottom rows of a `rankings` table, for a page that shows only those: at
    most `limit` of each, followed by how many more share the place when a tie makes one end longer
    (early in a month every gridworker has 0 points, and all of them are "the top three")."""
    out: list[dict | int] = []
    for end in ("top", "bottom"):
        rows = [row for row in group["rows"] if row["id"] in group[end]]
        out.extend(rows[:limit])
        if len(rows) > limit:
            out.append(len(rows) - limit)
    return out
