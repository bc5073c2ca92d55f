"""Editing the category tree (事件类别): the one home of its rules; the page (/admin/categories) and the CLI
(`flask categories install-default | export | import`) call these functions.

- The tree is big class (depth 1, code 2 digits) → small class (depth 2, parent code + 2 digits) → item
  (depth 3, parent code + 2 digits). A code's serial is never 00.
- create / update / move / deactivate / activate / delete. Each checks everything first, then changes,
  writes one audit row per category with before and after (a compact text of the changed fields), and commits.
- move keeps the depth (a small class goes to another big class, an item to another small class) and RE-CODES
  the node and its subtree: the node gets a free code under its new parent (or the one asked for) and each
  descendant keeps its own serial under it (0101 → 0207 makes 010102 → 020702). Cases point to the category's
  id and are not touched; systems that send codes (Open311 clients, imports) must use the new code.
- deactivate hides the node and its whole subtree (every descendant is set inactive): intake, the API and
  Open311 offer only active categories. activate enables the node and its subtree again, and is refused
  while an ancestor is inactive.
- delete removes the node and its subtree only when no case uses any of them; else it is refused (deactivate).
- A change applies to new cases: report_case records the category's limits on the case (Case.limits).
- Export / import: JSON, the whole tree with every field (format in docs/operations.md, 「事件类别」).
  Import upserts by code, checks the whole file first and refuses all of it with the item, line and field
  of each fault; categories absent from the file are kept.
"""

from __future__ import annotations

import json
import re
from datetime import datetime

from sqlalchemy import func, select

from . import labels
from .audit import audit
from .categories import LIMIT_FIELDS, install_default_categories
from .db import db
from .models import CASE_KINDS, CASE_LEVELS, Account, Case, Category
from .timeutil import current_tz, local, utcnow
from .workcalendar import LIMIT_UNITS

FORMAT = "commandcenter.categories"
VERSION = 1
EMPTY_MESSAGE = "事件类别表为空：请运行 flask categories install-default 或在「事件类别」页面添加"
NAME_MAX = 100
CONDITION_MAX = 500
IMPORT_MAX_BYTES = 2 * 1024 * 1024
ESCALATE_LEVELS = tuple(level for level in CASE_LEVELS if level != "grid")  # a level above the grid
UNIT_MAX = {"minutes": 43200, "hours": 720, "days": 365, "work_hours": 2000, "work_days": 250}
TRANSFER_MAX = 1440
WARN_BEFORE_MAX = 10080
STAGES = ("dispatch", "handle", "escalate")

# every field of a category as exported, in order (code and parent identify it; depth follows the code)
VALUE_FIELDS = ("name", "kind", *LIMIT_FIELDS, "filing_condition", "closing_condition")
EXPORT_FIELDS = ("code", "parent", "depth", *VALUE_FIELDS, "active")

LABEL = {
    "code": "编码",
    "parent": "上级",
    "depth": "层级",
    "name": "名称",
    "kind": "类型",
    "dispatch_limit": "派遣时限",
    "dispatch_unit": "派遣时限单位",
    "handle_limit": "办理时限",
    "handle_unit": "办理时限单位",
    "must_escalate": "须流转上级",
    "escalate_to": "须流转至",
    "escalate_limit": "流转时限",
    "escalate_unit": "流转时限单位",
    "transfer_limit_minutes": "转报时限（分钟）",
    "warn_ratio": "预警比例",
    "warn_before_minutes": "提前预警（分钟）",
    "filing_condition": "立案条件",
    "closing_condition": "结案条件",
    "active": "状态",
    "delete": "删除",
}
DEPTH_NAME = {1: "大类", 2: "小类", 3: "细项"}
DEFAULTS = {
    "kind": "ordinary",
    "must_escalate": False,
    "warn_ratio": 0.8,
}


