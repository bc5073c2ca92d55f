"""指标口径: every figure the screens show, defined once (issue 12 §1).

One ``Figure`` per quantity. Two different quantities never share a name: "逾期事件" (of the period's reports,
those overdue now), "新增逾期" (cases that went past their limit during the period, whenever reported) and
"当前逾期在办" (open cases past their limit right now) are three entries.

Screens take their label from here (``label(key)``, the Jinja global ``figure_label(key)`` that links the label to
``/figures/#<key>`` with the definition as its title) and the page ``/figures/`` lists the whole catalogue.
The numbers themselves come from one function per figure: ``stats.event_figures`` / ``stats.figures`` for the
period figures of a place (drill-down, ``/m/``, the wall's 今日 panel, the API), the case counters for the
"happened in the period" step counts, ``assessment.service`` for the assessment. ``Figure.source`` names it.

This module imports nothing from the application, so that any module can read it.
"""

from __future__ import annotations

from dataclasses import dataclass

# what the period of a figure means
REPORTED_IN = "reported"  # the cases reported in the period (whatever happened to them later), as they are now
HAPPENED_IN = "happened"  # the steps / events that took place in the period (whatever day the case was reported)
SNAPSHOT = "snapshot"  # the state right now; no period
STOCK = "stock"  # a register (accounts, persons, party members) as it is now
PERIOD_TEXT = {
    REPORTED_IN: "按上报时间：统计期内上报的事件（此后的办理结果按当前状态计）",
    HAPPENED_IN: "按发生时间：统计期内发生的操作或行为（不论事件何时上报）",
    SNAPSHOT: "当前时点：此刻的状态，不分统计期",
    STOCK: "当前在册：按此刻的名册或台账计",
}

SCREENS = {
    "wall": "指挥大屏",
    "drill": "逐级下钻",
    "mobile": "领导移动端",
    "bulletin": "月度通报",
    "assessment": "月度考核",
    "points": "积分排名",
    "export": "Excel 导出",
    "api": "API（/api/v1/figures）",
}

GROUPS = {
    "events": "事件",
    "flow": "办理动态（按发生时间）",
    "timeliness": "时效与预警",
    "people": "网格员与管理员",
    "visits": "走访、采集与党建",
    "assessment": "月度考核",
    "points": "积分",
}

EXCLUDED_DUPLICATES = "被判为重复的事件（重复件只计入“重复事件”）"
VISIT_WINDOWS_RULE = (
    "走访周期按对象的走访频次：每周（周一至周日）、每月（自然月）、每季度（自然季度）。"
    "统计期尚未结束（含今天）时，按今天所在的那一周/月/季度计，自其第一天至今天；"
    "统计期已结束时，按结束日落在统计期内的各个周期计（如某月的空巢老人按该月内结束的各周）；"
    "统计期内没有结束的周期时（如按月统计每季度走访的出租屋），按统计期最后一天所在的周期、自其第一天至统计期最后一天计。"
    "周期可以早于统计期开始（十月走访过的出租屋，十一月仍算本季度已走访）。"
)


@dataclass(frozen=True)
class Figure:
    key: str
    name: str  # the Chinese label every screen shows
    definition: str  # one sentence
    numerator: str
    denominator: str  # "—" for a count
    period: str  # REPORTED_IN / HAPPENED_IN / SNAPSHOT / STOCK
    counted: str  # which states, kinds, levels count
    excluded: str  # what is left out
    shown: tuple[str, ...]  # keys of SCREENS
    group: str = "events"
    source: str = ""  # the one function that computes it
    rate: bool = False  # a ratio printed as a percentage with two decimals; "—" when the denominator is 0

    @property
    def period_text(self) -> str:
        return PERIOD_TEXT[self.period]

    @property
    def screens(self) -> list[str]:
        return [SCREENS[s] for s in self.shown]

    @property
    def anchor(self) -> str:
        return f"/figures/#{self.key}"


_EVENTS = "stats.event_figures / stats.figures（同一条 SQL 聚合）"
_COUNTERS = "counters.case_counts（Redis 计数：统计期内的办理步骤）"

