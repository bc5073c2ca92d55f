"""区划网格: places and grids, boundaries, merge and split, 一长五员 positions (issue 13 §2).

The rules are in commandcenter/place_admin.py; these views read the form, call them, commit or roll back
(a refusal is audited on its own), and render.

Upload flow: GET /admin/places (form: file input ``file``, button 上传并检查) → POST /admin/places/upload
→ GET /admin/places/check/<token> (the check: map, problems, counts; button 确认导入) →
POST /admin/places/check/<token>/apply → back to /admin/places.
"""

from __future__ import annotations

import logging

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy.exc import IntegrityError

from .. import labels
from ..access import current_account, require
from ..audit import audit
from ..db import db
from ..models import GRID_POSITIONS, Place
from . import bp

log = logging.getLogger(__name__)


def _pa():
    from .. import place_admin

    return place_admin


def _refused(action: str, object_id, exc) -> dict[str, str]:
    """Roll back a refused change, audit the refusal on its own, and hand the problems to the form."""
    db.rollback()
    audit(action, "place", object_id, success=False, detail="；".join(exc.problems.values())[:500], commit=True)
    return exc.problems


def _place_or_404(place_id: int) -> Place:
    place = db.get(Place, place_id)
    if place is None:
        abort(404)
    return place


def _read_file() -> tuple[bytes | None, str, str | None]:
    """(raw, filename, problem) of the form's `file`."""
    pa = _pa()
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return None, "", "请选择要上传的 GeoJSON 文件（file）"
    raw = upload.read(pa.UPLOAD_MAX_BYTES + 1)
    if len(raw) > pa.UPLOAD_MAX_BYTES:
        return None, upload.filename, f"文件（file）不能超过 {pa.UPLOAD_MAX_BYTES // (1024 * 1024)} MB"
    if not raw.strip():
        return None, upload.filename, "文件（file）是空的"
    return raw, upload.filename[:200], None


def _rebuild_counters() -> str | None:
    """After a merge or split: the live counters from the database (a warning text when it failed)."""
    from ..jobs import process_outbox, rebuild_counters

    try:
        process_outbox()  # events still pending name the old grid: count them first, then recount all
        rebuild_counters()
    except Exception:  # noqa: BLE001 - the periodic reconcile fixes them later; the change itself is done
        log.exception("rebuilding the counters after a place change failed")
        db.rollback()
        return "实时计数暂未重建（Redis 不可用？），将在下次定期核对时修正"
    return None


def _tree_page(problems: dict | None = None, status: int = 200):
    pa = _pa()
    return render_template(
        "admin/places.html",
        rows=pa.tree(),
        counts=pa.grid_counts(),
        problems=problems or {},
        L=labels,
    ), status


@bp.get("/places")
@require("place.edit")
def places():
    """区划网格: the tree, and the upload of a GeoJSON FeatureCollection."""
    return _tree_page()


@bp.post("/places/upload")
@require("place.edit")
def places_upload():
    pa = _pa()
    raw, filename, problem = _read_file()
    if problem:
        audit("place.upload", "place", None, success=False, detail=problem, commit=True)
        return _tree_page({"file": problem}, 400)
    token = pa.store_upload(current_app.instance_path, raw, filename, current_account().id, "import")
    return redirect(url_for("admin.places_check", token=token))


def _stored(token: str, purpose: str = "import"):
    found = _pa().load_upload(current_app.instance_path, token, current_account().id, purpose)
    if found is None:
        flash("上传的文件已过期或不存在，请重新上传", "warning")
    return found


@bp.get("/places/check/<token>")
@require("place.edit")
def places_check(token: str):
    """The check of an uploaded file: the map with the problems highlighted, the problems, the counts."""
    pa = _pa()
    found = _stored(token)
    if found is None:
        return redirect(url_for("admin.places"))
    raw, filename = found
    check = pa.check_upload(raw, filename)
    return render_template(
        "admin/places_check.html",
        check=check,
        token=token,
        svg=pa.svg_map(check.items, check.problems, check.problem_codes, check.warning_codes),
        counts=check.counts(),
        L=labels,
    )


