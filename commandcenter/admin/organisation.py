"""部门与中心: departments and the places they serve, centers, police posts, the 12345 link
(rules in commandcenter/org_admin.py)."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from .. import labels
from ..access import current_account, require
from ..audit import audit
from ..db import db
from ..models import Place
from . import bp

# --- centers and departments (issue 13, section 3); the rules are in commandcenter/org_admin.py ---------------


def _org_refused(action: str, object_type: str, object_id, exc) -> dict[str, str]:
    """Roll back a refused change, audit the refusal on its own, and hand the problems to the form."""
    db.rollback()
    audit(action, object_type, object_id, success=False, detail="；".join(exc.problems.values())[:500], commit=True)
    return exc.problems


def _department_form() -> dict:
    return {
        "code": (request.form.get("code") or "")[:200],
        "name": (request.form.get("name") or "")[:500],
        "places": request.form.getlist("places")[:5000],
    }


@bp.route("/departments", methods=["GET", "POST"])
@require("org.edit")
def departments():
    """职能部门: each with the places it serves (dispatch offers it only there); create a department."""
    from .. import org_admin as org

    problems: dict[str, str] = {}
    form = {"code": "", "name": "", "places": []}
    if request.method == "POST":
        form = _department_form()
        try:
            department = org.save_department(
                current_account(), None, code=form["code"], name=form["name"], place_ids=form["places"]
            )
        except org.OrgError as exc:
            problems = _org_refused("org.department_create", "department", None, exc)
        else:
            db.commit()
            flash(f"已新建职能部门 {department.code} {department.name}", "info")
            return redirect(url_for("admin.departments"))
    return render_template(
        "admin/departments.html",
        rows=org.list_departments(),
        choices=org.served_place_choices(),
        form=form,
        problems=problems,
        L=labels,
    ), 400 if problems else 200


@bp.route("/departments/<int:department_id>", methods=["GET", "POST"])
@require("org.edit")
def department_edit(department_id: int):
    """Edit a department's code, name and the places it serves."""
    from .. import org_admin as org
    from ..models import Department

    department = db.get(Department, department_id)
    if department is None:
        abort(404)
    problems: dict[str, str] = {}
    form = {
        "code": department.code,
        "name": department.name,
        "places": [str(p) for p in org.served_place_ids(department.id)],
    }
    if request.method == "POST":
        form = _department_form()
        try:
            org.save_department(
                current_account(), department, code=form["code"], name=form["name"], place_ids=form["places"]
            )
        except org.OrgError as exc:
            problems = _org_refused("org.department_edit", "department", department_id, exc)
            department = db.get(Department, department_id)
        else:
            db.commit()
            flash(f"已保存职能部门 {department.code} {department.name}", "info")
            return redirect(url_for("admin.departments"))
    return render_template(
        "admin/departments_edit.html",
        department=department,
        choices=org.served_place_choices(),
        form=form,
        problems=problems,
        L=labels,
    ), 400 if problems else 200


@bp.route("/centers", methods=["GET", "POST"])
@require("org.edit")
def centers():
    """综治中心 / 联动站 per place (city, towns, villages); create a center."""
    from .. import org_admin as org

    problems: dict[str, str] = {}
    form = {"place_id": request.args.get("place_id", ""), "name": ""}
    if request.method == "POST":
        form = {"place_id": request.form.get("place_id", "")[:20], "name": (request.form.get("name") or "")[:500]}
        try:
            center = org.create_center(current_account(), place_id=form["place_id"], name=form["name"])
        except org.OrgError as exc:
            problems = _org_refused("org.center_create", "center", None, exc)
        else:
            db.commit()
            flash(f"已新建 {center.name}", "info")
            return redirect(url_for("admin.centers") + f"#p{center.place_id}")
    return render_template(
        "admin/centers.html", rows=org.list_centers(), form=form, problems=problems, L=labels
    ), 400 if problems else 200


@bp.post("/centers/<int:center_id>/rename")
@require("org.edit")
def center_rename(center_id: int):
    from .. import org_admin as org
    from ..models import Center

    center = db.get(Center, center_id)
    if center is None:
        abort(404)
    try:
        org.rename_center(current_account(), center, (request.form.get("name") or "")[:500])
    except org.OrgError as exc:
        problems = _org_refused("org.center_rename", "center", center_id, exc)
        flash("；".join(problems.values()), "error")
        return redirect(url_for("admin.centers") + f"#c{center_id}")
    db.commit()
    flash(f"已改名为 {center.name}", "info")
    return redirect(url_for("admin.centers") + f"#c{center_id}")


