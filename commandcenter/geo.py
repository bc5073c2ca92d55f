"""Geometry: which grid a point lies in, distances, and SVG frames to draw places without tiles. Coordinates are
WGS-84 (lon, lat)."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from shapely import STRtree
from shapely.geometry import Point, shape

from .db import db
from .models import Place

EARTH_RADIUS_M = 6_371_008.8


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (haversine) distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


def degrees_box(lat: float, radius_m: float) -> tuple[float, float]:
    """Half-sizes in degrees (lat, lon) of a box that contains a circle of radius_m: an index prefilter."""
    dlat = radius_m / 111_320.0
    dlon = radius_m / (111_320.0 * max(0.01, math.cos(math.radians(lat))))
    return dlat, dlon


# --- drawing places without tiles: an equirectangular SVG frame ------------------------------------------


def rings_of(geometry: dict | None) -> list[list[tuple[float, float]]]:
    """The rings of a GeoJSON Polygon or MultiPolygon as (lon, lat) lists; [] for anything else."""
    if not geometry:
        return []
    if geometry.get("type") == "Polygon":
        polygons = [geometry.get("coordinates") or []]
    elif geometry.get("type") == "MultiPolygon":
        polygons = geometry.get("coordinates") or []
    else:
        return []
    rings = [[(float(p[0]), float(p[1])) for p in ring if len(p) >= 2] for polygon in polygons for ring in polygon]
    return [ring for ring in rings if len(ring) >= 3]


@dataclass
class Frame:
    """lon/lat ↔ SVG x/y for a drawing of `width` × `height` (the page inverts it for a tap)."""

    width: int
    height: int
    lon0: float
    lat1: float
    kx: float
    scale: float
    off_x: float
    off_y: float

    def xy(self, lon: float, lat: float) -> tuple[float, float]:
        return (
            round(self.off_x + (lon - self.lon0) * self.kx * self.scale, 1),
            round(self.off_y + (self.lat1 - lat) * self.scale, 1),
        )

    def path(self, rings: list[list[tuple[float, float]]]) -> str:
        return " ".join("M" + " L".join("{},{}".format(*self.xy(*p)) for p in ring) + " Z" for ring in rings)

    def out(self) -> dict:
        return {k: getattr(self, k) for k in ("width", "height", "lon0", "lat1", "kx", "scale", "off_x", "off_y")}


def frame_for(points: list[tuple[float, float]], width: int = 640, height: int = 420, pad: int = 16) -> Frame | None:
    """A frame that holds every (lon, lat) point, or None when there is none."""
    if not points:
        return None
    lon0, lon1 = min(p[0] for p in points), max(p[0] for p in points)
    lat0, lat1 = min(p[1] for p in points), max(p[1] for p in points)
    kx = math.cos(math.radians((lat0 + lat1) / 2))
    span_x, span_y = max((lon1 - lon0) * kx, 1e-6), max(lat1 - lat0, 1e-6)
    scale = min((width - 2 * pad) / span_x, (height - 2 * pad) / span_y)
    return Frame(width, height, lon0, lat1, kx, scale, (width - span_x * scale) / 2, (height - span_y * scale) / 2)


class GridIndex:
    """An STRtree of grid polygons, built on first use and rebuilt when the grid count changes.

    Whether the grids changed is asked of the database at most every FRESH_S seconds (a query per report
    cost about 1 ms of CPU): a grid added by an import in another process is used within that time."""

    FRESH_S = 1.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._checked_at = float("-inf")
        self._key: tuple | None = None
        self._tree: STRtree | None = None
        self._ids: list[int] = []
        self._shapes: list = []

    def _load(self) -> None:
        from sqlalchemy import func

        url = db.get_bind().url.render_as_string(hide_password=True)
        now = time.monotonic()
        if self._key is not None and self._key[0] == url and now - self._checked_at < self.FRESH_S:
            return
        active_grids = (Place.level == "grid", Place.active.is_(True))
        count, top = db.query(func.count(Place.id), func.max(Place.id)).filter(*active_grids).one()
        from .place_admin import revision  # bumped with every boundary change (place_admin)

        key = (url, count, top, revision())
        self._checked_at = now
        if key == self._key:
            return
        rows = db.query(Place.id, Place.geometry).filter(*active_grids).all()
        ids, shapes = [], []
        for row in rows:
            if row.geometry:
                ids.append(row.id)
                shapes.append(shape(row.geometry))
        self._ids, self._shapes = ids, shapes
        self._tree = STRtree(shapes) if shapes else None
        self._key = key

    def locate(self, lat: float, lon: float) -> int | None:
        with self._lock:
            self._load()
            if self._tree is None:
                return None
            point = Point(lon, lat)
            for index in self._tree.query(point, predicate="intersects"):
                return self._ids[int(index)]
        return None

    def reset(self) -> None:
        with self._lock:
            self._key, self._checked_at = None, float("-inf")


grid_index = GridIndex()


def locate_grid(lat: float, lon: float) -> Place | None:
    """The grid at this point, without its boundary (read on first use): every report runs this, and a real
    grid's polygon is the largest part of its row."""
    from . import refcache

    grid_id = grid_index.locate(lat, lon)
    return refcache.place(grid_id) if grid_id else None
