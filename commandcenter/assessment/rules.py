"""The ten indicators of the monthly assessment of towns (考核, domain.md §4) as plain functions.

Nothing here touches the database: `TownFigures` holds every input of one town and month, `score` turns
it into ten unrounded scores, `build_table` scores, rounds, ranks and names the weakest indicators of all
towns. The service (service.py) fills the figures from the data; a closed month keeps the figures and
the rules it was scored with, so `build_table(frozen figures, names, frozen rules)` gives its table again.

Scoring (exactly as domain.md §4):
- proportional: ``weight × min(1, actual / standard)``;
- timeliness (处理及时率): ``r = (new − overdue) / new``; ``r ≥ full`` (98 %) → weight, ``r < zero`` (80 %)
  → 0, else ``(100·r − 80) / 18 × weight``, i.e. ``(r − zero) / (full − zero) × weight`` (computed with
  exact fractions, so that 49 of 50 is exactly 98 %);
- each score is shown rounded half-up (四舍五入) to 2 decimals; the total is the sum of the *unrounded*
  scores, rounded the same way; ranks compare the rounded totals (what the table shows): equal totals
  share a rank and the next rank is skipped (1, 1, 3).

Zero denominators (a rate that cannot be computed is ``None``, shown "—", never 100 %):
- no census population (None or 0) → indicator 1 scores 0;
- no gridworkers → indicators 2, 3, 5 and 9 score 0;
- no town center → indicators 4 and 7 score 0; no village/community center → indicator 6 scores 0
  (the town has no unit that could earn the points: register the centers);
- no new event in the month → timeliness is undefined and indicator 8 scores 0 (a town that reports
  nothing must not gain 20 points from its silence; indicator 1 already shows the silence);
- patrol compliance undefined (no workday of the month has begun) → indicator 9 scores 0;
- no drug user and no at-risk mentally ill person assigned in the town → indicator 10 scores its full
  weight: there is no duty to fall short of (the usual rule of assessment texts: 辖区无此类人员的不扣分).
Each such case carries a Chinese note in the row, so the table says why.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field, fields
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from ..ranking import competition_ranks

# --- the rules -------------------------------------------------------------------------------------

INDICATOR_KEYS = (
    "reports_per_10k",  # 1 事项总量
    "reports_per_gridworker",  # 2 网格员上报
    "gridworkers_meeting_quota",  # 3 达标网格员
    "town_center_reports",  # 4 达标综治中心
    "hazard_reporting",  # 5 隐患排查
    "village_disputes",  # 6 矛盾纠纷
    "town_escalations",  # 7 事项流转
    "timeliness",  # 8 处理及时率
    "patrol",  # 9 网格巡查
    "special_visits",  # 10 特殊人群走访
)
# indicators whose standard is a share (1.0 = 100 %); the others are counts
SHARE_KEYS = ("gridworkers_meeting_quota", "hazard_reporting", "patrol", "special_visits")

DEFAULT_RULES: dict = {
    "indicators": [
        {"key": "reports_per_10k", "name": "事项总量", "weight": 20, "standard": 100, "measure": "每万人上报事件数"},
        {
            "key": "reports_per_gridworker",
            "name": "网格员上报",
            "weight": 5,
            "standard": 20,
            "measure": "网格员人均上报事件数",
        },
        {
            "key": "gridworkers_meeting_quota",
            "name": "达标网格员",
            "weight": 5,
            "standard": 1.0,
            "quota": 20,
            "measure": "上报达标（≥ 定额）网格员占比",
        },
        {
            "key": "town_center_reports",
            "name": "达标综治中心",
            "weight": 10,
            "standard": 20,
            "measure": "镇街综治中心自报事件数（多个中心时为达标中心占比）",
        },
        {
            "key": "hazard_reporting",
            "name": "隐患排查",
            "weight": 10,
            "standard": 1.0,
            "quota": 2,
            "measure": "上报安全隐患达标网格员占比",
        },
        {
            "key": "village_disputes",
            "name": "矛盾纠纷",
            "weight": 5,
            "standard": 1,
            "measure": "村（社区）综治中心平均上报矛盾纠纷数",
        },
        {
            "key": "town_escalations",
            "name": "事项流转",
            "weight": 5,
            "standard": 5,
            "measure": "镇街综治中心平均流转事件数",
        },
        {
            "key": "timeliness",
            "name": "处理及时率",
            "weight": 20,
            "standard": 0.98,
            "measure": "（新增事件 − 逾期事件）/ 新增事件",
        },
        {
            "key": "patrol",
            "name": "网格巡查",
            "weight": 10,
            "standard": 1.0,
            "measure": "每个工作日巡查满 1 小时的网格员占比",
        },
        {
            "key": "special_visits",
            "name": "特殊人群走访（两类）",
            "weight": 10,
            "standard": 1.0,
            "measure": "已走访人数 / 吸毒人员与易肇事肇祸精神障碍患者数（两类，不含社区矫正、刑满释放）",
        },
    ],
    "timeliness": {"full": 0.98, "zero": 0.80},
    "weakest": 3,  # how many of the lowest indicators a row names (ties at the boundary included)
}
TOTAL_POINTS = 100


class RulesError(ValueError):
    """Invalid rules: `errors` maps a field name (as the edit form names it) to a Chinese message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def _number(value, field_name: str, errors: dict[str, str], label: str) -> float | None:
    if isinstance(value, bool):
        errors[field_name] = f"{label}须为数字"
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            errors[field_name] = f"{label}须为数字"
            return None
    if not isinstance(value, int | float) or not math.isfinite(value):
        errors[field_name] = f"{label}须为数字"
        return None
    return value


