"""The grid polygons of a viewer's place as GeoJSON for the wall's map: simplified, rounded, with an ETag,
kept in memory per place until the set of grids or the places revision changes, or GEO_TTL_S passes."""

from __future__ import annotations

import hashlib
import json
import threading
import time

from shapely.geometry import mapping, shape
from sqlalchemy import func, select

from ..db import db, get_engine
from ..models import Place
from .queries import Scope

GEO_TOLERANCE_DEG = 0.00002  # ~2 m: invisible on a wall, and it drops the collinear vertices of the boundaries
GEO_DECIMALS = 5  # ~1 m
GEO_TTL_S = 600
_geo_cache: dict[tuple, tuple[float, tuple, bytes, str]] = {}
_geo_lock = threading.Lock()


def _rounded(coords, n: int):
    if isinstance(coords, (float, int)):
        return round(coords, n)
    return [_rounded(c, n) for c in coords]


def grid_geojson(scope: Scope) -> tuple[bytes, str]:
    """(body, ETag) of a FeatureCollection of the scope's grids (feature id = grid id as a string,
    properties: name, kind), with a bbox. Kept in memory per place for GEO_TTL_S or until the set of
    grids changes."""
    from ..place_admin import revision  # bumped with every change of a place (name, kind, boundary, active)

    fingerprint = (*db.execute(scope.grids(select(func.count(Place.id), func.max(Place.id)))).one(), revision())
    key = (get_engine().url.render_as_string(hide_password=True), scope.place_id)
    with _geo_lock:
        hit = _geo_cache.get(key)
        if hit and hit[1] == fingerprint and hit[0] > time.monotonic():
            return hit[2], hit[3]
    features, bounds = [], None
    for pid, name, kind, geometry in db.execute(
        scope.grids(select(Place.id, Place.name, Place.kind, Place.geometry)).order_by(Place.id)
    ):
        if not geometry:
            continue
        geom = shape(geometry)
        simple = geom.simplify(GEO_TOLERANCE_DEG, preserve_topology=True)
        if not simple.is_empty:
            geom = simple
        b = geom.bounds
        bounds = (
            b
            if bounds is None
            else (min(bounds[0], b[0]), min(bounds[1], b[1]), max(bounds[2], b[2]), max(bounds[3], b[3]))
        )
        gj = mapping(geom)
        features.append(
            {
                "type": "Feature",
                "id": str(pid),
                "properties": {"name": name, "kind": kind},
                "geometry": {"type": gj["type"], "coordinates": _rounded(gj["coordinates"], GEO_DECIMALS)},
            }
        )
    collection = {"type": "FeatureCollection", "features": features}
    if bounds is not None:
        collection["bbox"] = [round(x, GEO_DECIMALS) for x in bounds]
    body = json.dumps(collection, ensure_ascii=False, separators=(",", ":")).encode()
    etag = hashlib.sha256(body).hexdigest()[:20]
    with _geo_lock:
        if len(_geo_cache) > 256:  # one entry per place viewed; never unbounded
            _geo_cache.clear()
        _geo_cache[key] = (time.monotonic() + GEO_TTL_S, fingerprint, body, etag)
    return body, etag
