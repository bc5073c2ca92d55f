"""The routes of persons/ (the rules are in the package docstring)."""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import abort, render_template, request
from sqlalchemy import func, select

from ..access import current_account, has_permission, require
from ..audit import audit
from ..cases.queries import place_in_jurisdiction, places_within
from ..db import db
from ..hierarchy import place_names
from ..models import PERSON_TYPES, SENSITIVE_PERSON_TYPES, Account, Person, Visit
from ..security import mask_address
from . import bp
from .visibility import hidden_sensitive_count, sees_sensitive, visible_person, visible_persons

PAGE_SIZE = 50
VISITS_SHOWN = 100
REASON_MIN, REASON_MAX = 4, 200
# who may see which person lives in .visibility (also used by the visits API)

UNMASK_NO_GRANT = "本账号未获授权查看完整个人信息（需安全管理员授予“查看完整信息”权限）"


def may_unmask(account: Account) -> bool:
    return has_permission(account, "person.unmask") and bool(account.can_unmask)


# the house and room numbers of an address are masked like the other personal fields (security.mask_address)
bp.add_app_template_filter(mask_address, "mask_address")


@bp.before_request
def log_refused_unmask() -> None:
    """A role without person.view is refused by @require before the view runs: its attempt to unmask
    is still an audit row (the app's own before_request has identified the account by now)."""
    account = current_account()
    if request.endpoint == "persons.unmask" and account is not None and not has_permission(account, "person.view"):
        audit(
            "person.unmask",
            "person",
            (request.view_args or {}).get("person_id"),
            success=False,
            detail="拒绝：角色无查看人员权限",
            commit=True,
        )


# --- the list --------------------------------------------------------------------------------------


@dataclass
class PersonFilters:
    person_type: str | None = None
    grid_id: int | None = None
    page: int = 1
    raw: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)

    def args(self, page: int) -> dict:
        out = {"page": page}
        if self.person_type:
            out["type"] = self.person_type
        if self.grid_id:
            out["grid"] = self.grid_id
        return out


def _int(value: str | None) -> int | None:
    try:
        number = int(value) if value else None
    except ValueError:
        return None
    return number if number is not None and 0 < number < 2**31 else None


def parse_filters(args, account: Account, types: list[str]) -> PersonFilters:
    f = PersonFilters(raw={k: (args.get(k) or "").strip()[:40] for k in ("type", "grid", "page")})
    if f.raw["type"]:
        if f.raw["type"] in types:
            f.person_type = f.raw["type"]
        else:
            f.errors["type"] = "人员类别取值无效" if f.raw["type"] not in PERSON_TYPES else "本角色无权查看该类人员"
    if f.raw["grid"]:
        grid_id = _int(f.raw["grid"])
        if grid_id and place_in_jurisdiction(account, grid_id, "grid"):
            f.grid_id = grid_id
        else:
            f.errors["grid"] = "所选网格不存在或不在本辖区内"
    if f.raw["page"]:
        page = _int(f.raw["page"])
        if page is None:
            f.errors["page"] = "页码应为正整数"
        else:
            f.page = page
    return f