class CategoryError(ValueError):
    """A refused change: `errors` maps each field to its message; `problems` are "字段：说明" lines
    (for an import: "第 N 项（编码 X，第 L 行）字段：说明")."""

    def __init__(self, errors: dict[str, str] | None = None, problems: list[str] | None = None):
        self.errors = errors or {}
        self.problems = problems or [f"{LABEL.get(f, f)}：{m}" for f, m in self.errors.items()]
        self.audited = False  # import_items writes its own refusal to the audit log
        super().__init__("；".join(self.problems))

    @property
    def message(self) -> str:
        return "；".join(self.problems)


def refuse(field: str, message: str):
    raise CategoryError({field: message})


# --- reading -------------------------------------------------------------------------------------------


def all_categories() -> list[Category]:
    return list(db.scalars(select(Category).order_by(Category.code)))


def is_empty() -> bool:
    return db.execute(select(Category.id).limit(1)).first() is None


def missing(message: str) -> str:
    """The answer to an unknown category at any intake door: `message`, or, when the table is empty (a new
    city that has not installed its tree), what to do about it."""
    return EMPTY_MESSAGE if is_empty() else message


def subtree(category: Category, rows: list[Category] | None = None) -> list[Category]:
    """The category and everything below it, parents before children."""
    rows = rows if rows is not None else all_categories()
    below: dict[int | None, list[Category]] = {}
    for c in rows:
        below.setdefault(c.parent_id, []).append(c)
    out, todo = [], [category]
    while todo:
        c = todo.pop(0)
        out.append(c)
        todo.extend(below.get(c.id, ()))
    return out


def case_counts() -> dict[int, int]:
    """category id → cases of it and of everything below it (what decides whether it may be deleted)."""
    own = dict(db.execute(select(Case.category_id, func.count(Case.id)).group_by(Case.category_id)).all())
    parents = dict(db.execute(select(Category.id, Category.parent_id)).all())
    total: dict[int, int] = dict.fromkeys(parents, 0)
    for cid, n in own.items():
        seen = 0
        while cid is not None and seen < 4:
            total[cid] = total.get(cid, 0) + n
            cid, seen = parents.get(cid), seen + 1
    return total


def tree() -> list[tuple[Category, list[tuple[Category, list[Category]]]]]:
    """[(big class, [(small class, [items])])] ordered by code, inactive ones included (for the editor)."""
    by_parent: dict[int | None, list[Category]] = {}
    for c in all_categories():
        by_parent.setdefault(c.parent_id, []).append(c)
    return [
        (big, [(small, by_parent.get(small.id, [])) for small in by_parent.get(big.id, [])])
        for big in by_parent.get(None, [])
    ]


def limit_text(amount, unit) -> str:
    if not amount:
        return "无"
    return f"{amount} {labels.UNIT.get(unit or '', unit or '')}"


def limits_text(c: Category) -> str:
    """派遣 30 分钟 · 办理 2 小时 · 须流转镇街中心 1 工作日 · 转报 60 分钟 · 预警 80%（for the tree)."""
    parts = []
    if c.dispatch_limit:
        parts.append(f"派遣 {limit_text(c.dispatch_limit, c.dispatch_unit)}")
    if c.handle_limit:
        parts.append(f"办理 {limit_text(c.handle_limit, c.handle_unit)}")
    if c.must_escalate and c.escalate_to:
        parts.append(
            f"须流转{labels.LEVEL.get(c.escalate_to, c.escalate_to)} {limit_text(c.escalate_limit, c.escalate_unit)}"
        )
    if c.transfer_limit_minutes:
        parts.append(f"转报 {c.transfer_limit_minutes} 分钟")
    if c.warn_before_minutes:
        parts.append(f"提前 {c.warn_before_minutes} 分钟预警")
    elif c.depth > 1:
        parts.append(f"用时 {round((c.warn_ratio or 0.8) * 100)}% 预警")
    return " · ".join(parts)


# --- checking values ------------------------------------------------------------------------------------


def _blank(raw) -> bool:
    return raw is None or (isinstance(raw, str) and not raw.strip())


