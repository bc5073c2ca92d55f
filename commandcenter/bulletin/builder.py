"""The content of a bulletin (domain.md §6) from the data, as a plain JSON-able dict.

The .docx (docx.py) and the HTML views render this same dict, so what is printed and what is shown agree,
and a built bulletin stays readable after later corrections of the data.

Shape::

    {"title", "subtitle", "place": {"id", "name", "level"}, "month", "period_label", "generated_at",
     "sections": [{"number": "一", "heading": "总体情况", "blocks": [block...]}...],
     "suggestion": str}   # units below the thresholds, offered to prefill 存在问题 (never printed by itself)

    block = {"type": "subheading"|"paragraph"|"note", "text"}
          | {"type": "table", "number": 1, "caption": "表1 …", "header": [...], "rows": [[...]...],
             "total": [...] | None}
          | {"type": "story", "index": 1, "lead", "text", "number"}

Every figure is formatted here: counts as integers, rates as percentages with 2 decimals, "—" when a rate is
undefined, and "数据存疑" (with a note naming the problem) where `stats` flagged the figure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import select

from .. import labels
from ..db import db
from ..hierarchy import in_place
from ..measures import Period
from ..models import SENSITIVE_PERSON_TYPES, Account, Bulletin, Case, Place
from ..timeutil import local, utcnow

NUMERALS = "一二三四五六七八九十"
SUSPECT = "数据存疑"
UNDEFINED = "—"
STORY_ACTIONS = ("dispatch", "escalate", "feedback", "self_close", "close", "verify_ok")

# units below these are listed in the suggestion for 存在问题 (the person decides what is printed)
THRESHOLDS: tuple[tuple[str, str, float], ...] = (
    ("closure_rate", "事件办结率", 0.90),
    ("timeliness", "处理及时率", 0.98),
    ("attendance_rate", "网格员出勤率", 0.95),
    ("patrol_rate", "网格巡查达标率", 0.90),
    ("special_visit_rate", "特殊人群走访率（四类）", 1.00),
    ("login_rate", "管理员账号登录率", 0.60),
)

Progress = Callable[[int, str], None]


# --- formatting ------------------------------------------------------------------------------------


def pct(value: float | None) -> str:
    return UNDEFINED if value is None else f"{value * 100:.2f}%"


def num(value: float | int | None) -> str:
    if value is None:
        return UNDEFINED
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return str(int(value))


def flags_of(fig) -> dict[str, str]:
    """field → message of the data-quality flags of a Figures object."""
    return {flag.field: flag.message for flag in getattr(fig, "flags", None) or []}


def _flagged(fig, field: str) -> bool:
    flags = flags_of(fig)
    return field in flags or field.split(".")[0] in flags


def shown(fig, field: str, text: str) -> str:
    """The figure, or 数据存疑 where stats flagged it."""
    return SUSPECT if _flagged(fig, field) else text


@dataclass(frozen=True)
class Column:
    header: str
    field: str  # the Figures attribute (visits.<type> for a visit rate): matched against the flags
    render: Callable[[object], str]


def _header(header: str, field: str) -> str:
    """The catalogue's name of a figure (one name on every screen), keeping a unit the table adds: 上报总数 is
    上报事件 here as on the wall and the drill-down; 党员（名） stays."""
    from ..figures.catalogue import BY_KEY, label

    if field not in BY_KEY or header.startswith(label(field)):
        return header
    unit = header[header.index("（") :] if header.endswith("）") and "（" in header else ""
    return label(field) + unit


def count(header: str, field: str) -> Column:
    return Column(_header(header, field), field, lambda f: num(getattr(f, field)))


def rate(header: str, field: str) -> Column:
    return Column(_header(header, field), field, lambda f: pct(getattr(f, field)))


def visit_rate(header: str, kind: str) -> Column:
    """A population's visit rate over the windows of its own frequency (stats.visit_windows); the header says which."""
    from ..stats import required_frequency

    header = f"{header}（{labels.FREQUENCY[required_frequency(kind)]}）"
    return Column(header, f"visits.{kind}", lambda f: pct((f.visits.get(kind) or (0, 0, None))[2]))


def kind_count(header: str, kind: str) -> Column:
    return Column(header, "by_kind", lambda f: num(f.by_kind.get(kind, 0)))


