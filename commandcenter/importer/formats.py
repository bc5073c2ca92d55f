"""The CSV formats of `flask import`: one Format per file kind, one Column per column.

These definitions drive the validation (commandcenter.importer.validation) and are the source of the
tables in docs/import.md (`formats.markdown()` renders them; a test keeps the two in step).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import labels
from ..models import (
    CASE_KINDS,
    CASE_LEVELS,
    CASE_SOURCES,
    CASE_STATES,
    GRID_KINDS,
    GRIDWORKER_POSTS,
    PERSON_TYPES,
    PLACE_LEVELS,
    ROLES,
    SITE_TYPES,
    TOWN_KINDS,
    VILLAGE_KINDS,
    VISIT_FREQUENCIES,
)

# column types
TEXT, INT, FLOAT, BOOL, DATETIME, DATE, CHOICE, LAT, LON, GEOJSON, JSON = (
    "text",
    "int",
    "float",
    "bool",
    "datetime",
    "date",
    "choice",
    "lat",
    "lon",
    "geojson",
    "json",
)

TYPE_LABEL = {
    TEXT: "文本",
    INT: "整数",
    FLOAT: "小数",
    BOOL: "是/否",
    DATETIME: "日期时间（本地时间）",
    DATE: "日期",
    CHOICE: "代码",
    LAT: "纬度（WGS-84）",
    LON: "经度（WGS-84）",
    GEOJSON: "GeoJSON 几何",
    JSON: "JSON",
}

ACTIONS = tuple(labels.ACTION)
DISPUTE_OUTCOMES = ("pending", "resolved", "unresolved")
DISPUTE_LEVELS = ("grid", "village", "town")
LOGIN_CHANNELS = ("web", "app", "api")
CENTER_LEVELS = ("city", "town", "village")

# --- what old platforms write instead of the codes -----------------------------------------------------
# The Chinese labels that platforms export (and that this system shows), each mapped to its code. A CHOICE
# cell is taken as it is when it is a code, else looked up here (spaces removed); anything else is an error.
# docs/import.md prints these tables (`aliases_markdown()`); a test keeps the two in step.

STATE_LABELS = {
    "待立案": "reported",
    "已上报": "reported",
    "待受理": "reported",
    "已立案": "registered",
    "待派遣": "registered",
    "已派遣": "dispatched",
    "待签收": "dispatched",
    "处理中": "handling",
    "办理中": "handling",
    "处置中": "handling",
    "待核查": "feedback",
    "已反馈": "feedback",
    "已处置": "feedback",
    "已结案": "closed",
    "已办结": "closed",
    "已完结": "closed",
    "结案": "closed",
    "无效": "rejected",
    "已作废": "rejected",
    "作废": "rejected",
    "不予立案": "rejected",
    "重复": "duplicate",
    "重复件": "duplicate",
}
SOURCE_LABELS = {
    "网格员上报": "app",
    "网格员": "app",
    "巡查上报": "app",
    "12345": "hotline",
    "12345热线": "hotline",
    "市民热线": "hotline",
    "热线工单": "hotline",
    "志愿者上报": "volunteer",
    "志愿者": "volunteer",
    "中心受理": "center",
    "中心上报": "center",
    "综治中心上报": "center",
    "部门上报": "department",
    "领导交办": "leader",
    "上级交办": "leader",
    "市民上报": "open311",
}
LEVEL_LABELS = {
    "网格": "grid",
    "村社": "village",
    "村": "village",
    "社区": "village",
    "村（社区）": "village",
    "镇街": "town",
    "镇": "town",
    "街道": "town",
    "乡": "town",
    "镇街中心": "town",
    "镇级": "town",
    "市": "city",
    "区": "city",
    "市级": "city",
    "市中心": "city",
}
BOOL_LABELS = {
    "是": True,
    "1": True,
    "true": True,
    "t": True,
    "yes": True,
    "y": True,
    "对": True,
    "真": True,
    "有": True,
    "√": True,
    "否": False,
    "0": False,
    "false": False,
    "f": False,
    "no": False,
    "n": False,
    "错": False,
    "假": False,
    "无": False,
    "×": False,
}
KIND_LABELS = {  # places.kind
    "镇": "town",
    "街道": "street",
    "乡": "township",
    "社区": "community",
    "村": "village",
    "村委": "village",
    "村委会": "village",
    "综合网格": "comprehensive",
    "专属网格": "dedicated",
}
ALIAS_TABLES = (
    ("状态（cases.csv 的 state，cases_history.csv 的 from_state、to_state）", STATE_LABELS),
    ("来源（cases.csv 的 source）", SOURCE_LABELS),
    ("层级（places.csv、cases.csv、cases_history.csv 的 level、from_level、to_level）", LEVEL_LABELS),
    ("类型（places.csv 的 kind）", KIND_LABELS),
    ("是/否（所有“是/否”类型的列；英文不分大小写）", BOOL_LABELS),
)


@dataclass(frozen=True)
class Column:
    name: str
    type: str = TEXT
    required: bool = False
    help: str = ""
    choices: tuple[str, ...] = ()
    max_len: int | None = None
    example: str = ""
    aliases: dict[str, str] = field(default_factory=dict, hash=False, compare=False)  # label → code (CHOICE)


@dataclass(frozen=True)
class Format:
    kind: str
    filename: str
    title: str
    key: str  # what makes a row the same row on a second run
    columns: tuple[Column, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


PLACES = Format(
    "places",
    "places.csv",
    "区划与网格（含边界）",
    "code（区划代码，唯一）",
    (
        Column("code", required=True, max_len=32, help="区划/网格代码，全市唯一", example="320500001"),
        Column("name", required=True, max_len=100, example="东湖街道"),
        Column("level", CHOICE, True, "层级", PLACE_LEVELS, example="town", aliases=LEVEL_LABELS),
        Column(
            "kind",
            CHOICE,
            False,
            f"类型：镇街 {'/'.join(TOWN_KINDS)}，村社 {'/'.join(VILLAGE_KINDS)}，网格 {'/'.join(GRID_KINDS)}；市不填",
            TOWN_KINDS + VILLAGE_KINDS + GRID_KINDS,
            example="street",
            aliases=KIND_LABELS,
        ),
        Column(
            "parent_code",
            help="上级代码（市不填；镇街的上级是市，村社的上级是镇街，网格的上级是村社）；"
            "上级须已在数据库中或在本文件更靠前的行",
            max_len=32,
            example="320500",
        ),
        Column("population", INT, help="户籍/常住人口（普查数），≥ 0", example="200000"),
        Column("households", INT, help="户数，≥ 0", example="68000"),
        Column(
            "geometry",
            GEOJSON,
            help="边界：GeoJSON Polygon 或 MultiPolygon（或其 Feature），WGS-84 经纬度，"
            "须是有效多边形（shapely is_valid）；中心点由边界算出",
            example='{"type":"Polygon","coordinates":[[[120.0,31.0],[120.1,31.0],[120.1,31.1],[120.0,31.1],[120.0,31.0]]]}',
        ),
        Column("active", BOOL, help="是否启用，默认 是", example="是"),
    ),
)

CENTERS = Format(
    "centers",
    "centers.csv",
    "综治中心 / 联动站",
    "place_code + name",
    (
        Column("place_code", required=True, max_len=32, help="中心所在的市、镇街或村社代码", example="320500001"),
        Column("name", required=True, max_len=100, example="东湖街道综治中心"),
        Column("level", CHOICE, False, "默认取所在区划的层级", CENTER_LEVELS, example="town", aliases=LEVEL_LABELS),
    ),
)

ACCOUNTS = Format(
    "accounts",
    "accounts.csv",
    "账号",
    "username",
    (
        Column("username", required=True, max_len=64, help="登录名，全市唯一", example="gw0001"),
        Column("display_name", required=True, max_len=64, example="张伟"),
        Column("role", CHOICE, True, "角色", ROLES, example="gridworker"),
        Column("post", CHOICE, False, "网格员岗位（仅 gridworker）", GRIDWORKER_POSTS, example="full_time"),
        Column(
            "place_code",
            required=True,
            max_len=32,
            help="所属区划或网格代码（网格员填网格）",
            example="320500001001001",
        ),
        Column("center_place_code", max_len=32, help="所属综治中心所在区划的代码（center_admin 通常填写）", example=""),
        Column("department_code", max_len=32, help="所属职能部门代码（须已在系统中）", example=""),
        Column("phone", max_len=20, example="13800000000"),
        Column("active", BOOL, help="默认 是", example="是"),
        Column("created_at", DATETIME, help="原平台建号时间，默认导入时刻", example="2024-03-01 09:00"),
    ),
    notes=(
        "不导入任何口令：既不接受明文口令，也不接受原平台的口令散列。每个导入的账号得到一个随机、无人知道的口令散列"
        "（argon2，经 commandcenter.security.hash_password），并被标记为“须修改口令”（must_change_password）。"
        "管理员随后在“账号管理”（/admin/accounts，账号页面的“重置密码”）中为其发放一次性口令，"
        "或在服务器上执行 `flask accounts reset-password 用户名`；本人首次登录时修改。",
    ),
)

PERSONS = Format(
    "persons",
    "persons.csv",
    "重点人员",
    "code（原平台编号，唯一）",
    (
        Column("code", required=True, max_len=40, help="原平台中的人员编号", example="P000123"),
        Column("name", required=True, max_len=64, example="李某"),
        Column(
            "id_number", max_len=18, help="公民身份号码：18 位（末位可为 X）或 15 位数字", example="320501198001010011"
        ),
        Column("phone", max_len=20, example="13900000000"),
        Column("person_type", CHOICE, True, "人员类别", PERSON_TYPES, example="drug_user"),
        Column(
            "visit_frequency",
            CHOICE,
            False,
            "走访频次；默认：空巢老人 weekly，其余 monthly",
            VISIT_FREQUENCIES,
            example="monthly",
        ),
        Column("address", max_len=200, example="东湖街道南社区3幢2单元"),
        Column("grid_code", required=True, max_len=32, help="所在网格代码", example="320500001001001"),
        Column("assigned_to", max_len=64, help="负责走访的账号 username", example="gw0001"),
        Column("active", BOOL, help="默认 是", example="是"),
    ),
)

SITES = Format(
    "sites",
    "sites.csv",
    "重点场所、群租房、出租屋",
    "code（原平台编号，唯一）",
    (
        Column("code", required=True, max_len=40, help="原平台中的场所编号", example="S000045"),
        Column("name", required=True, max_len=100, example="东湖网吧"),
        Column("site_type", CHOICE, True, "场所类别", SITE_TYPES, example="key_place"),
        Column(
            "visit_frequency",
            CHOICE,
            False,
            "走访频次；默认：出租屋 quarterly，其余 monthly",
            VISIT_FREQUENCIES,
            example="monthly",
        ),
        Column("address", max_len=200, example="东湖路18号"),
        Column("grid_code", required=True, max_len=32, example="320500001001001"),
        Column("assigned_to", max_len=64, help="负责走访的账号 username", example="gw0001"),
        Column("active", BOOL, help="默认 是", example="是"),
    ),
)

CASES = Format(
    "cases",
    "cases.csv",
    "事件（案卷）",
    "number（案卷号，唯一）",
    (
        Column("number", required=True, max_len=24, help="案卷号，全市唯一", example="SJ202611030000001"),
        Column("source", CHOICE, True, "来源", CASE_SOURCES, example="app", aliases=SOURCE_LABELS),
        Column(
            "category_code",
            required=True,
            max_len=16,
            help="事件类别代码（小类或细项，须已在系统中）；事件性质（普通/隐患/纠纷）取自类别",
            example="0101",
        ),
        Column("description", required=True, help="事件描述", example="人行道护栏损坏"),
        Column("address", max_len=200, example="东湖路与南湖路交叉口"),
        Column("lat", LAT, help="纬度 −90…90（WGS-84）", example="31.025"),
        Column("lon", LON, help="经度 −180…180（WGS-84）", example="120.025"),
        Column(
            "grid_code", max_len=32, help="所在网格代码；不填时按经纬度落入的网格边界确定", example="320500001001001"
        ),
        Column("reporter", max_len=64, help="上报人账号 username", example="gw0001"),
        Column("reporter_center", max_len=32, help="中心自行上报时，该中心所在区划的代码", example=""),
        Column("caller_name", max_len=64, example=""),
        Column("caller_phone", max_len=20, example=""),
        Column("external_ref", max_len=64, help="12345 工单号等", example=""),
        Column("state", CHOICE, True, "当前状态", CASE_STATES, example="closed", aliases=STATE_LABELS),
        Column("level", CHOICE, False, "当前所在层级，默认 grid", CASE_LEVELS, example="grid", aliases=LEVEL_LABELS),
        Column("valid", BOOL, help="是否有效；默认：rejected/duplicate 为否，reported 为空，其余为是", example="是"),
        Column("duplicate_of", max_len=24, help="重复事件的原案卷号（数据库中或本文件更靠前的行）", example=""),
        Column("self_handled", BOOL, help="自办自结，默认 否", example="否"),
        Column("department_code", max_len=32, help="承办职能部门代码（须已在系统中）", example=""),
        Column("assignee", max_len=64, help="承办人账号 username", example=""),
        Column(
            "discovered_at", DATETIME, help="发现时间，默认等于上报时间；不得晚于上报时间", example="2026-11-03 09:05"
        ),
        Column("reported_at", DATETIME, True, "上报时间", example="2026-11-03 09:12"),
        Column("registered_at", DATETIME, help="立案时间，不得早于上报时间", example="2026-11-03 09:40"),
        Column("dispatched_at", DATETIME, help="派遣时间", example=""),
        Column("transferred_at", DATETIME, help="转报市平台时间（乱停车）", example=""),
        Column(
            "closed_at",
            DATETIME,
            help="结案/作废时间；closed、rejected、duplicate 必填，其余状态不得填写；不得早于上报时间",
            example="2026-11-04 16:00",
        ),
        Column("dispatch_due", DATETIME, help="派遣时限", example=""),
        Column("handle_due", DATETIME, help="办理时限", example="2026-11-10 17:30"),
        Column("escalate_due", DATETIME, help="流转时限", example=""),
        Column("transfer_due", DATETIME, help="转报时限", example=""),
        Column("overdue", BOOL, help="是否逾期，默认 否", example="否"),
        Column("overdue_at", DATETIME, help="判为逾期的时间（overdue 为是时可填）", example=""),
        Column(
            "escalated_to_town",
            BOOL,
            help="曾流转至镇街中心（经镇街再上报市级的也为是；由网格、村社直报市级的为否）；"
            "默认：level 为 town 或填了 escalated_by_center 时为是，否则为否",
            example="否",
        ),
        Column(
            "escalated_to_city",
            BOOL,
            help="曾流转至市中心（不论是否经过镇街）；默认：level 为 city 时为是",
            example="否",
        ),
        Column("escalated_by_center", max_len=32, help="由哪个镇街中心流转（该中心所在区划的代码）", example=""),
        Column("rework_count", INT, help="退回返工次数，默认 0", example="0"),
        Column("outstanding", BOOL, help="优秀网格事件，默认 否", example="否"),
        Column("outstanding_story", help="优秀事件的事迹", example=""),
        Column(
            "dispute_screening_level",
            CHOICE,
            False,
            "矛盾纠纷：排查层级，默认 grid（仅纠纷类）",
            DISPUTE_LEVELS,
            example="",
        ),
        Column("dispute_mediation_level", CHOICE, False, "矛盾纠纷：调处层级", DISPUTE_LEVELS, example=""),
        Column(
            "dispute_outcome",
            CHOICE,
            False,
            "矛盾纠纷：结果，默认已结案为 resolved，否则 pending",
            DISPUTE_OUTCOMES,
            example="",
        ),
        Column("dispute_mediated_at", DATETIME, help="矛盾纠纷：调处完成时间，默认结案时间", example=""),
    ),
    notes=(
        f"事件性质（kind）不在文件中，取自类别（{'/'.join(CASE_KINDS)}）。",
        "导入事件后会重建实时计数（等同 `flask counters rebuild`）；若 Redis 不可用，命令会提示稍后手动运行。",
    ),
)

HISTORY = Format(
    "history",
    "cases_history.csv",
    "事件处理记录（时间线）",
    "案卷号 + at + action",
    (
        Column(
            "case_number",
            required=True,
            max_len=24,
            help="案卷号（数据库中或 cases.csv 已导入）",
            example="SJ202611030000001",
        ),
        Column("at", DATETIME, True, "发生时间；不得早于事件的上报时间", example="2026-11-03 09:40"),
        Column("actor", max_len=64, help="操作人账号 username；不填表示系统自动", example="town0_admin"),
        Column("action", CHOICE, True, "动作", ACTIONS, example="register"),
        Column(
            "from_state", CHOICE, False, "原状态（上报时不填）", CASE_STATES, example="reported", aliases=STATE_LABELS
        ),
        Column("to_state", CHOICE, True, "新状态", CASE_STATES, example="registered", aliases=STATE_LABELS),
        Column("from_level", CHOICE, False, "原层级", CASE_LEVELS, example="grid", aliases=LEVEL_LABELS),
        Column("to_level", CHOICE, False, "新层级", CASE_LEVELS, example="grid", aliases=LEVEL_LABELS),
        Column("note", help="说明", example="符合立案条件"),
    ),
)

PATROLS = Format(
    "patrols",
    "patrols.csv",
    "巡查",
    'id（保存为 client_key = "import:<id>"）',
    (
        Column("id", required=True, max_len=72, help="原平台中的巡查编号", example="PT000001"),
        Column("gridworker", required=True, max_len=64, help="网格员账号 username", example="gw0001"),
        Column("grid_code", max_len=32, help="巡查网格，默认网格员所在网格", example="320500001001001"),
        Column("started_at", DATETIME, True, "开始时间", example="2026-11-03 09:00"),
        Column("ended_at", DATETIME, help="结束时间，不得早于开始时间", example="2026-11-03 10:15"),
        Column("distance_m", FLOAT, help="里程（米），≥ 0", example="3200"),
        Column("track", JSON, help="轨迹：[[经度, 纬度, unix 秒], …]", example="[[120.02,31.02,1793667600]]"),
    ),
)

SIGNINS = Format(
    "signins",
    "signins.csv",
    "签到",
    "gridworker + day（每人每天一次）",
    (
        Column("gridworker", required=True, max_len=64, help="账号 username", example="gw0001"),
        Column("at", DATETIME, True, "签到时间", example="2026-11-03 08:31"),
        Column("day", DATE, help="签到日（本地日期），默认取签到时间的日期", example="2026-11-03"),
        Column("lat", LAT, example="31.02"),
        Column("lon", LON, example="120.02"),
    ),
)

VISITS = Format(
    "visits",
    "visits.csv",
    "走访",
    'id（保存为 client_key = "import:<id>"）',
    (
        Column("id", required=True, max_len=72, help="原平台中的走访编号", example="V000001"),
        Column("gridworker", required=True, max_len=64, help="走访人账号 username", example="gw0001"),
        Column(
            "person_code",
            max_len=40,
            help="被走访人员编号（persons.csv 的 code）；与 site_code 二选一",
            example="P000123",
        ),
        Column("site_code", max_len=40, help="被走访场所编号（sites.csv 的 code）", example=""),
        Column("at", DATETIME, True, "走访时间", example="2026-11-05 15:20"),
        Column("note", help="走访情况", example="情绪稳定"),
        Column("lat", LAT, example=""),
        Column("lon", LON, example=""),
    ),
)

LOGINS = Format(
    "logins",
    "logins.csv",
    "登录记录",
    'id（保存为 import_key = "import:<id>"）',
    (
        Column("id", required=True, max_len=72, help="原平台中的登录记录编号", example="L000001"),
        Column("username", required=True, max_len=64, help="登录名；成功的登录须是已有账号", example="town0_admin"),
        Column("at", DATETIME, True, "登录时间", example="2026-11-03 08:45"),
        Column("success", BOOL, help="是否成功，默认 是", example="是"),
        Column("reason", max_len=40, help="失败原因", example=""),
        Column("address", max_len=64, help="IP 地址", example="10.0.0.8"),
        Column("channel", CHOICE, False, "渠道，默认 web", LOGIN_CHANNELS, example="web"),
    ),
)

BASE_DATA = Format(
    "base_data",
    "base_data.csv",
    "基础数据（村社月度：登记人口、人房关联、户、房）",
    "place_code + month（同一村社同一月份再次导入时更新）",
    (
        Column("place_code", required=True, max_len=32, help="村社代码", example="320500001001"),
        Column("month", required=True, max_len=7, help="统计月份 YYYY-MM（截至该月底的存量）", example="2026-11"),
        Column("registered_population", INT, True, "登记人口（实有人口登记数），≥ 0", example="3200"),
        Column(
            "linked_persons",
            INT,
            True,
            "已关联标准地址的人口，≥ 0；超过登记人口时照常导入，人房关联率超过 100% 会在各页面标出",
            example="3010",
        ),
        Column("households", INT, help="户数，≥ 0", example="1150"),
        Column("buildings", INT, help="楼栋数，≥ 0", example="86"),
        Column("houses", INT, help="房屋（套）数，≥ 0", example="1240"),
        Column("shops", INT, help="沿街商铺数，≥ 0", example="35"),
        Column("enterprises", INT, help="企业数，≥ 0", example="12"),
    ),
    notes=("人房关联率 = 已关联标准地址的人口 ÷ 登记人口，取每个村社截至所选月份的最新一行；各层级为其下村社之和。",),
)

ADDRESSES = Format(
    "addresses",
    "addresses.csv",
    "标准地址",
    "code（标准地址编码，唯一；再次导入时更新）",
    (
        Column("code", required=True, max_len=40, help="标准地址编码", example="A3205000010010001"),
        Column("address", required=True, max_len=200, help="标准地址全称", example="东湖街道南社区人民路18号3幢"),
        Column("grid_code", max_len=32, help="所在网格代码；不填时由经纬度落入的网格确定", example="320500001001001"),
        Column("lat", LAT, example="31.0213"),
        Column("lon", LON, example="120.0187"),
        Column("active", BOOL, help="是否启用，默认 是", example="是"),
    ),
    notes=("网格与经纬度至少填一项；两者都填时，经纬度须落在该网格内（边界已知时）。",),
)

FORMATS: dict[str, Format] = {
    f.kind: f
    for f in (
        PLACES,
        CENTERS,
        ACCOUNTS,
        BASE_DATA,
        ADDRESSES,
        PERSONS,
        SITES,
        CASES,
        HISTORY,
        PATROLS,
        SIGNINS,
        VISITS,
        LOGINS,
    )
}
# the order of `flask import all`: every file after the files it refers to
ORDER: tuple[str, ...] = tuple(FORMATS)


def markdown(fmt: Format) -> str:
    """The column table of one format, as it appears in docs/import.md."""
    out = ["| 列 | 类型 | 必填 | 取值 / 说明 | 示例 |", "| --- | --- | --- | --- | --- |"]
    for c in fmt.columns:
        allowed = c.help
        if c.choices:
            allowed = (allowed + "：" if allowed else "") + "、".join(f"`{v}`" for v in c.choices)
        if c.max_len:
            allowed += f"（最长 {c.max_len} 字符）"
        example = f"`{c.example}`" if c.example else ""
        out.append(
            f"| `{c.name}` | {TYPE_LABEL[c.type]} | {'是' if c.required else '否'} | "
            f"{allowed.replace('|', '/')} | {example.replace('|', '/')} |"
        )
    return "\n".join(out)


def aliases_markdown() -> str:
    """The tables of Chinese labels accepted in place of the codes, as they appear in docs/import.md."""
    out = []
    for title, table in ALIAS_TABLES:
        out += [f"**{title}**", "", "| 文件中的写法 | 代码 |", "| --- | --- |"]
        by_code: dict[str, list[str]] = {}
        for label, code in table.items():
            by_code.setdefault("是" if code is True else "否" if code is False else f"`{code}`", []).append(label)
        out += [f"| {'、'.join(labels_)} | {code} |" for code, labels_ in by_code.items()]
        out.append("")
    return "\n".join(out).rstrip()