def _int(raw, field: str, errors: dict, lo: int, hi: int, what: str = "") -> int | None:
    if _blank(raw):
        return None
    if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
        errors[field] = f"须为 {lo}–{hi} 之间的整数{what}"
        return None
    try:
        value = int(str(raw).strip()) if not isinstance(raw, float) else int(raw)
    except ValueError:
        errors[field] = f"须为 {lo}–{hi} 之间的整数{what}"
        return None
    if not lo <= value <= hi:
        errors[field] = f"须为 {lo}–{hi} 之间的整数{what}"
        return None
    return value


def _bool(raw, field: str, errors: dict) -> bool:
    if isinstance(raw, bool):
        return raw
    if _blank(raw):
        return False
    text = str(raw).strip().lower()
    if text in ("1", "true", "on", "yes", "是", "y"):
        return True
    if text in ("0", "false", "off", "no", "否", "n"):
        return False
    errors[field] = "须为是或否（true / false）"
    return False


def _text(raw, field: str, errors: dict, limit: int) -> str | None:
    if _blank(raw):
        return None
    if not isinstance(raw, str):
        errors[field] = "须为文字"
        return None
    text = raw.strip()
    if len(text) > limit:
        errors[field] = f"不能超过 {limit} 个字"
    return text


def clean(values: dict, depth: int) -> tuple[dict, dict[str, str]]:
    """The category's fields as stored, from a form (strings) or a JSON item; errors name the field."""
    errors: dict[str, str] = {}
    out: dict = {}
    name = values.get("name")
    name = name.strip() if isinstance(name, str) else ""
    if not name:
        errors["name"] = "请填写名称（1–100 个字）"
    elif len(name) > NAME_MAX:
        errors["name"] = f"名称不能超过 {NAME_MAX} 个字"
    elif re.search(r"[\x00-\x1f\x7f]", name):
        errors["name"] = "名称不能含控制字符"
    out["name"] = name
    kind = values.get("kind")
    kind = kind.strip() if isinstance(kind, str) and kind.strip() else DEFAULTS["kind"]
    if kind not in CASE_KINDS:
        errors["kind"] = "须为 " + "、".join(f"{labels.KIND[k]}（{k}）" for k in CASE_KINDS)
    out["kind"] = kind
    for stage in STAGES:
        unit_field, limit_field = f"{stage}_unit", f"{stage}_limit"
        unit = values.get(unit_field)
        unit = unit.strip() if isinstance(unit, str) and unit.strip() else None
        if unit is not None and unit not in LIMIT_UNITS:
            errors[unit_field] = "须为 " + "、".join(f"{labels.UNIT[u]}（{u}）" for u in LIMIT_UNITS)
            unit = None
        hi = UNIT_MAX.get(unit or "", max(UNIT_MAX.values()))
        what = f"（单位：{labels.UNIT[unit]}）" if unit else ""
        amount = _int(values.get(limit_field), limit_field, errors, 1, hi, what)
        if amount is not None and unit is None and unit_field not in errors:
            errors[unit_field] = f"填写了{LABEL[limit_field]}，请选择单位"
        out[limit_field] = amount
        out[unit_field] = unit if amount is not None else None  # a unit without a limit means nothing
    if depth > 1 and out["handle_limit"] is None and "handle_limit" not in errors:
        errors["handle_limit"] = f"{DEPTH_NAME[depth]}须设定办理时限（正整数）"
    out["must_escalate"] = _bool(values.get("must_escalate"), "must_escalate", errors)
    escalate_to = values.get("escalate_to")
    escalate_to = escalate_to.strip() if isinstance(escalate_to, str) and escalate_to.strip() else None
    if escalate_to is not None and escalate_to not in ESCALATE_LEVELS:
        errors["escalate_to"] = "须为网格以上的层级：" + "、".join(
            f"{labels.LEVEL[lv]}（{lv}）" for lv in ESCALATE_LEVELS
        )
    out["escalate_to"] = escalate_to
    if out["must_escalate"]:
        if escalate_to is None and "escalate_to" not in errors:
            errors["escalate_to"] = "勾选“须流转上级”时请选择须流转到的层级"
        if out["escalate_limit"] is None and "escalate_limit" not in errors:
            errors["escalate_limit"] = "勾选“须流转上级”时请填写流转时限"
    out["transfer_limit_minutes"] = _int(
        values.get("transfer_limit_minutes"), "transfer_limit_minutes", errors, 1, TRANSFER_MAX, "（分钟）"
    )
    ratio = values.get("warn_ratio")
    if _blank(ratio):
        out["warn_ratio"] = DEFAULTS["warn_ratio"]
    else:
        try:
            if isinstance(ratio, bool):
                raise ValueError
            out["warn_ratio"] = float(str(ratio).strip())
            if not 0 < out["warn_ratio"] < 1:
                raise ValueError
        except ValueError:
            errors["warn_ratio"] = "须为大于 0、小于 1 的小数（如 0.8：用去八成时限时预警）"
            out["warn_ratio"] = DEFAULTS["warn_ratio"]
    out["warn_before_minutes"] = _int(
        values.get("warn_before_minutes"), "warn_before_minutes", errors, 1, WARN_BEFORE_MAX, "（分钟）"
    )
    out["filing_condition"] = _text(values.get("filing_condition"), "filing_condition", errors, CONDITION_MAX)
    out["closing_condition"] = _text(values.get("closing_condition"), "closing_condition", errors, CONDITION_MAX)
    return out, errors