PARTY = [
    count("党组织（个）", "party_organizations"),
    count("党员（名）", "party_members"),
    count("党建活动（次）", "party_activities"),
]
POPULATION = [
    count("普查人口", "population"),
    count("登记人口", "registered_population"),
    count("已关联人数", "linked_persons"),
    rate("人房关联率", "linkage_rate"),
]
EVENTS = [
    count("上报总数", "reported"),
    kind_count("普通事件", "ordinary"),
    kind_count("安全隐患", "hazard"),
    kind_count("矛盾纠纷", "dispute"),
    count("办结数", "closed"),
    rate("办结率", "closure_rate"),
    count("逾期数", "overdue"),
    rate("处理及时率", "timeliness"),
]
# 上报至镇级 / 上报至市级 (domain.md §6): disjoint sets, headers are the catalogue's names
ESCALATIONS = [
    count("上报至镇级网格中心", "reported_to_town"),
    rate("上报至镇级占比", "reported_to_town_share"),
    count("上报至镇级办结", "reported_to_town_closed"),
    rate("上报至镇级办结率", "reported_to_town_closure_rate"),
    count("上报至市级网格中心", "reported_to_city"),
    rate("上报至市级占比", "reported_to_city_share"),
    count("上报至市级办结", "reported_to_city_closed"),
    rate("上报至市级办结率", "reported_to_city_closure_rate"),
]
SPECIAL_VISITS = [visit_rate(labels.PERSON_TYPE[k], k) for k in SENSITIVE_PERSON_TYPES] + [
    count("应走访（人次）", "special_assigned"),
    count("已走访（人次）", "special_visited"),
    rate("特殊人群走访率（四类）", "special_visit_rate"),
]
OTHER_VISITS = [
    visit_rate(labels.PERSON_TYPE[k], k) for k in ("key_youth", "key_petitioner", "key_other", "empty_nest_elderly")
] + [visit_rate(labels.SITE_TYPE[k], k) for k in ("key_place", "group_rental", "rental_house")]
DUTY = [
    count("网格员（名）", "gridworkers"),
    count("出勤人数", "attended"),
    rate("出勤率", "attendance_rate"),
    count("巡查达标人数", "patrol_compliant"),
    rate("巡查达标率", "patrol_rate"),
    count("管理员账号", "admins"),
    count("已登录", "admins_logged_in"),
    rate("登录率", "login_rate"),
]


# --- the accumulator ------------------------------------------------------------------------------


class Draft:
    """Sections in order; tables numbered 表1, 表2 … as they are added; flags printed once each."""

    def __init__(self) -> None:
        self.sections: list[dict] = []
        self.tables = 0
        self.noted: set[tuple[str, str]] = set()

    def section(self, heading: str) -> list[dict]:
        blocks: list[dict] = []
        self.sections.append({"number": NUMERALS[len(self.sections)], "heading": heading, "blocks": blocks})
        return blocks

    def table(
        self, blocks: list[dict], title: str, header: list[str], rows: list[list[str]], total: list[str] | None = None
    ) -> int:
        self.tables += 1
        blocks.append(
            {
                "type": "table",
                "number": self.tables,
                "caption": f"表{self.tables} {title}",
                "header": header,
                "rows": rows,
                "total": total,
            }
        )
        return self.tables

    def figure_table(
        self, blocks: list[dict], title: str, unit_header: str, columns: list[Column], children: list, total
    ) -> int:
        """A row per child unit and a total row; flagged cells read 数据存疑, with a note under the table."""
        rows = [[child.place_name] + [shown(child, c.field, c.render(child)) for c in columns] for child in children]
        total_row = ["合计"] + [shown(total, c.field, c.render(total)) for c in columns] if total is not None else None
        number = self.table(blocks, title, [unit_header] + [c.header for c in columns], rows, total_row)
        fields = {c.field for c in columns} | {c.field.split(".")[0] for c in columns}
        notes = []
        for fig in [*children, total]:
            if fig is None:
                continue
            for field, message in flags_of(fig).items():
                if field in fields and (fig.place_name, field) not in self.noted:
                    self.noted.add((fig.place_name, field))
                    if f"{fig.place_name}：{message}" not in notes:
                        notes.append(f"{fig.place_name}：{message}")
        if notes:
            blocks.append({"type": "note", "text": f"注（表{number}）：{SUSPECT}——" + "；".join(notes) + "。"})
        return number


