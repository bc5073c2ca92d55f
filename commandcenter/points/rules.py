"""The points rulebook (积分规则) and the ranking of places: plain functions, no database.

A gridworker's work in a period is first counted (a `Tally`), then priced by the rulebook; the points add
up per grid, village and town. Villages and towns also earn information-collection points of their own.
See docs/points.md for the definitions.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from ..ranking import competition_ranks

# (key, Chinese name), in the order of the columns
POINT_KINDS: tuple[tuple[str, str], ...] = (
    ("signin", "签到积分"),
    ("event", "事件积分"),
    ("escalation_bonus", "流转办结加分"),
    ("hazard", "隐患积分"),
    ("dispute", "纠纷积分"),
    ("visit", "走访积分"),
    ("collection", "信息采集积分"),
)
KIND_KEYS = tuple(key for key, _ in POINT_KINDS)
KIND_NAMES = dict(POINT_KINDS)

# points per unit of work; each city may change them (SettingValue "points_rules")
DEFAULT_RULES: dict[str, float] = {
    "signin": 1.0,  # per day signed in
    "event": 2.0,  # per valid report
    "escalation_bonus": 3.0,  # per reported case escalated to the town or city center and closed there
    "hazard": 2.0,  # per valid safety-hazard report (on top of the event points)
    "dispute": 2.0,  # per valid dispute report (on top of the event points)
    "visit": 1.0,  # per visit of a person or a site
    "collection": 0.01,  # per record added to the village's registry (persons + houses) in the period
}
RULE_UNITS: dict[str, str] = {
    "signin": "分/天",
    "event": "分/件",
    "escalation_bonus": "分/件",
    "hazard": "分/件",
    "dispute": "分/件",
    "visit": "分/次",
    "collection": "分/条",
}
RULE_HELP: dict[str, str] = {
    "signin": "每签到一天",
    "event": "每上报一件有效事件（自办自结须当日办结）",
    "escalation_bonus": "上报的事件流转至镇（街道）或市中心并在该级办结",
    "hazard": "每上报一件有效安全隐患（另计事件积分）",
    "dispute": "每上报一件有效矛盾纠纷（另计事件积分）",
    "visit": "每走访一次重点人员或场所",
    "collection": "村（社区）人口、房屋登记数每新增一条，计入村（社区）和镇（街道），不计入网格员",
}
MAX_RULE_VALUE = 1000.0


@dataclass
class Tally:
    """What one gridworker did in the period."""

    signin_days: int = 0
    valid_reports: int = 0
    escalated_closed: int = 0
    hazard_reports: int = 0
    dispute_reports: int = 0
    visits: int = 0


def parse_rule_value(raw: object) -> float:
    """A rulebook value: a finite, non-negative number (ValueError with a Chinese message otherwise)."""
    if isinstance(raw, bool) or raw is None:
        raise ValueError("请填写数值")
    if isinstance(raw, str):
        raw = raw.strip()
        if not raw:
            raise ValueError("请填写数值")
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError("须为数字") from None
    if not math.isfinite(value):
        raise ValueError("须为有限的数字")
    if value < 0:
        raise ValueError("不能为负数")
    if value > MAX_RULE_VALUE:
        raise ValueError(f"不能超过 {MAX_RULE_VALUE:g}")
    return value


def validate_rules(data: dict) -> tuple[dict[str, float], dict[str, str]]:
    """Check every value of a submitted rulebook: (rules, {field: Chinese error}). Missing keys are errors."""
    rules: dict[str, float] = {}
    errors: dict[str, str] = {}
    for key in KIND_KEYS:
        try:
            rules[key] = parse_rule_value(data.get(key))
        except ValueError as exc:
            errors[key] = f"{KIND_NAMES[key]}：{exc}"
    return rules, errors


def merge_rules(stored: object) -> tuple[dict[str, float], list[str]]:
    """The defaults overridden by a stored rulebook; bad stored values are skipped and named in the list."""
    rules = dict(DEFAULT_RULES)
    problems: list[str] = []
    if stored is None:
        return rules, problems
    if not isinstance(stored, dict):
        return rules, [f"stored rulebook is not an object: {type(stored).__name__}"]
    for key in KIND_KEYS:
        if key not in stored:
            continue
        try:
            rules[key] = parse_rule_value(stored[key])
        except ValueError:
            problems.append(f"{key}={stored[key]!r}")
    return rules, problems


def gridworker_points(tally: Tally, rules: dict[str, float]) -> dict[str, float]:
    """A gridworker's points by kind (collection is never earned by a gridworker)."""
    return {
        "signin": round(tally.signin_days * rules["signin"], 2),
        "event": round(tally.valid_reports * rules["event"], 2),
        "escalation_bonus": round(tally.escalated_closed * rules["escalation_bonus"], 2),
        "hazard": round(tally.hazard_reports * rules["hazard"], 2),
        "dispute": round(tally.dispute_reports * rules["dispute"], 2),
        "visit": round(tally.visits * rules["visit"], 2),
        "collection": 0.0,
    }


def collection_points(added_records: int, rules: dict[str, float]) -> float:
    """Information-collection points of a village: records added (never negative) × the rule."""
    return round(max(0, added_records) * rules["collection"], 2)


def empty_points() -> dict[str, float]:
    return {key: 0.0 for key in KIND_KEYS}


def total(points: dict[str, float]) -> float:
    return round(sum(points.values()), 2)


def add_points(into: dict[str, float], points: dict[str, float]) -> None:
    for key, value in points.items():
        into[key] = round(into.get(key, 0.0) + value, 2)


def aggregate(rows: Iterable[dict], group_of) -> dict[object, dict[str, float]]:
    """Sum the points of rows by group: {group: points}. `group_of(row)` gives the group (None = skipped)."""
    out: dict[object, dict[str, float]] = {}
    for row in rows:
        group = group_of(row)
        if group is None:
            continue
        add_points(out.setdefault(group, empty_points()), row["points"])
    return out


def value_of(row: dict, key: str) -> float:
    return round(float(row["total"] if key == "total" else row["points"].get(key, 0.0)), 2)


def ranked(rows: list[dict], key: str = "total") -> list[dict]:
    """Rows sorted by `key` (highest first), each a copy with "rank" (equal values share it: 1, 1, 3) and
    "tied" (another row has the same value: shown as 并列). Equal values keep their input order."""
    ordered = sorted(rows, key=lambda r: -value_of(r, key))
    values = [value_of(row, key) for row in ordered]
    counts = Counter(values)
    return [
        {**row, "rank": rank, "tied": counts[value] > 1}
        for row, value, rank in zip(ordered, values, competition_ranks(values), strict=True)
    ]


def top_bottom(rows: list[dict], key: str = "total", n: int = 3) -> tuple[list[dict], list[dict]]:
    """The top n and the bottom n rows, ranked, ties included (so either list may be longer than n).

    top: rows with rank ≤ n, best first. bottom: rows with fewer than n rows below them, best first (the
    last is the lowest). A row never appears in both: when there are too few rows (or ties span the
    middle), the top keeps it, so an all-equal list has everyone on top and nobody at the bottom."""
    ranking = ranked(rows, key)
    top = [row for row in ranking if row["rank"] <= n]
    top_ids = {id(row) for row in top}
    ascending = sorted(value_of(row, key) for row in ranking)
    bottom = [
        row for row in ranking if id(row) not in top_ids and bisect_left(ascending, value_of(row, key)) < n
    ]  # rows below it < n
    return top, bottom