def _code_error(code: str, depth: int, parent_code: str | None) -> str | None:
    if depth == 1:
        if not re.fullmatch(r"\d{2}", code) or code == "00":
            return "大类编码须为 2 位数字（01–99），如 01"
        return None
    if not re.fullmatch(r"\d{2}", code[len(parent_code or "") :]) or not code.startswith(parent_code or "\0"):
        return f"{DEPTH_NAME[depth]}编码须为上级编码 {parent_code} 加 2 位数字（01–99），如 {parent_code}01"
    if code.endswith("00") or len(code) != 2 * depth:
        return f"{DEPTH_NAME[depth]}编码须为上级编码 {parent_code} 加 2 位数字（01–99），如 {parent_code}01"
    return None


def free_code(parent: Category | None) -> str | None:
    prefix = parent.code if parent else ""
    used = set(db.scalars(select(Category.code).where(Category.code.like(f"{prefix}__"))))
    for serial in range(1, 100):
        code = f"{prefix}{serial:02d}"
        if code not in used and len(code) == len(prefix) + 2:
            return code
    return None


def _sibling_named(name: str, parent_id: int | None, except_id: int | None = None) -> Category | None:
    stmt = select(Category).where(Category.name == name)
    stmt = stmt.where(Category.parent_id.is_(None) if parent_id is None else Category.parent_id == parent_id)
    if except_id is not None:
        stmt = stmt.where(Category.id != except_id)
    return db.scalars(stmt.limit(1)).first()


# --- describing a change (the audit's before and after) -------------------------------------------------

_GROUPS = (
    ("code",),
    ("parent",),
    ("name",),
    ("kind",),
    ("dispatch_limit", "dispatch_unit"),
    ("handle_limit", "handle_unit"),
    ("must_escalate",),
    ("escalate_to",),
    ("escalate_limit", "escalate_unit"),
    ("transfer_limit_minutes",),
    ("warn_ratio",),
    ("warn_before_minutes",),
    ("filing_condition",),
    ("closing_condition",),
    ("active",),
)


def _show(group: tuple[str, ...], v: dict) -> str:
    field = group[0]
    value = v.get(field)
    if len(group) == 2:
        return f"{LABEL[field]}={limit_text(value, v.get(group[1]))}"
    if value is None or value == "":
        text = "无"
    elif field == "kind":
        text = labels.KIND.get(value, value)
    elif field == "escalate_to":
        text = labels.LEVEL.get(value, value)
    elif field == "active":
        text = "启用" if value else "停用"
    elif isinstance(value, bool):
        text = "是" if value else "否"
    else:
        text = str(value)[:60]
    return f"{LABEL[field]}={text}"