def with_children_flags(total, children: list):
    """A total that adds up a suspect figure of a child is suspect too: flag it on the same fields."""
    from dataclasses import replace

    from ..stats import Flag

    own = set(flags_of(total))
    extra = {}
    for child in children:
        for field_name in flags_of(child):
            if field_name not in own:
                extra.setdefault(field_name, []).append(child.place_name)
    if not extra:
        return total
    added = [Flag(field=name, message=f"合计含{'、'.join(places)}的存疑数据") for name, places in extra.items()]
    return replace(total, flags=[*(total.flags or []), *added])


# --- section 一: the overall situation ----------------------------------------------------------


def _unit_header(place: Place) -> str:
    return "镇（街道）" if place.level == "city" else "村（社区）"


def overall(draft: Draft, place: Place, period: Period, total, children: list) -> None:
    blocks = draft.section("总体情况")
    unit = _unit_header(place)
    name = place.name
    t = total

    def v(field: str, text: str, unit: str = "") -> str:
        """The figure with its unit, or 数据存疑 (without a unit) where it is flagged."""
        if _flagged(t, field):
            return SUSPECT
        return text if text == UNDEFINED else text + unit

    blocks.append({"type": "subheading", "text": "（一）党建引领"})
    blocks.append(
        {
            "type": "paragraph",
            "text": (
                f"{period.label}，{name}共有网格党组织{v('party_organizations', num(t.party_organizations), '个')}、"
                f"党员{v('party_members', num(t.party_members), '名')}，开展党建活动{v('party_activities', num(t.party_activities), '次')}"
                f"（见表{draft.tables + 1}）。"
            ),
        }
    )
    draft.figure_table(blocks, f"各{unit}党建情况", unit, PARTY, children, t)

    blocks.append({"type": "subheading", "text": "（二）人口与信息采集"})
    blocks.append(
        {
            "type": "paragraph",
            "text": (
                f"{name}普查人口{v('population', num(t.population), '人')}，系统登记人口"
                f"{v('registered_population', num(t.registered_population), '人')}，其中关联标准地址"
                f"{v('linked_persons', num(t.linked_persons), '人')}，人房关联率{v('linkage_rate', pct(t.linkage_rate))}"
                f"（见表{draft.tables + 1}）。"
            ),
        }
    )
    draft.figure_table(blocks, f"各{unit}人口与人房关联情况", unit, POPULATION, children, t)

    blocks.append({"type": "subheading", "text": "（三）事件上报与办理"})
    blocks.append(
        {
            "type": "paragraph",
            "text": (
                f"本月共上报事件{v('reported', num(t.reported), '件')}，其中普通事件{v('by_kind', num(t.by_kind.get('ordinary', 0)), '件')}、"
                f"安全隐患{v('by_kind', num(t.by_kind.get('hazard', 0)), '件')}（占{v('hazard_share', pct(t.hazard_share))}）、"
                f"矛盾纠纷{v('by_kind', num(t.by_kind.get('dispute', 0)), '件')}（占{v('dispute_share', pct(t.dispute_share))}）；"
                f"办结{v('closed', num(t.closed), '件')}，办结率{v('closure_rate', pct(t.closure_rate))}；"
                f"有效事件率{v('valid_rate', pct(t.valid_rate))}，处理及时率{v('timeliness', pct(t.timeliness))}"
                f"（见表{draft.tables + 1}）。"
            ),
        }
    )
    draft.figure_table(blocks, f"各{unit}事件上报与办理情况", unit, EVENTS, children, t)
    screened = sum((t.disputes_screened or {}).values())
    resolved = sum((t.disputes_resolved or {}).values())
    by_level = "、".join(
        f"{labels.LEVEL.get(level, level)}{n}件" for level, n in (t.disputes_screened or {}).items() if n
    )
    blocks.append(
        {
            "type": "paragraph",
            "text": (
                f"事件流转方面，上报至镇级网格中心{v('reported_to_town', num(t.reported_to_town), '件')}"
                f"，占{v('reported_to_town_share', pct(t.reported_to_town_share))}，"
                f"办结{v('reported_to_town_closed', num(t.reported_to_town_closed), '件')}，"
                f"办结率{v('reported_to_town_closure_rate', pct(t.reported_to_town_closure_rate))}；"
                f"上报至市级网格中心{v('reported_to_city', num(t.reported_to_city), '件')}"
                f"，占{v('reported_to_city_share', pct(t.reported_to_city_share))}，"
                f"办结{v('reported_to_city_closed', num(t.reported_to_city_closed), '件')}，"
                f"办结率{v('reported_to_city_closure_rate', pct(t.reported_to_city_closure_rate))}（见表{draft.tables + 1}）。"
                f"排查矛盾纠纷{num(screened)}件{f'（{by_level}）' if by_level else ''}，化解{num(resolved)}件，"
                f"化解成功率{v('dispute_success_rate', pct(t.dispute_success_rate))}。"
            ),
        }
    )
    draft.figure_table(blocks, f"各{unit}事件流转情况", unit, ESCALATIONS, children, t)

    blocks.append({"type": "subheading", "text": "（四）走访情况"})
    blocks.append(
        {
            "type": "paragraph",
            "text": (
                f"四类特殊人群（社区矫正人员、刑满释放人员、易肇事肇祸精神障碍患者、吸毒人员，每月走访）应走访"
                f"{v('special_assigned', num(t.special_assigned), '人次')}，实际走访"
                f"{v('special_visited', num(t.special_visited), '人次')}，"
                f"特殊人群走访率（四类）{v('special_visit_rate', pct(t.special_visit_rate))}"
                f"（见表{draft.tables + 1}）；重点人员、重点场所、群租房、空巢老人（每周）及出租屋（每季度）"
                f"按各自走访周期计的走访率见表{draft.tables + 2}。"
            ),
        }
    )
    draft.figure_table(blocks, f"各{unit}四类特殊人群走访情况", unit, SPECIAL_VISITS, children, t)
    draft.figure_table(blocks, f"各{unit}重点人员与场所走访率", unit, OTHER_VISITS, children, t)

    blocks.append({"type": "subheading", "text": "（五）出勤、巡查与登录"})
    blocks.append(
        {
            "type": "paragraph",
            "text": (
                f"{name}现有网格员{v('gridworkers', num(t.gridworkers), '名')}，本月出勤{v('attended', num(t.attended), '人')}，"
                f"出勤率{v('attendance_rate', pct(t.attendance_rate))}；每个工作日巡查满1小时的"
                f"{v('patrol_compliant', num(t.patrol_compliant), '人')}，巡查达标率{v('patrol_rate', pct(t.patrol_rate))}；"
                f"综治中心管理员账号{v('admins', num(t.admins), '个')}，本月登录{v('admins_logged_in', num(t.admins_logged_in), '个')}，"
                f"管理员登录率{v('login_rate', pct(t.login_rate))}（见表{draft.tables + 1}）。"
            ),
        }
    )
    draft.figure_table(blocks, f"各{unit}出勤、巡查与账号登录情况", unit, DUTY, children, t)

    rest = []
    for fig in [*children, t]:
        for field, message in flags_of(fig).items():
            if (fig.place_name, field) not in draft.noted:
                draft.noted.add((fig.place_name, field))
                if f"{fig.place_name}：{message}" not in rest:
                    rest.append(f"{fig.place_name}：{message}")
    if rest:
        blocks.append({"type": "subheading", "text": "（六）数据质量提示"})
        blocks.append({"type": "note", "text": f"{SUSPECT}——" + "；".join(rest) + "。以上数据待核实，不作为通报结论。"})


