"""The routes of the 12345 hotline: the work-order form (checked by cases.forms.parse_hotline) and its intake."""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, request, url_for

from .. import positions
from ..access import current_account, require
from ..audit import audit
from ..cases import forms, queries
from ..cases.loop import TransitionError, may_see, report_case
from ..db import db
from ..hierarchy import place_names
from ..ratelimit import intake_limited
from . import bp


def _address() -> str:
    return request.remote_addr or "unknown"


def _hotline_form(values: dict, errors: dict, status: int = 200):
    account = current_account()
    grids = queries.places_within(account, "grid")
    names = place_names({g.village_id for g in grids} | {g.town_id for g in grids})
    groups: dict[str, list] = {}
    for grid in grids:
        label = " · ".join(n for n in (names.get(grid.town_id), names.get(grid.village_id)) if n) or "网格"
        groups.setdefault(label, []).append(grid)
    return render_template(
        "hotline/new.html",
        values=values,
        errors=errors,
        tree=queries.category_tree(),
        grid_groups=groups,
        max_description=forms.DESCRIPTION_MAX,
        locate=positions.locate_map(account),
    ), status


@bp.route("/new", methods=["GET", "POST"])
@require("hotline.take")
@intake_limited(_address, methods=("POST",))
def new():
    account = current_account()
    if request.method == "GET":
        return _hotline_form({}, {})
    values = {k: (request.form.get(k) or "")[: forms.DESCRIPTION_MAX + 100] for k in forms.HOTLINE_FIELDS}
    parsed, errors = forms.parse_hotline(request.form, account, current_app.config["SETTINGS"].timezone)
    if "external_ref" not in errors:
        existing = forms.find_hotline_case(parsed.external_ref)
        if existing is not None:
            if may_see(account, existing):
                flash(f"该工单已受理（案卷号 {existing.number}）", "warning")
                return redirect(url_for("cases.show", case_id=existing.id))
            errors = {**errors, "external_ref": "该工单已受理（由其他辖区办理）"}
    if errors:
        return _hotline_form(values, errors, 400)
    try:
        case, created = report_case(
            parsed.data, actor=account, source="hotline", client_key=forms.hotline_client_key(parsed.external_ref)
        )
    except TransitionError as exc:
        db.rollback()
        field = {"client_key": "external_ref", "self_handled": "category_id"}.get(exc.field, exc.field)
        message = "该工单已受理" if exc.field == "client_key" else exc.message
        return _hotline_form(values, {field or "description": message}, 400)
    if not created:
        flash(f"该工单已受理（案卷号 {case.number}）", "warning")
        return redirect(url_for("cases.show", case_id=case.id))
    audit("hotline.take", "case", case.id, detail=f"12345 工单 {parsed.external_ref}", commit=True)
    if case.state == "rejected":
        flash(f"已受理，案卷号 {case.number}；乱停车事件发现已超过一小时，系统已按规定自动作废", "warning")
    else:
        flash(f"已受理 12345 工单，案卷号 {case.number}", "info")
    return redirect(url_for("cases.show", case_id=case.id))


@bp.get("/addresses.json")
@require("case.register")
def addresses():
    """标准地址 search for the location picker (the 12345 form, and 重新定位 on the case page): entries inside
    the viewer's place, for every role that registers cases (case.register), not only the hotline's."""
    from flask import jsonify

    return jsonify({"items": positions.search_addresses(current_account(), request.args.get("q", ""))})
