"""The routes of /dept/: the queue, a case as the department handles it, and its four steps.

Thin: reading in service.py, every step through cases.actions.perform (the case page's and the API's door).
"""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from sqlalchemy.orm.exc import StaleDataError

from .. import labels
from ..access import Forbidden, current_account, require
from ..audit import audit
from ..cases import actions as case_actions
from ..cases import forms as case_forms
from ..cases import queries as case_queries
from ..cases.loop import TransitionError, may_see, pending_extension
from ..db import db
from ..models import Case, Department
from ..timeutil import utcnow
from ..web import wants_fragment
from . import bp, service

# the steps a department takes from its queue, in the order its page shows them
DEPT_ACTIONS = ("accept", "feedback", "return", "extend")
CONFLICT_MESSAGE = "案件已被他人修改，请刷新后重试"


def _department() -> Department:
    account = current_account()
    department = db.get(Department, account.department_id) if account.department_id else None
    if department is None:
        abort(403)
    return department


def _case_or_404(case_id: int, *, full: bool = False) -> Case:
    case = case_queries.get_visible_case(current_account(), case_id, full=full)
    if case is None:
        abort(404)
    return case


@bp.get("/")
@require("dept.queue")
def index():
    department = _department()
    now = utcnow()
    context = dict(
        department=department,
        groups=service.queue(department.id, now),
        counts=service.counts(department.id, now),
        month=service.month_label(now),
        paths=case_queries.category_paths(),
        now=now,
    )
    template = "dept/_queue.html" if wants_fragment() else "dept/index.html"
    return render_template(template, **context)


def render_case(case: Case, *, status: int = 200, error: dict | None = None, values: dict | None = None):
    account = current_account()
    now = utcnow()
    actions = [a for a in DEPT_ACTIONS if case_actions.can_take(account, case, a)]
    context = dict(
        department=_department(),
        case=case,
        actions=actions,
        action_fields=case_forms.ACTION_FIELDS,
        label_of=case_forms.label_of,
        path=case_queries.category_paths().get(case.category_id, case.category.name),
        places=case_queries.case_places(case),
        urgency=service.urgency(case, now, service.soon_limit(now)),
        left=service.time_left(case, now),
        pending=pending_extension(case),
        extensions=service.extensions_of(case),
        max_photos=service.MAX_PHOTOS,
        error=error or {},
        values=values or {},
        now=now,
    )
    return render_template("dept/case.html", **context), status


@bp.get("/cases/<int:case_id>")
@require("dept.queue")
def show(case_id: int):
    return render_case(_case_or_404(case_id, full=True))


@bp.post("/cases/<int:case_id>/<action>")
@require("dept.queue")
def act(case_id: int, action: str):
    if action not in DEPT_ACTIONS:
        abort(404)
    account = current_account()
    case = _case_or_404(case_id)
    try:
        case_actions.authorize(account, case, action)
    except Forbidden as exc:
        audit(f"case.{action}", "case", case.id, success=False, detail=exc.message, commit=True)
        abort(403)
    submitted = request.form.get("version")
    if submitted and submitted != str(case.version):
        flash(CONFLICT_MESSAGE, "error")
        return redirect(url_for("dept.show", case_id=case.id))
    photos = []
    if action == "feedback":
        try:
            photos = service.check_photos(request.files.getlist("photos"))
        except service.PhotoError as exc:
            return _refused(case_id, action, "photos", exc.message)
    audit(f"case.{action}", "case", case.id, detail=case.number)
    try:
        case_forms.run_action(action, case, account, request.form)
    except TransitionError as exc:
        db.rollback()
        audit(f"case.{action}", "case", case_id, success=False, detail=exc.message, commit=True)
        return _refused(case_id, action, case_forms.form_field(action, exc.field), exc.message)
    except Forbidden as exc:
        db.rollback()
        audit(f"case.{action}", "case", case_id, success=False, detail=exc.message, commit=True)
        abort(403)
    except StaleDataError:
        db.rollback()
        flash(CONFLICT_MESSAGE, "error")
        return redirect(url_for("dept.show", case_id=case_id))
    message = case_forms.DONE[action]
    if photos:
        added = service.store_photos(case, photos)
        message += f"，上传现场照片 {added} 张" if added else ""
    flash(message, "info")
    if action == "return" or not may_see(account, case):
        return redirect(url_for("dept.index"))
    return redirect(url_for("dept.show", case_id=case.id))


def _refused(case_id: int, action: str, field: str | None, message: str):
    keep = {name: request.form.get(name, "")[:2000] for name, *_ in case_forms.ACTION_FIELDS[action]}
    return render_case(
        _case_or_404(case_id, full=True),
        status=400,
        values=keep,
        error={"action": action, "field": field, "message": message, "label": labels.ACTION.get(action, action)},
    )