def snapshot(c: Category) -> dict:
    parent = db.get(Category, c.parent_id) if c.parent_id else None
    out = {f: getattr(c, f) for f in ("code", *VALUE_FIELDS, "active")}
    out["parent"] = f"{parent.code} {parent.name}" if parent else None
    return out


def change_text(before: dict | None, after: dict | None) -> str:
    """ "之前：名称=暴露垃圾，办理时限=1 工作日；之后：名称=道路暴露垃圾，办理时限=2 工作日" — only what changed
    (everything for a new or a deleted category)."""
    if before is None or after is None:
        whole = after if before is None else before
        text = "，".join(_show(g, whole) for g in _GROUPS if not (g[0] == "parent" and whole.get("parent") is None))
        return f"之前：无；之后：{text}" if before is None else f"之前：{text}；之后：无（已删除）"
    changed = [g for g in _GROUPS if any(before.get(f) != after.get(f) for f in g)]
    if not changed:
        return "无变化"
    return (
        "之前："
        + "，".join(_show(g, before) for g in changed)
        + "；之后："
        + "，".join(_show(g, after) for g in changed)
    )


def _audit(action: str, c: Category, actor: Account | None, before: dict | None, after: dict | None) -> None:
    code = (after or before or {}).get("code") or c.code
    name = (after or before or {}).get("name") or c.name
    audit(action, "category", c.id, account=actor, detail=f"{code} {name} — {change_text(before, after)}")


def _commit() -> None:
    try:
        db.commit()
    except Exception:
        db.rollback()
        raise


# --- the changes ----------------------------------------------------------------------------------------


def create(actor: Account | None, parent: Category | None, values: dict, commit: bool = True) -> Category:
    """A big class (parent None), a small class or an item. `values` as from the form; code optional
    (the first free serial under the parent)."""
    depth = 1 if parent is None else parent.depth + 1
    if depth > 3:
        refuse("parent", "细项下不能再添加下级（类别树为 大类 → 小类 → 细项）")
    cleaned, errors = clean(values, depth)
    raw_code = values.get("code")
    code = str(raw_code).strip() if not _blank(raw_code) else None
    if code is None:
        code = free_code(parent)
        if code is None:
            errors["code"] = "该上级下的 99 个编码已用完"
    else:
        problem = _code_error(code, depth, parent.code if parent else None)
        if problem:
            errors["code"] = problem
        elif db.scalars(select(Category).where(Category.code == code)).first() is not None:
            errors["code"] = f"编码 {code} 已被使用"
    if "name" not in errors and _sibling_named(cleaned["name"], parent.id if parent else None):
        errors["name"] = f"同一上级下已有名为「{cleaned['name']}」的类别"
    if errors:
        raise CategoryError(errors)
    category = Category(
        code=code,
        depth=depth,
        parent_id=parent.id if parent else None,
        active=parent.active if parent else True,  # under an inactive parent it starts hidden too
        **cleaned,
    )
    db.add(category)
    db.flush()
    _audit("category.create", category, actor, None, snapshot(category))
    if commit:
        _commit()
    return category


def update(actor: Account | None, category: Category, values: dict, commit: bool = True) -> Category:
    """Rename, kind, limits, escalation, warning, conditions. Fields not given keep their value. Applies
    to new cases only (open cases keep the limits recorded on them)."""
    merged = {f: getattr(category, f) for f in VALUE_FIELDS}
    merged.update({k: v for k, v in values.items() if k in VALUE_FIELDS})
    cleaned, errors = clean(merged, category.depth)
    if "name" not in errors and _sibling_named(cleaned["name"], category.parent_id, category.id):
        errors["name"] = f"同一上级下已有名为「{cleaned['name']}」的类别"
    if errors:
        raise CategoryError(errors)
    before = snapshot(category)
    for field, value in cleaned.items():
        setattr(category, field, value)
    after = snapshot(category)
    if before != after:
        _audit("category.update", category, actor, before, after)
    if commit:
        _commit()
    return category