# --- section 二: points (and, for the city, the assessment) --------------------------------------

GROUPS = (("community", "社区"), ("village", "村委"))


def _village_name(row: dict, city: bool) -> str:
    """A village's name; in the city's bulletin with its town in front (names repeat across towns)."""
    return f"{row.get('town_name', '')}{row['name']}" if city else row["name"]


def _names(rows: list[dict], value: Callable[[dict], float], city: bool = False) -> str:
    if not rows:
        return UNDEFINED
    return "、".join(f"{_village_name(r, city)}（{num(value(r))}分{'，并列' if r.get('tied') else ''}）" for r in rows)


def points_section(draft: Draft, place: Place, period: Period, result: dict, assessment: dict | None) -> None:
    from ..points import service as points

    city = place.level == "city"
    heading = "积分及考核情况" if assessment is not None else "积分情况"
    blocks = draft.section(heading)
    kinds = result["kinds"]
    towns, villages = result["towns"], result["villages"]
    grand = sum(r["total"] for r in towns) if towns else sum(r["total"] for r in villages)

    blocks.append({"type": "subheading", "text": "（一）积分总体情况"})
    parts = "、".join(
        f"{k['name']}{num(round(sum(r['points'].get(k['key'], 0.0) for r in villages), 2))}分" for k in kinds
    )
    blocks.append(
        {
            "type": "paragraph",
            "text": (
                f"本月{place.name}网格员共获得积分{num(round(grand, 2))}分，其中{parts}（见表{draft.tables + 1}）。"
                "社区与村委分别排名。"
            ),
        }
    )
    if city:
        ranked = points.ranked(towns)
        rows = [
            [r["name"]]
            + [num(r["points"].get(k["key"], 0.0)) for k in kinds]
            + [num(r["total"]), f"{r['rank']}{'（并列）' if r['tied'] else ''}"]
            for r in ranked
        ]
        draft.table(
            blocks, "各镇（街道）积分情况", ["镇（街道）"] + [k["name"] for k in kinds] + ["合计", "排名"], rows
        )
    rows = []
    for group, group_name in GROUPS:
        for r in points.ranked([v for v in villages if (v.get("kind") == "community") == (group == "community")]):
            rows.append(
                [_village_name(r, city), group_name]
                + [num(r["points"].get(k["key"], 0.0)) for k in kinds]
                + [num(r["total"]), f"{r['rank']}{'（并列）' if r['tied'] else ''}"]
            )
    draft.table(
        blocks,
        "各村（社区）积分情况（社区、村委分别排名）",
        ["村（社区）", "类型"] + [k["name"] for k in kinds] + ["合计", "排名"],
        rows,
    )

    blocks.append({"type": "subheading", "text": "（二）各类积分前三名与后三名"})
    blocks.append(
        {"type": "paragraph", "text": (f"各类积分中社区、村委的前三名与后三名见表{draft.tables + 1}，积分相同者并列。")}
    )
    rows = []
    for key, name in [("total", "合计积分")] + [(k["key"], k["name"]) for k in kinds]:

        def value(r: dict, key: str = key) -> float:
            return r["total"] if key == "total" else r["points"].get(key, 0.0)

        for group, group_name in GROUPS:
            members = [v for v in villages if (v.get("kind") == "community") == (group == "community")]
            top, bottom = points.top_bottom(members, key, 3)
            rows.append([name, group_name, _names(top, value, city), _names(bottom, value, city)])
    draft.table(blocks, "各类积分前三名与后三名", ["积分类别", "类型", "前三名", "后三名"], rows)

    if assessment is not None:
        assessment_part(draft, blocks, assessment)


