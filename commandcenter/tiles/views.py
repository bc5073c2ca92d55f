"""The routes of /tiles: the tiles of the city's local basemap file (commandcenter/basemap.py), for logged-in
pages only, and the page CSP that lets the maps reach a configured style host."""

from __future__ import annotations

import logging

from flask import Response, g, request

from .. import basemap
from ..access import require
from . import bp

log = logging.getLogger(__name__)

TILE_MAX_AGE = 86400  # the URL carries ?v=<file version>: a new file gets new URLs


def _no_tile() -> Response:
    response = Response(b"", status=404, mimetype="text/plain")
    response.headers["Cache-Control"] = "private, max-age=60"
    return response


@bp.get("/<int:z>/<int:x>/<int:y>")
@bp.get("/<int:z>/<int:x>/<int:y>.<any(png, jpg, jpeg, webp):ext>")
@require("account.self")  # any logged-in account (the wall display is one): the maps of every page use it
def tile(z: int, x: int, y: int, ext: str | None = None):
    """One tile (z/x/y, y from the north as in OSM/XYZ) of the configured MBTiles/PMTiles file; 404 with an
    empty body when there is none (outside the file, or no local file configured)."""
    found = basemap.read_tile(z, x, y)
    if found is None:
        return _no_tile()
    etag = found.etag
    response = Response(found.data, mimetype=found.content_type)
    response.set_etag(etag)
    response.headers["Cache-Control"] = f"private, max-age={TILE_MAX_AGE}"
    return response.make_conditional(request)


@bp.after_app_request
def style_host_in_csp(response):
    """With a configured style URL, the pages' maps fetch it (and its tiles) from that host: add its origin to
    connect-src and img-src of the page's CSP (commandcenter/web.py CSP; nothing changes otherwise)."""
    if response.mimetype != "text/html" or "Content-Security-Policy" in response.headers or g.get("account") is None:
        return response
    try:
        origin = basemap.style_origin()
    except Exception:  # the database is down: the page keeps the default CSP (the map shows no basemap)
        log.warning("basemap setting unreadable for the CSP", exc_info=True)
        return response
    if origin:
        from ..web import CSP

        policy = CSP.replace("connect-src 'self'", f"connect-src 'self' {origin}").replace(
            "img-src 'self'", f"img-src 'self' {origin}"
        )
        response.headers["Content-Security-Policy"] = policy
    return response


@bp.app_template_global("basemap_style")
def basemap_style() -> dict:
    """For the pages that draw a map: ``data-basemap='{{ basemap_style()|tojson }}'`` (see static/js/wall.js)."""
    return basemap.client_style()
