"""The default category tree (big class → small class → item), shaped on GB/T 30428 and published
city tables, with the grid-governance kinds (安全隐患, 矛盾纠纷, 便民服务, 乱停车) on top.

Codes: big class 2 digits, small class 4 (big + 2), item 6 (small + 2). Limits sit on small classes
and are inherited by items unless an item sets its own. An administrator edits the tree later;
this is only the first version a city gets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .db import db
from .models import Category


@dataclass
class Node:
    code: str
    name: str
    kind: str = "ordinary"
    handle: tuple[int, str] | None = None  # (amount, unit)
    dispatch: tuple[int, str] | None = (2, "work_hours")
    must_escalate: bool = False
    escalate_to: str | None = None
    escalate: tuple[int, str] | None = None
    transfer_limit_minutes: int | None = None
    warn_before_minutes: int | None = None
    items: list[str] = field(default_factory=list)


# (code, name, kind, [small classes])
DEFAULT_TREE: list[tuple[str, str, str, list[Node]]] = [
    (
        "01",
        "市容环境",
        "ordinary",
        [
            Node("0101", "暴露垃圾", handle=(1, "work_days"), items=["道路暴露垃圾", "绿地暴露垃圾"]),
            Node("0102", "积存垃圾渣土", handle=(4, "work_days")),
            Node("0103", "道路不洁", handle=(5, "work_hours")),
            Node("0104", "水域不洁", handle=(15, "work_days")),
            Node("0105", "乱堆物堆料", handle=(2, "work_days")),
            Node("0106", "占道经营", handle=(1, "work_days"), items=["流动摊贩", "店外经营"]),
        ],
    ),
    (
        "02",
        "宣传广告",
        "ordinary",
        [
            Node("0201", "非法小广告", handle=(2, "work_days")),
            Node("0202", "违规户外广告", handle=(5, "work_days")),
        ],
    ),
    (
        "03",
        "施工管理",
        "ordinary",
        [
            Node(
                "0301",
                "违法建设",
                handle=(15, "work_days"),
                must_escalate=True,
                escalate_to="town",
                escalate=(1, "work_days"),
                items=["违章搭建", "擅自改变房屋结构"],
            ),
            Node("0302", "施工扰民", handle=(2, "work_days")),
            Node("0303", "工地扬尘", handle=(1, "work_days")),
        ],
    ),
    (
        "04",
        "街面秩序",
        "ordinary",
        [
            Node(
                "0401",
                "乱停车",
                handle=(2, "hours"),
                dispatch=(30, "minutes"),
                transfer_limit_minutes=60,
                warn_before_minutes=15,
                items=["机动车乱停放", "非机动车乱停放", "占用消防通道停车"],
            ),
            Node("0402", "无照经营", handle=(5, "work_days")),
            Node("0403", "露天烧烤", handle=(4, "hours")),
        ],
    ),
    (
        "05",
        "公用设施",
        "ordinary",
        [
            Node("0501", "井盖缺损", kind="hazard", handle=(4, "hours"), dispatch=(30, "minutes")),
            Node("0502", "路灯不亮", handle=(3, "work_days")),
            Node("0503", "道路破损", handle=(5, "work_days")),
            Node("0504", "供水管道漏水", handle=(1, "days"), dispatch=(1, "hours")),
        ],
    ),
    (
        "06",
        "园林绿化",
        "ordinary",
        [
            Node("0601", "绿地脏乱", handle=(2, "work_days")),
            Node("0602", "树木倒伏", kind="hazard", handle=(6, "hours"), dispatch=(30, "minutes")),
            Node("0603", "毁绿占绿", handle=(5, "work_days")),
        ],
    ),
    (
        "10",
        "安全隐患",
        "hazard",
        [
            Node(
                "1001",
                "消防安全隐患",
                handle=(2, "work_days"),
                items=["堵塞消防通道", "电动车楼道充电", "消防设施损坏"],
            ),
            Node(
                "1002",
                "燃气安全隐患",
                handle=(4, "hours"),
                dispatch=(30, "minutes"),
                must_escalate=True,
                escalate_to="town",
                escalate=(2, "hours"),
                items=["燃气泄漏", "违规使用液化气"],
            ),
            Node("1003", "用电安全隐患", handle=(1, "work_days"), items=["私拉乱接电线"]),
            Node(
                "1004",
                "房屋建筑安全隐患",
                handle=(3, "work_days"),
                must_escalate=True,
                escalate_to="town",
                escalate=(1, "work_days"),
            ),
            Node(
                "1005",
                "生产经营安全隐患",
                handle=(3, "work_days"),
                must_escalate=True,
                escalate_to="town",
                escalate=(1, "work_days"),
            ),
            Node(
                "1006",
                "危险化学品隐患",
                handle=(1, "work_days"),
                dispatch=(30, "minutes"),
                must_escalate=True,
                escalate_to="city",
                escalate=(4, "work_hours"),
            ),
            Node("1007", "道路交通安全隐患", handle=(2, "work_days")),
        ],
    ),
    (
        "20",
        "矛盾纠纷",
        "dispute",
        [
            Node("2001", "邻里纠纷", handle=(5, "work_days")),
            Node("2002", "婚姻家庭纠纷", handle=(10, "work_days")),
            Node(
                "2003",
                "土地房屋纠纷",
                handle=(15, "work_days"),
                must_escalate=True,
                escalate_to="town",
                escalate=(3, "work_days"),
            ),
            Node(
                "2004",
                "劳资纠纷（欠薪）",
                handle=(10, "work_days"),
                must_escalate=True,
                escalate_to="town",
                escalate=(2, "work_days"),
            ),
            Node("2005", "物业纠纷", handle=(10, "work_days")),
            Node("2006", "消费纠纷", handle=(7, "work_days")),
        ],
    ),
    (
        "30",
        "便民服务",
        "ordinary",
        [
            Node("3001", "困难群众帮扶", handle=(5, "work_days")),
            Node("3002", "政策咨询代办", handle=(3, "work_days")),
            Node("3003", "老人关爱服务", handle=(3, "work_days")),
        ],
    ),
    (
        "40",
        "社会治安",
        "ordinary",
        [
            Node(
                "4001",
                "治安隐患",
                kind="hazard",
                handle=(1, "work_days"),
                must_escalate=True,
                escalate_to="town",
                escalate=(4, "work_hours"),
            ),
            Node("4002", "可疑人员情况", handle=(1, "work_days")),
            Node(
                "4003",
                "涉稳信息",
                handle=(1, "work_days"),
                must_escalate=True,
                escalate_to="city",
                escalate=(2, "hours"),
                warn_before_minutes=30,
            ),
        ],
    ),
    (
        "99",
        "其他事件",
        "ordinary",
        [
            Node("9901", "其他", handle=(5, "work_days")),
        ],
    ),
]

PARKING_CODE = "0401"


def _limits(node: Node) -> dict:
    handle = node.handle or (5, "work_days")
    return {
        "handle_limit": handle[0],
        "handle_unit": handle[1],
        "dispatch_limit": node.dispatch[0] if node.dispatch else None,
        "dispatch_unit": node.dispatch[1] if node.dispatch else None,
        "must_escalate": node.must_escalate,
        "escalate_to": node.escalate_to,
        "escalate_limit": node.escalate[0] if node.escalate else None,
        "escalate_unit": node.escalate[1] if node.escalate else None,
        "transfer_limit_minutes": node.transfer_limit_minutes,
        "warn_before_minutes": node.warn_before_minutes,
    }


def install_default_categories() -> list[Category]:
    """Create the default tree if the table is empty; return every category."""
    existing = db.query(Category).order_by(Category.code).all()
    if existing:
        return existing
    created: list[Category] = []
    for big_code, big_name, big_kind, smalls in DEFAULT_TREE:
        big = Category(code=big_code, name=big_name, depth=1, kind=big_kind)
        db.add(big)
        db.flush()
        created.append(big)
        for node in smalls:
            kind = node.kind if node.kind != "ordinary" else big_kind
            small = Category(
                code=node.code,
                name=node.name,
                depth=2,
                parent_id=big.id,
                kind=kind,
                filing_condition=f"发现{node.name}且位置明确",
                closing_condition="处置完毕并经核查",
                **_limits(node),
            )
            db.add(small)
            db.flush()
            created.append(small)
            for i, item in enumerate(node.items, start=1):
                leaf = Category(
                    code=f"{node.code}{i:02d}", name=item, depth=3, parent_id=small.id, kind=kind, **_limits(node)
                )
                db.add(leaf)
                created.append(leaf)
    db.flush()
    return created


def descendants(category_id: int) -> set[int]:
    """The category and everything below it (big class → small classes → items): what a filter on it means."""
    from sqlalchemy import select

    below: dict[int | None, list[int]] = {}
    for cid, parent in db.execute(select(Category.id, Category.parent_id)).all():
        below.setdefault(parent, []).append(cid)
    found, todo = set(), [category_id]
    while todo:
        cid = todo.pop()
        if cid not in found:
            found.add(cid)
            todo.extend(below.get(cid, ()))
    return found


# the limits a case is given at its report and keeps (Case.limits): later edits of the category apply to new cases
LIMIT_FIELDS = (
    "dispatch_limit",
    "dispatch_unit",
    "handle_limit",
    "handle_unit",
    "must_escalate",
    "escalate_to",
    "escalate_limit",
    "escalate_unit",
    "transfer_limit_minutes",
    "warn_ratio",
    "warn_before_minutes",
)


@dataclass(frozen=True)
class Limits:
    """A case's limits, with the attribute names of Category (what alerts and the loop read)."""

    dispatch_limit: int | None = None
    dispatch_unit: str | None = None
    handle_limit: int | None = None
    handle_unit: str | None = None
    must_escalate: bool = False
    escalate_to: str | None = None
    escalate_limit: int | None = None
    escalate_unit: str | None = None
    transfer_limit_minutes: int | None = None
    warn_ratio: float | None = 0.8
    warn_before_minutes: int | None = None


def limits_record(category: Category) -> dict:
    """What report_case writes to Case.limits."""
    return {name: getattr(category, name) for name in LIMIT_FIELDS}


def limits_of(case) -> Limits:
    """The limits recorded on the case at its report; for a case reported before they were recorded (or
    imported), its category's as they are now."""
    recorded = case.limits
    if recorded:
        return Limits(**{name: recorded[name] for name in LIMIT_FIELDS if name in recorded})
    return Limits(**limits_record(case.category))


def is_parking(category: Category) -> bool:
    """乱停车 and its items carry the one-hour transfer rule."""
    return category.transfer_limit_minutes is not None