def assessment_part(draft: Draft, blocks: list[dict], table: dict) -> None:
    indicators = table.get("indicators") or []
    names = {i["key"]: i["name"] for i in indicators}
    blocks.append({"type": "subheading", "text": "（三）镇街月度考核"})
    state = (
        "本月考核已关账，以下为关账时的结果"
        if table.get("closed")
        else "本月考核尚未关账，以下为生成时按现有数据计算的结果"
    )
    blocks.append(
        {"type": "paragraph", "text": f"{state}（见表{draft.tables + 1}，满分100分，各项得分保留两位小数）。"}
    )
    rows = [
        [str(r["rank"]), r["town_name"]]
        + [f"{float(r['scores'].get(i['key'], 0.0)):.2f}" for i in indicators]
        + [f"{float(r['total']):.2f}"]
        for r in table.get("rows") or []
    ]
    draft.table(
        blocks,
        "各镇（街道）月度考核得分",
        ["排名", "镇（街道）"] + [f"{i['name']}（{num(i['weight'])}）" for i in indicators] + ["总分"],
        rows,
    )
    weak = [
        f"{r['town_name']}：{'、'.join(names.get(k, k) for k in r.get('weakest') or [])}"
        for r in table.get("rows") or []
        if r.get("weakest")
    ]
    if weak:
        blocks.append({"type": "paragraph", "text": "得分较弱的指标：" + "；".join(weak) + "。"})


# --- section 三: the stories ----------------------------------------------------------------------


def story_candidates(place: Place, period: Period) -> list[Case]:
    """The month's outstanding cases inside the place (reported in the month), oldest first."""
    begin, finish = period.bounds_utc(current_app.config["SETTINGS"].timezone)
    stmt = select(Case).where(Case.outstanding.is_(True), Case.reported_at >= begin, Case.reported_at < finish)
    return list(db.scalars(in_place(stmt, Case, place).order_by(Case.reported_at, Case.id)))


