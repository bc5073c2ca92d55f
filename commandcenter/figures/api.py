"""GET /api/v1/figures: the figures of one place for one period, keyed by the catalogue's keys.

Query: ``place`` (an id inside the account's jurisdiction; default its own place), ``period`` (day / week /
month / custom, default month) with ``start`` / ``end`` for custom, the drill-down's filters (``kind``,
``category``, ``state``, ``source``). The numbers are ``stats.figures``: the very function the drill-down and
``/m/`` show, so the API can never say another number for the same figure, place and period."""

from __future__ import annotations

from flask import jsonify, request

from ..access import current_account, require
from ..api import bp as api_bp
from ..api.errors import api_error
from ..db import db
from ..hierarchy import place_contains
from ..inputs import parse_id
from ..models import Place
from .catalogue import BY_KEY

API_KEYS = (
    "reported",
    "closed",
    "closure_rate",
    "hazard",
    "dispute",
    "hazard_share",
    "dispute_share",
    "valid_rate",
    "duplicates",
    "reported_to_town",
    "reported_to_town_share",
    "reported_to_town_closed",
    "reported_to_town_closure_rate",
    "reported_to_city",
    "reported_to_city_share",
    "reported_to_city_closed",
    "reported_to_city_closure_rate",
    "dispute_success_rate",
    "assessed",
    "overdue",
    "dispatch_late",
    "escalate_late",
    "transfer_late",
    "timeliness",
    "gridworkers",
    "gridworker_reports",
    "reports_per_gridworker",
    "attendance_rate",
    "patrol_rate",
    "login_rate",
    "special_visit_rate",
    "linkage_rate",
    "party_members",
    "party_activities",
)


def values_of(fig) -> dict:
    """catalogue key → value of a stats.Figures (None for an undefined rate)."""
    out = {}
    for key in API_KEYS:
        out[key] = fig.by_kind.get(key, 0) if key in ("hazard", "dispute") else getattr(fig, key)
    return out


@api_bp.get("/figures")
@require("drill.view")
def figures_of_place():
    from .. import stats
    from ..drill.service import BadInput, parse_query

    me = current_account()
    place = me.place
    raw = request.args.get("place", "").strip()
    if raw:
        place_id = parse_id(raw)
        if place_id is None:
            return api_error(400, "place：须为地点编号（正整数）", "place")
        place = db.get(Place, place_id)
        if place is None or not place_contains(me.place, place):
            return api_error(404, "place：未找到（或不在本辖区内）", "place")
    try:
        q = parse_query(request.args)
    except BadInput as exc:
        return api_error(400, exc.message, exc.field)
    fig = stats.figures(place, q.period, q.filters)
    return jsonify(
        {
            "place": {"id": place.id, "name": place.name, "level": place.level},
            "period": {"kind": q.period.kind, "start": q.period.start.isoformat(), "end": q.period.end.isoformat()},
            "figures": values_of(fig),
            "labels": {key: BY_KEY[key].name for key in API_KEYS},
            # 走访率（按走访周期）of each population: due / done in person-windows of its own frequency
            "visits": {
                kind: {
                    "name": stats.VISIT_LABELS.get(kind, kind),
                    "frequency": list(fig.visit_frequencies.get(kind, ())),
                    "due": due,
                    "done": done,
                    "rate": rate,
                }
                for kind, (due, done, rate) in fig.visits.items()
            },
            "flags": [{"figure": f.field, "message": f.message} for f in fig.flags],
            "definitions": "/figures/",
        }
    )
