"""Base data and the standard address list through `flask import` (issue 12 §4): the 人房关联率 and its flag
for impossible values come from imported rows; a second run updates instead of adding; bad rows name their
line and column."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

from sqlalchemy import func, select

from commandcenter.db import db
from commandcenter.importer import import_file
from commandcenter.measures import Period
from commandcenter.models import BaseDataCount, Place, StandardAddress
from commandcenter.stats import figures
from tests.test_import import MONTH, TZ, rows_of, write_csv

NOVEMBER = Period(date(2026, 11, 1), date(2026, 11, 30), "month")


def places_imported() -> None:
    assert import_file("places", MONTH / "places.csv", tz=TZ).imported


def place(code: str) -> Place:
    return db.execute(select(Place).where(Place.code == code)).scalar_one()


def test_linkage_rate_and_registered_population_come_from_the_imported_rows(ctx):
    places_imported()
    result = import_file("base_data", MONTH / "base_data.csv", tz=TZ)
    assert result.imported and result.new == 4 and not result.errors, result.summary()
    rows = rows_of("base_data")
    village = place(rows[0]["place_code"])
    fig = figures(village, NOVEMBER)
    assert fig.registered_population == int(rows[0]["registered_population"])
    assert fig.linked_persons == int(rows[0]["linked_persons"])
    assert round(fig.linkage_rate, 4) == round(
        int(rows[0]["linked_persons"]) / int(rows[0]["registered_population"]), 4
    )
    town = place("330100001")  # its two villages are the first two rows
    town_fig = figures(town, NOVEMBER)
    assert town_fig.registered_population == sum(int(r["registered_population"]) for r in rows[:2])
    assert not any(f.field == "linkage_rate" for f in town_fig.flags)

    # the same file again changes nothing; a corrected figure updates its row in place
    again = import_file("base_data", MONTH / "base_data.csv", tz=TZ)
    assert (again.new, again.updated, again.existing) == (0, 0, 4)
    assert "没有新数据" in again.summary()


def test_a_corrected_row_is_updated_and_an_impossible_rate_is_flagged(ctx, tmp_path):
    places_imported()
    rows = rows_of("base_data")
    import_file("base_data", MONTH / "base_data.csv", tz=TZ)
    fixed = [dict(r) for r in rows]
    fixed[0]["linked_persons"] = str(int(fixed[0]["registered_population"]) + 150)  # more linked than registered
    result = import_file("base_data", write_csv(tmp_path / "base_data.csv", "base_data", fixed), tz=TZ)
    assert (result.new, result.updated, result.existing) == (0, 1, 3), result.summary()
    assert "更新 1" in result.summary()
    assert db.execute(select(func.count()).select_from(BaseDataCount)).scalar_one() == 4
    fig = figures(place(fixed[0]["place_code"]), NOVEMBER)
    assert fig.linkage_rate > 1
    flag = next(f for f in fig.flags if "人房关联率" in f.message)
    assert "超过 100%" in flag.message


def test_bad_base_data_rows_name_their_column(ctx, tmp_path):
    places_imported()
    bad = [
        {"place_code": "330100001001", "month": "2026/11", "registered_population": "10", "linked_persons": "5"},
        {"place_code": "330100001", "month": "2026-11", "registered_population": "10", "linked_persons": "5"},
        {"place_code": "999999", "month": "2026-11", "registered_population": "10", "linked_persons": "5"},
        {"place_code": "330100001001", "month": "2026-11", "registered_population": "-3", "linked_persons": "5"},
        {"place_code": "330100001002", "month": "2026-11", "registered_population": "10", "linked_persons": ""},
        {"place_code": "330100002001", "month": "2026-13", "registered_population": "10", "linked_persons": "5"},
    ]
    result = import_file("base_data", write_csv(tmp_path / "base_data.csv", "base_data", bad), tz=TZ)
    assert not result.imported
    where = {(e.line, e.column) for e in result.errors}
    assert {(2, "month"), (3, "place_code"), (4, "place_code"), (5, "registered_population")} <= where
    assert (6, "linked_persons") in where and (7, "month") in where
    texts = " ".join(e.message for e in result.errors)
    assert "YYYY-MM" in texts and "村社" in texts
    assert db.execute(select(func.count()).select_from(BaseDataCount)).scalar_one() == 0


def test_standard_addresses_are_placed_in_their_grid(ctx, tmp_path):
    places_imported()
    result = import_file("addresses", MONTH / "addresses.csv", tz=TZ)
    assert result.imported and result.new == 16, result.summary()
    rows = rows_of("addresses")
    by_code = {a.code: a for a in db.execute(select(StandardAddress)).scalars()}
    for r in rows:
        stored = by_code[r["code"]]
        grid = db.get(Place, stored.grid_id)
        assert grid.level == "grid"
        if r["grid_code"]:
            assert grid.code == r["grid_code"]
        # with or without the grid's code, the address lies in the grid it was given
        assert stored.village_id == grid.village_id and stored.town_id == grid.town_id
    # an address without grid_code was placed by its coordinates into the grid whose box holds it
    second = next(r for r in rows if not r["grid_code"])
    first_of_same_grid = next(r for r in rows if r["code"][:-4] == second["code"][:-4] and r["grid_code"])
    assert db.get(Place, by_code[second["code"]].grid_id).code == first_of_same_grid["grid_code"]

    renamed = [dict(r) for r in rows]
    renamed[0]["address"] = renamed[0]["address"] + "（更正）"
    again = import_file("addresses", write_csv(tmp_path / "addresses.csv", "addresses", renamed), tz=TZ)
    assert (again.new, again.updated, again.existing) == (0, 1, 15)
    assert db.execute(select(func.count()).select_from(StandardAddress)).scalar_one() == 16

    wrong = [
        {"code": "X1", "address": "某路 1 号", "grid_code": "330100001001001", "lat": "30.02", "lon": "121.17"},
        {"code": "X2", "address": "某路 2 号", "grid_code": "", "lat": "10.0", "lon": "100.0"},
        {"code": "X3", "address": "某路 3 号", "grid_code": "", "lat": "", "lon": ""},
        {"code": "X4", "address": "某路 4 号", "grid_code": "330100001001", "lat": "", "lon": ""},
    ]
    refused = import_file("addresses", write_csv(tmp_path / "wrong.csv", "addresses", wrong), tz=TZ)
    assert not refused.imported
    where = {(e.line, e.column) for e in refused.errors}
    assert {(2, "grid_code"), (3, "lat"), (4, "grid_code"), (5, "grid_code")} <= where, refused.errors


def test_flask_import_takes_the_new_kinds(app, tmp_path):
    with app.app_context():
        places_imported()
    out = app.test_cli_runner().invoke(args=["import", "base_data", str(MONTH / "base_data.csv"), "--no-progress"])
    assert out.exit_code == 0, out.output
    assert "新增 4" in out.output
    out = app.test_cli_runner().invoke(args=["import", "addresses", str(MONTH / "addresses.csv"), "--no-progress"])
    assert out.exit_code == 0, out.output
    assert "新增 16" in out.output


def test_the_month_fixture_has_the_files_of_every_kind():
    names = {p.name for p in Path(MONTH).glob("*.csv")}
    assert {"base_data.csv", "addresses.csv"} <= names
    with (MONTH / "base_data.csv").open(encoding="utf-8") as fh:
        assert next(csv.reader(fh))[:2] == ["place_code", "month"]
