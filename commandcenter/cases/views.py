"""The center's case screens: list with filters, case page with timeline and actions, queue.

Views stay thin: reading in queries.py, form input in forms.py, every step in loop.py.
"""

from __future__ import annotations

from pathlib import Path

from flask import abort, current_app, flash, redirect, render_template, request, send_file, url_for
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.security import safe_join

from ..access import Forbidden, current_account, require
from ..audit import audit
from ..db import db
from ..hierarchy import place_names
from ..models import CASE_KINDS, CASE_LEVELS, CASE_SOURCES, CASE_STATES, Account, Case, CasePhoto, Department
from ..timeutil import utcnow
from ..web import wants_fragment
from . import actions as case_actions
from . import bp, forms, queries
from .loop import TransitionError, may_see
from .loop import pending_extension as loop_pending_extension

CONFLICT_MESSAGE = "案件已被他人修改，请刷新后重试"
# photos the browser may show inline; anything else is offered as a download
INLINE_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/gif"})


def _fragment_or_page(fragment: str, page: str, **context):
    response = current_app.make_response(render_template(fragment if wants_fragment() else page, **context))
    response.headers["Vary"] = "HX-Request"
    return response


def _case_or_404(case_id: int, *, full: bool = False) -> Case:
    """404 both for a missing case and for one outside the jurisdiction: never reveal other towns' cases."""
    case = queries.get_visible_case(current_account(), case_id, full=full)
    if case is None:
        abort(404)
    return case


# --- 1. the list ---------------------------------------------------------------------------------------


@bp.get("/")
@require("case.view")
def index():
    account = current_account()
    f = forms.parse_filters(request.args, account)
    now = utcnow()
    page = queries.list_cases(account, f, now)
    context = dict(
        f=f,
        result=page,
        paths=queries.category_paths(),
        now=now,
        current_due=queries.current_due,
        is_overdue=queries.is_overdue,
    )
    if not wants_fragment():
        towns = queries.places_within(account, "town") if account.place.level == "city" else []
        villages = queries.places_within(account, "village") if account.place.level in ("city", "town") else []
        context.update(
            states=CASE_STATES,
            kinds=CASE_KINDS,
            sources=CASE_SOURCES,
            levels=CASE_LEVELS,
            tree=queries.category_tree(active_only=False),
            towns=towns,
            villages=villages,
            town_names=place_names(v.town_id for v in villages),
        )
    response = _fragment_or_page("cases/_table.html", "cases/index.html", **context)
    if f.errors and not wants_fragment():
        # a wrong filter is the client's error (400); htmx swaps only a 2xx, so its fragment keeps 200
        response.status_code = 400
    return response


# --- 4. the register / dispatch queue ------------------------------------------------------------------


@bp.get("/queue")
@require("case.register")
def queue():
    account = current_account()
    now = utcnow()
    return _fragment_or_page(
        "cases/_queue.html",
        "cases/queue.html",
        q=queries.register_queue(account),
        now=now,
        # 重新定位 from the queue: the 12345 form's picker (not re-sent with every refresh of the fragment)
        locate=None if wants_fragment() else _locate(account, ["relocate"]),
        paths=queries.category_paths(),
        minutes_left=queries.minutes_left,
        current_due=queries.current_due,
        is_overdue=queries.is_overdue,
    )


# --- 2. the case page ------------------------------------------------------------------------------------


def _work_order(case: Case) -> tuple[str, str] | None:
    """(platform name, address) of the case's 12345 work order, when the city configured the link."""
    if case.source != "hotline" or not case.external_ref:
        return None
    from .. import org_admin

    url = org_admin.work_order_link(case.external_ref)
    return (org_admin.hotline_settings()["platform_name"] or "12345 平台", url) if url else None


def _nearest(account: Account, case: Case, actions: list[str]) -> list | None:
    """就近派遣: the nearest online gridworkers of the case's town, for whoever may dispatch it now."""
    if "dispatch" not in actions or case.lat is None or case.lon is None:
        return None
    from .. import positions

    return positions.nearest_for_case(account, case)


def _locate(account: Account, actions: list[str]) -> dict | None:
    """重新定位: the 12345 form's location picker (the grids of the account's place), when it may relocate."""
    if "relocate" not in actions:
        return None
    from .. import positions

    return positions.locate_map(account)