def move(actor: Account | None, category: Category, parent: Category | None, code: str | None = None) -> Category:
    """Move a small class to another big class, or an item to another small class; re-codes the subtree."""
    if category.depth == 1:
        refuse("parent", "大类没有上级，不能移动")
    if parent is None:
        refuse("parent", f"请选择新的上级（{DEPTH_NAME[category.depth - 1]}）")
    if parent.depth != category.depth - 1:
        refuse("parent", f"{DEPTH_NAME[category.depth]}只能移到{DEPTH_NAME[category.depth - 1]}之下")
    if parent.id == category.parent_id:
        refuse("parent", "已在该上级之下")
    code = (code or "").strip() or None
    if code is None:
        code = free_code(parent)
        if code is None:
            refuse("code", f"上级 {parent.code} 下的 99 个编码已用完")
    else:
        problem = _code_error(code, category.depth, parent.code)
        if problem:
            refuse("code", problem)
    rows = all_categories()
    nodes = subtree(category, rows)
    old_code = category.code
    new_codes = {c.id: code + c.code[len(old_code) :] for c in nodes}
    taken = {c.code for c in rows if c.id not in new_codes}
    clash = sorted(set(new_codes.values()) & taken)
    if clash:
        refuse("code", f"编码 {clash[0]} 已被使用")
    if _sibling_named(category.name, parent.id):
        refuse("name", f"新的上级下已有名为「{category.name}」的类别")
    befores = {c.id: snapshot(c) for c in nodes}
    category.parent_id = parent.id
    for c in nodes:
        c.code = new_codes[c.id]
        if not parent.active:
            c.active = False  # moved under a hidden parent: hidden with it
    db.flush()
    for c in nodes:
        _audit("category.move", c, actor, befores[c.id], snapshot(c))
    _commit()
    return category


def set_active(actor: Account | None, category: Category, active: bool) -> list[Category]:
    """Deactivate the node and its subtree (hidden from intake, the API and Open311), or activate them again
    (refused while an ancestor is inactive). Returns the categories whose state changed."""
    if active and category.parent_id is not None:
        parent = db.get(Category, category.parent_id)
        while parent is not None:
            if not parent.active:
                refuse("active", f"上级类别「{parent.code} {parent.name}」已停用，请先启用上级")
            parent = db.get(Category, parent.parent_id) if parent.parent_id else None
    changed = []
    for c in subtree(category):
        if c.active != active:
            before = snapshot(c)
            c.active = active
            changed.append((c, before))
    for c, before in changed:
        _audit("category.activate" if active else "category.deactivate", c, actor, before, snapshot(c))
    _commit()
    return [c for c, _ in changed]


def deletable(category: Category, counts: dict[int, int] | None = None) -> bool:
    counts = counts if counts is not None else case_counts()
    return not counts.get(category.id)


def delete(actor: Account | None, category: Category) -> int:
    """Delete the node and its subtree when no case uses any of them; returns how many were deleted."""
    nodes = subtree(category)
    used = db.execute(select(func.count(Case.id)).where(Case.category_id.in_([c.id for c in nodes]))).scalar_one()
    if used:
        refuse(
            "delete",
            f"类别「{category.code} {category.name}」{'及其下级' if len(nodes) > 1 else ''}已有 {used} 件案件，"
            "不能删除；不再使用时请停用",
        )
    befores = [(c, snapshot(c)) for c in nodes]
    for c in reversed(nodes):  # children first
        db.delete(c)
        db.flush()
    for c, before in befores:
        _audit("category.delete", c, actor, before, None)
    _commit()
    return len(nodes)


