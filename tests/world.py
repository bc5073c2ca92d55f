"""A small, fully known city for tests: 2 towns × 2 villages × 2 grids with square polygons.

Town t (0, 1) spans longitudes 120.0+0.1t .. 120.1+0.1t; village v splits it in latitude;
grid g splits the village in longitude. Every role has an account; all share tests' PASSWORD.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from commandcenter.accounts import create_account
from commandcenter.categories import install_default_categories
from commandcenter.db import db
from commandcenter.models import Account, Category, Center, Department, DepartmentPlace, Place
from commandcenter.security import hash_password

PASSWORD = "Test@2026pw"


def square(lon0: float, lat0: float, lon1: float, lat1: float) -> dict:
    return {"type": "Polygon", "coordinates": [[[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]]}


@dataclass
class World:
    city: Place
    towns: list[Place]
    villages: list[Place]  # [t0v0, t0v1, t1v0, t1v1]
    grids: list[Place]  # 8, in order t0v0g0, t0v0g1, t0v1g0, ...
    accounts: dict[str, Account] = field(default_factory=dict)
    departments: list[Department] = field(default_factory=list)
    centers: dict[str, Center] = field(default_factory=dict)

    def category(self, code: str) -> Category:
        return db.query(Category).filter_by(code=code).one()

    def grid_point(self, index: int) -> tuple[float, float]:
        """(lat, lon) of the middle of grid `index`."""
        return self.grids[index].center_lat, self.grids[index].center_lon


def build_world() -> World:
    city = Place(code="320500", name="测试市", level="city", population=400_000)
    db.add(city)
    db.flush()
    city.city_id = city.id
    towns, villages, grids = [], [], []
    for t in range(2):
        lon0 = 120.0 + 0.1 * t
        town = Place(
            code=f"320500{t + 1:03d}",
            name=f"{'东西'[t]}湖街道",
            level="town",
            kind="street",
            parent_id=city.id,
            city_id=city.id,
            population=200_000,
            geometry=square(lon0, 31.0, lon0 + 0.1, 31.1),
            center_lat=31.05,
            center_lon=lon0 + 0.05,
        )
        db.add(town)
        db.flush()
        town.town_id = town.id
        towns.append(town)
        for v in range(2):
            lat0 = 31.0 + 0.05 * v
            village = Place(
                code=f"{town.code}{v + 1:03d}",
                name=f"{town.name[:2]}{'南北'[v]}社区",
                level="village",
                kind="community" if v == 0 else "village",
                parent_id=town.id,
                city_id=city.id,
                town_id=town.id,
                population=100_000,
                geometry=square(lon0, lat0, lon0 + 0.1, lat0 + 0.05),
                center_lat=lat0 + 0.025,
                center_lon=lon0 + 0.05,
            )
            db.add(village)
            db.flush()
            village.village_id = village.id
            villages.append(village)
            for g in range(2):
                glon0 = lon0 + 0.05 * g
                grid = Place(
                    code=f"{village.code}{g + 1:03d}",
                    name=f"{village.name}第{g + 1}网格",
                    level="grid",
                    kind="comprehensive",
                    parent_id=village.id,
                    city_id=city.id,
                    town_id=town.id,
                    village_id=village.id,
                    population=50_000,
                    geometry=square(glon0, lat0, glon0 + 0.05, lat0 + 0.05),
                    center_lat=lat0 + 0.025,
                    center_lon=glon0 + 0.025,
                )
                db.add(grid)
                grids.append(grid)
    db.flush()
    world = World(city=city, towns=towns, villages=villages, grids=grids)
    world.centers["city"] = Center(place_id=city.id, name="市网格化服务管理中心", level="city")
    for i, town in enumerate(towns):
        world.centers[f"town{i}"] = Center(place_id=town.id, name=f"{town.name}综治中心", level="town")
    for i, village in enumerate(villages):
        world.centers[f"village{i}"] = Center(place_id=village.id, name=f"{village.name}综治中心", level="village")
    db.add_all(world.centers.values())
    world.departments = [
        Department(code="D01", name="城管局", place_id=city.id),
        Department(code="D02", name="东湖派出所", place_id=towns[0].id),
    ]
    db.add_all(world.departments)
    db.flush()
    # the places each serves (dispatch offers a department only there): its home, as migration 0007 copied it
    db.add_all(DepartmentPlace(department_id=d.id, place_id=d.place_id) for d in world.departments)
    install_default_categories()
    h = hash_password(PASSWORD)

    def add(username: str, role: str, place: Place, **extra) -> None:
        world.accounts[username] = create_account(
            username=username, display_name=username, password="", role=role, place=place, password_hash=h, **extra
        )

    for role in ("admin", "security_admin", "auditor", "duty_officer", "operator", "supervisor", "leader"):
        add(f"city_{role}", role, city)
    add("city_center", "center_admin", city, center_id=world.centers["city"].id)
    for i, town in enumerate(towns):
        add(f"town{i}_admin", "center_admin", town, center_id=world.centers[f"town{i}"].id)
        add(f"town{i}_supervisor", "supervisor", town)
        add(f"town{i}_duty", "duty_officer", town)
        add(f"town{i}_operator", "operator", town)
    for i, village in enumerate(villages):
        add(f"village{i}_admin", "center_admin", village, center_id=world.centers[f"village{i}"].id)
    for i, grid in enumerate(grids):
        add(f"gw{i}", "gridworker", grid, post="full_time", phone=f"1380000{i:04d}")
    add("volunteer0", "volunteer", grids[0])
    add("dept0", "department", city, department_id=world.departments[0].id)
    add("dept1", "department", towns[0], department_id=world.departments[1].id)
    db.commit()
    return world


class WorldView:
    """The test world by index and name, each object loaded into the current session on use."""

    def __init__(self, world: World):
        self.world = world

    def a(self, username: str) -> Account:
        return db.get(Account, self.world.accounts[username].id)

    def id(self, username: str) -> int:
        return self.world.accounts[username].id

    def cat(self, code: str) -> Category:
        return db.query(Category).filter_by(code=code).one()

    def point(self, grid: int = 0) -> tuple[float, float]:
        g = self.world.grids[grid]
        return g.center_lat, g.center_lon

    @property
    def city(self) -> int:
        return self.world.city.id

    def grid(self, i: int) -> int:
        return self.world.grids[i].id

    def village(self, i: int) -> int:
        return self.world.villages[i].id

    def town(self, i: int) -> int:
        return self.world.towns[i].id

    def dept(self, i: int) -> int:
        return self.world.departments[i].id

    def center(self, name: str) -> int:
        return self.world.centers[name].id
