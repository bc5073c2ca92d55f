"""地图底图: the basemap of every map, and the local tiles served at /tiles (issue 13 §6).
The rules are in commandcenter/basemap.py."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from werkzeug.exceptions import RequestEntityTooLarge

from .. import basemap
from ..access import current_account, require
from ..db import db
from ..extensions import csrf
from . import bp

FORM_OVERHEAD = 1024 * 1024  # the multipart envelope and the other fields around the file


def _render(form: dict, problems: dict[str, str]):
    cfg = basemap.stored_config()
    url = form.get("style_url") or cfg["style_url"]
    return render_template(
        "admin/map.html",
        cfg=cfg,
        labels=basemap.MODE_LABELS,
        file=basemap.describe(cfg["file"]),
        form=form,
        host=basemap.style_host(url) if url and not basemap.check_style_url(url)[1] else "",
        current_host=basemap.style_host(cfg["style_url"]) if cfg["mode"] == "style" else "",
        max_mb=basemap.upload_max_bytes() // (1024 * 1024),
        problems=problems,
    ), 400 if problems else 200


@bp.route("/map", methods=["GET", "POST"], endpoint="map")
@require("map.edit")
def map_page():
    """地图底图: blank (default), a MapLibre style URL, or a local MBTiles/PMTiles file served at /tiles."""
    cfg = basemap.stored_config()
    form = {"mode": cfg["mode"], "style_url": cfg["style_url"]}
    if request.method != "POST":
        return _render(form, {})
    # the body may be a large tile file: allowed here only, after the login and the permission were checked
    # (which is why this view checks its CSRF token itself instead of before every view)
    request.max_content_length = basemap.upload_max_bytes() + FORM_OVERHEAD
    try:
        csrf.protect()
    except RequestEntityTooLarge:
        exc = basemap.BasemapError(
            {
                "file": f"瓦片文件（file）超过上传上限 {basemap.upload_max_bytes() // (1024 * 1024)} MB（可用命令 flask basemap set-file 导入）"
            }
        )
        basemap.refused(exc)
        return _render(form, exc.problems)
    form = {
        "mode": (request.form.get("mode") or "")[:20],
        "style_url": (request.form.get("style_url") or "")[: basemap.STYLE_URL_MAX * 2],
    }
    upload = request.files.get("file")
    try:
        staged = None
        if form["mode"] == "file" and upload is not None and upload.filename:
            staged = basemap.stage(upload.stream, upload.filename, max_bytes=basemap.upload_max_bytes())
        after = basemap.save(current_account(), mode=form["mode"], style_url=form["style_url"], staged=staged)
    except basemap.BasemapError as exc:
        basemap.refused(exc)
        return _render(form, exc.problems)
    db.commit()
    flash(f"已保存地图底图：{basemap.MODE_LABELS[after['mode']]}", "info")
    return redirect(url_for("admin.map"))


csrf.exempt(map_page)