def install_default(actor: Account | None) -> int:
    """The national default tree when the table is empty (idempotent); returns how many were added."""
    before = db.execute(select(func.count(Category.id))).scalar_one()
    if before:
        return 0
    install_default_categories()
    after = db.execute(select(func.count(Category.id))).scalar_one()
    audit(
        "category.install_default",
        "category",
        None,
        account=actor,
        detail=f"之前：{before} 个类别；之后：{after} 个类别（安装国家默认类别树）",
    )
    _commit()
    return after - before


# --- export and import ----------------------------------------------------------------------------------


def export_items() -> list[dict]:
    rows = all_categories()
    codes = {c.id: c.code for c in rows}
    out = []
    for c in rows:
        item = {f: getattr(c, f) for f in ("code", "depth", *VALUE_FIELDS, "active")}
        item["parent"] = codes.get(c.parent_id)
        out.append({f: item[f] for f in EXPORT_FIELDS})
    return out


def export_json(now: datetime | None = None) -> str:
    """The whole tree, one category a line (so that an import's errors can name the line)."""
    now = now or utcnow()
    head = {"format": FORMAT, "version": VERSION, "exported_at": local(now, current_tz()).isoformat()}
    lines = [json.dumps(item, ensure_ascii=False) for item in export_items()]
    body = ",\n  ".join(lines)
    return (
        "{\n"
        + "".join(f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)},\n" for k, v in head.items())
        + f'  "categories": [\n  {body}\n  ]\n}}\n'
        if lines
        else json.dumps({**head, "categories": []}, ensure_ascii=False, indent=2) + "\n"
    )


def parse_import(data: bytes) -> tuple[list[dict], str]:
    """The items of an export file (or a bare list of them), and the text (for line numbers)."""
    if len(data) > IMPORT_MAX_BYTES:
        raise CategoryError(problems=[f"file：文件不能超过 {IMPORT_MAX_BYTES // 1024 // 1024} MB"])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CategoryError(problems=["file：文件须为 UTF-8 编码的 JSON"]) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CategoryError(problems=[f"第 {exc.lineno} 行：不是合法的 JSON（{exc.msg}）"]) from None
    if isinstance(doc, dict):
        if doc.get("format") not in (None, FORMAT):
            raise CategoryError(problems=[f"format：须为 {FORMAT}（本系统导出的事件类别文件）"])
        items = doc.get("categories")
    else:
        items = doc
    if not isinstance(items, list):
        raise CategoryError(problems=["categories：须为类别的列表"])
    return items, text


def _line_of(text: str, code: str) -> int | None:
    match = re.search(r'"code"\s*:\s*"' + re.escape(code) + '"', text)
    return text.count("\n", 0, match.start()) + 1 if match else None


