"""事件类别: the category tree (rules in commandcenter/category_admin.py)."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from .. import labels
from ..access import current_account, require
from ..audit import audit
from ..db import db
from . import bp

# --- 事件类别: the category tree (rules in commandcenter/category_admin.py) ---------------------------------


def _category_or_404(category_id: int):
    from ..models import Category

    category = db.get(Category, category_id)
    if category is None:
        abort(404)
    return category


def _category_refused(action: str, object_id, exc) -> None:
    db.rollback()
    audit(action, "category", object_id, success=False, detail=exc.message[:500], commit=True)


@bp.get("/categories")
@require("category.edit")
def categories():
    """The tree (big class → small class → item) with kind, limits and state; install, export, import."""
    return _categories_page()


def _categories_page(problems: list[str] | None = None, status: int = 200):
    from .. import category_admin as ca

    counts = ca.case_counts()
    return render_template(
        "admin/categories.html", tree=ca.tree(), counts=counts, ca=ca, L=labels, problems=problems or []
    ), status


@bp.post("/categories/install-default")
@require("category.edit")
def categories_install_default():
    from .. import category_admin as ca

    if not ca.is_empty():
        flash("类别表已有数据，未安装默认类别树", "info")
        return redirect(url_for("admin.categories"))
    added = ca.install_default(current_account())
    flash(f"已安装国家默认类别树：已添加 {added} 个类别", "info")
    return redirect(url_for("admin.categories"))


@bp.get("/categories/export")
@require("category.edit")
def categories_export():
    from .. import category_admin as ca
    from ..timeutil import local_today

    body = ca.export_json()
    audit("category.export", "category", None, detail=f"导出 {len(ca.export_items())} 个类别", commit=True)
    return current_app.response_class(
        body,
        mimetype="application/json",
        headers={"Content-Disposition": f'attachment; filename="categories-{local_today().isoformat()}.json"'},
    )


@bp.post("/categories/import")
@require("category.edit")
def categories_import():
    from .. import category_admin as ca

    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _categories_page(["file：请选择事件类别 JSON 文件（本系统导出的格式）"], 400)
    try:
        if not upload.filename.lower().endswith(".json"):
            raise ca.CategoryError(problems=["file：文件须为 .json"])
        items, text = ca.parse_import(upload.stream.read(ca.IMPORT_MAX_BYTES + 1))
        done = ca.import_items(current_account(), items, text)
    except ca.CategoryError as exc:
        db.rollback()
        if not exc.audited:
            audit("category.import", "category", None, success=False, detail=exc.message[:500], commit=True)
        return _categories_page(exc.problems, 400)
    flash(f"已导入：新增 {done['added']} 个，修改 {done['updated']} 个，未变 {done['unchanged']} 个", "info")
    return redirect(url_for("admin.categories"))


def _category_form(category=None, parent=None, values=None, errors=None, status=200):
    from .. import category_admin as ca
    from ..models import Category

    movable_to = []
    if category is not None and category.depth > 1:
        movable_to = (
            db.execute(
                select(Category)
                .where(Category.depth == category.depth - 1, Category.id != category.parent_id)
                .order_by(Category.code)
            )
            .scalars()
            .all()
        )
    source = category or parent
    if values is None:
        values = {f: getattr(source, f) for f in ca.VALUE_FIELDS} if source is not None else dict(ca.DEFAULTS)
        if category is None:
            values["name"] = ""
            values["code"] = ca.free_code(parent) or ""
    return render_template(
        "admin/categories_form.html",
        category=category,
        parent=parent if category is None else (db.get(Category, category.parent_id) if category.parent_id else None),
        values=values,
        errors=errors or {},
        movable_to=movable_to,
        deletable=category is not None and ca.deletable(category),
        ca=ca,
        L=labels,
    ), status


@bp.route("/categories/new", methods=["GET", "POST"])
@require("category.edit")
def category_new():
    """Add a big class (no parent), or a small class / item under ?parent=<id>."""
    from .. import category_admin as ca
    from ..inputs import parse_id

    parent_id = parse_id(request.args.get("parent"))
    parent = _category_or_404(parent_id) if parent_id else None
    if request.method == "POST":
        values = {f: request.form.get(f) for f in ("code", *ca.VALUE_FIELDS)}
        try:
            category = ca.create(current_account(), parent, values)
        except ca.CategoryError as exc:
            _category_refused("category.create", None, exc)
            return _category_form(parent=parent, values=values, errors=exc.errors, status=400)
        flash(f"已添加{ca.DEPTH_NAME[category.depth]} {category.code} {category.name}", "info")
        return redirect(url_for("admin.categories") + f"#c{category.code}")
    return _category_form(parent=parent)


@bp.route("/categories/<int:category_id>", methods=["GET", "POST"])
@require("category.edit")
def category_edit(category_id: int):
    """Rename, kind, limits, escalation, warning, conditions (applies to new cases only)."""
    from .. import category_admin as ca

    category = _category_or_404(category_id)
    if request.method == "POST":
        values = {f: request.form.get(f) for f in ca.VALUE_FIELDS}
        try:
            ca.update(current_account(), category, values)
        except ca.CategoryError as exc:
            _category_refused("category.update", category_id, exc)
            return _category_form(_category_or_404(category_id), values=values, errors=exc.errors, status=400)
        flash(f"已保存 {category.code} {category.name}（对此后上报的事件生效，已有事件保留原时限）", "info")
        return redirect(url_for("admin.categories") + f"#c{category.code}")
    return _category_form(category)


@bp.post("/categories/<int:category_id>/move")
@require("category.edit")
def category_move(category_id: int):
    from .. import category_admin as ca
    from ..inputs import parse_id

    category = _category_or_404(category_id)
    parent_id = parse_id(request.form.get("parent_id"))
    parent = _category_or_404(parent_id) if parent_id else None
    old_code = category.code
    try:
        ca.move(current_account(), category, parent, request.form.get("code"))
    except ca.CategoryError as exc:
        _category_refused("category.move", category_id, exc)
        category = _category_or_404(category_id)
        values = {f: getattr(category, f) for f in ca.VALUE_FIELDS}
        return _category_form(category, values=values, errors=exc.errors, status=400)
    flash(f"已将 {old_code} {category.name} 移至 {parent.code} {parent.name}，新编码 {category.code}", "info")
    return redirect(url_for("admin.categories") + f"#c{category.code}")


@bp.post("/categories/<int:category_id>/active")
@require("category.edit")
def category_active(category_id: int):
    from .. import category_admin as ca

    category = _category_or_404(category_id)
    active = request.form.get("active") == "1"
    try:
        changed = ca.set_active(current_account(), category, active)
    except ca.CategoryError as exc:
        _category_refused("category.activate" if active else "category.deactivate", category_id, exc)
        flash(exc.message, "error")
        return redirect(url_for("admin.categories") + f"#c{category.code}")
    what = "启用" if active else "停用（其下级一并停用，不再用于上报和 Open311）"
    flash(f"已{what} {category.code} {category.name}，共 {len(changed)} 个类别", "info")
    return redirect(url_for("admin.categories") + f"#c{category.code}")


@bp.post("/categories/<int:category_id>/delete")
@require("category.edit")
def category_delete(category_id: int):
    from .. import category_admin as ca

    category = _category_or_404(category_id)
    code, name = category.code, category.name
    try:
        removed = ca.delete(current_account(), category)
    except ca.CategoryError as exc:
        _category_refused("category.delete", category_id, exc)
        flash(exc.message, "error")
        return redirect(url_for("admin.categories") + f"#c{code}")
    flash(f"已删除 {code} {name}（共 {removed} 个类别）", "info")
    return redirect(url_for("admin.categories"))
