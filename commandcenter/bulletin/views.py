"""The bulletin screens: the list (and a new bulletin), the bulletin page (free text, stories, the build with
its progress bar), the .docx download and the print view. Jurisdiction: 404 outside the viewer's place."""

from __future__ import annotations

from io import BytesIO

from flask import abort, current_app, flash, redirect, render_template, request, send_file, url_for
from sqlalchemy.exc import IntegrityError

from ..access import current_account, has_permission, require
from ..audit import audit
from ..db import db
from ..measures import previous_month
from ..models import Bulletin, Place
from ..timeutil import local_today
from ..web import wants_fragment
from . import bp, jobs, service

DOCX_MIME = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def _bulletin_or_404(bulletin_id: int) -> tuple[Bulletin, Place]:
    found = service.get_visible(current_account(), bulletin_id)
    if found is None:
        abort(404)
    return found


# --- the list --------------------------------------------------------------------------------------


def _index(errors: dict | None = None, values: dict | None = None, status: int = 200):
    account = current_account()
    today = local_today(current_app.config["SETTINGS"].timezone)
    return render_template(
        "bulletin/index.html",
        rows=service.visible_bulletins(account),
        places=service.places_for(account),
        can_edit=has_permission(account, "bulletin.edit"),
        errors=errors or {},
        values=values or {"month": previous_month(today)},
        labels=service.STATUS_LABELS,
    ), status


@bp.get("/")
@require("bulletin.view")
def index():
    return _index()


@bp.post("/")
@require("bulletin.edit")
def create():
    account = current_account()
    place, month, problems = service.validate_new(account, request.form)
    if problems:
        keep = {"place_id": (request.form.get("place_id") or "")[:20], "month": (request.form.get("month") or "")[:20]}
        return _index(problems.errors, keep, 400)
    existing = service.find(place.id, month)
    if existing is not None:
        flash(f"{place.name} {month} 的通报已存在，已为您打开", "info")
        return redirect(url_for("bulletin.show", bulletin_id=existing.id))
    try:
        bulletin = service.create(place, month, account)
        audit("bulletin.create", "bulletin", bulletin.id, detail=f"{place.name} {month}")
        db.commit()
    except IntegrityError:  # created by someone else a moment ago
        db.rollback()
        existing = service.find(place.id, month)
        return redirect(url_for("bulletin.show", bulletin_id=existing.id))
    flash("通报已创建：填写存在问题、下步要求并选录优秀事件后，点击“生成通报”", "info")
    return redirect(url_for("bulletin.show", bulletin_id=bulletin.id))


# --- the bulletin page -------------------------------------------------------------------------------


def _show(
    bulletin: Bulletin, place: Place, *, errors: dict | None = None, values: dict | None = None, status: int = 200
):
    account = current_account()
    candidates = service.story_candidates(bulletin, place)
    if values is None:
        values = {
            "title": bulletin.title or "",
            "problems": bulletin.problems or "",
            "requirements": bulletin.requirements or "",
            "story_case_ids": list(bulletin.story_case_ids or []),
        }
    return render_template(
        "bulletin/show.html",
        b=bulletin,
        place=place,
        candidates=candidates,
        values=values,
        errors=errors or {},
        can_edit=has_permission(account, "bulletin.edit"),
        labels=service.STATUS_LABELS,
        content=bulletin.content,
    ), status


@bp.get("/<int:bulletin_id>")
@require("bulletin.view")
def show(bulletin_id: int):
    return _show(*_bulletin_or_404(bulletin_id))


@bp.post("/<int:bulletin_id>")
@require("bulletin.edit")
def save(bulletin_id: int):
    bulletin, place = _bulletin_or_404(bulletin_id)
    values, problems = service.validate_edit(bulletin, place, request.form)
    if problems:
        keep = {**values, "story_case_ids": [int(s) for s in request.form.getlist("story") if s.isdigit()]}
        return _show(bulletin, place, errors=problems.errors, values=keep, status=400)
    service.apply_edit(bulletin, values, current_account())
    audit("bulletin.edit", "bulletin", bulletin.id, detail=f"{place.name} {bulletin.month}")
    db.commit()
    flash("已保存。重新生成通报后，保存的内容将印入通报", "info")
    return redirect(url_for("bulletin.show", bulletin_id=bulletin.id))


@bp.post("/<int:bulletin_id>/build")
@require("bulletin.edit")
def build(bulletin_id: int):
    bulletin, place = _bulletin_or_404(bulletin_id)
    started = jobs.request_build(bulletin.id, current_account())
    audit(
        "bulletin.build",
        "bulletin",
        bulletin.id,
        success=started,
        detail=None if started else "已有生成任务在排队或进行中",
        commit=True,
    )
    bulletin = db.get(Bulletin, bulletin_id)
    if wants_fragment():
        return render_template("bulletin/_progress.html", b=bulletin, labels=service.STATUS_LABELS, refused=not started)
    if started:
        flash("已开始生成通报", "info")
    elif bulletin.status == "failed":
        flash(f"未能开始生成：{bulletin.error}", "error")
    else:
        flash("通报正在生成中，请勿重复提交", "warning")
    return redirect(url_for("bulletin.show", bulletin_id=bulletin.id))


@bp.get("/<int:bulletin_id>/progress")
@require("bulletin.view")
def progress(bulletin_id: int):
    bulletin, _place = _bulletin_or_404(bulletin_id)
    response = current_app.make_response(
        render_template("bulletin/_progress.html", b=bulletin, labels=service.STATUS_LABELS, refused=False)
    )
    if bulletin.status == "done":
        response.headers["HX-Trigger"] = "bulletin-built"  # the content below reloads itself
    return response


@bp.get("/<int:bulletin_id>/content")
@require("bulletin.view")
def content(bulletin_id: int):
    bulletin, _place = _bulletin_or_404(bulletin_id)
    return render_template(
        "bulletin/_generated.html",
        b=bulletin,
        content=bulletin.content,
        can_edit=has_permission(current_account(), "bulletin.edit"),
    )


# --- exports -----------------------------------------------------------------------------------------


@bp.get("/<int:bulletin_id>.docx")
@require("bulletin.view")
def download(bulletin_id: int):
    bulletin, place = _bulletin_or_404(bulletin_id)
    if not bulletin.docx:
        abort(404, description="通报尚未生成，请先点击“生成通报”")
    audit("bulletin.download", "bulletin", bulletin.id, detail=f"{place.name} {bulletin.month}", commit=True)
    name = f"{place.name}{bulletin.month}月度通报.docx"
    response = send_file(BytesIO(bulletin.docx), mimetype=DOCX_MIME, as_attachment=True, download_name=name, max_age=0)
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.get("/<int:bulletin_id>/print")
@require("bulletin.view")
def print_view(bulletin_id: int):
    bulletin, place = _bulletin_or_404(bulletin_id)
    if not bulletin.content:
        abort(404, description="通报尚未生成，请先点击“生成通报”")
    return render_template("bulletin/print.html", b=bulletin, place=place, content=bulletin.content)