def import_items(actor: Account | None, items: list, text: str = "") -> dict[str, int]:
    """Upsert by code, after checking the whole file: one fault refuses all of it (CategoryError listing
    each with its item, line and field). Returns {"added", "updated", "unchanged"}. Audited, committed."""
    problems: list[str] = []
    existing = {c.code: c for c in all_categories()}
    planned: dict[str, dict] = {}  # code → cleaned values + depth + active
    seen: dict[str, int] = {}
    allowed = set(EXPORT_FIELDS)
    for index, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            problems.append(f'第 {index} 项：须为一个对象（{{"code": …, "name": …}}）')
            continue
        code = str(item.get("code") or "").strip()
        line = _line_of(text, code) if code else None
        where = f"第 {index} 项（编码 {code or '空'}" + (f"，第 {line} 行）" if line else "）")
        unknown = sorted(set(item) - allowed)
        if unknown:
            problems.append(f"{where}：未知字段 {', '.join(unknown)}")
        if not re.fullmatch(r"\d{2}|\d{4}|\d{6}", code):
            problems.append(f"{where}{LABEL['code']}：须为 2 位（大类）、4 位（小类）或 6 位（细项）数字")
            continue
        depth = len(code) // 2
        parent_code = code[:-2] or None
        if code in seen:
            problems.append(f"{where}{LABEL['code']}：与第 {seen[code]} 项重复")
            continue
        seen[code] = index
        problem = _code_error(code, depth, parent_code)
        if problem:
            problems.append(f"{where}{LABEL['code']}：{problem}")
        if item.get("parent") not in (None, "") and str(item["parent"]) != (parent_code or ""):
            problems.append(f"{where}{LABEL['parent']}：须为 {parent_code or '空（大类）'}（编码的前几位）")
        elif item.get("parent") in (None, "") and parent_code and "parent" in item:
            problems.append(f"{where}{LABEL['parent']}：须为 {parent_code}（编码的前几位）")
        if item.get("depth") not in (None, depth):
            problems.append(f"{where}{LABEL['depth']}：编码 {code} 是第 {depth} 层")
        current = existing.get(code)
        merged = {f: getattr(current, f) for f in VALUE_FIELDS} if current else {}
        merged.update({k: v for k, v in item.items() if k in VALUE_FIELDS})
        cleaned, errors = clean(merged, depth)
        for field, message in errors.items():
            problems.append(f"{where}{LABEL.get(field, field)}：{message}")
        active = item.get("active", current.active if current else True)
        errors = {}
        active = _bool(active, "active", errors)
        if errors:
            problems.append(f"{where}{LABEL['active']}：{errors['active']}")
        planned[code] = {**cleaned, "depth": depth, "active": active, "_where": where, "_explicit": "active" in item}
    # the tree as it will be: every parent exists, active under inactive is refused, names unique among siblings
    final = {code: {"name": c.name, "active": c.active, "_where": None} for code, c in existing.items()}
    final.update(planned)
    names: dict[tuple[str | None, str], str] = {}
    for code in sorted(final, key=lambda k: (len(k), k)):
        node = final[code]
        parent_code = code[:-2] or None
        if parent_code and parent_code not in final:
            if node.get("_where"):
                problems.append(
                    f"{node['_where']}{LABEL['parent']}：上级编码 {parent_code} 不存在（文件和数据库中均没有）"
                )
            continue
        if parent_code and not final[parent_code]["active"] and node["active"]:
            if node.get("_where") and node.get("_explicit") and code in planned:
                problems.append(f"{node['_where']}{LABEL['active']}：上级 {parent_code} 为停用，本类别不能为启用")
            node["active"] = False  # not said in the file: hidden with its parent
        key = (parent_code, node["name"])
        if key in names and node.get("_where"):
            problems.append(
                f"{node['_where']}{LABEL['name']}：同一上级下已有名为「{node['name']}」的类别（{names[key]}）"
            )
        names.setdefault(key, code)
    if problems:
        audit("category.import", "category", None, account=actor, success=False, detail="；".join(problems)[:1000])
        _commit()
        error = CategoryError(problems=problems)
        error.audited = True
        raise error
    counts = {"added": 0, "updated": 0, "unchanged": 0}
    ids = {code: c.id for code, c in existing.items()}
    for code in sorted(final, key=lambda k: (len(k), k)):
        node = final[code]
        current = existing.get(code)
        values = {k: v for k, v in node.items() if k in VALUE_FIELDS}
        if current is None:
            category = Category(
                code=code,
                depth=node["depth"],
                parent_id=ids.get(code[:-2]) if len(code) > 2 else None,
                active=node["active"],
                **values,
            )
            db.add(category)
            db.flush()
            ids[code] = category.id
            _audit("category.import", category, actor, None, snapshot(category))
            counts["added"] += 1
            continue
        before = snapshot(current)
        for field, value in values.items():
            setattr(current, field, value)
        current.active = node["active"]
        after = snapshot(current)
        if before != after:
            _audit("category.import", current, actor, before, after)
            counts["updated"] += 1
        elif code in planned:
            counts["unchanged"] += 1
    audit(
        "category.import",
        "category",
        None,
        account=actor,
        detail=f"导入 {len(planned)} 项：新增 {counts['added']}，修改 {counts['updated']}，未变 {counts['unchanged']}",
    )
    _commit()
    return counts
