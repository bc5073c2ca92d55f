"""The demo district's geography: towns, villages, grids and police beats, as plain data.

``build_geography(seed, scale)`` is a pure function: the same seed and scale give the same district.

How the map is drawn. Seeds are spread (k-means over random points) and cut with nested Voronoi
diagrams: the district boundary into towns, each town into villages, each village into grids.
Clipping each level separately and rounding to 6 decimals would leave slivers where neighbours
overlap by a few square metres, so the leaves are then snap-rounded *together*: the boundaries of
all grid cells are noded on a 1e-6° grid (one planar arrangement, ``union_all(..., grid_size)``)
and polygonized; every face goes to the grid whose cell holds it, and villages, towns and the
district are the exact unions of their children. Neighbours therefore share identical edges,
nothing overlaps and every grid lies inside its village.

Codes follow the published pattern: district (6, GB/T 2260-like) + street (3) + community (3) +
serial (3) for a grid. Streets are numbered 001…, towns 101…, townships 201…; communities 001…,
villages (村委) 201…; grids within their village from west to east, north to south.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry import MultiPoint, Point, Polygon, mapping

from . import names

DISTRICT_CODE = "320508"
DISTRICT_NAME = "示范区"
CITY_CENTRE = (120.62, 31.30)  # lon, lat (Suzhou)
FULL_TOWNS = 17
FULL_VILLAGES = 241
FULL_POPULATION = 680_000
GRIDS_PER_VILLAGE = (4, 5, 5, 6, 6, 6, 7)  # mean ≈ 5.57 → ~1,340 grids at full scale
DEDICATED_SHARE = 0.15
BEAT_SIZE = 4  # grids per police beat
BEAT_LINK_SHARE = 0.9
PRECISION = 1e-6


@dataclass
class Area:
    """One place of the hierarchy, before it has a database id."""

    index: int  # position in its level's list
    level: str  # city / town / village / grid
    code: str
    name: str
    kind: str | None
    polygon: Polygon
    town: int | None = None  # index into Geography.towns (a town's own index for a town)
    village: int | None = None  # index into Geography.villages
    population: int = 0
    households: int = 0
    subject: str | None = None  # dedicated grid: the school / park / site / enterprise
    subject_kind: str | None = None
    beat: int | None = None  # index into Geography.beats (grids only)
    roads: list[str] = field(default_factory=list)  # street names used in addresses
    compounds: list[str] = field(default_factory=list)  # residential compounds

    @property
    def short(self) -> str:
        """The name without its 街道/镇/社区/村 suffix (for 派出所, 党委 ...)."""
        for suffix in ("街道", "镇", "乡", "社区", "村"):
            if self.name.endswith(suffix):
                return self.name[: -len(suffix)]
        return self.name

    @property
    def center(self) -> tuple[float, float]:
        """(lat, lon) of the centroid, rounded to 6 decimals."""
        c = self.polygon.centroid
        return round(c.y, 6), round(c.x, 6)

    def geojson(self) -> dict:
        """GeoJSON Polygon, WGS-84 [lon, lat], 6 decimals."""
        geo = mapping(self.polygon)
        return {
            "type": "Polygon",
            "coordinates": [[[round(x, 6), round(y, 6)] for x, y, *_ in ring] for ring in geo["coordinates"]],
        }


@dataclass
class Beat:
    """警格: a police beat of one town, linked to about four grids."""

    index: int
    code: str
    name: str
    town: int
    grids: list[int] = field(default_factory=list)


@dataclass
class Geography:
    seed: int
    scale: float
    district: Area
    towns: list[Area]
    villages: list[Area]
    grids: list[Area]
    beats: list[Beat]

    def villages_of(self, town: int) -> list[Area]:
        return [v for v in self.villages if v.town == town]

    def grids_of(self, village: int) -> list[Area]:
        return [g for g in self.grids if g.village == village]

    @property
    def district_code(self) -> str:
        return self.district.code


# --- geometry helpers ---------------------------------------------------------------------------


def _round_geom(geom):
    return shapely.transform(geom, lambda c: np.round(c, 6))


def _random_points(poly: Polygon, n: int, nrng: np.random.Generator) -> np.ndarray:
    """n uniform random points inside a polygon (rejection sampling from its bounds)."""
    minx, miny, maxx, maxy = poly.bounds
    out: list[np.ndarray] = []
    have = 0
    shapely.prepare(poly)
    while have < n:
        k = max(64, int((n - have) * 2.5))
        xs = nrng.uniform(minx, maxx, k)
        ys = nrng.uniform(miny, maxy, k)
        inside = shapely.contains_xy(poly, xs, ys)
        pts = np.column_stack([xs[inside], ys[inside]])
        out.append(pts)
        have += len(pts)
    return np.vstack(out)[:n]


def _spread_seeds(poly: Polygon, k: int, nrng: np.random.Generator, iters: int = 6) -> np.ndarray:
    """k well-spread seeds inside poly: a few k-means rounds over random points, plus jitter."""
    samples = _random_points(poly, max(200, k * 80), nrng)
    seeds = samples[nrng.choice(len(samples), k, replace=False)]
    for _ in range(iters):
        d = ((samples[:, None, :] - seeds[None, :, :]) ** 2).sum(axis=2)
        owner = d.argmin(axis=1)
        for j in range(k):
            mine = samples[owner == j]
            if len(mine):
                seeds[j] = mine.mean(axis=0)
    # a little irregularity: real boundaries are not a honeycomb
    minx, miny, maxx, maxy = poly.bounds
    step = math.sqrt((maxx - minx) * (maxy - miny) / max(k, 1)) * 0.12
    seeds = seeds + nrng.normal(0, step, seeds.shape)
    return seeds


def _voronoi_cells(poly: Polygon, seeds: np.ndarray) -> list[Polygon]:
    """Voronoi cells of the seeds clipped to poly, in seed order (float precision)."""
    if len(seeds) == 1:
        return [poly]
    cells = shapely.voronoi_polygons(MultiPoint(seeds), extend_to=poly, ordered=True)
    out = []
    for cell in cells.geoms:
        clipped = cell.intersection(poly)
        if clipped.geom_type != "Polygon":  # a convex parent gives convex cells; keep the largest part
            parts = [g for g in getattr(clipped, "geoms", []) if g.geom_type == "Polygon"]
            clipped = max(parts, key=lambda g: g.area) if parts else Polygon()
        out.append(clipped)
    return out


def _district_boundary(rng: random.Random, nrng: np.random.Generator, size_factor: float) -> Polygon:
    """A rough convex polygon of about 20 × 16 km (times size_factor) around the city centre."""
    lon0, lat0 = CITY_CENTRE
    half_w_km, half_h_km = 10.0 * size_factor, 8.0 * size_factor
    dlon = half_w_km / (111.32 * math.cos(math.radians(lat0)))
    dlat = half_h_km / 110.57
    pts = []
    n = 18
    for i in range(n):
        a = 2 * math.pi * i / n + rng.uniform(-0.12, 0.12)
        r = rng.uniform(0.88, 1.12)
        # a superellipse-ish outline so the district is not a perfect oval
        c, s = math.cos(a), math.sin(a)
        ex = math.copysign(abs(c) ** 0.7, c)
        ey = math.copysign(abs(s) ** 0.7, s)
        pts.append((lon0 + dlon * r * ex, lat0 + dlat * r * ey))
    hull = MultiPoint(pts).convex_hull
    return _round_geom(hull)


def _reading_order(items: list, centres: list[tuple[float, float]]) -> list:
    """Sort west→east within rows, rows north→south. centres are (lat, lon)."""
    if not items:
        return []
    lats = [c[0] for c in centres]
    n = len(items)
    rows = max(1, round(math.sqrt(n)))
    top, bottom = max(lats), min(lats)
    band = (top - bottom) / rows or 1.0
    keyed = []
    for item, (lat, lon) in zip(items, centres, strict=False):
        row = min(rows - 1, int((top - lat) / band))
        keyed.append(((row, lon), item))
    keyed.sort(key=lambda kv: kv[0])
    return [item for _, item in keyed]


def _split(total: int, weights: list[float]) -> list[int]:
    """Split an integer total in proportion to weights (largest remainder)."""
    s = sum(weights)
    raw = [total * w / s for w in weights]
    out = [int(r) for r in raw]
    rest = total - sum(out)
    order = sorted(range(len(raw)), key=lambda i: raw[i] - out[i], reverse=True)
    for i in order[:rest]:
        out[i] += 1
    return out


def _snap_leaves(cells: list[Polygon]) -> list[Polygon]:
    """Snap-round a partition of float cells onto the 1e-6° grid so that neighbours share exact edges.

    Returns one Polygon per input cell (the faces of the noded arrangement whose interior point lies
    in the cell); a cell that ends up in several pieces keeps its largest and gives the others to
    the neighbour it shares the longest edge with.
    """
    linework = shapely.union_all([c.boundary for c in cells], grid_size=PRECISION)
    faces = list(shapely.polygonize(list(getattr(linework, "geoms", [linework]))).geoms)
    faces = [_round_geom(f) for f in faces if f.area > 0]
    tree = shapely.STRtree(cells)
    points = [f.representative_point() for f in faces]
    owner = [-1] * len(faces)
    for fi, pt in enumerate(points):
        hits = tree.query(pt, predicate="intersects")
        if len(hits):
            owner[fi] = int(min(hits))
        else:
            owner[fi] = int(tree.nearest(pt))
    pieces: list[list[Polygon]] = [[] for _ in cells]
    for fi, o in enumerate(owner):
        pieces[o].append(faces[fi])
    result: list[Polygon | None] = [None] * len(cells)
    strays: list[tuple[int, Polygon]] = []
    for ci, parts in enumerate(pieces):
        if not parts:
            result[ci] = Polygon()
            continue
        geom = parts[0] if len(parts) == 1 else _round_geom(shapely.union_all(parts, grid_size=PRECISION))
        if geom.geom_type == "MultiPolygon":
            polys = sorted(geom.geoms, key=lambda g: g.area, reverse=True)
            geom = polys[0]
            strays.extend((ci, p) for p in polys[1:])
        result[ci] = geom
    for ci, piece in strays:
        best, best_len = ci, 0.0
        for cj in tree.query(piece, predicate="intersects"):
            cj = int(cj)
            if cj == ci or result[cj] is None or result[cj].is_empty:
                continue
            shared = piece.boundary.intersection(result[cj].boundary).length
            if shared > best_len:
                best, best_len = cj, shared
        if best != ci:
            merged = _round_geom(shapely.union_all([result[best], piece], grid_size=PRECISION))
            if merged.geom_type == "Polygon":
                result[best] = merged
    return result  # type: ignore[return-value]


def _union(polys: list[Polygon]) -> Polygon:
    geom = _round_geom(shapely.union_all(polys, grid_size=PRECISION))
    if geom.geom_type == "MultiPolygon":  # cannot happen with convex parents; be safe anyway
        geom = max(geom.geoms, key=lambda g: g.area)
    return geom


# --- the district ---------------------------------------------------------------------------------


def build_geography(seed: int, scale: float = 1.0) -> Geography:
    """Draw the demo district. scale 1.0 is the real size: 17 towns, ~241 villages, ~1,340 grids."""
    if scale <= 0:
        raise ValueError("scale must be positive")
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)

    n_towns = max(2, round(FULL_TOWNS * scale))
    n_villages = max(2 * n_towns, round(FULL_VILLAGES * scale))
    size_factor = math.sqrt(n_villages / FULL_VILLAGES)
    population = max(1000, round(FULL_POPULATION * scale))

    boundary = _district_boundary(rng, nrng, size_factor)

    # towns ------------------------------------------------------------------------------------
    town_seeds = _spread_seeds(boundary, n_towns, nrng)
    town_cells = _voronoi_cells(boundary, town_seeds)
    centre = boundary.centroid
    dist = [c.centroid.distance(centre) for c in town_cells]
    order_by_dist = sorted(range(n_towns), key=lambda i: dist[i])
    n_streets = max(1, round(n_towns * 8 / 17))
    n_townships = 1 if n_towns >= 5 else 0
    town_kind = {}
    for rank, ti in enumerate(order_by_dist):
        if rank < n_streets:
            town_kind[ti] = "street"
        elif rank >= n_towns - n_townships:
            town_kind[ti] = "township"
        else:
            town_kind[ti] = "town"
    # villages per town: urban streets are smaller but denser; weights with some noise
    town_weights = [rng.lognormvariate(0, 0.3) * (1.0 if town_kind[i] == "street" else 1.1) for i in range(n_towns)]
    villages_per_town = _split(n_villages, town_weights)
    for i in range(n_towns):
        while villages_per_town[i] < 2:
            j = max(range(n_towns), key=lambda k: villages_per_town[k])
            villages_per_town[j] -= 1
            villages_per_town[i] += 1

    # villages and grids (float cells) -------------------------------------------------------------
    village_cells: list[Polygon] = []
    village_town: list[int] = []
    grid_cells: list[Polygon] = []
    grid_village: list[int] = []
    for ti, tcell in enumerate(town_cells):
        vseeds = _spread_seeds(tcell, villages_per_town[ti], nrng)
        for vcell in _voronoi_cells(tcell, vseeds):
            vi = len(village_cells)
            village_cells.append(vcell)
            village_town.append(ti)
            k = rng.choice(GRIDS_PER_VILLAGE)
            gseeds = _spread_seeds(vcell, k, nrng)
            for gcell in _voronoi_cells(vcell, gseeds):
                grid_cells.append(gcell)
                grid_village.append(vi)

    # one exact planar partition; parents are unions of their children ------------------------------
    grid_polys = _snap_leaves(grid_cells)
    keep = [i for i, p in enumerate(grid_polys) if not p.is_empty and p.area > 0]
    grid_polys = [grid_polys[i] for i in keep]
    grid_village = [grid_village[i] for i in keep]
    village_polys = [
        _union([g for g, v in zip(grid_polys, grid_village, strict=False) if v == vi])
        for vi in range(len(village_cells))
    ]
    town_polys = [
        _union([v for v, t in zip(village_polys, village_town, strict=False) if t == ti]) for ti in range(n_towns)
    ]
    district_poly = _union(town_polys)

    district = Area(
        index=0,
        level="city",
        code=DISTRICT_CODE,
        name=DISTRICT_NAME,
        kind=None,
        polygon=district_poly,
        population=population,
    )

    # towns: codes by kind, each range in reading order -------------------------------------------------
    used_names: set[str] = set()
    town_centres = [(p.centroid.y, p.centroid.x) for p in town_polys]
    town_order = _reading_order(list(range(n_towns)), town_centres)
    counters = {"street": 0, "town": 100, "township": 200}
    town_areas: dict[int, Area] = {}
    for ti in town_order:
        kind = town_kind[ti]
        counters[kind] += 1
        root = names.unique(rng, names.town_root, used_names)
        suffix = {"street": "街道", "town": "镇", "township": "乡"}[kind]
        town_areas[ti] = Area(
            index=-1,
            level="town",
            code=f"{DISTRICT_CODE}{counters[kind]:03d}",
            name=root + suffix,
            kind=kind,
            polygon=town_polys[ti],
        )
    towns = sorted(town_areas.values(), key=lambda a: a.code)
    old_to_new_town = {}
    for new, area in enumerate(towns):
        area.index = new
        area.town = new
        for old, a in town_areas.items():
            if a is area:
                old_to_new_town[old] = new

    # town populations (census figures): streets denser
    tw = [rng.lognormvariate(0, 0.35) * (1.6 if t.kind == "street" else 1.0) * t.polygon.area**0.3 for t in towns]
    for t, pop in zip(towns, _split(population, tw), strict=False):
        t.population = pop
        t.households = round(pop / rng.uniform(2.5, 2.8))

    # villages -------------------------------------------------------------------------------------------
    community_share = {"street": 0.88, "town": 0.32, "township": 0.12}
    villages: list[Area] = []
    village_new_index: dict[int, int] = {}
    for t in towns:
        old_ti = next(o for o, n in old_to_new_town.items() if n == t.index)
        mine = [vi for vi in range(len(village_cells)) if village_town[vi] == old_ti]
        centres = [(village_polys[vi].centroid.y, village_polys[vi].centroid.x) for vi in mine]
        ordered = _reading_order(mine, centres)
        kinds = {vi: ("community" if rng.random() < community_share[t.kind] else "village") for vi in ordered}
        if len(ordered) >= 2 and len(set(kinds.values())) == 1 and t.kind != "street":
            kinds[ordered[0]] = "community"  # every town has its seat community
        n_comm, n_vill = 0, 200
        for vi in ordered:
            kind = kinds[vi]
            if kind == "community":
                n_comm += 1
                num = n_comm
                name = names.unique(rng, names.community_root, used_names) + "社区"
            else:
                n_vill += 1
                num = n_vill
                name = names.unique(rng, names.village_root, used_names) + "村"
            area = Area(
                index=len(villages),
                level="village",
                code=f"{t.code}{num:03d}",
                name=name,
                kind=kind,
                polygon=village_polys[vi],
                town=t.index,
            )
            area.village = area.index
            area.roads = list(dict.fromkeys(names.road(rng) for _ in range(4)))
            area.compounds = (
                [names.compound(rng) for _ in range(3)]
                if kind == "community"
                else [f"{names.VILLAGE_GROUP[i]}组" for i in range(rng.randint(3, 8))]
            )
            village_new_index[vi] = area.index
            villages.append(area)
        vw = [
            rng.lognormvariate(0, 0.35) * (1.5 if villages[village_new_index[vi]].kind == "community" else 1.0)
            for vi in ordered
        ]
        for vi, pop in zip(ordered, _split(t.population, vw), strict=False):
            v = villages[village_new_index[vi]]
            v.population = pop
            v.households = round(pop / rng.uniform(2.4, 2.9))

    # grids ----------------------------------------------------------------------------------------------
    grids: list[Area] = []
    for v in villages:
        old_vi = next(o for o, n in village_new_index.items() if n == v.index)
        mine = [gi for gi in range(len(grid_polys)) if grid_village[gi] == old_vi]
        centres = [(grid_polys[gi].centroid.y, grid_polys[gi].centroid.x) for gi in mine]
        ordered = _reading_order(mine, centres)
        n_dedicated = sum(1 for _ in ordered if rng.random() < DEDICATED_SHARE)
        n_dedicated = min(n_dedicated, max(0, len(ordered) - 2))
        dedicated = set(rng.sample(ordered, n_dedicated)) if n_dedicated else set()
        comprehensive_no = 0
        weights = []
        start = len(grids)
        for serial, gi in enumerate(ordered, start=1):
            code = f"{v.code}{serial:03d}"
            if gi in dedicated:
                subject_kind, subject = names.dedicated_subject(rng, v.short)
                area = Area(
                    index=len(grids),
                    level="grid",
                    code=code,
                    name=f"{subject}专属网格",
                    kind="dedicated",
                    polygon=grid_polys[gi],
                    town=v.town,
                    village=v.index,
                    subject=subject,
                    subject_kind=subject_kind,
                )
                weights.append(0.04 if subject_kind in ("school", "park", "site") else 0.08)
            else:
                comprehensive_no += 1
                area = Area(
                    index=len(grids),
                    level="grid",
                    code=code,
                    name=f"{v.name}第{names.cn_number(comprehensive_no)}网格",
                    kind="comprehensive",
                    polygon=grid_polys[gi],
                    town=v.town,
                    village=v.index,
                )
                weights.append(rng.uniform(0.7, 1.3))
            area.roads = v.roads
            area.compounds = v.compounds
            grids.append(area)
        for g, pop in zip(grids[start:], _split(v.population, weights), strict=False):
            g.population = pop
            g.households = round(pop / rng.uniform(2.4, 2.9)) if pop else 0

    # police beats: one per ~4 grids of each town, ~90% of grids linked -----------------------------------
    beats: list[Beat] = []
    for t in towns:
        tg = [g for g in grids if g.town == t.index]
        n_beats = max(1, math.ceil(len(tg) / BEAT_SIZE))
        first = len(beats)
        for k in range(n_beats):
            beats.append(
                Beat(
                    index=len(beats),
                    code=f"{t.code}JG{k + 1:03d}",
                    name=f"{t.short}派出所第{names.cn_number(k + 1) if k < 99 else k + 1}警格",
                    town=t.index,
                )
            )
        # beats cover neighbouring grids four at a time; ~10% of grids are not linked to theirs yet
        for j, g in enumerate(tg):
            b = beats[first + j // BEAT_SIZE]
            if rng.random() < BEAT_LINK_SHARE or (j % BEAT_SIZE == BEAT_SIZE - 1 or j == len(tg) - 1) and not b.grids:
                g.beat = b.index
                b.grids.append(g.index)

    return Geography(
        seed=seed, scale=scale, district=district, towns=towns, villages=villages, grids=grids, beats=beats
    )


def point_in(poly: Polygon, rng: random.Random, inner: Polygon | None = None) -> tuple[float, float]:
    """A random (lon, lat) strictly inside poly, rounded to 6 decimals (representative point + jitter).

    ``inner`` is an optional shrunken copy of poly, so that rounding cannot push the point out.
    """
    target = inner if inner is not None and not inner.is_empty else poly
    minx, miny, maxx, maxy = target.bounds
    for _ in range(60):
        x, y = round(rng.uniform(minx, maxx), 6), round(rng.uniform(miny, maxy), 6)
        if target.contains(Point(x, y)):
            return x, y
    rp = target.representative_point()
    return round(rp.x, 6), round(rp.y, 6)
