"""The wall's thresholds and sizes: the defaults are settings (WALL_* in the environment, read and checked
once in commandcenter.settings), a city may override them in the editable setting "wall" (a SettingValue
row, e.g. {"attendance_threshold": 0.85}), and tests through app.config["WALL_SETTINGS"]."""

from __future__ import annotations

import logging

from flask import current_app

from ..db import db
from ..models import SettingValue
from ..settings import ratio

log = logging.getLogger(__name__)
KEYS = ("attendance_threshold", "login_threshold", "ticker_rows", "max_points", "online_window_s")
RATIOS = ("attendance_threshold", "login_threshold")


def defaults() -> dict[str, float | int]:
    s = current_app.config["SETTINGS"]
    return {
        "attendance_threshold": s.wall_attendance_threshold,  # towns below this attendance today are highlighted
        "login_threshold": s.wall_login_threshold,  # admin-account login rate this month below this is in red
        "ticker_rows": s.wall_ticker_rows,  # alert rows shown (the rest are counted)
        "max_points": s.wall_max_points,  # open cases drawn on the map at most
        "online_window_s": 300,  # a gridworker is online while his last heartbeat is this recent
    }


def wall_settings() -> dict:
    """The settings' values, overridden by the editable setting "wall", then by app.config["WALL_SETTINGS"].
    A bad value in the editable row is logged and ignored (the settings themselves were checked at start)."""
    values = defaults()
    sources: list[dict] = []
    row = db.get(SettingValue, "wall")
    if row is not None and isinstance(row.value, dict):
        sources.append(row.value)
    sources.append(current_app.config.get("WALL_SETTINGS") or {})
    for source in sources:
        for key, raw in source.items():
            if key not in KEYS:
                continue
            try:
                values[key] = ratio(raw) if key in RATIOS else max(1, int(raw))
            except (TypeError, ValueError):
                log.warning("wall setting %s=%r ignored (not a valid value)", key, raw)
    return values
