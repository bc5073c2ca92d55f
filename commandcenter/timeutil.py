"""Clock helpers: the database holds naive UTC, people read local time."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import current_app, has_app_context

DEFAULT_TZ = "Asia/Shanghai"


def current_tz() -> str:
    """The city's time zone, the one accessor everything uses: the app's setting (CC_TIMEZONE) inside an
    application, else CC_TIMEZONE from the environment (workers' helpers, scripts), else Asia/Shanghai."""
    if has_app_context() and "SETTINGS" in current_app.config:
        return current_app.config["SETTINGS"].timezone
    return os.environ.get("CC_TIMEZONE") or DEFAULT_TZ


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def local(dt_utc: datetime | None, tz: str | None = None) -> datetime | None:
    """Naive UTC (as stored) → naive local time; an aware datetime is converted from its own zone."""
    if dt_utc is None:
        return None
    tz = tz or current_tz()
    aware = dt_utc if dt_utc.tzinfo else dt_utc.replace(tzinfo=UTC)
    return aware.astimezone(ZoneInfo(tz)).replace(tzinfo=None)


def from_local(dt_local: datetime, tz: str | None = None) -> datetime:
    """Naive local time → naive UTC for storage; an aware datetime is converted from its own zone."""
    tz = tz or current_tz()
    aware = dt_local if dt_local.tzinfo else dt_local.replace(tzinfo=ZoneInfo(tz))
    return aware.astimezone(UTC).replace(tzinfo=None)


def local_today(tz: str | None = None, now: datetime | None = None) -> date:
    return local(now or utcnow(), tz).date()


def day_bounds_utc(day: date, tz: str | None = None) -> tuple[datetime, datetime]:
    """The UTC interval [start, end) of a local calendar day."""
    start = from_local(datetime.combine(day, time.min), tz)
    return start, start + timedelta(days=1)


def month_bounds_utc(year: int, month: int, tz: str | None = None) -> tuple[datetime, datetime]:
    start = from_local(datetime(year, month, 1), tz)
    ny, nm = (year + 1, 1) if month == 12 else (year, month + 1)
    return start, from_local(datetime(ny, nm, 1), tz)


def fmt(dt_utc: datetime | None, tz: str | None = None, pattern: str = "%Y-%m-%d %H:%M") -> str:
    return "" if dt_utc is None else local(dt_utc, tz).strftime(pattern)
