"""Loading a year of the official working calendar: the State Council's notice (国务院办公厅关于某年部分节假日
安排的通知) as CSV or JSON, checked line by line, written in one transaction, audited, and followed by the
recomputation of every open deadline that was counted over that year while it was unknown.

CSV (UTF-8, with a header):        JSON:
    date,type,name                     {"year": 2027, "note": "国办发明电〔2026〕…号",
    2027-01-01,休,元旦                   "days": [{"date": "2027-01-01", "type": "休", "name": "元旦"}, …]}
    2027-02-07,班,春节调休上班
`type` is 休 (holiday: no work, also 休息日 / holiday) or 班 (make-up workday: 上班 / 补班 / workday).
List every day of the notice that differs from Monday–Friday; the other days follow the week.
The pages, the CLI (`flask calendar import`) and the tests all call `load_year`.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import date

from sqlalchemy import delete, select

from . import alerts, workcalendar
from .audit import audit
from .db import db
from .inputs import DATE_MAX, DATE_MIN
from .models import Account, CalendarDay, CalendarYear, Case
from .timeutil import current_tz, local, local_today, utcnow
from .vocabulary import RUNNING_STATES

HOLIDAY = ("休", "休息日", "放假", "holiday")
WORKDAY = ("班", "上班", "补班", "workday")
NAME_MAX = 40
NOTE_MAX = 200
WARN_FROM = (11, 1)  # from 1 November, a missing next year is announced to the administrator and duty officers


class NoticeError(ValueError):
    """A notice that cannot be loaded; `problems` name the line (or item) and the field of each fault."""

    def __init__(self, problems: list[str]):
        super().__init__("；".join(problems))
        self.problems = problems


@dataclass
class NoticeDay:
    day: date
    workday: bool
    name: str | None


def parse(filename: str, data: bytes) -> tuple[list[NoticeDay], str | None]:
    """The days of a notice file (by its extension: .csv or .json), and the note it carries (JSON only)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise NoticeError(["文件须为 UTF-8 编码"]) from None
    if filename.lower().endswith(".json"):
        return _parse_json(text)
    if filename.lower().endswith(".csv"):
        return _parse_csv(text), None
    raise NoticeError(["文件须为 .csv 或 .json"])


def _day(raw, where: str, problems: list[str]) -> NoticeDay | None:
    raw_date, raw_type, raw_name = (str(raw.get(k) or "").strip() for k in ("date", "type", "name"))
    found = len(problems)
    try:
        day = date.fromisoformat(raw_date)
        if not DATE_MIN <= day <= DATE_MAX:
            raise ValueError
    except ValueError:
        problems.append(
            f"{where} date：“{raw_date[:20]}”不是 {DATE_MIN.year}–{DATE_MAX.year} 年间的日期（格式 YYYY-MM-DD）"
        )
        day = None
    if raw_type in HOLIDAY:
        workday = False
    elif raw_type in WORKDAY:
        workday = True
    else:
        problems.append(f"{where} type：“{raw_type[:10]}”无效，应为 休 或 班")
        workday = None
    if len(raw_name) > NAME_MAX:
        problems.append(f"{where} name：不能超过 {NAME_MAX} 个字")
    if len(problems) > found:
        return None
    return NoticeDay(day, workday, raw_name or None)


def _parse_csv(text: str) -> list[NoticeDay]:
    reader = csv.DictReader(io.StringIO(text))
    missing = {"date", "type"} - set(reader.fieldnames or ())
    if missing:
        raise NoticeError([f"第 1 行：缺少列 {'、'.join(sorted(missing))}（表头应为 date,type,name）"])
    problems: list[str] = []
    days = [_day(row, f"第 {reader.line_num} 行", problems) for row in reader]
    if problems:
        raise NoticeError(problems)
    return [d for d in days if d]


def _parse_json(text: str) -> tuple[list[NoticeDay], str | None]:
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NoticeError([f"JSON 第 {exc.lineno} 行：格式错误"]) from None
    if not isinstance(body, dict) or not isinstance(body.get("days"), list):
        raise NoticeError(['JSON 须为 {"year": …, "days": [{"date", "type", "name"}, …]}'])
    problems: list[str] = []
    days = [_day(item if isinstance(item, dict) else {}, f"days[{i}]", problems) for i, item in enumerate(body["days"])]
    note = body.get("note")
    if note is not None and (not isinstance(note, str) or len(note) > NOTE_MAX):
        problems.append(f"note：须为不超过 {NOTE_MAX} 个字的文字")
    year = body.get("year")
    if year is not None and (not isinstance(year, int) or any(d and d.day.year != year for d in days)):
        problems.append("year：与 days 中的日期年份不一致")
    if problems:
        raise NoticeError(problems)
    return [d for d in days if d], note