FIGURES: tuple[Figure, ...] = (
    # --- events of the period (reported in it) -------------------------------------------------------
    Figure(
        "reported",
        "上报事件",
        "统计期内上报、且未被判为重复的事件件数。",
        "统计期内上报的事件数（不含重复件）",
        "—",
        REPORTED_IN,
        "各种来源（网格员、12345 热线、志愿者、中心、部门、领导、市民）和各类型（普通、安全隐患、矛盾纠纷）；"
        "任何状态，含已作废（无效）的事件；按事件所在网格、村社、镇街归属。",
        EXCLUDED_DUPLICATES + "。",
        ("wall", "drill", "mobile", "bulletin", "export", "api"),
        source=_EVENTS,
    ),
    Figure(
        "closed",
        "已办结",
        "统计期内上报的事件中，当前状态为已结案的件数。",
        "统计期内上报、当前已结案（核查结案或自办自结）的事件数",
        "—",
        REPORTED_IN,
        "同“上报事件”中状态为“已结案”的事件。",
        EXCLUDED_DUPLICATES + "；统计期内结案但在统计期前上报的事件（见“当期结案”）。",
        ("wall", "drill", "mobile", "bulletin", "export", "api"),
        source=_EVENTS,
    ),
    Figure(
        "closure_rate",
        "办结率",
        "统计期内上报的事件中已办结的比例。",
        "已办结",
        "上报事件",
        REPORTED_IN,
        "分子分母为同一批事件：统计期内上报、不含重复件；作废（无效）事件计入分母。",
        EXCLUDED_DUPLICATES + "（分子分母均不含）。",
        ("wall", "drill", "mobile", "bulletin", "export", "api"),
        source=_EVENTS,
        rate=True,
    ),
    Figure(
        "hazard",
        "安全隐患",
        "统计期内上报的安全隐患类事件件数。",
        "统计期内上报、类型为安全隐患的事件数",
        "—",
        REPORTED_IN,
        "类型为安全隐患的事件，任何状态。",
        EXCLUDED_DUPLICATES + "。",
        ("wall", "drill", "bulletin", "export", "api"),
        source=_EVENTS,
    ),
    Figure(
        "dispute",
        "矛盾纠纷",
        "统计期内上报的矛盾纠纷类事件件数。",
        "统计期内上报、类型为矛盾纠纷的事件数",
        "—",
        REPORTED_IN,
        "类型为矛盾纠纷的事件，任何状态。",
        EXCLUDED_DUPLICATES + "。",
        ("wall", "drill", "bulletin", "export", "api"),
        source=_EVENTS,
    ),
    Figure(
        "hazard_share",
        "安全隐患占比",
        "上报事件中安全隐患类所占比例。",
        "安全隐患",
        "上报事件",
        REPORTED_IN,
        "同“上报事件”。",
        EXCLUDED_DUPLICATES + "。",
        ("drill", "bulletin", "api"),
        source=_EVENTS,
        rate=True,
    ),
    Figure(
        "dispute_share",
        "矛盾纠纷占比",
        "上报事件中矛盾纠纷类所占比例。",
        "矛盾纠纷",
        "上报事件",
        REPORTED_IN,
        "同“上报事件”。",
        EXCLUDED_DUPLICATES + "。",
        ("drill", "bulletin", "api"),
        source=_EVENTS,
        rate=True,
    ),
    Figure(
        "valid_rate",
        "有效率",
        "已判定有效或无效的上报事件中有效的比例。",
        "有效事件（已立案或自办自结）",
        "有效事件 + 无效事件（作废）",
        REPORTED_IN,
        "统计期内上报的事件；尚未立案或作废的事件两边都不计。",
        EXCLUDED_DUPLICATES + "（重复件单列）。",
        ("drill", "bulletin", "export", "api"),
        source=_EVENTS,
        rate=True,
    ),
    Figure(
        "duplicates",
        "重复事件",
        "统计期内上报、被判为重复的事件件数。",
        "统计期内上报、状态为重复的事件数",
        "—",
        REPORTED_IN,
        "只计被判为重复的一方；原件照常计入“上报事件”。",
        "未被判为重复的事件。",
        ("drill", "export", "api"),
        source=_EVENTS,
    ),
    # 上报至镇级 / 上报至市级: the bulletin's two disjoint sets (domain.md §6)
    Figure(
        "reported_to_town",
        "上报至镇级网格中心",
        "统计期内上报的事件中，办理上报至镇街网格中心并止于镇街（未再上报至市级）的件数。",
        "统计期内上报、曾流转至镇街中心且未流转至市中心的事件数（escalated_to_town 且非 escalated_to_city）",
        "—",
        REPORTED_IN,
        "办理最高到达镇街中心的事件；与“上报至市级网格中心”互不重叠：经镇街再上报至市级的、由网格直报市级的，"
        "都只计入“上报至市级网格中心”。",
        EXCLUDED_DUPLICATES + "；上报至市级的事件。",
        ("drill", "bulletin", "export", "api"),
        source=_EVENTS,
    ),
    Figure(
        "reported_to_town_share",
        "上报至镇级占比",
        "上报至镇级网格中心的事件占全部上报事件的比例。",
        "上报至镇级网格中心",
        "上报事件",
        REPORTED_IN,
        "同“上报至镇级网格中心”。",
        EXCLUDED_DUPLICATES + "。",
        ("drill", "bulletin", "export", "api"),
        source=_EVENTS,
        rate=True,
    ),
    Figure(
        "reported_to_town_closed",
        "上报至镇级办结",
        "上报至镇级网格中心的事件中当前已结案的件数。",
        "上报至镇级网格中心、当前已结案的事件数",
        "—",
        REPORTED_IN,
        "同“上报至镇级网格中心”。",
        EXCLUDED_DUPLICATES + "。",
        ("drill", "bulletin", "api"),
        source=_EVENTS,
    ),
    Figure(
        "reported_to_town_closure_rate",
        "上报至镇级办结率",
        "上报至镇级网格中心的事件中已办结的比例。",
        "上报至镇级办结",
        "上报至镇级网格中心",
        REPORTED_IN,
        "同“上报至镇级网格中心”。",
        EXCLUDED_DUPLICATES + "。",
        ("drill", "bulletin", "export", "api"),
        source=_EVENTS,
        rate=True,
    ),
    Figure(
        "reported_to_city",
        "上报至市级网格中心",
        "统计期内上报的事件中，办理上报至市级网格中心的件数（不论是否经过镇街）。",
        "统计期内上报、曾流转至市中心的事件数（escalated_to_city）",
        "—",
        REPORTED_IN,
        "由网格、村社直报市级的和经镇街再上报市级的都计入；与“上报至镇级网格中心”互不重叠。",
        EXCLUDED_DUPLICATES + "。",
        ("drill", "bulletin", "export", "api"),
        source=_EVENTS,
    ),
    Figure(
        "reported_to_city_share",
        "上报至市级占比",
        "上报至市级网格中心的事件占全部上报事件的比例。",
        "上报至市级网格中心",
        "上报事件",
        REPORTED_IN,
        "同“上报至市级网格中心”。",
        EXCLUDED_DUPLICATES + "。",
        ("drill", "bulletin", "export", "api"),
        source=_EVENTS,
        rate=True,
    ),
    Figure(
        "reported_to_city_closed",
        "上报至市级办结",
        "上报至市级网格中心的事件中当前已结案的件数。",
        "上报至市级网格中心、当前已结案的事件数",
        "—",
        REPORTED_IN,
        "同“上报至市级网格中心”。",
        EXCLUDED_DUPLICATES + "。",
        ("drill", "bulletin", "api"),
        source=_EVENTS,
    ),
    Figure(
        "reported_to_city_closure_rate",
        "上报至市级办结率",
        "上报至市级网格中心的事件中已办结的比例。",
        "上报至市级办结",
        "上报至市级网格中心",
        REPORTED_IN,
        "同“上报至市级网格中心”。",
        EXCLUDED_DUPLICATES + "。",
        ("drill", "bulletin", "export", "api"),
        source=_EVENTS,
        rate=True,
    ),
    Figure(
        "dispute_success_rate",
        "矛盾纠纷化解成功率",
        "已排查的矛盾纠纷中化解成功的比例。",
        "化解成功的矛盾纠纷（网格、村社、镇街三级合计）",
        "已排查的矛盾纠纷",
        REPORTED_IN,
        "统计期内上报的矛盾纠纷事件的排查记录，按排查层级分列。",
        EXCLUDED_DUPLICATES + "。",
        ("drill", "bulletin", "api"),
        source=_EVENTS,
        rate=True,
    ),
    # --- timeliness ------------------------------------------------------------------------------------
    Figure(
        "assessed",
        "考核计入事件",
        "统计期内上报、既非重复也非无效的事件件数（考核第 1、8 项所说的“新增事件”）。",
        "统计期内上报的事件数，不含重复件和作废（无效）件",
        "—",
        REPORTED_IN,
        "任何来源、类型；状态为待立案、办理中各环节或已结案。",
        EXCLUDED_DUPLICATES + "；被作废（无效）的事件，含超过一小时自动作废的乱停车。",
        ("drill", "assessment", "api"),
        group="timeliness",
        source=_EVENTS + "；assessment.service.town_figures",
    ),
    Figure(
        "overdue",
        "逾期事件",
        "统计期内上报的考核计入事件中，当前已被标记逾期的件数。",
        "考核计入事件中 overdue 标记为真的事件数（超过办理时限，不论之后是否办结）",
        "—",
        REPORTED_IN,
        "考核计入事件；以截止期限清扫标记的逾期为准。办理时限按国务院公布的工作日历计：以工作日计的时限，立案当日"
        "不论几点都是第 0 天，时限止于第 N 个工作日 17:30（设置 WORK_DAY_SAME_DAY_BEFORE=12:00 时，工作日该时刻前"
        "立案的当日计为第 1 天）；暂停计时期间不计。",
        EXCLUDED_DUPLICATES + "；作废事件；统计期前上报、在统计期内才逾期的事件（见“新增逾期”）。",
        ("wall", "drill", "mobile", "assessment", "export", "api"),
        group="timeliness",
        source=_EVENTS,
    ),
    Figure(
        "dispatch_late",
        "派遣超时",
        "统计期内上报的事件中，晚于派遣时限派遣、或超过派遣时限仍未派遣的件数。",
        "dispatch_late 标记为真的事件数（派遣时其时间晚于派遣时限，或截止期限清扫发现超时未派遣）",
        "—",
        REPORTED_IN,
        "有派遣时限的类别；暂停计时期间不计；超时一经记录即保留，不因之后派遣而撤销。",
        EXCLUDED_DUPLICATES + "。",
        ("drill", "api"),
        group="timeliness",
        source=_EVENTS,
    ),
    Figure(
        "escalate_late",
        "流转超时",
        "统计期内上报的须流转事件中，晚于流转时限到达规定层级、或超过时限仍未流转的件数。",
        "escalate_late 标记为真的事件数",
        "—",
        REPORTED_IN,
        "类别要求流转（须流转至镇街或市）的事件；暂停计时期间不计；超时记录保留。",
        EXCLUDED_DUPLICATES + "。",
        ("drill", "api"),
        group="timeliness",
        source=_EVENTS,
    ),
    Figure(
        "transfer_late",
        "转报超时作废",
        "统计期内上报的乱停车事件中，未在发现后一小时内转报市平台而被自动作废的件数。",
        "有转报时限、未转报、作废时间不早于转报时限的事件数",
        "—",
        REPORTED_IN,
        "设有转报时限的类别（乱停车）。",
        "在时限内转报的；时限前因其他原因作废的。",
        ("drill", "api"),
        group="timeliness",
        source=_EVENTS,
    ),
    Figure(
        "timeliness",
        "处理及时率",
        "考核计入事件中未逾期的比例（考核第 8 项）。",
        "考核计入事件 − 逾期事件",
        "考核计入事件",
        REPORTED_IN,
        "分子分母为同一批事件：统计期内上报、不含重复和作废件；大屏的村社、网格排名按本月截至今日计算。",
        EXCLUDED_DUPLICATES + "；作废事件（分子分母均不含）。",
        ("wall", "drill", "mobile", "assessment", "export", "api"),
        group="timeliness",
        source=_EVENTS + "；assessment.rules.timeliness_score 计分",
        rate=True,
    ),
    Figure(
        "overdue_new",
        "新增逾期",
        "统计期内超过办理时限、被标记逾期的事件件数，不论事件何时上报。",
        "统计期内的“逾期”步骤数（每件事件至多一次）",
        "—",
        HAPPENED_IN,
        "统计期内由截止期限清扫标记逾期的事件，多数是此前上报的事件。",
        "统计期前已标记逾期的事件。",
        ("wall",),
        group="timeliness",
        source=_COUNTERS + "：overdue",
    ),
    Figure(
        "overdue_open",
        "当前逾期在办",
        "此刻尚在办理中、且已超过办理时限的事件件数。",
        "状态为待立案、已立案、已派遣、处理中或待核查，且已标记逾期的事件数",
        "—",
        SNAPSHOT,
        "辖区内所有在办事件，不论何时上报。",
        "已结案、作废、重复的事件。",
        ("wall",),
        group="timeliness",
        source="wall.queries.overdue_open",
    ),
    Figure(
        "alerts_open",
        "未解除预警",
        "此刻尚未解除的临期和逾期预警条数。",
        "未解除的预警（乱停车一小时临期、待流转临期、逾期未流转、已逾期）",
        "—",
        SNAPSHOT,
        "辖区内在办事件的预警；事件办结、转报或流转到位后预警自动解除。",
        "已解除的预警。",
        ("wall", "mobile"),
        group="timeliness",
        source="wall.queries.alert_ticker / mobile.views.open_alert_count",
    ),
    Figure(
        "alert_escalation_due",
        "待流转临期",
        "须上报至更高层级、尚未流转、流转时限还未到的事件。",
        "未解除的待流转预警中，流转时限在此刻之后的条数",
        "—",
        SNAPSHOT,
        "类别规定须流转（must_escalate）且尚在下级的在办事件，到达预警时点（时限的 80% 或提前量）后出现。",
        "流转时限已过的（见“逾期未流转”）；已流转到位或已办结的。",
        ("wall",),
        group="timeliness",
        source="wall.queries.alert_ticker",
    ),
    Figure(
        "alert_escalation_late",
        "逾期未流转",
        "须上报至更高层级、流转时限已过仍未流转的事件。",
        "未解除的待流转预警中，流转时限早于此刻的条数",
        "—",
        SNAPSHOT,
        "同“待流转临期”，但时限已过；按超时长短排列。",
        "时限未到的（见“待流转临期”）；已流转到位或已办结的。",
        ("wall",),
        group="timeliness",
        source="wall.queries.alert_ticker",
    ),
    Figure(
        "alert_parking_due",
        "乱停车一小时临期",
        "发现后一小时内须转报市平台、尚未转报的乱停车事件。",
        "未解除的乱停车转报预警条数",
        "—",
        SNAPSHOT,
        "转报时限前 15 分钟（或类别设定的提前量）起出现；超过一小时的事件被自动作废，预警随之解除。",
        "已转报、已作废的事件。",
        ("wall",),
        group="timeliness",
        source="wall.queries.alert_ticker",
    ),
    Figure(
        "alert_self_handled_due",
        "自办自结当日临期",
        "上报时选择自办自结、临近当日结束仍未办结的事件。",
        "未解除的自办自结临期预警条数",
        "—",
        SNAPSHOT,
        "当日 24 时前 2 小时（或类别设定的提前量）起出现；办结后解除，过 24 时转为已逾期。",
        "已办结的事件。",
        ("wall",),
        group="timeliness",
        source="wall.queries.alert_ticker",
    ),
    Figure(
        "alert_overdue",
        "已逾期",
        "已超过办理时限、仍在办理中的事件的预警。",
        "未解除的逾期预警条数",
        "—",
        SNAPSHOT,
        "截止期限清扫标记逾期的在办事件。",
        "已办结、作废、重复的事件。",
        ("wall",),
        group="timeliness",
        source="wall.queries.alert_ticker",
    ),
    # --- flow: steps that happened in the period -----------------------------------------------------------
    Figure(
        "closures",
        "当期结案",
        "统计期内完成结案（核查结案或自办自结）的事件件数，不论事件何时上报。",
        "统计期内的结案步骤数",
        "—",
        HAPPENED_IN,
        "核查结案和自办自结两种步骤。",
        "统计期内上报但尚未结案的事件；不是“已办结”，两者之比不是办结率。",
        ("wall", "drill", "mobile"),
        group="flow",
        source=_COUNTERS + "：closed；趋势图为 stats.trend（按结案时间）",
    ),
    Figure(
        "registrations",
        "当期立案",
        "统计期内完成立案（案卷建立）的事件件数，不论事件何时上报。",
        "统计期内的立案步骤数",
        "—",
        HAPPENED_IN,
        "立案步骤；自办自结的事件不经立案。",
        "作废、判重和自办自结的事件。",
        ("wall",),
        group="flow",
        source=_COUNTERS + "：registered",
    ),
    Figure(
        "escalations_town",
        "当期流转镇街",
        "统计期内流转至镇街中心的操作次数。",
        "统计期内目标层级为镇街的流转步骤数",
        "—",
        HAPPENED_IN,
        "流转步骤（网格或村社 → 镇街）。",
        "流转至村社、市中心的步骤。",
        ("wall",),
        group="flow",
        source=_COUNTERS + "：escalated:town",
    ),
    Figure(
        "escalations_city",
        "当期流转市级",
        "统计期内流转至市中心的操作次数。",
        "统计期内目标层级为市中心的流转步骤数",
        "—",
        HAPPENED_IN,
        "流转步骤（任何层级 → 市中心，含网格直报市级）。",
        "流转至村社、镇街的步骤。",
        ("wall",),
        group="flow",
        source=_COUNTERS + "：escalated:city",
    ),
    Figure(
        "reported_by_hour",
        "每小时上报",
        "今日每个整点小时内上报的事件件数，与上周同日对照。",
        "该小时内上报的事件数（不含重复件）",
        "—",
        REPORTED_IN,
        "同“上报事件”，按上报时间所在的本地小时分组；各小时之和等于今日上报事件。",
        EXCLUDED_DUPLICATES + "。",
        ("wall",),
        group="flow",
        source="wall.queries.hourly_reports",
    ),
    Figure(
        "grid_load",
        "网格今日上报量",
        "每个网格今日上报的事件件数（大屏地图的着色）。",
        "该网格今日上报的事件数（不含重复件）",
        "—",
        REPORTED_IN,
        "同“上报事件”，按事件所在网格分组；各网格之和等于今日上报事件。",
        EXCLUDED_DUPLICATES + "。",
        ("wall",),
        group="flow",
        source="wall.queries.map_data",
    ),
    # --- people ----------------------------------------------------------------------------------------
    Figure(
        "gridworkers",
        "在册网格员",
        "辖区内启用中的网格员账号数。",
        "角色为网格员、未停用、所在网格位于辖区内的账号数",
        "—",
        STOCK,
        "专职、兼职等各岗位网格员。",
        "停用账号；志愿者、综治中心管理员等其他角色。",
        ("wall", "drill", "mobile", "bulletin", "assessment", "api"),
        group="people",
        source="measures.gridworkers",
    ),
    Figure(
        "reports_per_gridworker",
        "人均上报",
        "网格员上报的事件数除以在册网格员数（不是比率）。",
        "统计期内由网格员账号上报的事件数（不含重复件）",
        "在册网格员",
        REPORTED_IN,
        "上报人为网格员账号的事件。",
        EXCLUDED_DUPLICATES + "；其他来源的事件。",
        ("drill", "api"),
        group="people",
        source=_EVENTS,
    ),
    Figure(
        "gridworker_reports",
        "网格员上报事件",
        "统计期内由网格员账号上报的事件件数。",
        "上报人为网格员账号的事件数（不含重复件）",
        "—",
        REPORTED_IN,
        "上报人角色为网格员的事件，任何状态、类型，不论事件在何处。",
        EXCLUDED_DUPLICATES + "；其他来源的事件。",
        ("drill", "api"),
        group="people",
        source=_EVENTS,
    ),
    Figure(
        "online",
        "在线网格员",
        "最近 5 分钟内有心跳的网格员人数。",
        "5 分钟内有心跳的网格员账号数",
        "—",
        SNAPSHOT,
        "网格员 App 的在线心跳。",
        "超过 5 分钟无心跳的账号。",
        ("wall",),
        group="people",
        source="counters.presence_many / counters.online_accounts",
    ),
    Figure(
        "attendance_rate",
        "出勤率",
        "统计期内签到过的网格员占在册网格员的比例。",
        "统计期内至少签到一天的网格员人数",
        "在册网格员",
        HAPPENED_IN,
        "签到记录（大屏为今日签到，取自 Redis 计数；下钻与移动端取自数据库，同一定义）。",
        "停用账号和非网格员账号的签到。",
        ("wall", "drill", "mobile", "bulletin", "export", "api"),
        group="people",
        source="stats.figures；大屏 counters.presence_many",
        rate=True,
    ),
    Figure(
        "patrol_rate",
        "巡查达标率",
        "统计期内每个已开始的工作日都巡查满 1 小时的网格员比例（考核第 9 项）。",
        "巡查达标的网格员人数",
        "在册网格员",
        HAPPENED_IN,
        "按巡查开始的本地日期累计时长；今日未满 1 小时不算未达标；统计期内无已开始的工作日时为“—”。",
        "未结束的巡查；节假日（按官方调休日历）。",
        ("drill", "mobile", "bulletin", "assessment", "export", "api"),
        group="people",
        source="measures.patrol_compliance",
        rate=True,
    ),
    Figure(
        "login_rate",
        "管理员登录率",
        "统计期内登录过的综治中心管理员账号占全部此类账号的比例。",
        "统计期内成功登录过的综治中心管理员账号数",
        "启用中的综治中心管理员账号数",
        HAPPENED_IN,
        "镇街、村社综治中心的管理员账号；大屏为本月截至此刻（Redis 计数），下钻按所选统计期。",
        "登录失败；停用账号。",
        ("wall", "drill", "mobile", "bulletin", "export", "api"),
        group="people",
        source="stats.figures；大屏 counters.presence_many",
        rate=True,
    ),
    # --- visits, collection, party ------------------------------------------------------------------------
    Figure(
        "visit_rate",
        "走访率（按走访周期）",
        "每类走访对象（特殊人群各类、重点人员、空巢老人、重点场所、群租房、出租屋）按其规定的走访频次"
        "（每周、每月、每季度）在走访周期内被走访的比例；下钻的走访表逐类列出频次与走访率。",
        "已走访人次：每个对象在每个计入的走访周期内被走访过（至少一次）计 1",
        "应走访人次：在册对象数 × 计入的走访周期数",
        HAPPENED_IN,
        VISIT_WINDOWS_RULE,
        "已注销的对象；同一周期内多次走访只计一次。",
        ("drill", "bulletin", "api"),
        group="visits",
        source="stats.figures（stats.visit_windows）",
        rate=True,
    ),
    Figure(
        "special_visit_rate",
        "特殊人群走访率（四类）",
        "社区矫正人员、刑满释放人员、易肇事肇祸精神障碍患者、吸毒人员四类特殊人群按各自走访周期（规定每月）"
        "被走访的比例；与考核第 10 项只计两类的“特殊人群走访率（考核第10项：两类）”不同。",
        "四类人员的已走访人次（每人每个走访周期被走访过计 1；每月走访、按自然月统计时即走访过的不同人数）",
        "四类人员的应走访人次（在册人数 × 走访周期数；按自然月统计时即在册人数）",
        HAPPENED_IN,
        "按被走访人员所在地归属，不论谁走访。" + VISIT_WINDOWS_RULE,
        "已注销的人员；同一周期内多次走访只计一次；重点青少年、重点上访等重点人员。",
        ("drill", "bulletin", "export", "api"),
        group="visits",
        source="stats.figures（stats.visit_windows）",
        rate=True,
    ),
    Figure(
        "linkage_rate",
        "人房关联率",
        "登记人口中已关联标准地址的比例；超过 100% 标为数据存疑，不作为事实印出。",
        "已关联标准地址的人数",
        "登记人口",
        STOCK,
        "各村社不晚于统计期末月的最新一期采集数。",
        "无采集数的村社。",
        ("drill", "bulletin", "export", "api"),
        group="visits",
        source="stats.figures",
        rate=True,
    ),
    Figure(
        "party_members",
        "党员",
        "辖区内网格党组织的党员人数合计。",
        "各党组织登记的党员数之和",
        "—",
        STOCK,
        "所在地位于辖区内的党组织。",
        "—",
        ("drill", "bulletin", "export", "api"),
        group="visits",
        source="stats.figures",
    ),
    Figure(
        "party_activities",
        "党建活动",
        "统计期内辖区党组织开展的活动次数。",
        "活动日期在统计期内的党建活动数",
        "—",
        HAPPENED_IN,
        "所在地位于辖区内的党组织的活动。",
        "—",
        ("drill", "bulletin", "export", "api"),
        group="visits",
        source="stats.figures",
    ),
    # --- assessment --------------------------------------------------------------------------------------
    Figure(
        "assessment_total",
        "考核总分",
        "镇街十项考核指标得分之和（满分 100，按未取整得分相加后四舍五入到两位小数），同分并列。",
        "十项指标得分之和",
        "—",
        REPORTED_IN,
        "各项指标按其定义；事件类指标以“考核计入事件”为准；市级大屏为本月截至今日，移动端为上月。",
        "重复件和作废件（事件类指标）。",
        ("wall", "mobile", "assessment", "api"),
        group="assessment",
        source="assessment.service.month_table",
    ),
    Figure(
        "assessment_reports_per_10k",
        "事项总量",
        "每万名常住人口上报的考核计入事件数（考核第 1 项）。",
        "考核计入事件",
        "常住人口（普查）/ 10000",
        REPORTED_IN,
        "事件所在镇街的考核计入事件。",
        "重复件、作废件；无人口数时此项不得分。",
        ("assessment",),
        group="assessment",
        source="assessment.service.town_figures",
    ),
    Figure(
        "assessment_reports_per_gridworker",
        "网格员上报",
        "镇街网格员人均上报的考核计入事件数（考核第 2 项）。",
        "本镇街网格员上报的考核计入事件数",
        "在册网格员",
        REPORTED_IN,
        "上报人为本镇街网格员的事件，不论事件在何处。",
        "重复件、作废件。",
        ("assessment",),
        group="assessment",
        source="assessment.service.town_figures",
    ),
    Figure(
        "assessment_gridworkers_meeting_quota",
        "达标网格员",
        "上报考核计入事件达到定额（默认 20 件）的网格员占比（考核第 3 项）。",
        "达到定额的网格员数",
        "在册网格员",
        REPORTED_IN,
        "同“网格员上报”。",
        "重复件、作废件。",
        ("assessment",),
        group="assessment",
        source="assessment.service.town_figures",
        rate=True,
    ),
    Figure(
        "assessment_town_center_reports",
        "达标综治中心",
        "镇街综治中心自报的考核计入事件数对标准（默认每中心 20 件）的完成度（考核第 4 项）。",
        "镇街综治中心上报的事件数（多个中心时为达标中心数）",
        "标准（多个中心时为中心数）",
        REPORTED_IN,
        "上报中心为本镇街综治中心的事件。",
        "重复件、作废件。",
        ("assessment",),
        group="assessment",
        source="assessment.service.town_figures",
    ),
    Figure(
        "assessment_hazard_reporting",
        "隐患排查",
        "上报安全隐患达到 2 件的网格员占比（考核第 5 项）。",
        "上报考核计入的安全隐患 ≥ 2 件的网格员数",
        "在册网格员",
        REPORTED_IN,
        "类型为安全隐患、上报人为本镇街网格员的事件。",
        "重复件、作废件。",
        ("assessment",),
        group="assessment",
        source="assessment.service.town_figures",
        rate=True,
    ),
    Figure(
        "assessment_village_disputes",
        "矛盾纠纷（考核）",
        "村（社区）综治中心平均上报的矛盾纠纷件数（考核第 6 项）。",
        "村社综治中心上报的考核计入矛盾纠纷事件数",
        "村社综治中心数",
        REPORTED_IN,
        "上报中心为本镇街村社综治中心、类型为矛盾纠纷的事件。",
        "重复件、作废件。",
        ("assessment",),
        group="assessment",
        source="assessment.service.town_figures",
    ),
    Figure(
        "assessment_town_escalations",
        "事项流转",
        "镇街综治中心平均向上流转的事件数（考核第 7 项）。",
        "由本镇街账号流转出镇街的考核计入事件数",
        "镇街综治中心数",
        REPORTED_IN,
        "escalated_by_center_id 为本镇街中心的事件。",
        "重复件、作废件。",
        ("assessment",),
        group="assessment",
        source="assessment.service.town_figures",
    ),
    Figure(
        "assessment_patrol",
        "网格巡查",
        "本月每个已开始的工作日都巡查满 1 小时的网格员占比（考核第 9 项，与“巡查达标率”同一定义）。",
        "巡查达标的网格员人数",
        "在册网格员",
        HAPPENED_IN,
        "同“巡查达标率”。",
        "同“巡查达标率”。",
        ("assessment",),
        group="assessment",
        source="measures.patrol_compliance",
        rate=True,
    ),
    Figure(
        "assessment_special_visits",
        "特殊人群走访率（考核第10项：两类）",
        "吸毒人员与易肇事肇祸精神障碍患者两类中本月被走访过的人数比例（考核第 10 项）；"
        "不含社区矫正、刑满释放人员（四类见“特殊人群走访率（四类）”）。",
        "本月被走访过的此两类不同人员数",
        "在册的吸毒人员与易肇事肇祸精神障碍患者数",
        HAPPENED_IN,
        "人员所在镇街为本镇街；按考核月（自然月）计；辖区无此类人员时此项得满分。",
        "已注销的人员；社区矫正人员、刑满释放人员。",
        ("assessment",),
        group="assessment",
        source="assessment.service.town_figures",
        rate=True,
    ),
    # --- points ------------------------------------------------------------------------------------------
    Figure(
        "points_total",
        "积分合计",
        "网格员工作按积分规则累计的分数，按网格、村社、镇街汇总；社区与村委分开排名，同分并列。",
        "签到、事件、隐患、矛盾纠纷、走访、信息采集各项积分之和",
        "—",
        HAPPENED_IN,
        "有效上报（不含重复、作废）按上报时间计；流转至镇街或市中心办结的加分按结案计；见积分规则。",
        "重复件、作废件；超过当日才办结的自办自结事件。",
        ("points", "bulletin"),
        group="points",
        source="points.service",
    ),
)