def story(case: Case, index: int, tz: str, with_town: bool = False) -> dict:
    when = local(case.discovered_at or case.reported_at, tz)
    grid = case.grid
    village = db.get(Place, case.village_id) if case.village_id else None
    town = db.get(Place, case.town_id) if with_town and case.town_id else None
    spot = grid.name if grid else (village.name if village else case.address or "")
    where = f"{town.name}{spot}" if town else spot
    reporter: Account | None = case.reporter
    who = (
        f"{labels.POST.get(reporter.post, labels.ROLE.get(reporter.role, ''))}{reporter.display_name}"
        if reporter
        else labels.SOURCE.get(case.source, "")
    )
    done = "；".join(
        f"{labels.ACTION.get(s.action, s.action)}：{s.note}" for s in case.steps if s.action in STORY_ACTIONS and s.note
    )
    found = case.description.rstrip("。")
    text = case.outstanding_story or f"{who}发现{found}。{done + '。' if done else ''}"
    return {
        "type": "story",
        "index": index,
        "number": case.number,
        "lead": f"{index}. {when.year}年{when.month}月{when.day}日，{where}，{who}",
        "text": text,
        "found": found,
        "done": done,
    }


def stories_section(draft: Draft, place: Place, period: Period, picked: list[int]) -> None:
    blocks = draft.section("优秀网格事件")
    allowed = {c.id: c for c in story_candidates(place, period)}
    chosen = [allowed[i] for i in picked if i in allowed]
    if not chosen:
        blocks.append({"type": "paragraph", "text": "本月未选录优秀网格事件。"})
        return
    blocks.append({"type": "paragraph", "text": f"本月选录优秀网格事件{len(chosen)}件，简述如下。"})
    tz = current_app.config["SETTINGS"].timezone
    for i, case in enumerate(chosen, start=1):
        blocks.append(story(case, i, tz, with_town=place.level == "city"))


# --- sections 四 and 五: the free text -----------------------------------------------------------


def free_text(draft: Draft, heading: str, text: str | None) -> None:
    blocks = draft.section(heading)
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    for line in lines or ["（无）"]:
        blocks.append({"type": "paragraph", "text": line})


# --- the suggestion for 存在问题 ---------------------------------------------------------------


def suggestion(children: list) -> str:
    lines = []
    for field, name, limit in THRESHOLDS:
        below = [
            f"{c.place_name}（{pct(getattr(c, field))}）"
            for c in children
            if getattr(c, field) is not None and not _flagged(c, field) and getattr(c, field) < limit
        ]
        if below:
            lines.append(f"{name}低于{limit * 100:.0f}%的单位：{'、'.join(below)}。")
    suspect = [f"{c.place_name}：{m}" for c in children for m in flags_of(c).values()]
    if suspect:
        lines.append("数据存疑、需核实：" + "；".join(suspect) + "。")
    if not lines:
        return "本月各单位主要指标均达到要求。"
    return "\n".join(f"{i}. {line}" for i, line in enumerate(lines, start=1))


# --- the whole ------------------------------------------------------------------------------------


def default_title(place: Place, month: str) -> str:
    year, mon = month.split("-")
    return f"{place.name}{year}年{int(mon)}月网格化服务管理工作通报"


def build(bulletin: Bulletin, progress: Progress) -> dict:
    """Collect the figures → tables → rankings → stories, reporting progress between the steps."""
    from .. import stats
    from ..points import service as points

    place = db.get(Place, bulletin.place_id)
    period = Period.parse_month(bulletin.month)
    draft = Draft()

    progress(10, "汇总本级数据")
    total = stats.figures(place, period)
    progress(25, "汇总下级单位数据")
    children = stats.children(place, period)

    total = with_children_flags(total, children)

    progress(40, "生成统计表")
    overall(draft, place, period, total, children)

    progress(55, "计算积分排名")
    result = points.compute(place, period)
    assessment = None
    if place.level == "city":
        from ..assessment import service as assessment_service

        progress(62, "计算镇街考核")
        assessment = assessment_service.month_table(place, bulletin.month)
    points_section(draft, place, period, result, assessment)

    progress(70, "整理优秀网格事件")
    db.refresh(bulletin)  # free text and stories as saved now, even if edited while the build ran
    stories_section(draft, place, period, [int(i) for i in bulletin.story_case_ids or []])
    free_text(draft, "存在问题", bulletin.problems)
    free_text(draft, "下步要求", bulletin.requirements)

    generated = local(utcnow(), current_app.config["SETTINGS"].timezone)
    return {
        "version": 1,
        "title": bulletin.title or default_title(place, bulletin.month),
        "subtitle": f"（{period.label}）",
        "place": {"id": place.id, "name": place.name, "level": place.level},
        "month": bulletin.month,
        "period_label": period.label,
        "generated_at": generated.strftime("%Y-%m-%d %H:%M"),
        "sections": draft.sections,
        "tables": draft.tables,
        "suggestion": suggestion(children),
    }
