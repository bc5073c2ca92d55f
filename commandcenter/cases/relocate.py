"""重新定位 (issue 14 §3): the center moves a case to where it really is — a tap on the grids' map (lat/lon) or an
entry of the standard address list (标准地址) — and the grid, village and town follow from that place.

Who: the roles that register cases (permission ``case.register``), on a case they may act on now
(`loop.may_act_on`: inside their place, at or below their level), and only to a grid inside their own
jurisdiction (a town center cannot hand a case to another town this way: that is 流转 or a call to the city).

When: while the case is 待立案 or 已立案 (``loop.ALLOWED_FROM["relocate"]``). The place is part of
registering it; once dispatched, a department serving the old place or a gridworker of the old town was chosen
for it, so a dispatched case is first sent back (退回) and relocated then. A closed, rejected or duplicate case
keeps the place it was closed with: its figures have been published.

What: the case's lat/lon, grid, village and town (and its address text when a standard address was chosen, or
when one was typed; the town of its deadline warnings), a history step ``relocate`` whose note names the old and new address and grid, and an outbox
row. The outbox row carries the old and new places and the counted steps the case has so far
(``moved``: action, kind, level and time of each), so the drain moves exactly those counts from the old places
to the new ones, once (counters/base.py `_increments`); `reconcile`, which counts every step at the case's
current places, agrees.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update

from ..access import in_jurisdiction
from ..db import db
from ..models import Account, Alert, Case, CaseStep, Place, StandardAddress
from ..timeutil import utcnow
from . import loop
from .forms import ADDRESS_MAX, LAT_RANGE, LON_RANGE  # the 12345 form's limits: mainland China, generously


def _standard_address(actor: Account | None, address_id: int) -> StandardAddress:
    entry = db.get(StandardAddress, address_id)
    if entry is None or not entry.active or entry.lat is None or entry.lon is None:
        raise loop.TransitionError("所选标准地址不存在或已停用", "address")
    if actor is not None and not in_jurisdiction(
        actor, grid_id=entry.grid_id, village_id=entry.village_id, town_id=entry.town_id
    ):
        raise loop.TransitionError("所选标准地址不在本辖区内", "address")
    return entry


def _point(lat: float | None, lon: float | None) -> tuple[float, float]:
    if lat is None and lon is None:
        raise loop.TransitionError("请在地图上点选位置，或检索并选择标准地址", "lat")
    if lat is None:
        raise loop.TransitionError("请同时填写经度和纬度", "lat")
    if lon is None:
        raise loop.TransitionError("请同时填写经度和纬度", "lon")
    if not LAT_RANGE[0] <= lat <= LAT_RANGE[1]:
        raise loop.TransitionError("纬度超出范围（应在 3 到 54 之间）", "lat")
    if not LON_RANGE[0] <= lon <= LON_RANGE[1]:
        raise loop.TransitionError("经度超出范围（应在 73 到 136 之间）", "lon")
    return lat, lon


def _grid_at(actor: Account | None, lat: float, lon: float, field: str) -> Place:
    from ..geo import locate_grid

    grid = locate_grid(lat, lon)
    if grid is None:
        raise loop.TransitionError("该位置不在任何网格内，请重新点选或选择标准地址", field)
    if actor is not None and not in_jurisdiction(
        actor, grid_id=grid.id, village_id=grid.village_id, town_id=grid.town_id
    ):
        raise loop.TransitionError("该位置不在本辖区内，请重新点选或选择标准地址", field)
    return grid


def counted_steps(case: Case) -> list[dict]:
    """The case's steps that moved a counter so far, as the drain needs them to move their counts."""
    from ..counters.base import COUNTED_ACTIONS

    rows = db.execute(
        select(CaseStep.action, CaseStep.to_level, CaseStep.at)
        .where(CaseStep.case_id == case.id, CaseStep.action.in_(COUNTED_ACTIONS))
        .order_by(CaseStep.id)
    ).all()
    return [
        {"action": action, "kind": case.kind, "level": to_level if action == "escalate" else None, "at": at.isoformat()}
        for action, to_level, at in rows
    ]


def _label(address: str | None, grid_name: str | None) -> str:
    return f"「{address or '无地址'}」（{grid_name or '无网格'}）"


def relocate(
    case: Case,
    actor: Account | None,
    *,
    lat: float | None = None,
    lon: float | None = None,
    address: str | None = None,
    address_id: int | None = None,
    note: str | None = None,
    now: datetime | None = None,
) -> Case:
    """Move the case to a standard address (`address_id`) or to a point (`lat`, `lon`, with an optional
    address text). Raises Forbidden, or TransitionError naming `lat`/`lon`/`address`/`note`."""
    loop._check(case, actor, "relocate")
    address = (address or "").strip()
    if len(address) > ADDRESS_MAX:
        raise loop.TransitionError(f"地址不能超过 {ADDRESS_MAX} 个字", "address")
    if address_id is not None:
        entry = _standard_address(actor, address_id)
        lat, lon, address = entry.lat, entry.lon, entry.address
        grid = db.get(Place, entry.grid_id) if entry.grid_id else None
        if grid is None or grid.level != "grid" or not grid.active:
            grid = _grid_at(actor, lat, lon, "address")
    else:
        lat, lon = _point(lat, lon)
        grid = _grid_at(actor, lat, lon, "lat")
    note = loop._clean_note(note)
    old_grid = db.get(Place, case.grid_id) if case.grid_id else None
    old = {"grid_id": case.grid_id, "village_id": case.village_id, "town_id": case.town_id}
    old_text = _label(case.address, old_grid.name if old_grid else None)
    counted = counted_steps(case)  # read before the case changes: no flush in between
    case.lat, case.lon = lat, lon
    if address:
        case.address = address
    moved = old != {"grid_id": grid.id, "village_id": grid.village_id, "town_id": grid.town_id}
    case.grid_id, case.village_id, case.town_id = grid.id, grid.village_id, grid.town_id
    case.grid = grid
    if moved:  # the alert desk lists a case's deadline warnings by its town, as it is now
        db.execute(update(Alert).where(Alert.case_id == case.id).values(town_id=grid.town_id))
    text = f"由{old_text}改为{_label(case.address, grid.name)}"
    if not moved:
        text += "，网格不变"
    if note:
        text += f"：{note}"
    extra = {"from": old, "moved": counted if moved else []}
    loop._step(case, actor, "relocate", case.state, note=text, now=now or utcnow(), payload_extra=extra)
    loop._commit()
    return case