BY_KEY: dict[str, Figure] = {f.key: f for f in FIGURES}
assert len(BY_KEY) == len(FIGURES), "duplicate figure key"
assert len({f.name for f in FIGURES}) == len(FIGURES), "two figures share a name"

# assessment indicator key (assessment.rules) → catalogue key
ASSESSMENT_KEYS = {
    "reports_per_10k": "assessment_reports_per_10k",
    "reports_per_gridworker": "assessment_reports_per_gridworker",
    "gridworkers_meeting_quota": "assessment_gridworkers_meeting_quota",
    "town_center_reports": "assessment_town_center_reports",
    "hazard_reporting": "assessment_hazard_reporting",
    "village_disputes": "assessment_village_disputes",
    "town_escalations": "assessment_town_escalations",
    "timeliness": "timeliness",
    "patrol": "assessment_patrol",
    "special_visits": "assessment_special_visits",
}


def get(key: str) -> Figure:
    """The entry of `key`; KeyError for an unknown key (a typo in a template must fail its test)."""
    return BY_KEY[key]


def label(key: str) -> str:
    return BY_KEY[key].name


ALERT_FIGURES = (
    "alert_parking_due",
    "alert_escalation_due",
    "alert_escalation_late",
    "alert_self_handled_due",
    "alert_overdue",
)


def alert_figure(kind: str, past_limit: bool) -> str:
    """The catalogue key of an open alert: an escalation alert whose limit has passed is 逾期未流转, not
    待流转临期 (a 乱停车 alert past its hour does not stay open: the sweep voids the case)."""
    if kind == "escalation_due":
        return "alert_escalation_late" if past_limit else "alert_escalation_due"
    return {
        "parking_due": "alert_parking_due",
        "self_handled_due": "alert_self_handled_due",
        "overdue": "alert_overdue",
    }.get(kind, kind)


_BY_NAME = {f.name: f.key for f in FIGURES}


def key_of_name(name: str) -> str | None:
    """The key of the figure called `name` (a table header built elsewhere, e.g. the bulletin's), or None."""
    return _BY_NAME.get(str(name).strip())


def grouped() -> list[tuple[str, list[Figure]]]:
    """(group title, its figures) in catalogue order, for the page."""
    out: dict[str, list[Figure]] = {}
    for f in FIGURES:
        out.setdefault(f.group, []).append(f)
    return [(GROUPS[g], figs) for g, figs in out.items()]