@bp.post("/places/check/<token>/apply")
@require("place.edit")
def places_apply(token: str):
    pa = _pa()
    found = _stored(token)
    if found is None:
        return redirect(url_for("admin.places"))
    raw, filename = found
    try:
        summary = pa.apply_upload(current_account(), raw, filename)
    except pa.PlaceError as exc:
        problems = _refused("place.import", None, exc)
        flash(problems["file"], "error")
        return redirect(url_for("admin.places_check", token=token))
    try:
        db.commit()
    except IntegrityError:  # another administrator created one of these codes meanwhile
        problems = _refused(
            "place.import", None, pa.PlaceError({"file": "导入时有代码已被同时创建，请重新检查后再导入"})
        )
        flash(problems["file"], "error")
        return redirect(url_for("admin.places_check", token=token))
    pa.drop_upload(current_app.instance_path, token)
    flash(f"已导入 {filename}：新建 {summary['created']} 个、更新 {summary['updated']} 个区划", "info")
    return redirect(url_for("admin.places"))


# --- one place -------------------------------------------------------------------------------------------------


def _place_page(place: Place, problems: dict | None = None, form: dict | None = None, status: int = 200):
    pa = _pa()
    is_grid = place.level == "grid"
    child_level = pa.CHILD_LEVEL.get(place.level)
    children = db.query(Place).filter(Place.parent_id == place.id).order_by(Place.code).all()
    return render_template(
        "admin/places_place.html",
        place=place,
        parent=db.get(Place, place.parent_id) if place.parent_id else None,
        children=children,
        child_level=child_level,
        kinds=pa.KINDS,
        positions=pa.positions(place) if is_grid else [],
        position_choices=[(p, pa.POSITION_LABEL[p]) for p in GRID_POSITIONS],
        grid_accounts=pa.grid_accounts(place) if is_grid else [],
        merge_targets=pa.merge_targets(place) if is_grid and place.active else [],
        problems=problems or {},
        form=form or {},
        L=labels,
    ), status


@bp.get("/places/<int:place_id>")
@require("place.edit")
def place_page(place_id: int):
    return _place_page(_place_or_404(place_id))


@bp.post("/places/<int:place_id>/edit")
@require("place.edit")
def place_edit(place_id: int):
    pa = _pa()
    place = _place_or_404(place_id)
    form = {
        "name": (request.form.get("name") or "")[:500],
        "kind": (request.form.get("kind") or "")[:40],
        "active": request.form.get("active") == "1",
    }
    try:
        pa.edit_place(current_account(), place, name=form["name"], kind=form["kind"], active=form["active"])
    except pa.PlaceError as exc:
        problems = _refused("place.edit", place_id, exc)
        return _place_page(_place_or_404(place_id), problems, {"edit": form}, 400)
    db.commit()
    flash(f"已保存 {place.code} {place.name}", "info")
    return redirect(url_for("admin.place_page", place_id=place_id))


@bp.post("/places/<int:place_id>/children")
@require("place.edit")
def place_add_child(place_id: int):
    pa = _pa()
    parent = _place_or_404(place_id)
    form = {
        "code": (request.form.get("code") or "")[:200],
        "name": (request.form.get("name") or "")[:500],
        "kind": (request.form.get("kind") or "")[:40],
    }
    try:
        child = pa.add_child(current_account(), parent, code=form["code"], name=form["name"], kind=form["kind"])
    except pa.PlaceError as exc:
        problems = _refused("place.create", None, exc)
        return _place_page(_place_or_404(place_id), problems, {"child": form}, 400)
    try:
        db.commit()
    except IntegrityError:  # the same code created at the same moment by someone else
        problems = _refused("place.create", None, pa.PlaceError({"code": "代码（code）刚被其他区划使用"}))
        return _place_page(_place_or_404(place_id), problems, {"child": form}, 400)
    flash(f"已新增{labels.PLACE_LEVEL[child.level]} {child.code} {child.name}", "info")
    return redirect(url_for("admin.place_page", place_id=place_id))


@bp.post("/places/<int:place_id>/positions")
@require("place.edit")
def place_add_position(place_id: int):
    pa = _pa()
    grid = _place_or_404(place_id)
    form = {
        "position": (request.form.get("position") or "")[:40],
        "account_id": (request.form.get("account_id") or "")[:20],
        "name": (request.form.get("name") or "")[:200],
        "phone": (request.form.get("phone") or "")[:60],
    }
    try:
        pa.add_position(current_account(), grid, **form)
    except pa.PlaceError as exc:
        problems = _refused("place.position_add", place_id, exc)
        return _place_page(_place_or_404(place_id), problems, {"position": form}, 400)
    db.commit()
    flash(f"已添加{pa.POSITION_LABEL[form['position']]}", "info")
    return redirect(url_for("admin.place_page", place_id=place_id) + "#positions")