def check(days: list[NoticeDay]) -> int:
    """The year of the notice: one year, no day twice, at least one holiday, a 休 on a working weekday or a
    班 on a weekend (a day that is the week's anyway is refused as a probable typo)."""
    if not days:
        raise NoticeError(["文件中没有任何日期"])
    problems = []
    years = sorted({d.day.year for d in days})
    if len(years) > 1:
        problems.append(f"一个文件只能是一年的安排，收到 {'、'.join(map(str, years))} 年")
    seen: set[date] = set()
    for d in days:
        if d.day in seen:
            problems.append(f"{d.day.isoformat()}：重复")
        seen.add(d.day)
        if d.workday and d.day.weekday() < 5:
            problems.append(f"{d.day.isoformat()}：是工作日，无须标为“班”")
    if not any(not d.workday for d in days):
        problems.append("没有任何放假日期（“休”）：请核对是否为国务院节假日安排通知")
    if problems:
        raise NoticeError(problems)
    return years[0]


def load_year(actor: Account | None, days: list[NoticeDay], note: str | None = None) -> dict:
    """Replace the year's calendar with the notice's days, then recompute the deadlines that were assumed.
    Returns what was done (year, holidays, workdays, cases recomputed). Commits."""
    year = check(days)
    before = db.get(CalendarYear, year)
    before_text = (
        f"{before.source}，{len(db.scalars(select(CalendarDay.day).where(CalendarDay.year == year)).all())} 天"
        if before
        else "无"
    )
    assumed = _assumed_bases()  # counted under the calendar as it is, before the year changes
    db.execute(delete(CalendarDay).where(CalendarDay.year == year))
    if before is None:
        db.add(CalendarYear(year=year, source="notice"))
        db.flush()
    row = db.get(CalendarYear, year)
    row.source, row.note, row.loaded_at = "notice", (note or None), utcnow()
    row.loaded_by_id = actor.id if actor else None
    db.add_all(CalendarDay(day=d.day, year=year, workday=d.workday, name=d.name) for d in days)
    db.flush()
    workcalendar.reset_held_years()
    recomputed = _recompute(assumed)
    holidays = sum(1 for d in days if not d.workday)
    audit(
        "calendar.import",
        "calendar_year",
        year,
        account=actor,
        detail=f"之前：{before_text}；之后：国务院通知，休 {holidays} 天、班 {len(days) - holidays} 天"
        + (f"（{note}）" if note else "")
        + f"；重算按假定日历计算的时限 {recomputed} 件",
    )
    db.commit()
    workcalendar.reset_held_years()  # other requests of this process read the committed year at once
    return {"year": year, "holidays": holidays, "workdays": len(days) - holidays, "recomputed": recomputed}


_LIMITS = (
    ("dispatch_due", "dispatch_limit", "dispatch_unit"),
    ("handle_due", "handle_limit", "handle_unit"),
    ("escalate_due", "escalate_limit", "escalate_unit"),
)


def _assumed_bases() -> dict[int, dict[str, object]]:
    """For each open case whose deadlines were assumed: each limit counted from its registration now."""
    cases = db.scalars(select(Case).where(Case.deadline_assumed.is_(True), Case.state.in_(RUNNING_STATES))).all()
    return {case.id: _bases(case) for case in cases}


def _bases(case: Case) -> dict[str, object]:
    tz = current_tz()
    category = alerts.limits_of(case)  # the limits the case was given at its report
    out = {}
    for due_attr, limit_attr, unit_attr in _LIMITS:
        if getattr(case, due_attr) is not None and getattr(category, limit_attr) and case.registered_at:
            out[due_attr] = workcalendar.deadline_utc(
                case.registered_at, getattr(category, limit_attr), getattr(category, unit_attr), tz
            )
    return out


def _recompute(assumed: dict[int, dict[str, object]]) -> int:
    """Move each assumed deadline by what the known calendar changes in its count (a pause's shift is kept),
    plan its warning again, and mark the case assumed only if a year is still unknown."""
    tz = current_tz()
    for case_id, old in assumed.items():
        case = db.get(Case, case_id)
        new = _bases(case)
        for attr, old_due in old.items():
            if attr in new:
                setattr(case, attr, getattr(case, attr) + (new[attr] - old_due))
        dues = [d for d in (case.dispatch_due, case.handle_due, case.escalate_due) if d is not None]
        case.deadline_assumed = bool(dues) and workcalendar.assumed_between(
            local(case.registered_at, tz).date(), local(max(dues), tz).date()
        )
        if case.escalate_due is not None:
            case.escalate_warn_at = alerts.warn_time(case.registered_at, case.escalate_due, alerts.limits_of(case))
    return len(assumed)


def missing_year_warning(today: date | None = None) -> str | None:
    """From 1 November, when next year's holidays are not held; at once when this year's are not."""
    today = today or local_today()
    if not workcalendar.year_known(today.year):
        return (
            f"{today.year} 年节假日安排尚未导入：办理时限暂按周一至周五计算，请系统管理员在「工作日历」导入国务院通知。"
        )
    if (today.month, today.day) >= WARN_FROM and not workcalendar.year_known(today.year + 1):
        return (
            f"{today.year + 1} 年节假日安排尚未导入：跨年的办理时限暂按周一至周五计算（标注“按假定日历”），"
            f"请系统管理员在「工作日历」导入国务院通知。"
        )
    return None


def year_rows(year: int) -> list[CalendarDay]:
    return list(db.scalars(select(CalendarDay).where(CalendarDay.year == year).order_by(CalendarDay.day)))


def held_years() -> list[CalendarYear]:
    return list(db.scalars(select(CalendarYear).order_by(CalendarYear.year.desc())))