@bp.get("/")
@require("person.view")
def index():
    account = current_account()
    types = [t for t in PERSON_TYPES if sees_sensitive(account) or t not in SENSITIVE_PERSON_TYPES]
    f = parse_filters(request.args, account, types)
    stmt = visible_persons(account)
    if f.person_type:
        stmt = stmt.where(Person.person_type == f.person_type)
    if f.grid_id:
        stmt = stmt.where(Person.grid_id == f.grid_id)
    total = db.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    pages = max(1, -(-total // PAGE_SIZE))
    f.page = min(f.page, pages)
    rows = list(
        db.execute(stmt.order_by(Person.grid_id, Person.id).offset((f.page - 1) * PAGE_SIZE).limit(PAGE_SIZE)).scalars()
    )
    ids = [p.id for p in rows]
    last_visit = (
        dict(
            db.execute(
                select(Visit.person_id, func.max(Visit.at)).where(Visit.person_id.in_(ids)).group_by(Visit.person_id)
            ).all()
        )
        if ids
        else {}
    )
    assignees = _names_of(p.assigned_to_id for p in rows)
    audit(
        "person.list",
        "person",
        None,
        detail=f"类别={f.person_type or '全部'} 网格={f.grid_id or '全部'} 第{f.page}页 显示{len(rows)}人（已脱敏）",
        commit=True,
    )
    context = dict(
        f=f,
        rows=rows,
        total=total,
        pages=pages,
        types=types,
        last_visit=last_visit,
        assignees=assignees,
        grid_names=place_names(p.grid_id for p in rows),
        grids=places_within(account, "grid"),
        hidden=hidden_sensitive_count(account),
        sensitive=SENSITIVE_PERSON_TYPES,
    )
    return render_template("persons/index.html", **context), 400 if f.errors else 200


def _names_of(ids) -> dict[int, str]:
    ids = {i for i in ids if i}
    if not ids:
        return {}
    return dict(db.execute(select(Account.id, Account.display_name).where(Account.id.in_(ids))).all())


# --- one person --------------------------------------------------------------------------------------


def _person_or_404(person_id: int, action: str) -> Person:
    """404 for a missing person, one outside the jurisdiction and a special population hidden from the role.

    A refusal of an existing person is logged: somebody tried to open a page they may not see.
    """
    account = current_account()
    person = visible_person(account, person_id)
    if person is None:
        if db.get(Person, person_id) is not None:
            audit(action, "person", person_id, success=False, detail="辖区外或本角色无权查看该类人员", commit=True)
        abort(404)
    return person


def _render(
    person: Person, *, unmasked: bool = False, reason: str | None = None, error: dict | None = None, status: int = 200
):
    account = current_account()
    visits = list(
        db.execute(
            select(Visit).where(Visit.person_id == person.id).order_by(Visit.at.desc()).limit(VISITS_SHOWN)
        ).scalars()
    )
    visit_count = db.execute(select(func.count(Visit.id)).where(Visit.person_id == person.id)).scalar_one()
    context = dict(
        person=person,
        visits=visits,
        visit_count=visit_count,
        unmasked=unmasked,
        reason=reason,
        error=error or {},
        gridworkers=_names_of([v.gridworker_id for v in visits] + [person.assigned_to_id]),
        places=place_names([person.town_id, person.village_id, person.grid_id]),
        can_unmask=may_unmask(account),
        unmask_role=has_permission(account, "person.unmask"),
        sensitive=person.person_type in SENSITIVE_PERSON_TYPES,
        reason_max=REASON_MAX,
    )
    response = render_template("persons/show.html", **context)
    return response, status, {"Cache-Control": "no-store"}


@bp.get("/<int:person_id>")
@require("person.view")
def show(person_id: int):
    person = _person_or_404(person_id, "person.view")
    audit("person.view", "person", person.id, detail="查看人员页面（已脱敏）", commit=True)
    return _render(person)


@bp.post("/<int:person_id>/unmask")
@require("person.view")  # the unmask permission and the grant are checked below, and every refusal is logged
def unmask(person_id: int):
    account = current_account()
    person = _person_or_404(person_id, "person.unmask")
    if not may_unmask(account):
        why = "角色无查看完整信息权限" if not has_permission(account, "person.unmask") else "账号未获授权（can_unmask）"
        audit("person.unmask", "person", person.id, success=False, detail=f"拒绝：{why}", commit=True)
        abort(403, description=UNMASK_NO_GRANT)
    reason = " ".join((request.form.get("reason") or "").split())
    if not REASON_MIN <= len(reason) <= REASON_MAX:
        audit("person.unmask", "person", person.id, success=False, detail="拒绝：未填写查看事由", commit=True)
        return _render(person, error={"reason": f"请填写查看事由（{REASON_MIN}–{REASON_MAX} 字）"}, status=400)
    audit(
        "person.unmask", "person", person.id, detail=f"显示完整姓名、身份证号、电话和住址；事由：{reason}", commit=True
    )
    return _render(person, unmasked=True, reason=reason)