@bp.post("/places/<int:place_id>/positions/<int:position_id>/remove")
@require("place.edit")
def place_remove_position(place_id: int, position_id: int):
    pa = _pa()
    grid = _place_or_404(place_id)
    try:
        pa.remove_position(current_account(), grid, position_id)
    except pa.PlaceError as exc:
        problems = _refused("place.position_remove", place_id, exc)
        return _place_page(_place_or_404(place_id), problems, {}, 400)
    db.commit()
    flash("已移除该岗位人员", "info")
    return redirect(url_for("admin.place_page", place_id=place_id) + "#positions")


# --- merge and split ------------------------------------------------------------------------------------------


@bp.route("/places/<int:place_id>/merge", methods=["GET", "POST"])
@require("place.edit")
def place_merge(place_id: int):
    """合并网格: GET shows what moves (into=<grid id>); POST with confirm=1 merges."""
    pa = _pa()
    grid = _place_or_404(place_id)
    into = (request.values.get("into") or "")[:20]
    try:
        plan = pa.merge_plan(grid, into)
    except pa.PlaceError as exc:
        if request.method == "POST":
            problems = _refused("place.merge", place_id, exc)
        else:
            problems = exc.problems
        return _place_page(_place_or_404(place_id), problems, {}, 400)
    if request.method == "GET" or request.form.get("confirm") != "1":
        return render_template("admin/places_merge.html", plan=plan, L=labels)
    target = plan["b"]
    result = pa.merge(current_account(), grid, target.id)
    db.commit()
    warning = _rebuild_counters()
    flash(
        f"已将网格 {grid.code} 合并到 {target.code}：案件 {result['cases']} 件、人员 {result['persons']} 人、"
        f"场所 {result['sites']} 处、账号 {result['accounts']} 个随之迁移",
        "info",
    )
    if warning:
        flash(warning, "warning")
    return redirect(url_for("admin.place_page", place_id=target.id))


@bp.post("/places/<int:place_id>/split")
@require("place.edit")
def place_split_upload(place_id: int):
    pa = _pa()
    grid = _place_or_404(place_id)
    raw, filename, problem = _read_file()
    if problem:
        audit("place.split", "place", place_id, success=False, detail=problem, commit=True)
        return _place_page(grid, {"split_file": problem}, {}, 400)
    token = pa.store_upload(current_app.instance_path, raw, filename, current_account().id, f"split:{grid.id}")
    return redirect(url_for("admin.place_split", place_id=place_id, token=token))


@bp.route("/places/<int:place_id>/split/<token>", methods=["GET", "POST"])
@require("place.edit")
def place_split(place_id: int, token: str):
    """拆分网格: the check of the uploaded new grids and what moves where; POST (confirm) splits."""
    pa = _pa()
    grid = _place_or_404(place_id)
    found = _stored(token, f"split:{grid.id}")
    if found is None:
        return redirect(url_for("admin.place_page", place_id=place_id))
    raw, filename = found
    problems: dict[str, str] = {}
    if request.method == "POST":
        fallback = (request.form.get("fallback") or "")[:40]
        try:
            summary = pa.split(current_account(), grid, raw, filename, fallback)
        except pa.PlaceError as exc:
            problems = _refused("place.split", place_id, exc)
            grid = _place_or_404(place_id)
        else:
            try:
                db.commit()
            except IntegrityError:
                problems = _refused("place.split", place_id, pa.PlaceError({"file": "新网格的代码刚被其他区划使用"}))
                return redirect(url_for("admin.place_split", place_id=place_id, token=token))
            pa.drop_upload(current_app.instance_path, token)
            warning = _rebuild_counters()
            flash(
                f"已将网格 {grid.code} 拆分为 {len(summary['grids'])} 个新网格；原网格已停用。请为其网格员调整所属网格。",
                "info",
            )
            if warning:
                flash(warning, "warning")
            return redirect(url_for("admin.place_page", place_id=place_id))
    result = pa.check_split(grid, raw, filename)
    check = result.check
    return render_template(
        "admin/places_split.html",
        grid=grid,
        result=result,
        check=check,
        token=token,
        problems=problems,
        svg=pa.svg_map(check.items, check.problems, check.problem_codes, check.warning_codes),
        L=labels,
    ), 400 if problems else 200
