"""The Bulletin row's lifecycle: one per place (a town or the city) and month; who may see it; its edits.

Status: draft → queued → running → done | failed; a done or failed bulletin can be built again (the free
text and the picked stories are kept: only content, docx and the progress are replaced by a build).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import current_app
from sqlalchemy import select

from ..db import db
from ..hierarchy import place_contains
from ..measures import Period
from ..models import Account, Bulletin, Case, Place
from ..timeutil import local_today
from . import builder

BUILDABLE_LEVELS = ("city", "town")
TITLE_MAX = 200
TEXT_MAX = 20_000
STATUS_LABELS = {"draft": "草稿", "queued": "排队中", "running": "生成中", "done": "已生成", "failed": "生成失败"}


@dataclass
class Problems:
    """Field → Chinese message, in the order the form shows them."""

    errors: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.errors)


def places_for(account: Account) -> list[Place]:
    """The places this account may have bulletins for: its own (a town or the city) and, for the city, its towns."""
    home = account.place
    if home.level == "city":
        towns = db.scalars(
            select(Place)
            .where(Place.level == "town", Place.city_id == home.id, Place.active.is_(True))
            .order_by(Place.code)
        )
        return [home, *towns]
    return [home] if home.level in BUILDABLE_LEVELS else []


def visible_bulletins(account: Account) -> list[tuple[Bulletin, Place]]:
    home = account.place
    stmt = select(Bulletin, Place).join(Place, Place.id == Bulletin.place_id)
    column = {"city": Place.city_id, "town": Place.town_id, "village": Place.village_id}.get(home.level, Place.id)
    stmt = stmt.where(column == home.id)
    return [(b, p) for b, p in db.execute(stmt.order_by(Bulletin.month.desc(), Place.code))]


def get_visible(account: Account, bulletin_id: int) -> tuple[Bulletin, Place] | None:
    bulletin = db.get(Bulletin, bulletin_id)
    if bulletin is None:
        return None
    place = db.get(Place, bulletin.place_id)
    if place is None or not place_contains(account.place, place):
        return None
    return bulletin, place


def parse_month(text: str | None) -> tuple[Period | None, str | None]:
    """The month of a bulletin: YYYY-MM, not after the current month."""
    text = (text or "").strip()
    if not text:
        return None, "请选择月份"
    try:
        period = Period.parse_month(text)
    except ValueError as exc:
        return None, str(exc)
    if period.start > local_today(current_app.config["SETTINGS"].timezone):
        return None, "月份不能晚于本月"
    return period, None


def validate_new(account: Account, form) -> tuple[Place | None, str | None, Problems]:
    problems = Problems()
    place = None
    raw = (form.get("place_id") or "").strip()
    allowed = {p.id: p for p in places_for(account)}
    if not raw:
        problems.errors["place_id"] = "请选择通报单位"
    elif not raw.isdigit() or int(raw) not in allowed:
        problems.errors["place_id"] = "通报单位无效或不在本辖区内（只能为本辖区的镇街或全市）"
    else:
        place = allowed[int(raw)]
    period, message = parse_month(form.get("month"))
    if message:
        problems.errors["month"] = message
    return place, (form.get("month") or "").strip() if period else None, problems


def find(place_id: int, month: str) -> Bulletin | None:
    return db.scalar(select(Bulletin).where(Bulletin.place_id == place_id, Bulletin.month == month))


def create(place: Place, month: str, account: Account) -> Bulletin:
    bulletin = Bulletin(
        place_id=place.id,
        month=month,
        title=builder.default_title(place, month),
        story_case_ids=[],
        status="draft",
        progress=0,
        updated_by_id=account.id,
    )
    db.add(bulletin)
    db.flush()
    return bulletin


def story_candidates(bulletin: Bulletin, place: Place) -> list[Case]:
    return builder.story_candidates(place, Period.parse_month(bulletin.month))


def validate_edit(bulletin: Bulletin, place: Place, form) -> tuple[dict, Problems]:
    """title, problems, requirements and the picked stories (ids among the month's outstanding cases)."""
    problems = Problems()
    title = (form.get("title") or "").strip()
    if not title:
        problems.errors["title"] = "请填写通报标题"
    elif len(title) > TITLE_MAX:
        problems.errors["title"] = f"通报标题不能超过 {TITLE_MAX} 个字"
    values = {"title": title}
    for name, label in (("problems", "存在问题"), ("requirements", "下步要求")):
        text = (form.get(name) or "").replace("\r\n", "\n").strip()
        if len(text) > TEXT_MAX:
            problems.errors[name] = f"{label}不能超过 {TEXT_MAX} 个字"
        values[name] = text or None
    allowed = {c.id for c in story_candidates(bulletin, place)}
    picked: list[int] = []
    for raw in form.getlist("story"):
        if not raw.isdigit() or int(raw) not in allowed:
            problems.errors["story"] = "所选优秀事件无效：只能从本月本辖区内标记为优秀的事件中选择"
            break
        if int(raw) not in picked:
            picked.append(int(raw))
    values["story_case_ids"] = picked
    return values, problems


def apply_edit(bulletin: Bulletin, values: dict, account: Account) -> None:
    bulletin.title = values["title"]
    bulletin.problems = values["problems"]
    bulletin.requirements = values["requirements"]
    bulletin.story_case_ids = values["story_case_ids"]
    bulletin.updated_by_id = account.id
