"""A department's work queue (职能部门工作台): its cases by time left, its counts, feedback photos.

Every step is taken through cases.actions.perform (the same door as the case page and the API); this
module only reads, and stores the photos of a feedback under the API's upload rules.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from ..db import db
from ..models import Case, CasePhoto, ExtensionRequest
from ..timeutil import current_tz, local, month_bounds_utc, utcnow
from ..workcalendar import DEFAULT_PERIODS, deadline_utc

OPEN_FOR_DEPT = ("dispatched", "handling")
# one working day of the default calendar, in working hours (7.5 h)
WORKDAY_HOURS = sum(
    (datetime.combine(datetime.min, end) - datetime.combine(datetime.min, start)).total_seconds() / 3600
    for start, end in DEFAULT_PERIODS
)
MAX_PHOTOS = 6


# --- time left ---------------------------------------------------------------------------------------


def urgency(case: Case, now: datetime, soon: datetime) -> str:
    """'overdue' (逾期, red), 'soon' (less than one working day left, orange), 'ok' (green) or 'none'."""
    if case.overdue or (case.paused_at is None and case.handle_due is not None and case.handle_due < now):
        return "overdue"
    if case.handle_due is None:
        return "none"
    if case.paused_at is None and case.handle_due <= soon:
        return "soon"
    return "ok"


def soon_limit(now: datetime) -> datetime:
    """A limit before this moment leaves less than one working day."""
    return deadline_utc(now, WORKDAY_HOURS, "work_hours", current_tz())


def time_left(case: Case, now: datetime) -> str:
    """剩 2天3时 / 超时 5时10分, in calendar time (the colour says whether it is less than a working day)."""
    if case.handle_due is None:
        return "无时限"
    seconds = (case.handle_due - now).total_seconds()
    past = seconds < 0
    minutes = int(abs(seconds)) // 60
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    body = f"{days}天{hours}时" if days else f"{hours}时{mins:02d}分"
    return ("超时 " if past else "剩 ") + body


# --- the queue ---------------------------------------------------------------------------------------


@dataclass
class Row:
    case: Case
    urgency: str
    left: str
    pending: ExtensionRequest | None


def queue(department_id: int, now: datetime | None = None) -> dict[str, list[Row]]:
    """The department's open cases, least time left first: to accept (待签收), in hand (办理中),
    and those it answered that wait for the center's verification (待核查)."""
    now = now or utcnow()
    soon = soon_limit(now)
    cases = (
        db.execute(
            select(Case)
            .options(joinedload(Case.category), joinedload(Case.grid))
            .where(Case.department_id == department_id, Case.state.in_((*OPEN_FOR_DEPT, "feedback")))
            .order_by(Case.handle_due.is_(None), Case.handle_due, Case.id)
        )
        .unique()
        .scalars()
        .all()
    )
    pending = {
        r.case_id: r
        for r in db.execute(
            select(ExtensionRequest).where(
                ExtensionRequest.case_id.in_([c.id for c in cases] or [0]), ExtensionRequest.status == "pending"
            )
        ).scalars()
    }
    groups: dict[str, list[Row]] = {"dispatched": [], "handling": [], "feedback": []}
    for case in cases:
        groups[case.state].append(Row(case, urgency(case, now, soon), time_left(case, now), pending.get(case.id)))
    return groups


@dataclass
class Counts:
    open: int  # 在办: dispatched or in hand
    overdue: int  # of them, past their limit
    closed_month: int  # 本月办结
    on_time_month: int  # of them, closed within the limit

    @property
    def on_time_rate(self) -> float | None:
        """按时办结率, or None when nothing was closed this month."""
        return self.on_time_month / self.closed_month if self.closed_month else None


def counts(department_id: int, now: datetime | None = None) -> Counts:
    """The department's own figures: the one definition its page and its tests use."""
    now = now or utcnow()
    tz = current_tz()
    today = local(now, tz)
    start, end = month_bounds_utc(today.year, today.month, tz)
    mine = Case.department_id == department_id
    running_overdue = (Case.overdue.is_(True)) | (
        Case.paused_at.is_(None) & Case.handle_due.is_not(None) & (Case.handle_due < now)
    )
    open_count, overdue = db.execute(
        select(func.count(), func.count().filter(running_overdue)).where(mine, Case.state.in_(OPEN_FOR_DEPT))
    ).one()
    on_time = Case.overdue.is_(False) & (Case.handle_due.is_(None) | (Case.closed_at <= Case.handle_due))
    closed, closed_on_time = db.execute(
        select(func.count(), func.count().filter(on_time)).where(
            mine, Case.state == "closed", Case.closed_at >= start, Case.closed_at < end
        )
    ).one()
    return Counts(open=open_count, overdue=overdue, closed_month=closed, on_time_month=closed_on_time)


def extensions_of(case: Case) -> list[ExtensionRequest]:
    return (
        db.execute(
            select(ExtensionRequest).where(ExtensionRequest.case_id == case.id).order_by(ExtensionRequest.id.desc())
        )
        .scalars()
        .all()
    )


# --- feedback photos -----------------------------------------------------------------------------------


class PhotoError(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def check_photos(uploads) -> list[tuple[bytes, str, str]]:
    """The photos of a feedback, checked as the API checks them (JPEG or PNG by content, size-limited),
    before any step is taken: [(content, content type, extension)]."""
    from ..api.views import IMAGE_SIGNATURES

    settings = current_app.config["SETTINGS"]
    files = [u for u in uploads if u and u.filename]
    if len(files) > MAX_PHOTOS:
        raise PhotoError(f"现场照片最多 {MAX_PHOTOS} 张")
    out = []
    for upload in files:
        content = upload.stream.read(settings.upload_max_bytes + 1)
        if len(content) > settings.upload_max_bytes:
            raise PhotoError(f"照片「{upload.filename}」超过 {settings.upload_max_bytes // 1024 // 1024} MB")
        if not content:
            raise PhotoError(f"照片「{upload.filename}」是空文件")
        kind = next(((ctype, ext) for sig, ctype, ext in IMAGE_SIGNATURES if content.startswith(sig)), None)
        if kind is None:
            raise PhotoError(f"照片「{upload.filename}」不是 JPEG 或 PNG 图片")
        out.append((content, *kind))
    return out


def store_photos(case: Case, photos: list[tuple[bytes, str, str]]) -> int:
    """Store checked photos under their digest (a photo sent twice is kept once). Returns how many are new."""
    settings = current_app.config["SETTINGS"]
    settings.upload_dir.mkdir(parents=True, exist_ok=True)
    added = 0
    for content, content_type, ext in photos:
        digest = hashlib.sha256(content).hexdigest()
        if db.query(CasePhoto).filter_by(case_id=case.id, sha256=digest).one_or_none() is not None:
            continue
        stored_name = f"{digest}.{ext}"
        path = settings.upload_dir / stored_name
        if not path.exists():
            tmp = path.with_suffix(".part")
            tmp.write_bytes(content)
            tmp.replace(path)
        db.add(
            CasePhoto(
                case_id=case.id, stored_name=stored_name, content_type=content_type, size=len(content), sha256=digest
            )
        )
        added += 1
    db.commit()
    return added


def month_label(now: datetime | None = None) -> str:
    return local(now or utcnow(), current_tz()).strftime("%Y年%m月")