def render_case(
    case: Case, *, status: int = 200, error: dict | None = None, values: dict | None = None, conflict: str | None = None
):
    account = current_account()
    actions = case_actions.available(account, case)
    duplicate_of = db.get(Case, case.duplicate_of_id) if case.duplicate_of_id else None
    if duplicate_of is not None and not may_see(account, duplicate_of):
        duplicate_of = None
    context = dict(
        case=case,
        actions=actions,
        action_fields=forms.ACTION_FIELDS,
        label_of=forms.label_of,
        departments=queries.departments_for(case) if "dispatch" in actions else [],
        levels_above=case_actions.levels_above(case),
        public_actions=case_actions.PUBLIC_NOTE_ACTIONS,
        duplicates=queries.visible_duplicates(account, case),
        places=queries.case_places(case),
        path=queries.category_paths().get(case.category_id, case.category.name),
        figure=queries.map_figure(case.grid, case.lat, case.lon),
        department=db.get(Department, case.department_id) if case.department_id else None,
        assignee=db.get(Account, case.assignee_id) if case.assignee_id else None,
        duplicate_of=duplicate_of,
        work_order=_work_order(case),
        extension=loop_pending_extension(case),
        nearest=_nearest(account, case, actions),
        locate=_locate(account, actions),
        current_due=queries.current_due(case),
        overdue=queries.is_overdue(case),
        minutes_left=queries.minutes_left,
        now=utcnow(),
        error=error or {},
        values=values or {},
        conflict=conflict,
    )
    return render_template("cases/show.html", **context), status


@bp.get("/<int:case_id>")
@require("case.view")
def show(case_id: int):
    return render_case(_case_or_404(case_id, full=True))


@bp.get("/<int:case_id>/photos/<int:photo_id>")
@require("case.view")
def photo(case_id: int, photo_id: int):
    case = _case_or_404(case_id)
    item = db.get(CasePhoto, photo_id)
    if item is None or item.case_id != case.id:
        abort(404)
    path = safe_join(str(current_app.config["SETTINGS"].upload_dir), item.stored_name)
    if path is None or not Path(path).is_file():
        abort(404)
    inline = item.content_type in INLINE_IMAGE_TYPES
    response = send_file(
        path,
        mimetype=item.content_type,
        conditional=True,
        max_age=0,
        as_attachment=not inline,
        download_name=f"{case.number}-{item.id}",
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    # a photo is never a document: even a mislabelled upload cannot run script
    response.headers["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; sandbox"
    response.headers["Cache-Control"] = "private, no-store"
    return response


# --- 3. the steps ------------------------------------------------------------------------------------------


def _conflict(case_id: int):
    db.rollback()
    return render_case(_case_or_404(case_id, full=True), status=409, conflict=CONFLICT_MESSAGE)


@bp.post("/<int:case_id>/actions/<action>")
@require("case.view")  # the step's own permission is checked below, with the jurisdiction
def act(case_id: int, action: str):
    if action not in forms.ACTION_FIELDS:
        abort(404)
    account = current_account()
    case = _case_or_404(case_id)
    try:
        case_actions.authorize(account, case, action)
    except Forbidden as exc:
        audit(f"case.{action}", "case", case.id, success=False, detail=exc.message, commit=True)
        return render_template("error.html", code=403, message=exc.message), 403
    submitted = request.form.get("version")
    if submitted and submitted != str(case.version):
        return _conflict(case_id)
    # the audit row goes into the step's own transaction: it is kept exactly when the step is
    audit(f"case.{action}", "case", case.id, detail=case.number)
    try:
        forms.run_action(action, case, account, request.form)
    except TransitionError as exc:
        db.rollback()
        audit(f"case.{action}", "case", case_id, success=False, detail=exc.message, commit=True)
        field = forms.form_field(action, exc.field)
        keep = {name: request.form.get(name, "")[:2000] for name, *_ in forms.ACTION_FIELDS[action]}
        keep["public"] = request.form.get("public", "")[:10]
        keep["address_id"] = request.form.get("address_id", "")[:12]
        return render_case(
            _case_or_404(case_id, full=True),
            status=400,
            values=keep,
            error={"action": action, "field": field, "message": exc.message},
        )
    except Forbidden as exc:
        db.rollback()
        audit(f"case.{action}", "case", case_id, success=False, detail=exc.message, commit=True)
        return render_template("error.html", code=403, message=exc.message), 403
    except StaleDataError:
        return _conflict(case_id)
    flash(forms.DONE[action], "info")
    if not may_see(account, case):  # e.g. handed beyond the account's reach
        return redirect(url_for("cases.index"))
    return redirect(url_for("cases.show", case_id=case.id))