@bp.route("/police-beats", methods=["GET", "POST"])
@require("org.edit")
def police_beats():
    """警格: create beats, link each grid to its beat (警网关联), and the 警网关联率 of the city and each town."""
    from .. import org_admin as org
    from ..models import PoliceBeat

    problems: dict[str, str] = {}
    form = {"code": "", "name": "", "town_id": ""}
    if request.method == "POST":
        form = {
            "code": (request.form.get("code") or "")[:200],
            "name": (request.form.get("name") or "")[:500],
            "town_id": request.form.get("town_id", "")[:20],
        }
        try:
            beat = org.create_beat(current_account(), code=form["code"], name=form["name"], town_id=form["town_id"])
        except org.OrgError as exc:
            problems = _org_refused("org.beat_create", "police_beat", None, exc)
        else:
            db.commit()
            flash(f"已新建警格 {beat.code} {beat.name}", "info")
            return redirect(url_for("admin.police_beats", town_id=beat.town_id or ""))
    towns = db.execute(select(Place).where(Place.level == "town").order_by(Place.code)).scalars().all()
    town_id = request.args.get("town_id", type=int) or (int(form["town_id"]) if form["town_id"].isdigit() else None)
    town = next((t for t in towns if t.id == town_id), towns[0] if towns else None)
    grids = (
        db.execute(
            select(Place).where(Place.level == "grid", Place.town_id == town.id).order_by(Place.code).limit(2000)
        )
        .scalars()
        .all()
        if town
        else []
    )
    beats = db.execute(select(PoliceBeat).order_by(PoliceBeat.code)).scalars().all()
    total, by_town = org.link_rates()
    return render_template(
        "admin/centers_police_beats.html",
        towns=towns,
        town=town,
        grids=grids,
        beats=beats,
        usable=[b for b in beats if town is not None and b.town_id in (None, town.id)],
        total=total,
        by_town=by_town,
        form=form,
        problems=problems,
    ), 400 if problems else 200


@bp.post("/police-beats/link")
@require("org.edit")
def police_beat_link():
    from .. import org_admin as org

    grid_id = request.form.get("grid_id", "")[:20]
    try:
        grid = org.link_grid(current_account(), grid_id=grid_id, beat_id=request.form.get("beat_id", "")[:20])
    except org.OrgError as exc:
        problems = _org_refused("org.grid_beat", "place", grid_id or None, exc)
        flash("；".join(problems.values()), "error")
        return redirect(url_for("admin.police_beats", town_id=request.form.get("town_id", type=int) or ""))
    db.commit()
    flash(f"网格 {grid.name} 的警格已{'关联' if grid.police_beat_id else '解除关联'}", "info")
    return redirect(url_for("admin.police_beats", town_id=grid.town_id) + f"#g{grid.id}")


@bp.route("/hotline", methods=["GET", "POST"])
@require("org.edit")
def hotline_link():
    """The link to the 12345 hotline platform: its name, the address of a work order, whether work orders
    arrive by the API (and which endpoint that is)."""
    from .. import org_admin as org

    problems: dict[str, str] = {}
    values = org.hotline_settings()
    if request.method == "POST":
        values = {
            "platform_name": (request.form.get("platform_name") or "")[:500],
            "work_order_url": (request.form.get("work_order_url") or "")[:1000],
            "api_intake": request.form.get("api_intake") == "1",
        }
        try:
            org.save_hotline(current_account(), **values)
        except org.OrgError as exc:
            problems = _org_refused("org.hotline", "setting", org.HOTLINE_KEY, exc)
        else:
            db.commit()
            flash("已保存 12345 热线对接设置", "info")
            return redirect(url_for("admin.hotline_link"))
    return render_template(
        "admin/centers_hotline.html",
        values=values,
        problems=problems,
        endpoint=org.HOTLINE_API_PATH,
        endpoint_url=request.host_url.rstrip("/") + org.HOTLINE_API_PATH,
    ), 400 if problems else 200
