"""The figures of a place for a period: what the drill-down shows at every level (and the bulletin reads).

Everything is counted from the database (not from the live counters), inside an app context, for a
``measures.Period`` of local calendar days. ``figures(place, period)`` gives one ``Figures``;
``children(place, period)`` gives one per child place one level down (city → towns, town → villages,
village → grids) computed with one GROUP BY query per measure (the query count does not grow with the
number of children); ``gridworker_rows(place, period)`` gives the table of the gridworker level.

Definitions
-----------
"In the period" means: a timestamp inside [first local day 00:00, day after the last local day 00:00),
converted to naive UTC as stored; a date column (sign-in day, party activity) between the two days.

Events (事件). The cases *reported* in the period inside the place (by the case's own grid / village /
town columns). ``Filters`` (kind, category with its descendants, state, source) narrow every figure
computed from cases — and only those.

- ``reported``: those cases except the ones marked duplicate (``state != "duplicate"``); rejected
  (invalid) cases are counted. ``by_kind`` / ``by_source``: the same, by kind / source (every key present).
- ``closed``: the reported cases whose state is ``closed`` now. ``closure_rate`` = closed / reported (办结率).
- ``valid`` / ``invalid``: reported cases with ``valid`` true / false (cases not yet registered count in
  neither). ``valid_rate`` = valid / (valid + invalid) (有效率). Duplicates are counted apart, below.
- ``reported_to_town`` (上报至镇级网格中心) / ``reported_to_city`` (上报至市级网格中心), the bulletin's two disjoint
  sets (domain.md §6): to the city = reported cases that reached the city center (``escalated_to_city``), whether
  straight from the grid or through the town; to the town = those that went up to the town center and ended
  there (``escalated_to_town`` and not ``escalated_to_city``). ``..._closed``: of those, the closed ones;
  ``..._share`` = the set / reported; ``..._closure_rate`` = closed / the set.
- ``assessed`` (考核计入事件): reported cases except those rejected as invalid (state ``rejected``, which includes
  late 乱停车 voided automatically) — the "new events" of assessment indicators 1 and 8.
- ``overdue`` (逾期事件): assessed cases marked overdue; ``timeliness`` = (assessed − overdue) / assessed
  (处理及时率, exactly indicator 8 of the assessment).
- ``hazard_share`` / ``dispute_share``: by_kind["hazard"] / reported, by_kind["dispute"] / reported.
- ``duplicates``: cases reported in the period and marked duplicate (重复).
- ``disputes_screened``: the dispute records (矛盾纠纷) of the reported cases by screening level
  (grid / village / town); ``disputes_resolved``: those whose outcome is ``resolved``, by the same level;
  ``dispute_success_rate`` = all resolved / all screened (化解成功率).

People.
- ``gridworkers``: ``measures.gridworkers`` (active accounts with role gridworker inside the place).
- ``gridworker_reports``: reported cases whose reporter is a gridworker account;
  ``reports_per_gridworker`` = gridworker_reports / gridworkers (人均上报, not a rate).
- ``patrol_compliant``: gridworkers for whom ``measures.patrol_compliance`` is true (computed in SQL on
  PostgreSQL, same definition); ``patrol_rate`` =
  patrol_compliant / gridworkers, ``None`` when compliance is undefined (no workday of the period has begun).
- ``attended``: gridworkers with at least one sign-in (签到) on a day of the period;
  ``attendance_rate`` = attended / gridworkers (出勤率).
- ``admins``: active ``center_admin`` accounts inside the place; ``admins_logged_in``: those with a
  successful login in the period; ``login_rate`` = admins_logged_in / admins (管理员登录率).

Visits (走访). Each active person or site is measured over the windows of its own frequency (``visit_windows``:
this week / month / quarter for a running period, the weeks / months / quarters that end in a past one). For each
person type and site type: (due = assigned × windows, done = windows in which it was visited, done / due);
``visit_frequencies`` the frequencies of that type (每周 / 每月 / 每季度). For a monthly population and a calendar
month, due = the persons assigned and done = the distinct ones visited in the month. ``special_*``: the same over
the four special populations (``SENSITIVE_PERSON_TYPES``) together (特殊人群走访率（四类）; assessment indicator 10
counts two of them, in ``assessment.service``). Visits are counted by the visited person's or site's place,
whoever made them.

Information collection and party building.
- ``population``: the census figure of the place (``Place.population``), ``None`` when unknown.
- ``registered_population`` / ``linked_persons``: for each place holding ``BaseDataCount`` rows inside the
  place (villages), its newest month not after the period's last month, summed; ``linkage_rate`` =
  linked / registered (人房关联率).
- ``party_organizations`` / ``party_members``: organizations whose place lies inside the place, and the sum
  of their members; ``party_activities``: their activities held on a day of the period.

Every rate whose denominator is 0 is ``None`` (shown as "—"), never 0 and never 100 %.

Data-quality flags (``Figures.flags``): a figure that cannot be true is not printed as a fact; the pages show
it with a warning mark and the flag's message.
- any rate above 100 % (e.g. person-house linkage 101.88 %: more linked than registered);
- a count above the count it is part of (patrol-compliant or attended gridworkers above all gridworkers,
  persons visited above persons assigned, closed above reported...);
- a gridworker with more than ``BURST_PER_HOUR`` (50) reports inside one clock hour (counting every report,
  duplicates included): flagged on ``reported`` and ``gridworker_reports``;
- bulk duplicates: a reporter with at least ``BULK_DUPLICATES_MIN`` (10) cases marked duplicate in the period
  that are at least ``BULK_DUPLICATES_SHARE`` (20 %) of all his reports in the period: flagged on
  ``duplicates`` and ``reported``.
Burst and bulk flags are attributed to the place of the cases (their grid / village / town).
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import and_, distinct, func, select
from sqlalchemy import case as sa_case

from .categories import descendants
from .db import db
from .figures.catalogue import BY_KEY as FIGURE_KEYS
from .figures.catalogue import label as figure_name
from .hierarchy import in_place, place_column, places_inside
from .measures import Period, missing_days_text, patrol_compliance, workdays_without_patrols
from .models import (
    CASE_KINDS,
    CASE_SOURCES,
    PERSON_TYPES,
    SENSITIVE_PERSON_TYPES,
    SITE_TYPES,
    VISIT_FREQUENCIES,
    Account,
    BaseDataCount,
    Case,
    Dispute,
    LoginRecord,
    PartyActivity,
    PartyOrganization,
    Person,
    Place,
    SignIn,
    Site,
    Visit,
)
from .timeutil import current_tz, local, local_today

# --- thresholds of the data-quality flags ------------------------------------------------------------

BURST_PER_HOUR = 50  # more reports than this by one gridworker inside one clock hour is suspicious
BULK_DUPLICATES_MIN = 10  # at least this many duplicates by one reporter in the period ...
BULK_DUPLICATES_SHARE = 0.20  # ... that are at least this share of his reports
DISPUTE_LEVELS = ("grid", "village", "town")
CHILD_LEVEL = {"city": "town", "town": "village", "village": "grid"}

LABELS = {
    "reported": "上报事件",
    "closed": "办结",
    "closure_rate": "办结率",
    "valid_rate": "有效率",
    "reported_to_town": "上报至镇级网格中心",
    "reported_to_town_share": "上报至镇级占比",
    "reported_to_town_closure_rate": "上报至镇级办结率",
    "reported_to_city": "上报至市级网格中心",
    "reported_to_city_share": "上报至市级占比",
    "reported_to_city_closure_rate": "上报至市级办结率",
    "overdue": "逾期事件",
    "timeliness": "处理及时率",
    "hazard_share": "安全隐患占比",
    "dispute_share": "矛盾纠纷占比",
    "duplicates": "重复事件",
    "dispute_success_rate": "矛盾纠纷化解成功率",
    "gridworkers": "网格员",
    "gridworker_reports": "网格员上报",
    "reports_per_gridworker": "人均上报",
    "patrol_rate": "巡查达标率",
    "patrol_compliant": "巡查达标人数",
    "attendance_rate": "出勤率",
    "attended": "出勤人数",
    "login_rate": "管理员登录率",
    "admins_logged_in": "登录管理员数",
    "special_visit_rate": "特殊人群走访率（四类）",
    "linkage_rate": "人房关联率",
    "linked_persons": "已关联人数",
}
LABELS.update({key: figure_name(key) for key in LABELS if key in FIGURE_KEYS})  # the catalogue's names win
RATE_FIELDS = (
    "closure_rate",
    "valid_rate",
    "reported_to_town_share",
    "reported_to_town_closure_rate",
    "reported_to_city_share",
    "reported_to_city_closure_rate",
    "timeliness",
    "hazard_share",
    "dispute_share",
    "dispute_success_rate",
    "patrol_rate",
    "attendance_rate",
    "login_rate",
    "special_visit_rate",
    "linkage_rate",
)
VISIT_LABELS = {
    "community_correction": "社区矫正人员",
    "released_prisoner": "刑满释放人员",
    "mental_risk": "易肇事肇祸精神障碍患者",
    "drug_user": "吸毒人员",
    "key_youth": "重点青少年",
    "key_petitioner": "重点上访人员",
    "key_other": "其他重点人员",
    "empty_nest_elderly": "空巢老人",
    "key_place": "重点场所",
    "group_rental": "群租房",
    "rental_house": "出租屋",
}


@dataclass(frozen=True)
class Filters:
    """Narrow the *case* figures only."""

    kind: str | None = None  # ordinary / hazard / dispute
    category_id: int | None = None  # a category node: matches it and its descendants
    state: str | None = None
    source: str | None = None


@dataclass
class Flag:
    """A data-quality problem: shown instead of printing the figure as a fact."""

    field: str  # the Figures attribute it concerns, e.g. "linkage_rate" (visits: "visits.<type>")
    message: str  # Chinese


@dataclass
class Figures:
    place_id: int
    place_name: str
    level: str
    period: Period
    reported: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    by_source: dict[str, int] = field(default_factory=dict)
    closed: int = 0
    closure_rate: float | None = None
    valid: int = 0
    invalid: int = 0
    valid_rate: float | None = None
    # 上报至镇级 / 上报至市级 (domain.md §6): disjoint, ended at the town / reached the city
    reported_to_town: int = 0
    reported_to_town_closed: int = 0
    reported_to_town_share: float | None = None
    reported_to_town_closure_rate: float | None = None
    reported_to_city: int = 0
    reported_to_city_closed: int = 0
    reported_to_city_share: float | None = None
    reported_to_city_closure_rate: float | None = None
    assessed: int = 0
    overdue: int = 0
    dispatch_late: int = 0  # 派遣超时 (issue 12 §3b)
    escalate_late: int = 0  # 流转超时
    transfer_late: int = 0  # 乱停车超时作废 (not transferred within its hour)
    timeliness: float | None = None
    hazard_share: float | None = None
    dispute_share: float | None = None
    duplicates: int = 0
    disputes_screened: dict[str, int] = field(default_factory=dict)
    disputes_resolved: dict[str, int] = field(default_factory=dict)
    dispute_success_rate: float | None = None
    gridworkers: int = 0
    gridworker_reports: int = 0
    reports_per_gridworker: float | None = None
    patrol_compliant: int = 0
    patrol_rate: float | None = None
    attended: int = 0
    attendance_rate: float | None = None
    admins: int = 0
    admins_logged_in: int = 0
    login_rate: float | None = None
    # type → (due, done, rate): due = assigned × windows of its frequency, done = windows visited (see visit_windows)
    visits: dict[str, tuple[int, int, float | None]] = field(default_factory=dict)
    visit_frequencies: dict[str, tuple[str, ...]] = field(default_factory=dict)  # type → weekly/monthly/quarterly
    special_assigned: int = 0
    special_visited: int = 0
    special_visit_rate: float | None = None
    population: int | None = None
    registered_population: int = 0
    linked_persons: int = 0
    linkage_rate: float | None = None
    party_organizations: int = 0
    party_members: int = 0
    party_activities: int = 0
    flags: list[Flag] = field(default_factory=list)

    @property
    def special_frequencies(self) -> tuple[str, ...]:
        """The visit frequencies of the four special populations together (normally only monthly)."""
        present = {f for k in SENSITIVE_PERSON_TYPES for f in self.visit_frequencies.get(k, ())}
        return tuple(f for f in VISIT_FREQUENCIES if f in present)

    def flag_for(self, name: str) -> Flag | None:
        """The first flag on a field (the pages show it instead of the plain figure)."""
        return next((f for f in self.flags if f.field == name), None)

    @property
    def flagged(self) -> dict[str, str]:
        """field → all its messages joined."""
        out: dict[str, list[str]] = defaultdict(list)
        for f in self.flags:
            out[f.field].append(f.message)
        return {k: "；".join(v) for k, v in out.items()}


# --- helpers ---------------------------------------------------------------------------------------------


def ratio(numerator: float | int | None, denominator: float | int | None) -> float | None:
    """numerator / denominator, None when the denominator is 0 (or unknown)."""
    if not denominator or numerator is None:
        return None
    return numerator / denominator


def pct_text(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.2f}%"


_col = place_column
_restrict = in_place


def _count(condition):
    return func.coalesce(func.sum(sa_case((condition, 1), else_=0)), 0)


def _hour(column):
    """The clock hour of a naive-UTC timestamp, in SQL (PostgreSQL or SQLite)."""
    if db.get_bind().dialect.name == "postgresql":
        return func.date_trunc("hour", column)
    return func.strftime("%Y-%m-%d %H:00:00", column)


def _as_datetime(value) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


@functools.cache
def _case_columns() -> tuple:
    """The columns of the one pass over the period's cases (`_Calc._cases`): built once per process, as they
    depend on nothing of the request (building these 31 SUM(CASE …) expressions was a third of a wall counts
    panel's CPU)."""
    live = Case.state != "duplicate"
    assessed = and_(live, Case.state != "rejected")
    closed = Case.state == "closed"
    resolved = Dispute.outcome == "resolved"
    to_city = Case.escalated_to_city.is_(True)
    to_town = and_(Case.escalated_to_town.is_(True), Case.escalated_to_city.is_not(True))  # ended at the town
    cols = [
        _count(live),
        *[_count(and_(live, Case.kind == k)) for k in CASE_KINDS],
        _count(and_(live, closed)),
        _count(and_(live, Case.valid.is_(True))),
        _count(and_(live, Case.valid.is_(False))),
        _count(and_(live, to_town)),
        _count(and_(live, to_town, closed)),
        _count(and_(live, to_city)),
        _count(and_(live, to_city, closed)),
        _count(assessed),
        _count(and_(assessed, Case.overdue.is_(True))),
        _count(Case.state == "duplicate"),
        _count(and_(live, Account.role == "gridworker")),
        *[_count(and_(live, Case.source == s)) for s in CASE_SOURCES],
        *[_count(and_(live, Dispute.screening_level == lv)) for lv in DISPUTE_LEVELS],
        *[_count(and_(live, Dispute.screening_level == lv, resolved)) for lv in DISPUTE_LEVELS],
        # the other stage limits (issue 12 §3b): dispatch, escalation, the parking hour
        _count(and_(live, Case.dispatch_late.is_(True))),
        _count(and_(live, Case.escalate_late.is_(True))),
        _count(
            and_(
                Case.transfer_due.is_not(None),
                Case.transferred_at.is_(None),
                Case.state == "rejected",
                Case.closed_at >= Case.transfer_due,
            )
        ),
    ]
    return tuple(cols)


# --- the calculation ---------------------------------------------------------------------------------


class _Calc:
    """All measures of `place`, grouped by the column of `level` (None: one group, the place itself)."""

    def __init__(self, place: Place, period: Period, filters: Filters | None, level: str | None):
        self.place, self.period, self.filters, self.level = place, period, filters or Filters(), level
        self.tz = current_tz()
        self.begin, self.finish = period.bounds_utc(self.tz)
        self.cat_ids = descendants(self.filters.category_id) if self.filters.category_id else None
        self.patrol_undefined: set[int] = set()  # the places whose patrol compliance cannot be judged yet

    # one grouped query: yields (key, *group values, *aggregates)
    def rows(self, key_model, cols, *where, group=(), select_from=None, joins=(), having=None):
        key = _col(key_model, self.level) if self.level else None
        stmt = select(*([key] if key is not None else []), *group, *cols)
        if select_from is not None or joins:
            stmt = stmt.select_from(select_from if select_from is not None else key_model)
        for target, onclause, *outer in joins:
            stmt = stmt.join(target, onclause, isouter=bool(outer and outer[0]))
        stmt = _restrict(stmt.where(*where), key_model, self.place)
        by = ([key] if key is not None else []) + list(group)
        if by:
            stmt = stmt.group_by(*by)
        if having is not None:
            stmt = stmt.having(having)
        result = db.execute(stmt)
        if key is not None:
            yield from result  # Rows unpack like tuples (a city's 15,000 gridworkers come through here)
            return
        for row in result:
            yield (self.place.id, *row)

    def case_where(self) -> list:
        return self._conditions(self.period, self.filters, self.cat_ids)

    @staticmethod
    def _conditions(period: Period, f: Filters, cat_ids: set[int] | None = None) -> list:
        begin, finish = period.bounds_utc(current_tz())
        if f.category_id and cat_ids is None:
            cat_ids = descendants(f.category_id)
        conds = [Case.reported_at >= begin, Case.reported_at < finish]
        if f.kind:
            conds.append(Case.kind == f.kind)
        if cat_ids is not None:
            conds.append(Case.category_id.in_(cat_ids))
        if f.state:
            conds.append(Case.state == f.state)
        if f.source:
            conds.append(Case.source == f.source)
        return conds

    def compute(self, targets: list[Place], events_only: bool = False) -> list[Figures]:
        out = {
            p.id: Figures(
                place_id=p.id,
                place_name=p.name,
                level=p.level,
                period=self.period,
                by_kind={k: 0 for k in CASE_KINDS},
                by_source={s: 0 for s in CASE_SOURCES},
                disputes_screened={lv: 0 for lv in DISPUTE_LEVELS},
                disputes_resolved={lv: 0 for lv in DISPUTE_LEVELS},
                population=p.population,
            )
            for p in targets
        }
        self._cases(out)
        if not events_only:
            self._people(out)
            self._visits(out)
            self._collection(out)
            self._quality(out)
        for key, fig in out.items():
            _derive(fig, patrol_undefined=key in self.patrol_undefined)
        return [out[p.id] for p in targets]

    # events
    def _cases(self, out: dict[int, Figures]) -> None:
        """One pass over the period's cases (with their dispute record and reporter's role) for every count."""
        cols = list(_case_columns())
        joins = [(Dispute, Dispute.case_id == Case.id, True), (Account, Account.id == Case.reporter_id, True)]
        for key, *values in self.rows(Case, cols, *self.case_where(), joins=joins):
            fig = out.get(key)
            if fig is None:
                continue
            values = [int(v) for v in values]
            (
                fig.reported,
                *kinds,
                fig.closed,
                fig.valid,
                fig.invalid,
                fig.reported_to_town,
                fig.reported_to_town_closed,
                fig.reported_to_city,
                fig.reported_to_city_closed,
                fig.assessed,
                fig.overdue,
                fig.duplicates,
                fig.gridworker_reports,
            ) = values[: 12 + len(CASE_KINDS)]
            rest = values[12 + len(CASE_KINDS) :]
            fig.by_kind = dict(zip(CASE_KINDS, kinds, strict=True))
            fig.by_source = dict(zip(CASE_SOURCES, rest[: len(CASE_SOURCES)], strict=True))
            rest = rest[len(CASE_SOURCES) :]
            fig.disputes_screened = dict(zip(DISPUTE_LEVELS, rest[: len(DISPUTE_LEVELS)], strict=True))
            fig.disputes_resolved = dict(
                zip(DISPUTE_LEVELS, rest[len(DISPUTE_LEVELS) : 2 * len(DISPUTE_LEVELS)], strict=True)
            )
            fig.dispatch_late, fig.escalate_late, fig.transfer_late = rest[2 * len(DISPUTE_LEVELS) :]

    # gridworkers and admin accounts
    def _people(self, out: dict[int, Figures]) -> None:
        workers = Account.role == "gridworker"
        active = Account.active.is_(True)
        by_key: dict[int, list[int]] = defaultdict(list)
        for key, account_id in self.rows(Account, [], workers, active, group=[Account.id]):
            by_key[key].append(account_id)
        all_ids = [i for ids in by_key.values() for i in ids]
        compliance = _compliance_once(all_ids, self.period, self.tz) if all_ids else {}
        # undefined per place: while nobody of it can be judged yet (no workday over, nobody at the hour today)
        self.patrol_undefined = {key for key, ids in by_key.items() if all(compliance.get(i) is None for i in ids)}
        for key, ids in by_key.items():
            if key in out:
                out[key].gridworkers = len(ids)
                out[key].patrol_compliant = sum(1 for i in ids if compliance.get(i))
        # workdays with no patrol anywhere: missing data, which the rate would count as failures. Flagged on the
        # place's own figures (a table of its children would repeat the same message on every row)
        missing = workdays_without_patrols(self.period, self.tz) if all_ids and self.level is None else []
        if missing:
            message = (
                f"{missing_days_text(missing)}是工作日但全市没有任何巡查记录（数据可能缺失），"
                "巡查达标率按缺失日未巡查计算，可能偏低"
            )
            for fig in out.values():
                fig.flags.append(Flag("patrol_rate", message))
        for key, n in self.rows(
            Account,
            [func.count(distinct(SignIn.account_id))],
            workers,
            active,
            SignIn.day >= self.period.start,
            SignIn.day <= self.period.end,
            select_from=SignIn,
            joins=[(Account, Account.id == SignIn.account_id)],
        ):
            if key in out:
                out[key].attended = int(n)
        admins = Account.role == "center_admin"
        for key, n in self.rows(Account, [func.count()], admins, active):
            if key in out:
                out[key].admins = int(n)
        for key, n in self.rows(
            Account,
            [func.count(distinct(LoginRecord.account_id))],
            admins,
            active,
            LoginRecord.success.is_(True),
            LoginRecord.at >= self.begin,
            LoginRecord.at < self.finish,
            select_from=LoginRecord,
            joins=[(Account, Account.id == LoginRecord.account_id)],
        ):
            if key in out:
                out[key].admins_logged_in = int(n)

    def _visits(self, out: dict[int, Figures]) -> None:
        """Each person or site is measured over the windows of its own frequency (``visit_windows``): due = one
        per window, done = the windows in which it was visited (distinct), whoever visited."""
        today = local_today(self.tz)
        windows = {freq: visit_windows(freq, self.period, today) for freq in VISIT_FREQUENCIES}
        bounds = {freq: [Period(a, b).bounds_utc(self.tz) for a, b in ws] for freq, ws in windows.items()}
        due: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        done: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        freqs: dict[int, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        for model, type_col, visit_col in (
            (Person, Person.person_type, Visit.person_id),
            (Site, Site.site_type, Visit.site_id),
        ):
            active = model.active.is_(True)
            for key, kind, freq, n in self.rows(model, [func.count()], active, group=[type_col, model.visit_frequency]):
                due[key][kind] += int(n) * len(windows.get(freq, ()))
                freqs[key][kind].add(freq)
            cols = [
                func.count(
                    distinct(
                        sa_case((and_(model.visit_frequency == freq, Visit.at >= begin, Visit.at < finish), visit_col))
                    )
                )
                for freq in VISIT_FREQUENCIES
                for begin, finish in bounds[freq]
            ]
            if not cols:
                continue
            first = min(b for bs in bounds.values() for b, _ in bs)
            last = max(f for bs in bounds.values() for _, f in bs)
            for key, kind, *counts in self.rows(
                model,
                cols,
                active,
                Visit.at >= first,
                Visit.at < last,
                group=[type_col],
                select_from=Visit,
                joins=[(model, model.id == visit_col)],
            ):
                done[key][kind] += sum(int(n) for n in counts)
        for key, fig in out.items():
            for kind in (*PERSON_TYPES, *SITE_TYPES):
                d, v = due[key].get(kind, 0), done[key].get(kind, 0)
                fig.visits[kind] = (d, v, ratio(v, d))
                present = freqs[key].get(kind) or {required_frequency(kind)}
                fig.visit_frequencies[kind] = tuple(f for f in VISIT_FREQUENCIES if f in present)
            fig.special_assigned = sum(fig.visits[k][0] for k in SENSITIVE_PERSON_TYPES)
            fig.special_visited = sum(fig.visits[k][1] for k in SENSITIVE_PERSON_TYPES)

    def _collection(self, out: dict[int, Figures]) -> None:
        last_month = self.period.end.strftime("%Y-%m")
        newest = (
            select(BaseDataCount.place_id, func.max(BaseDataCount.month).label("month"))
            .where(BaseDataCount.month <= last_month)
            .group_by(BaseDataCount.place_id)
            .subquery()
        )
        for key, registered, linked in self.rows(
            Place,
            [
                func.coalesce(func.sum(BaseDataCount.registered_population), 0),
                func.coalesce(func.sum(BaseDataCount.linked_persons), 0),
            ],
            select_from=BaseDataCount,
            joins=[
                (newest, and_(newest.c.place_id == BaseDataCount.place_id, newest.c.month == BaseDataCount.month)),
                (Place, Place.id == BaseDataCount.place_id),
            ],
        ):
            if key in out:
                out[key].registered_population, out[key].linked_persons = int(registered), int(linked)
        # a total that adds up an impossible village figure (more linked than registered) is suspect too: the
        # same flag on every screen (the drill, the bulletin, /m/, the API), not only where a child is listed
        suspect: dict[int, list[str]] = defaultdict(list)
        for key, village_id, village_name in self.rows(
            Place,
            [],
            BaseDataCount.linked_persons > BaseDataCount.registered_population,
            group=[Place.id, Place.name],
            select_from=BaseDataCount,
            joins=[
                (newest, and_(newest.c.place_id == BaseDataCount.place_id, newest.c.month == BaseDataCount.month)),
                (Place, Place.id == BaseDataCount.place_id),
            ],
        ):
            if key in out and village_id != key:  # the village itself gets its own flag (_derive)
                suspect[key].append(village_name)
        for key, names in suspect.items():
            out[key].flags.append(
                Flag("linkage_rate", f"合计含{'、'.join(sorted(names))}的存疑数据（人房关联率超过 100%）")
            )
        for key, n, members in self.rows(
            Place,
            [func.count(), func.coalesce(func.sum(PartyOrganization.members), 0)],
            select_from=PartyOrganization,
            joins=[(Place, Place.id == PartyOrganization.place_id)],
        ):
            if key in out:
                out[key].party_organizations, out[key].party_members = int(n), int(members)
        for key, n in self.rows(
            Place,
            [func.count()],
            PartyActivity.held_on >= self.period.start,
            PartyActivity.held_on <= self.period.end,
            select_from=PartyActivity,
            joins=[
                (PartyOrganization, PartyOrganization.id == PartyActivity.organization_id),
                (Place, Place.id == PartyOrganization.place_id),
            ],
        ):
            if key in out:
                out[key].party_activities = int(n)

    # bursts and bulk duplicates
    def _quality(self, out: dict[int, Figures]) -> None:
        hour = _hour(Case.reported_at)
        bursts = [
            row
            for row in self.rows(
                Case,
                [func.count()],
                Account.role == "gridworker",
                *self.case_where(),
                group=[Case.reporter_id, hour],
                joins=[(Account, Account.id == Case.reporter_id)],
                having=func.count() > BURST_PER_HOUR,
            )
            if row[0] in out
        ]
        bulk = [
            row
            for row in self.rows(
                Case,
                [func.count(), _count(Case.state == "duplicate")],
                Case.reporter_id.is_not(None),
                *self.case_where(),
                group=[Case.reporter_id],
                having=_count(Case.state == "duplicate") >= BULK_DUPLICATES_MIN,
            )
            if row[0] in out
        ]
        bulk = [row for row in bulk if row[3] >= BULK_DUPLICATES_SHARE * row[2]]
        names = _names({row[1] for row in bursts} | {row[1] for row in bulk})
        for key, reporter, at, n in bursts:
            when = local(_as_datetime(at), self.tz).strftime("%Y-%m-%d %H:00")
            message = (
                f"网格员 {names.get(reporter, reporter)} 在 {when} 起的一小时内上报 {n} 件"
                f"（超过 {BURST_PER_HOUR} 件），疑似批量或虚假上报，上报数不宜直接采信"
            )
            out[key].flags += [Flag("reported", message), Flag("gridworker_reports", message)]
        for key, reporter, total, dups in bulk:
            message = (
                f"{names.get(reporter, reporter)} 本期有 {dups} 件被判为重复，占其上报的 "
                f"{pct_text(dups / total)}，疑似批量重复上报"
            )
            out[key].flags += [Flag("duplicates", message), Flag("reported", message)]


compliance_of = patrol_compliance  # the SQL path on PostgreSQL lives in measures.py


def _compliance_once(ids: list[int], period: Period, tz: str) -> dict[int, bool | None]:
    """compliance_of, computed once per request for the same gridworkers and period: a drill-down page asks
    twice (the place's own figures, then its children's table, over the same people: a city's 15,000)."""
    from flask import g, has_request_context

    if not has_request_context():  # a job's or a long-lived context: its data may change between calls
        return compliance_of(ids, period, tz)
    memo = g.setdefault("_patrol_compliance", {})
    key = (period.start, period.end, tz, local_today(tz), tuple(sorted(ids)))
    if key not in memo:
        memo[key] = compliance_of(ids, period, tz)
    return memo[key]


def visit_windows(frequency: str, period: Period, today: date) -> list[tuple[date, date]]:
    """The visit windows (first day, last day counted) over which a population visited at `frequency` is measured
    for `period` (issue 12 §i). Windows are those of the gridworker pages (``gridworker.service.period_bounds``):
    ISO weeks (Monday–Sunday), calendar months, calendar quarters.

    - a period not over yet (it contains today): the one window containing today — this week, this month, this
      quarter — from its first day up to today;
    - a period already over: every window whose last day falls inside the period, whole; when none does (a quarter
      measured for one month, a month for one week), the window containing the period's last day, from its first
      day up to that last day;
    - a period still to come: none (nothing is due yet).
    A window may begin before the period (a rental house visited in October has its quarter done in November)."""
    from .gridworker.service import period_bounds

    if period.start > today:
        return []
    if period.end >= today:
        return [(period_bounds(frequency, today)[0], today)]
    ended = []
    day = period_bounds(frequency, period.start)[0]
    while day <= period.end:
        first, last = period_bounds(frequency, day)
        if period.start <= last <= period.end:
            ended.append((first, last))
        day = last + timedelta(days=1)
    return ended or [(period_bounds(frequency, period.end)[0], period.end)]


def required_frequency(kind: str) -> str:
    """The frequency domain.md §3 requires of a population (weekly empty-nest elderly, quarterly rental houses,
    monthly the others): the import's default, shown for a population with nobody assigned."""
    from .importer.loaders import DEFAULT_PERSON_FREQUENCY, DEFAULT_SITE_FREQUENCY

    return {**DEFAULT_PERSON_FREQUENCY, **DEFAULT_SITE_FREQUENCY}.get(kind, "monthly")


def _names(ids) -> dict[int, str]:
    ids = {i for i in ids if i is not None}
    if not ids:
        return {}
    return dict(db.execute(select(Account.id, Account.display_name).where(Account.id.in_(ids))).all())


def _derive(fig: Figures, patrol_undefined: bool = False) -> None:
    """The rates from the counts, and the flags of impossible figures."""
    fig.closure_rate = ratio(fig.closed, fig.reported)
    fig.valid_rate = ratio(fig.valid, fig.valid + fig.invalid)
    fig.reported_to_town_share = ratio(fig.reported_to_town, fig.reported)
    fig.reported_to_town_closure_rate = ratio(fig.reported_to_town_closed, fig.reported_to_town)
    fig.reported_to_city_share = ratio(fig.reported_to_city, fig.reported)
    fig.reported_to_city_closure_rate = ratio(fig.reported_to_city_closed, fig.reported_to_city)
    fig.timeliness = ratio(fig.assessed - fig.overdue, fig.assessed)
    fig.hazard_share = ratio(fig.by_kind.get("hazard", 0), fig.reported)
    fig.dispute_share = ratio(fig.by_kind.get("dispute", 0), fig.reported)
    fig.dispute_success_rate = ratio(sum(fig.disputes_resolved.values()), sum(fig.disputes_screened.values()))
    fig.reports_per_gridworker = ratio(fig.gridworker_reports, fig.gridworkers)
    fig.patrol_rate = None if patrol_undefined else ratio(fig.patrol_compliant, fig.gridworkers)
    fig.attendance_rate = ratio(fig.attended, fig.gridworkers)
    fig.login_rate = ratio(fig.admins_logged_in, fig.admins)
    fig.special_visit_rate = ratio(fig.special_visited, fig.special_assigned)
    fig.linkage_rate = ratio(fig.linked_persons, fig.registered_population)
    # impossible counts: a part larger than its whole
    for part, whole in (
        ("closed", "reported"),
        ("patrol_compliant", "gridworkers"),
        ("attended", "gridworkers"),
        ("admins_logged_in", "admins"),
        ("linked_persons", "registered_population"),
    ):
        p, w = getattr(fig, part), getattr(fig, whole)
        if p > w:
            fig.flags.append(
                Flag(part, f"{LABELS.get(part, part)} {p} 多于{_WHOLE.get(whole, whole)} {w}，数据可能有误")
            )
    for name in RATE_FIELDS:
        value = getattr(fig, name)
        if value is not None and value > 1:
            fig.flags.append(Flag(name, _over_message(name, value)))
    for kind, (assigned, visited, rate) in fig.visits.items():
        if rate is not None and rate > 1:
            fig.flags.append(
                Flag(
                    f"visits.{kind}",
                    f"{VISIT_LABELS.get(kind, kind)}走访率 {pct_text(rate)} 超过 100%"
                    f"（走访 {visited}，应访 {assigned}），数据可能有误",
                )
            )


_WHOLE = {
    "reported": "上报事件数",
    "gridworkers": "网格员总数",
    "admins": "管理员账号数",
    "registered_population": "登记人口",
}


def _over_message(name: str, value: float) -> str:
    if name == "linkage_rate":
        return f"人房关联率 {pct_text(value)} 超过 100%，登记数据可能有误"
    return f"{LABELS.get(name, name)} {pct_text(value)} 超过 100%，数据可能有误"


# --- the public functions ----------------------------------------------------------------------------


def figures(place: Place, period: Period, filters: Filters | None = None) -> Figures:
    """The figures of one place."""
    return _Calc(place, period, filters, None).compute([place])[0]


def event_figures(place: Place, period: Period, filters: Filters | None = None) -> Figures:
    """Only the event figures of one place (reported, closed, closure_rate, by_kind, overdue, timeliness,
    escalations, duplicates ...), from the one query that ``figures`` also runs: the wall's 今日 panel calls
    this, the drill-down and /m/ call ``figures``, so the same figure is the same number on all of them. The
    people, visit and collection fields stay at their zero defaults."""
    return _Calc(place, period, filters, None).compute([place], events_only=True)[0]


def event_children(place: Place, period: Period, filters: Filters | None = None) -> list[Figures]:
    """``event_figures`` of each child place (one grouped query), e.g. the timeliness ranking on a town's wall."""
    kids = child_places(place)
    if not kids:
        return []
    return _Calc(place, period, filters, CHILD_LEVEL[place.level]).compute(kids, events_only=True)


def child_places(place: Place) -> list[Place]:
    """The active places one level below `place`, by code (a grid has none)."""
    level = CHILD_LEVEL.get(place.level)
    return places_inside(place, level) if level else []


def children(place: Place, period: Period, filters: Filters | None = None) -> list[Figures]:
    """One Figures per child place (city→towns, town→villages, village→grids); [] for a grid."""
    kids = child_places(place)
    if not kids:
        return []
    return _Calc(place, period, filters, CHILD_LEVEL[place.level]).compute(kids)


def gridworker_rows(
    place: Place, period: Period, filters: Filters | None = None, account_id: int | None = None
) -> list[dict]:
    """One row per active gridworker inside `place` (or only `account_id`), ordered by grid code and name.

    A row: account_id, name, username, post, grid_id, grid, village_id, town_id; reports (his reported cases in
    the period, duplicates excluded, wherever they are, narrowed by the filters), closed, closure_rate, hazard,
    dispute, duplicates, overdue (逾期事件: not rejected, marked overdue); patrol_compliant (bool | None), sign_in_days, visits (visits made in the
    period), visited (distinct persons and sites visited); flags (list of Flag: bursts, bulk duplicates)."""
    calc = _Calc(place, period, filters, None)
    stmt = (
        select(
            Account.id,
            Account.display_name,
            Account.username,
            Account.post,
            Place.id,
            Place.name,
            Account.village_id,
            Account.town_id,
        )
        .join(Place, Place.id == Account.place_id)
        .where(Account.role == "gridworker", Account.active.is_(True))
    )
    if account_id is not None:
        stmt = stmt.where(Account.id == account_id)
    stmt = _restrict(stmt, Account, place).order_by(Place.code, Account.display_name, Account.id)
    rows: dict[int, dict] = {}
    for aid, name, username, post, grid_id, grid, village_id, town_id in db.execute(stmt):
        rows[aid] = dict(
            account_id=aid,
            name=name,
            username=username,
            post=post,
            grid_id=grid_id,
            grid=grid,
            village_id=village_id,
            town_id=town_id,
            reports=0,
            closed=0,
            hazard=0,
            dispute=0,
            duplicates=0,
            overdue=0,
            closure_rate=None,
            patrol_compliant=None,
            sign_in_days=0,
            visits=0,
            visited=0,
            flags=[],
        )
    if not rows:
        return []
    ids = list(rows)
    live = Case.state != "duplicate"
    for i in range(0, len(ids), 900):
        chunk = ids[i : i + 900]
        stmt = (
            select(
                Case.reporter_id,
                _count(live),
                _count(and_(live, Case.state == "closed")),
                _count(and_(live, Case.kind == "hazard")),
                _count(and_(live, Case.kind == "dispute")),
                _count(Case.state == "duplicate"),
                _count(and_(live, Case.state != "rejected", Case.overdue.is_(True))),
            )
            .where(Case.reporter_id.in_(chunk), *calc.case_where())
            .group_by(Case.reporter_id)
        )
        for aid, reports, closed, hazard, dispute, dups, overdue in db.execute(stmt):
            rows[aid].update(
                reports=int(reports),
                closed=int(closed),
                hazard=int(hazard),
                dispute=int(dispute),
                duplicates=int(dups),
                overdue=int(overdue),
            )
            total = int(reports) + int(dups)
            if int(dups) >= BULK_DUPLICATES_MIN and int(dups) >= BULK_DUPLICATES_SHARE * total:
                rows[aid]["flags"].append(
                    Flag(
                        "duplicates",
                        f"本期 {dups} 件被判为重复，占其上报的 {pct_text(int(dups) / total)}，疑似批量重复上报",
                    )
                )
        hour = _hour(Case.reported_at)
        stmt = (
            select(Case.reporter_id, hour, func.count())
            .where(Case.reporter_id.in_(chunk), *calc.case_where())
            .group_by(Case.reporter_id, hour)
            .having(func.count() > BURST_PER_HOUR)
        )
        for aid, at, n in db.execute(stmt):
            when = local(_as_datetime(at), calc.tz).strftime("%Y-%m-%d %H:00")
            rows[aid]["flags"].append(
                Flag("reports", f"{when} 起的一小时内上报 {n} 件（超过 {BURST_PER_HOUR} 件），疑似批量或虚假上报")
            )
        for aid, days in db.execute(
            select(SignIn.account_id, func.count(distinct(SignIn.day)))
            .where(SignIn.account_id.in_(chunk), SignIn.day >= period.start, SignIn.day <= period.end)
            .group_by(SignIn.account_id)
        ):
            rows[aid]["sign_in_days"] = int(days)
        for aid, n, persons, sites in db.execute(
            select(
                Visit.gridworker_id,
                func.count(),
                func.count(distinct(Visit.person_id)),
                func.count(distinct(Visit.site_id)),
            )
            .where(Visit.gridworker_id.in_(chunk), Visit.at >= calc.begin, Visit.at < calc.finish)
            .group_by(Visit.gridworker_id)
        ):
            rows[aid].update(visits=int(n), visited=int(persons) + int(sites))
    for aid, ok in compliance_of(ids, period, calc.tz).items():
        rows[aid]["patrol_compliant"] = ok
    for row in rows.values():
        row["closure_rate"] = ratio(row["closed"], row["reports"])
    return list(rows.values())


def trend(place: Place, period: Period, filters: Filters | None = None) -> dict:
    """Reports and closures per local day of the period up to today: {"days": [iso...], "reported": [...],
    "closed": [...]}.

    Reported: as ``Figures.reported`` (duplicates excluded); closed: cases of the place (same filters) whose
    closing time falls on that day, whenever they were reported. Counted per UTC hour in SQL, then mapped to
    the local day here (a few hundred rows whatever the number of cases)."""
    calc = _Calc(place, period, filters, None)
    today = local_today(calc.tz)
    days = [d for d in period.days() if d <= today]  # days still to come would draw a fall to zero
    index = {d: i for i, d in enumerate(days)}
    reported, closed = [0] * len(days), [0] * len(days)
    hour = _hour(Case.reported_at)
    stmt = _restrict(
        select(hour, func.count()).where(Case.state != "duplicate", *calc.case_where()), Case, place
    ).group_by(hour)
    for at, n in db.execute(stmt):
        day = local(_as_datetime(at), calc.tz).date()
        if day in index:
            reported[index[day]] += int(n)
    f = calc.filters
    conds = [Case.state == "closed", Case.closed_at >= calc.begin, Case.closed_at < calc.finish]
    if f.kind:
        conds.append(Case.kind == f.kind)
    if calc.cat_ids is not None:
        conds.append(Case.category_id.in_(calc.cat_ids))
    if f.source:
        conds.append(Case.source == f.source)
    if f.state and f.state != "closed":
        conds.append(Case.id.is_(None))  # a state filter other than closed leaves no closures
    hour = _hour(Case.closed_at)
    stmt = _restrict(select(hour, func.count()).where(*conds), Case, place).group_by(hour)
    for at, n in db.execute(stmt):
        day = local(_as_datetime(at), calc.tz).date()
        if day in index:
            closed[index[day]] += int(n)
    return {"days": [d.isoformat() for d in days], "reported": reported, "closed": closed}


def case_conditions(period: Period, filters: Filters | None = None) -> list:
    """The WHERE conditions of "cases reported in the period, narrowed by the filters" (duplicates included)."""
    return _Calc._conditions(period, filters or Filters())