def _int_if_whole(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def validate_rules(data) -> dict:
    """Defaults overridden by `data` (same shape as DEFAULT_RULES; missing parts keep their defaults).

    Raises RulesError naming each bad field: ``<key>.weight``, ``<key>.standard``, ``<key>.quota``,
    ``timeliness.full``, ``timeliness.zero``, ``weights`` (the sum must be 100), ``weakest``."""
    if not isinstance(data, dict):
        raise RulesError({"rules": "考核规则须为 JSON 对象"})
    rules = copy.deepcopy(DEFAULT_RULES)
    errors: dict[str, str] = {}
    given = data.get("indicators", [])
    if isinstance(given, dict):  # {key: {...}} is accepted too
        given = [{"key": k, **v} for k, v in given.items() if isinstance(v, dict)]
    if not isinstance(given, list):
        raise RulesError({"indicators": "指标须为列表"})
    by_key = {item["key"]: item for item in rules["indicators"]}
    for item in given:
        if not isinstance(item, dict) or item.get("key") not in by_key:
            errors["indicators"] = f"未知指标：{item.get('key') if isinstance(item, dict) else item}"
            continue
        target = by_key[item["key"]]
        name = target["name"]
        for attr in ("weight", "standard", "quota"):
            if attr not in item or (attr == "quota" and "quota" not in target):
                continue
            label = {"weight": "权重", "standard": "标准", "quota": "达标定额"}[attr]
            value = _number(item[attr], f"{item['key']}.{attr}", errors, f"{name}的{label}")
            if value is None:
                continue
            if attr == "weight" and value < 0:
                errors[f"{item['key']}.weight"] = f"{name}的权重不能为负数"
            elif attr in ("standard", "quota") and value <= 0:
                errors[f"{item['key']}.{attr}"] = f"{name}的{label}须大于 0"
            elif attr == "standard" and item["key"] in SHARE_KEYS and value > 1:
                errors[f"{item['key']}.standard"] = f"{name}的标准是比例，须在 0 到 1 之间（1 即 100%）"
            else:
                target[attr] = _int_if_whole(value)
    timeliness = data.get("timeliness", {})
    if not isinstance(timeliness, dict):
        errors["timeliness.full"] = "及时率分段须为对象"
        timeliness = {}
    for attr, label in (("full", "满分线"), ("zero", "零分线")):
        if attr in timeliness:
            value = _number(timeliness[attr], f"timeliness.{attr}", errors, f"处理及时率{label}")
            if value is not None:
                rules["timeliness"][attr] = value
    full, zero = rules["timeliness"]["full"], rules["timeliness"]["zero"]
    if "timeliness.full" not in errors and "timeliness.zero" not in errors:
        if not 0 < zero:
            errors["timeliness.zero"] = "处理及时率零分线须大于 0"
        elif not zero < full:
            errors["timeliness.full"] = "处理及时率满分线须高于零分线"
        elif full > 1:
            errors["timeliness.full"] = "处理及时率满分线不能超过 1（100%）"
    # the standard of indicator 8 is its full-marks line
    by_key["timeliness"]["standard"] = rules["timeliness"]["full"]
    if "weakest" in data:
        value = data["weakest"]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= len(INDICATOR_KEYS):
            errors["weakest"] = "薄弱指标个数须为 0 到 10 的整数"
        else:
            rules["weakest"] = value
    if not any(k.endswith(".weight") for k in errors):
        total = sum(item["weight"] for item in rules["indicators"])
        if abs(total - TOTAL_POINTS) > 1e-9:
            errors["weights"] = f"十项权重之和须为 {TOTAL_POINTS}，现为 {_int_if_whole(round(total, 6))}"
    if errors:
        raise RulesError(errors)
    return rules


def indicator(rules: dict, key: str) -> dict:
    return next(item for item in rules["indicators"] if item["key"] == key)


# --- the figures -----------------------------------------------------------------------------------


@dataclass
class TownFigures:
    """Every input of the ten indicators for one town and month (counted by service.py)."""

    population: int | None = None  # census figure (Place.population)
    reported: int = 0  # events reported in the month (the counted set, see service.py)
    # per active gridworker of the town, in the same order: his events and his safety-hazard events
    gridworker_reports: list[int] = field(default_factory=list)
    gridworker_hazards: list[int] = field(default_factory=list)
    # per town center (综治中心 of level "town"): the events it reported itself
    town_center_reports: list[int] = field(default_factory=list)
    town_center_escalations: int = 0  # events the town center(s) passed up (流转)
    village_centers: int = 0  # village / community centers of the town
    village_center_disputes: int = 0  # dispute events those centers reported
    overdue: int = 0  # of the reported events, those overdue (逾期)
    patrol_compliant: int | None = 0  # gridworkers compliant; None when no workday has begun
    special_assigned: int = 0  # drug users + at-risk mentally ill persons, active, in the town
    special_visited: int = 0  # of those, distinct persons visited in the month

    @property
    def gridworkers(self) -> int:
        return len(self.gridworker_reports)

    @property
    def town_centers(self) -> int:
        return len(self.town_center_reports)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TownFigures:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


# --- scoring ---------------------------------------------------------------------------------------


def proportional(weight: float, actual: float, standard: float) -> float:
    return weight * min(1.0, actual / standard)


def timeliness_score(new: int, overdue: int, weight: float, full: float = 0.98, zero: float = 0.80) -> float:
    """Indicator 8 from counts; exact at the cut-offs. `new` must be > 0."""
    r = Fraction(max(0, new - overdue), new)
    f_full, f_zero = Fraction(str(full)), Fraction(str(zero))
    if r >= f_full:
        return float(weight)
    if r < f_zero:
        return 0.0
    return float((r - f_zero) / (f_full - f_zero) * Fraction(str(weight)))


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def actuals(f: TownFigures, rules: dict = DEFAULT_RULES) -> dict[str, float | None]:
    """The measured value of each indicator (None when its denominator is 0)."""
    quota3 = indicator(rules, "gridworkers_meeting_quota")["quota"]
    quota5 = indicator(rules, "hazard_reporting")["quota"]
    standard4 = indicator(rules, "town_center_reports")["standard"]
    workers = f.gridworkers
    if f.town_centers == 1:
        center = float(f.town_center_reports[0])
    else:
        center = _ratio(sum(1 for n in f.town_center_reports if n >= standard4), f.town_centers)
    return {
        "reports_per_10k": _ratio(f.reported, f.population / 10_000) if f.population else None,
        "reports_per_gridworker": _ratio(sum(f.gridworker_reports), workers),
        "gridworkers_meeting_quota": _ratio(sum(1 for n in f.gridworker_reports if n >= quota3), workers),
        "town_center_reports": center,
        "hazard_reporting": _ratio(sum(1 for n in f.gridworker_hazards if n >= quota5), workers),
        "village_disputes": _ratio(f.village_center_disputes, f.village_centers),
        "town_escalations": _ratio(f.town_center_escalations, f.town_centers),
        "timeliness": _ratio(max(0, f.reported - f.overdue), f.reported),
        "patrol": _ratio(f.patrol_compliant, workers) if f.patrol_compliant is not None else None,
        "special_visits": _ratio(f.special_visited, f.special_assigned),
    }


def notes(f: TownFigures) -> dict[str, str]:
    """Why an indicator could not be measured (Chinese), by key; empty when all were."""
    out: dict[str, str] = {}
    if not f.population:
        out["reports_per_10k"] = "无常住人口数据，此项不得分"
    if not f.gridworkers:
        for key in ("reports_per_gridworker", "gridworkers_meeting_quota", "hazard_reporting", "patrol"):
            out[key] = "辖区无在岗网格员，此项不得分"
    if not f.town_centers:
        out["town_center_reports"] = out["town_escalations"] = "未设镇街综治中心，此项不得分"
    if not f.village_centers:
        out["village_disputes"] = "未设村（社区）综治中心，此项不得分"
    if not f.reported:
        out["timeliness"] = "本月无新增事件，及时率无法计算，此项不得分"
    if f.gridworkers and f.patrol_compliant is None:
        out["patrol"] = "本月尚无已开始的工作日，巡查达标率无法计算，此项不得分"
    if not f.special_assigned:
        out["special_visits"] = "辖区无吸毒人员及易肇事肇祸精神障碍患者，此项不扣分"
    return out


def score(figures: TownFigures, rules: dict = DEFAULT_RULES) -> dict[str, float]:
    """The ten unrounded scores, by indicator key."""
    values = actuals(figures, rules)
    out: dict[str, float] = {}
    for item in rules["indicators"]:
        key, weight = item["key"], item["weight"]
        actual = values[key]
        if key == "timeliness":
            t = rules["timeliness"]
            out[key] = (
                0.0
                if not figures.reported
                else timeliness_score(figures.reported, figures.overdue, weight, t["full"], t["zero"])
            )
        elif key == "special_visits" and actual is None:
            out[key] = float(weight)  # nobody to visit: nothing missed
        elif actual is None:
            out[key] = 0.0
        elif key == "town_center_reports" and figures.town_centers > 1:
            out[key] = proportional(weight, actual, 1.0)  # centers meeting the standard / all centers
        else:
            out[key] = proportional(weight, actual, item["standard"])
    return out


def round2(value: float) -> float:
    """四舍五入 to 2 decimals (half up, on the decimal value printed, not the binary float)."""
    return float(Decimal(repr(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def total(scores: dict[str, float]) -> float:
    """The sum of the unrounded scores, rounded to 2 decimals."""
    return round2(math.fsum(scores.values()))


def rank(totals: dict[int, float]) -> dict[int, int]:
    """Competition ranking of the towns' totals (ranking.competition_ranks): 1, 1, 3."""
    return dict(zip(totals, competition_ranks(totals.values()), strict=True))


def weakest(scores: dict[str, float], rules: dict = DEFAULT_RULES) -> list[str]:
    """The indicators furthest from full marks (lowest score / weight), at most rules["weakest"] of them
    plus any tied with the last; indicators at full marks or with weight 0 are never named."""
    limit = rules.get("weakest", 3)
    attained = []
    for item in rules["indicators"]:
        if item["weight"] > 0:
            share = round(scores[item["key"]] / item["weight"], 9)
            if share < 1:
                attained.append((share, item["key"]))
    attained.sort(key=lambda pair: pair[0])
    if not attained or limit == 0:
        return []
    cutoff = attained[min(limit, len(attained)) - 1][0]
    return [key for share, key in attained if share <= cutoff]


def build_table(figures_by_town: dict[int, TownFigures], names: dict[int, str], rules: dict = DEFAULT_RULES) -> dict:
    """The scored table of all towns: the indicators, and one row per town sorted by rank."""
    rows = []
    for town_id, figures in figures_by_town.items():
        raw = score(figures, rules)
        values = actuals(figures, rules)
        rows.append(
            {
                "town_id": town_id,
                "town_name": names.get(town_id, str(town_id)),
                "scores": {key: round2(value) for key, value in raw.items()},
                "total": total(raw),
                "weakest": weakest(raw, rules),
                "actuals": {key: (None if v is None else round(v, 6)) for key, v in values.items()},
                "notes": notes(figures),
                "figures": figures.as_dict(),
            }
        )
    ranks = rank({row["town_id"]: row["total"] for row in rows})
    for row in rows:
        row["rank"] = ranks[row["town_id"]]
    rows.sort(key=lambda row: row["rank"])  # stable: ties keep the towns' order (by code, from the service)
    return {
        "indicators": [
            {k: item[k] for k in ("key", "name", "weight", "standard", "quota", "measure") if k in item}
            for item in rules["indicators"]
        ],
        "timeliness": dict(rules["timeliness"]),
        "rows": rows,
    }
