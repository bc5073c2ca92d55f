"""The monthly assessment from the data: figures of every town of the city, the table, closing a month.

What is counted (the definitions behind rules.TownFigures):
- **Events reported in the month** (the counted set): cases whose ``reported_at`` falls in the local
  calendar month (``CC_TIMEZONE``), except those marked duplicate (state ``duplicate``) or rejected as
  invalid (state ``rejected``, which includes late 乱停车 reports voided automatically). A case counts in
  the month it was reported, once, whatever happens to it later. Indicators 1, 2–7 and 8 all count this
  set: indicator 1 the set's cases lying in the town (``cases.town_id``); 8 the same cases and, among
  them, those with ``cases.overdue`` set.
- **Gridworkers of the town**: ``measures.gridworkers`` (active accounts with role gridworker inside the
  town), as they are when the table is computed. Indicators 2, 3 and 5 count the events of the counted set
  *reported by* each of them (``cases.reporter_id``), wherever the event lies: it is the gridworker's work;
  indicator 5 those of kind ``hazard``. Indicator 9 is ``measures.patrol_compliance`` over the month.
- **Centers**: indicator 4 counts the counted set's events with ``cases.reporter_center_id`` = a Center of
  level ``town`` placed at the town (one entry per center); indicator 6 the events of kind ``dispute``
  whose ``reporter_center_id`` is a Center of level ``village`` placed in one of the town's villages or
  communities, over the number of those centers; indicator 7 the events whose ``escalated_by_center_id``
  is one of the town's centers (流转 by the town level, see cases/loop.py), over the number of town centers.
- **Special populations** (indicator 10): active persons of type ``drug_user`` or ``mental_risk`` whose
  ``town_id`` is the town; visited = distinct such persons with a visit in the month.

A closed month (``AssessmentMonth``) stores the rules, the figures of every town and the table; it is served
from that row, so later corrections of the data or the rules leave it unchanged, and
``recompute(row)`` = ``build_table(frozen figures, frozen names, frozen rules)`` gives the same table.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import date

from sqlalchemy import case as sql_case
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from ..access import Forbidden, has_permission
from ..audit import audit
from ..db import db
from ..hierarchy import places_inside
from ..measures import (
    Period,
    gridworkers,
    missing_days_text,
    month_key,
    patrol_compliance,
    previous_month,
    workdays_without_patrols,
)
from ..models import Account, AssessmentMonth, Case, Center, Person, Place, SettingValue, Visit
from ..timeutil import current_tz, local_today
from . import rules as R

log = logging.getLogger(__name__)

RULES_KEY = "assessment_rules"
SPECIAL_TYPES = ("drug_user", "mental_risk")
EXCLUDED_STATES = ("duplicate", "rejected")


class AssessmentError(ValueError):
    """A request the assessment refuses (bad month, month not over, already closed), naming the field."""

    def __init__(self, message: str, field: str = "month", status: int = 400):
        super().__init__(message)
        self.message, self.field, self.status = message, field, status


def parse_month(month: str) -> Period:
    try:
        return Period.parse_month(month)
    except ValueError as exc:
        raise AssessmentError(str(exc)) from None


def last_month(today: date | None = None) -> str:
    return previous_month(today or local_today(current_tz()))


# --- the rules in force -----------------------------------------------------------------------------


def current_rules() -> dict:
    """DEFAULT_RULES overridden by the SettingValue "assessment_rules" (defaults if that row is invalid)."""
    row = db.get(SettingValue, RULES_KEY)
    if row is None:
        return R.validate_rules({})
    try:
        return R.validate_rules(row.value)
    except R.RulesError as exc:
        log.warning("invalid assessment rules in settings, using the defaults: %s", exc)
        return R.validate_rules({})


def save_rules(data: dict, account: Account) -> dict:
    """Validate and store the rules (RulesError names the bad fields); audited."""
    rules = R.validate_rules(data)
    stored = {
        "indicators": [
            {k: item[k] for k in ("key", "weight", "standard", "quota") if k in item} for item in rules["indicators"]
        ],
        "timeliness": rules["timeliness"],
        "weakest": rules["weakest"],
    }
    row = db.get(SettingValue, RULES_KEY)
    if row is None:
        db.add(SettingValue(key=RULES_KEY, value=stored, updated_by_id=account.id))
    else:
        row.value = stored
        row.updated_by_id = account.id
    audit("assessment.rules", "setting", RULES_KEY, account=account)
    db.commit()
    return rules


# --- the figures ------------------------------------------------------------------------------------


def towns_of(city: Place) -> list[Place]:
    return places_inside(city, "town")


def counted(stmt, begin, finish):
    """Restrict a statement on Case to the events reported in the month (see the module docstring)."""
    return stmt.where(Case.reported_at >= begin, Case.reported_at < finish, Case.state.not_in(EXCLUDED_STATES))


def town_figures(city: Place, period: Period, today: date | None = None) -> dict[int, R.TownFigures]:
    """rules.TownFigures of every active town of the city, by town id (a fixed number of queries)."""
    zone = current_tz()
    towns = towns_of(city)
    ids = [t.id for t in towns]
    out = {t.id: R.TownFigures(population=t.population) for t in towns}
    if not ids:
        return out
    begin, finish = period.bounds_utc(zone)

    # indicators 1 and 8
    rows = db.execute(
        counted(
            select(Case.town_id, func.count(), func.sum(sql_case((Case.overdue.is_(True), 1), else_=0))).where(
                Case.town_id.in_(ids)
            ),
            begin,
            finish,
        ).group_by(Case.town_id)
    )
    for town_id, reported, overdue in rows:
        out[town_id].reported = reported
        out[town_id].overdue = int(overdue or 0)

    # indicators 2, 3, 5, 9: per gridworker of the town
    workers = [w for w in gridworkers(city) if w.town_id in out]
    per_worker = {
        row[0]: (row[1], int(row[2] or 0))
        for row in db.execute(
            counted(
                select(Case.reporter_id, func.count(), func.sum(sql_case((Case.kind == "hazard", 1), else_=0)))
                .join(Account, Account.id == Case.reporter_id)
                .where(Account.role == "gridworker", Account.active.is_(True), Account.town_id.in_(ids)),
                begin,
                finish,
            ).group_by(Case.reporter_id)
        )
    }
    compliance = patrol_compliance([w.id for w in workers], period, zone, today)
    # the catalogue's 巡查达标率, as stats computes it: compliant / gridworkers, undefined only while nobody in
    # the town can be judged yet (no workday over, and nobody has reached today's hour)
    compliant: dict[int, int] = defaultdict(int)
    judged: set[int] = set()
    for w in workers:
        reports, hazards = per_worker.get(w.id, (0, 0))
        out[w.town_id].gridworker_reports.append(reports)
        out[w.town_id].gridworker_hazards.append(hazards)
        state = compliance.get(w.id)
        if state is not None:
            judged.add(w.town_id)
            compliant[w.town_id] += int(state)
    for town_id, figures in out.items():
        figures.patrol_compliant = (compliant[town_id] if town_id in judged else None) if figures.gridworkers else 0

    # indicators 4, 6, 7: the centers
    centers = db.execute(
        select(Center.id, Center.level, Place.id, Place.town_id)
        .join(Place, Place.id == Center.place_id)
        .where(Place.town_id.in_(ids), Center.level.in_(("town", "village")))
        .order_by(Center.id)
    ).all()
    own = {
        cid: (n, int(d or 0))
        for cid, n, d in db.execute(
            counted(
                select(
                    Case.reporter_center_id, func.count(), func.sum(sql_case((Case.kind == "dispute", 1), else_=0))
                ).where(Case.reporter_center_id.in_([c[0] for c in centers] or [-1])),
                begin,
                finish,
            ).group_by(Case.reporter_center_id)
        )
    }
    escalated = dict(
        db.execute(
            counted(
                select(Case.escalated_by_center_id, func.count()).where(
                    Case.escalated_by_center_id.in_([c[0] for c in centers] or [-1])
                ),
                begin,
                finish,
            ).group_by(Case.escalated_by_center_id)
        ).all()
    )
    for center_id, level, place_id, town_id in centers:
        figures = out[town_id]
        reports, disputes = own.get(center_id, (0, 0))
        if level == "town" and place_id == town_id:
            figures.town_center_reports.append(reports)
            figures.town_center_escalations += escalated.get(center_id, 0)
        elif level == "village" and place_id != town_id:
            figures.village_centers += 1
            figures.village_center_disputes += disputes

    # indicator 10
    special = (Person.active.is_(True), Person.person_type.in_(SPECIAL_TYPES), Person.town_id.in_(ids))
    for town_id, n in db.execute(select(Person.town_id, func.count()).where(*special).group_by(Person.town_id)):
        out[town_id].special_assigned = n
    for town_id, n in db.execute(
        select(Person.town_id, func.count(func.distinct(Visit.person_id)))
        .join(Person, Person.id == Visit.person_id)
        .where(*special, Visit.at >= begin, Visit.at < finish)
        .group_by(Person.town_id)
    ):
        out[town_id].special_visited = n
    return out


# --- the table --------------------------------------------------------------------------------------


def frozen(city: Place, month: str) -> AssessmentMonth | None:
    return db.execute(
        select(AssessmentMonth).where(AssessmentMonth.place_id == city.id, AssessmentMonth.month == month)
    ).scalar_one_or_none()


def compute(city: Place, period: Period, rules: dict | None = None) -> tuple[dict, dict[int, R.TownFigures]]:
    """The table computed now from the data (not looking at a frozen month), and the figures behind it."""
    rules = rules or current_rules()
    figures = town_figures(city, period)
    names = {t.id: t.name for t in towns_of(city)}
    table = R.build_table(figures, names, rules)
    return {"month": month_key(period.start), "closed": False, "closed_at": None, **table}, figures


def month_table(city: Place, month: str) -> dict:
    """The frozen table if the month is closed, else computed now (the JSON endpoint's body)."""
    period = parse_month(month)
    row = frozen(city, month_key(period.start))
    if row is not None:
        return {**row.table, "closed": True, "closed_at": row.closed_at.isoformat() + "Z"}
    return compute(city, period)[0]


def recompute(row: AssessmentMonth) -> dict:
    """The table of a closed month computed again from its frozen figures and rules."""
    figures = {int(k): R.TownFigures.from_dict(v) for k, v in row.figures.items()}
    names = {r["town_id"]: r["town_name"] for r in row.table["rows"]}
    return {
        "month": row.month,
        "closed": True,
        "closed_at": row.closed_at.isoformat() + "Z",
        **R.build_table(figures, names, row.rules),
    }


def may_close(account: Account | None, city: Place) -> bool:
    return (
        account is not None
        and has_permission(account, "assessment.close")
        and account.place.level == "city"
        and account.place_id == city.id
    )


def missing_patrol_days(month: str) -> list[date]:
    """The workdays of the month that hold no patrol anywhere (missing data): closing asks to confirm them."""
    return workdays_without_patrols(parse_month(month), current_tz())


def close_month(city: Place, month: str, account: Account, confirm_missing: bool = False) -> AssessmentMonth:
    """Freeze a past month: its rules, the figures of every town and the table. Only once, only by a
    city-level account with "assessment.close". A month with workdays that hold no patrol at all is closed
    only when `confirm_missing` says the closer saw those days (the error names them)."""
    if not may_close(account, city):
        raise Forbidden("只有市级考核管理账号可以关账")
    period = parse_month(month)
    key = month_key(period.start)
    if period.end >= local_today(current_tz()):
        raise AssessmentError(f"{period.label}尚未结束，不能关账")
    if frozen(city, key) is not None:
        raise AssessmentError(f"{period.label}已关账，不能重复关账", status=409)
    missing = workdays_without_patrols(period, current_tz())
    if missing and not confirm_missing:
        raise AssessmentError(
            f"{period.label}的工作日 {missing_days_text(missing)} 全市没有任何巡查记录，数据可能缺失；"
            "关账后巡查达标按这些天未巡查冻结。请先补导数据，或勾选确认后再关账",
            status=409,
            field="confirm_missing",
        )
    rules = current_rules()
    table, figures = compute(city, period, rules)
    row = AssessmentMonth(
        place_id=city.id,
        month=key,
        rules=rules,
        figures={str(k): v.as_dict() for k, v in figures.items()},
        table={k: v for k, v in table.items() if k not in ("closed", "closed_at")},
        closed_by_id=account.id,
    )
    db.add(row)
    try:
        db.flush()
    except IntegrityError:
        db.rollback()
        raise AssessmentError(f"{period.label}已关账，不能重复关账", status=409) from None
    audit(
        "assessment.close",
        "assessment_month",
        key,
        account=account,
        detail=f"确认缺失巡查数据的工作日：{missing_days_text(missing)}" if missing else None,
    )
    db.commit()
    return row


# --- what an account may see ------------------------------------------------------------------------


def city_of(account: Account) -> Place:
    city = db.get(Place, account.place.city_id) if account.place.city_id else None
    if city is None:  # every place below a city carries its city_id: this is broken data, not a request
        raise LookupError(f"地点 {account.place.code} 没有所属的市")
    return city


def own_town(account: Account) -> int | None:
    """None for a city account (sees all towns); else the town whose row it may see."""
    return None if account.place.level == "city" else account.place.town_id


def month_arg(value: str | None, today: date) -> tuple[str | None, str | None]:
    """(month, error): a month YYYY-MM not later than the current one."""
    if value is None or value.strip() == "":
        return last_month(today), None
    try:
        period = parse_month(value.strip())
    except AssessmentError as exc:
        return None, exc.message
    if period.start > today:
        return None, "月份不能晚于本月"
    return month_key(period.start), None


def visible_table(account: Account, month: str) -> dict:
    """The month's table as this account may see it (own town's row only below the city)."""
    table = month_table(city_of(account), month)
    own = own_town(account)
    return {
        **table,
        "towns": len(table["rows"]),
        "rows": [r for r in table["rows"] if own is None or r["town_id"] == own],
    }
