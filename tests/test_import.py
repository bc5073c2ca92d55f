"""`flask import`: the CSV formats of docs/import.md, validation by file/line/column, --skip-bad-rows,
idempotency, the CLI, and the same import on SQLite (embedded mode)."""

from __future__ import annotations

import csv
import io
import json
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from commandcenter.categories import install_default_categories
from commandcenter.db import db
from commandcenter.importer import FORMATS, ORDER, import_dir, import_file
from commandcenter.importer.formats import markdown
from commandcenter.models import (
    Account,
    BaseDataCount,
    Case,
    CaseStep,
    Center,
    Dispute,
    LoginRecord,
    Patrol,
    Person,
    Place,
    SignIn,
    Site,
    StandardAddress,
    Visit,
)
from commandcenter.security import verify_password

FIXTURES = Path(__file__).parent / "fixtures" / "import"
MONTH = FIXTURES / "month"
TZ = "Asia/Shanghai"
TABLES = {
    "places": Place,
    "centers": Center,
    "accounts": Account,
    "base_data": BaseDataCount,
    "addresses": StandardAddress,
    "persons": Person,
    "sites": Site,
    "cases": Case,
    "history": CaseStep,
    "patrols": Patrol,
    "signins": SignIn,
    "visits": Visit,
    "logins": LoginRecord,
}


def rows_of(kind: str, directory: Path = MONTH) -> list[dict]:
    with (directory / FORMATS[kind].filename).open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def count(model) -> int:
    return db.execute(select(func.count()).select_from(model)).scalar_one()


def counts() -> dict[str, int]:
    return {kind: count(model) for kind, model in TABLES.items()}


def expected_counts() -> dict[str, int]:
    return {kind: len(rows_of(kind)) for kind in ORDER}


def write_csv(path: Path, kind: str, rows: list[dict], bom: bool = False) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(FORMATS[kind].names), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in FORMATS[kind].names})
    path.write_text(("\ufeff" if bom else "") + buf.getvalue(), encoding="utf-8")
    return path


def copy_month(tmp_path: Path, upto: str) -> Path:
    """The month's files up to and including `upto` (dependency order), in a fresh directory."""
    out = tmp_path / "month"
    out.mkdir()
    for kind in ORDER:
        shutil.copy(MONTH / FORMATS[kind].filename, out)
        if kind == upto:
            break
    return out


def test_fixture_month_is_what_make_month_writes(tmp_path):
    """The committed month is exactly the output of the committed generator (deterministic)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_month", FIXTURES / "make_month.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.build(tmp_path)
    for kind in ORDER:
        name = FORMATS[kind].filename
        assert (tmp_path / name).read_bytes() == (MONTH / name).read_bytes(), name
    cases = rows_of("cases")
    assert len(cases) == 200
    assert all(c["reported_at"].startswith("2026-11-") for c in cases)
    kinds = {c["category_code"][:2] for c in cases}
    assert {"10", "20"} <= kinds  # hazards and disputes
    assert any(c["escalated_to_city"] == "是" for c in cases) and any(c["overdue"] == "是" for c in cases)
    assert (
        sum(
            1
            for p in rows_of("patrols")
            if (datetime.fromisoformat(p["ended_at"]) - datetime.fromisoformat(p["started_at"])).seconds < 3600
        )
        == 4
    )
    assert {p["person_type"] for p in rows_of("persons")} >= {"drug_user", "mental_risk"}


@pytest.mark.parametrize("copy", [False, True], ids=["insert", "copy"])
def test_month_imports_every_kind_file_by_file(ctx, monkeypatch, copy):
    """Every kind, file by file; on PostgreSQL long files go through COPY (forced here for every file)."""
    from commandcenter.importer import loaders

    monkeypatch.setattr(loaders, "COPY_MIN_ROWS", 1 if copy else 10**9)
    install_default_categories()
    db.commit()
    for kind in ORDER:
        result = import_file(kind, MONTH / FORMATS[kind].filename, tz=TZ)
        assert result.errors == [], [str(e) for e in result.errors[:5]]
        assert result.imported and result.new == result.rows == len(rows_of(kind)), result.summary()
    assert counts() == expected_counts()
    assert count(Dispute) == sum(1 for c in rows_of("cases") if c["category_code"][:2] == "20")

    # the hierarchy: ancestors include the place itself, centers come from the boundaries
    grid = db.execute(select(Place).where(Place.code == "330100002001002")).scalar_one()
    village = db.get(Place, grid.parent_id)
    town = db.get(Place, village.parent_id)
    city = db.get(Place, town.parent_id)
    assert (town.town_id, town.city_id) == (town.id, city.id) and city.city_id == city.id
    assert (village.village_id, village.town_id) == (village.id, town.id)
    assert (grid.village_id, grid.town_id, grid.city_id) == (village.id, town.id, city.id)
    assert grid.center_lat == pytest.approx(30.025) and grid.center_lon == pytest.approx(121.175)
    assert grid.geometry["type"] == "Polygon"

    # accounts: no usable password, must change it, ancestors copied, center linked
    admin = db.execute(select(Account).where(Account.username == "t1_admin")).scalar_one()
    assert admin.must_change_password and admin.password_hash.startswith("$argon2")
    assert not verify_password(admin.password_hash, "")
    assert admin.center_id == db.execute(select(Center.id).where(Center.place_id == admin.place_id)).scalar_one()
    gw = db.execute(select(Account).where(Account.username == "gw01")).scalar_one()
    assert gw.post == "grid_chief" and gw.town_id == db.get(Place, gw.place_id).town_id

    # a case: local times stored as naive UTC, grid → village → town, history attached in order
    row = rows_of("cases")[0]
    case = db.execute(select(Case).where(Case.number == row["number"])).scalar_one()
    local = datetime.fromisoformat(row["reported_at"])
    assert (case.reported_at - local).total_seconds() == -8 * 3600
    assert case.grid.code == row["grid_code"] and case.town_id == case.grid.town_id
    assert case.kind == "ordinary" and case.reporter.username == row["reporter"]
    assert case.reporter_center_id is not None  # reported by the town center
    steps = [s.action for s in sorted(case.steps, key=lambda s: s.at)]
    assert steps[0] == "report" and steps[-1] == "close" and case.state == "closed"

    # visits point at persons/sites and carry their town; patrols and logins keep the file's id
    visit = db.execute(select(Visit).where(Visit.client_key == "import:V000001")).scalar_one()
    assert visit.town_id is not None and (visit.person_id or visit.site_id)
    assert db.execute(select(LoginRecord.account_id).where(LoginRecord.username == "nobody")).scalar_one() is None
    assert db.execute(select(func.count()).where(Patrol.client_key.like("import:PT%"))).scalar_one() == 250
    patrol = db.execute(select(Patrol).where(Patrol.client_key == "import:PT000001")).scalar_one()
    assert patrol.track == json.loads(rows_of("patrols")[0]["track"])
    assert (patrol.ended_at - patrol.started_at).total_seconds() > 3600
    person = db.execute(select(Person).where(Person.code == "P00001")).scalar_one()
    assert person.active is True and person.visit_frequency == "monthly" and person.id_number
    outstanding = db.execute(select(Case).where(Case.outstanding.is_(True))).scalars().all()
    assert outstanding and all(c.outstanding_story for c in outstanding)


def test_second_run_changes_nothing_and_says_so(ctx):
    install_default_categories()
    db.commit()
    first = import_dir(MONTH, tz=TZ)
    assert [r.kind for r in first] == list(ORDER) and all(r.imported for r in first)
    before = counts()
    again = import_dir(MONTH, tz=TZ)
    assert all(r.imported and r.new == 0 and r.existing == r.rows for r in again), [r.summary() for r in again]
    assert "没有新数据" in again[5].summary()
    assert counts() == before == expected_counts()


def test_errors_name_file_line_and_column_and_nothing_is_imported(ctx, tmp_path):
    install_default_categories()
    db.commit()
    directory = copy_month(tmp_path, "accounts")
    assert all(r.imported for r in import_dir(directory, tz=TZ))
    good = rows_of("cases")[:5]
    bad = [dict(r) for r in good]
    bad[1]["reported_at"] = "3/11/2026"  # line 3
    bad[2]["state"] = "done"  # line 4
    bad[2]["lat"] = "95"
    bad[3]["closed_at"] = "2026-10-01 08:00:00"  # line 5: before reported_at
    bad[4]["grid_code"] = "999"  # line 6
    path = write_csv(tmp_path / "cases.csv", "cases", bad)
    result = import_file("cases", path, tz=TZ)
    assert not result.imported and result.new == 0 and result.bad == 4
    where = {(e.file, e.line, e.column) for e in result.errors}
    assert where == {
        ("cases.csv", 3, "reported_at"),
        ("cases.csv", 4, "state"),
        ("cases.csv", 4, "lat"),
        ("cases.csv", 5, "closed_at"),
        ("cases.csv", 6, "grid_code"),
    }
    text = "\n".join(str(e) for e in result.errors)
    assert "cases.csv 第 3 行，列 reported_at：日期时间格式应为 YYYY-MM-DD HH:MM[:SS]" in text
    assert "纬度 95 超出" in text and "“999”不存在" in text and "不能早于上报时间" in text
    assert count(Case) == 0 and count(Dispute) == 0


def test_skip_bad_rows_imports_the_good_ones_and_reports_the_rest(ctx, tmp_path):
    install_default_categories()
    db.commit()
    assert all(r.imported for r in import_dir(copy_month(tmp_path, "accounts"), tz=TZ))
    rows = [dict(r) for r in rows_of("cases")[:10]]
    rows[4]["category_code"] = "7777"
    rows[7]["state"] = "closed"
    rows[7]["closed_at"] = ""
    path = write_csv(tmp_path / "cases.csv", "cases", rows)
    result = import_file("cases", path, tz=TZ, skip_bad_rows=True)
    assert result.imported and result.new == 8 and result.bad == 2
    assert [(e.line, e.column) for e in result.errors] == [(6, "category_code"), (9, "closed_at")]
    assert count(Case) == 8
    assert db.execute(select(Case.id).where(Case.number == rows[4]["number"])).first() is None
    # the history of the refused case is refused in turn, by line
    history = [h for h in rows_of("history") if h["case_number"] in {r["number"] for r in rows}]
    hpath = write_csv(tmp_path / "cases_history.csv", "history", history)
    refused = import_file("history", hpath, tz=TZ)
    assert not refused.imported and refused.errors[0].column == "case_number"
    done = import_file("history", hpath, tz=TZ, skip_bad_rows=True)
    missing = {rows[4]["number"], rows[7]["number"]}
    assert done.new == sum(1 for h in history if h["case_number"] not in missing)
    assert done.bad == sum(1 for h in history if h["case_number"] in missing)
    # and a rerun with the rows fixed adds exactly what was missing
    fixed = import_file("cases", write_csv(tmp_path / "cases.csv", "cases", rows_of("cases")[:10]), tz=TZ)
    assert fixed.imported and (fixed.new, fixed.existing, fixed.bad) == (2, 8, 0)


def test_header_encoding_and_file_level_errors(ctx, tmp_path):
    (tmp_path / "persons.csv").write_text("code,name,person_kind\nP1,张三,drug_user\n", encoding="utf-8")
    result = import_file("persons", tmp_path / "persons.csv", tz=TZ, skip_bad_rows=True)
    assert not result.imported
    assert {(e.line, e.column) for e in result.errors} == {(1, "person_kind"), (1, "person_type"), (1, "grid_code")}
    (tmp_path / "gbk.csv").write_bytes("code,name\nP1,张三\n".encode("gbk"))
    result = import_file("persons", tmp_path / "gbk.csv", tz=TZ)
    assert result.errors[0].line == 2 and "UTF-8" in result.errors[0].message
    (tmp_path / "empty.csv").write_text("", encoding="utf-8")
    assert "文件为空" in str(import_file("places", tmp_path / "empty.csv", tz=TZ).errors[0])


def test_places_with_bom_boundaries_and_parents(ctx, tmp_path):
    bowtie = '{"type":"Polygon","coordinates":[[[120,30],[120.1,30.1],[120.1,30],[120,30.1],[120,30]]]}'
    rows = [
        {"code": "C", "name": "市", "level": "city"},
        {"code": "T", "name": "镇", "level": "town", "kind": "town", "parent_code": "C"},
        {"code": "V", "name": "村", "level": "village", "kind": "street", "parent_code": "T"},  # wrong kind
        {"code": "G", "name": "网格", "level": "grid", "parent_code": "T"},  # parent must be a village
        {"code": "X", "name": "坏边界", "level": "town", "parent_code": "C", "geometry": bowtie},
        {
            "code": "Y",
            "name": "反坐标",
            "level": "town",
            "parent_code": "C",
            "geometry": '{"type":"Polygon","coordinates":[[[30,120],[30.1,120],[30.1,120.1],[30,120]]]}',
        },
        {"code": "Z", "name": "后面才有上级", "level": "grid", "parent_code": "W"},
        {"code": "T", "name": "重复", "level": "town", "parent_code": "C"},
    ]
    path = write_csv(tmp_path / "places.csv", "places", rows, bom=True)
    result = import_file("places", path, tz=TZ)
    assert not result.imported
    got = {(e.line, e.column): e.message for e in result.errors}
    assert set(got) == {
        (4, "kind"),
        (5, "parent_code"),
        (6, "geometry"),
        (7, "geometry"),
        (8, "parent_code"),
        (9, "code"),
    }
    assert "Self-intersection" in got[(6, "geometry")] and "经纬度范围" in got[(7, "geometry")]
    assert "与第 3 行重复" in got[(9, "code")]
    assert count(Place) == 0
    ok = write_csv(
        tmp_path / "places.csv",
        "places",
        rows[:2]
        + [
            {"code": "V", "name": "村", "level": "village", "kind": "village", "parent_code": "T"},
            {
                "code": "G",
                "name": "网格",
                "level": "grid",
                "parent_code": "V",
                "geometry": '{"type":"Feature","properties":{},"geometry":{"type":"Polygon","coordinates":'
                "[[[120,30],[120.2,30],[120.2,30.1],[120,30.1],[120,30]]]}}",
            },
        ],
        bom=True,
    )
    result = import_file("places", ok, tz=TZ)
    assert result.new == 4, [str(e) for e in result.errors]
    g = db.execute(select(Place).where(Place.code == "G")).scalar_one()
    assert (g.center_lat, g.center_lon) == (pytest.approx(30.05), pytest.approx(120.1))


def test_case_placed_by_coordinates_and_consistency_rules(ctx, tmp_path):
    install_default_categories()
    db.commit()
    assert all(r.imported for r in import_dir(copy_month(tmp_path, "accounts"), tz=TZ))
    base = {
        "source": "hotline",
        "category_code": "0502",
        "description": "路灯不亮",
        "state": "closed",
        "reported_at": "2026-11-03 09:12",
        "closed_at": "2026-11-04 10:00",
    }
    rows = [
        base | {"number": "A1", "lat": "30.02", "lon": "121.02"},  # inside 东城南社区 grid 1
        base | {"number": "A2", "lat": "30.02"},  # lon missing
        base | {"number": "A3", "state": "handling"},  # open with a closed_at
        base | {"number": "A4", "state": "rejected", "valid": "是"},
        base | {"number": "A5", "level": "city", "escalated_to_city": "否"},
        base | {"number": "A6", "dispute_outcome": "resolved"},  # not a dispute category
        base | {"number": "A7", "discovered_at": "2026-11-03 10:00"},
        base | {"number": "A1"},
        base | {"number": "A8", "category_code": "20", "duplicate_of": "NOPE"},
    ]
    result = import_file("cases", write_csv(tmp_path / "cases.csv", "cases", rows), tz=TZ, skip_bad_rows=True)
    assert [(e.line, e.column) for e in result.errors] == [
        (3, "lon"),
        (4, "closed_at"),
        (5, "valid"),
        (6, "escalated_to_city"),
        (7, "dispute_outcome"),
        (8, "discovered_at"),
        (9, "number"),
        (10, "category_code"),
        (10, "duplicate_of"),
    ]
    case = db.execute(select(Case).where(Case.number == "A1")).scalar_one()
    assert case.grid.code == "330100001001001" and case.town_id == case.grid.town_id
    assert case.reported_at == datetime(2026, 11, 3, 1, 12) and case.valid is True and case.state == "closed"


def test_people_patrols_signins_visits_logins_rules(ctx, tmp_path):
    install_default_categories()
    db.commit()
    assert all(r.imported for r in import_dir(copy_month(tmp_path, "sites"), tz=TZ))
    persons = import_file(
        "persons",
        write_csv(
            tmp_path / "persons.csv",
            "persons",
            [
                {"code": "Q1", "name": "甲", "person_type": "drug_user", "grid_code": "330100001", "id_number": "123"},
                {"code": "Q2", "name": "乙", "person_type": "empty_nest_elderly", "grid_code": "330100001001001"},
            ],
        ),
        tz=TZ,
        skip_bad_rows=True,
    )
    assert {(e.line, e.column) for e in persons.errors} == {(2, "grid_code"), (2, "id_number")}
    assert db.execute(select(Person.visit_frequency).where(Person.code == "Q2")).scalar_one() == "weekly"
    patrols = import_file(
        "patrols",
        write_csv(
            tmp_path / "patrols.csv",
            "patrols",
            [
                {"id": "1", "gridworker": "gw01", "started_at": "2026-11-03 09:00", "ended_at": "2026-11-03 08:00"},
                {"id": "2", "gridworker": "ghost", "started_at": "2026-11-03 09:00"},
                {"id": "3", "gridworker": "gw01", "started_at": "2026-11-03 09:00", "ended_at": "2026-11-03 10:00"},
            ],
        ),
        tz=TZ,
        skip_bad_rows=True,
    )
    assert [(e.line, e.column) for e in patrols.errors] == [(2, "ended_at"), (3, "gridworker")]
    patrol = db.execute(select(Patrol).where(Patrol.client_key == "import:3")).scalar_one()
    assert patrol.grid_id == db.execute(select(Account.place_id).where(Account.username == "gw01")).scalar_one()
    signins = import_file(
        "signins",
        write_csv(
            tmp_path / "signins.csv",
            "signins",
            [
                {"gridworker": "gw01", "at": "2026-11-03 07:30"},
                {"gridworker": "gw01", "at": "2026-11-03 17:30"},
                {"gridworker": "gw02", "at": "2026-11-03 07:30", "day": "2026-11-04"},
            ],
        ),
        tz=TZ,
        skip_bad_rows=True,
    )
    assert [(e.line, e.column) for e in signins.errors] == [(3, "day"), (4, "day")]
    # 07:30 local on 3 November is 23:30 UTC on the 2nd: the day is the local one
    assert db.execute(select(SignIn.day)).scalar_one().isoformat() == "2026-11-03"
    visits = import_file(
        "visits",
        write_csv(
            tmp_path / "visits.csv",
            "visits",
            [
                {"id": "1", "gridworker": "gw01", "at": "2026-11-03 10:00"},
                {"id": "2", "gridworker": "gw01", "person_code": "Q2", "site_code": "S00001", "at": "2026-11-03 10:00"},
                {"id": "3", "gridworker": "gw01", "site_code": "S00001", "at": "2026-11-03 10:00"},
            ],
        ),
        tz=TZ,
        skip_bad_rows=True,
    )
    assert [(e.line, e.column) for e in visits.errors] == [(2, "person_code"), (3, "person_code")]
    logins = import_file(
        "logins",
        write_csv(
            tmp_path / "logins.csv",
            "logins",
            [
                {"id": "1", "username": "ghost", "at": "2026-11-03 10:00"},
                {"id": "2", "username": "ghost", "at": "2026-11-03 10:00", "success": "否", "reason": "unknown_user"},
                {"id": "2", "username": "gw01", "at": "2026-11-03 10:00"},
            ],
        ),
        tz=TZ,
        skip_bad_rows=True,
    )
    assert [(e.line, e.column) for e in logins.errors] == [(2, "username"), (4, "id")]
    assert db.execute(select(LoginRecord.import_key, LoginRecord.account_id)).one() == ("import:2", None)


def test_cli_import_all_single_kind_and_refusal(app, tmp_path):
    with app.app_context():
        install_default_categories()
        db.commit()
        db.remove()
    runner = app.test_cli_runner()
    result = runner.invoke(args=["import", "all", str(MONTH), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "cases.csv：共 200 行，新增 200，已存在 0" in result.output
    assert "已重建实时计数" in result.output
    assert "完成：新增" in result.output
    again = runner.invoke(args=["import", "all", str(MONTH), "--no-progress"])
    assert again.exit_code == 0 and "没有新数据" in again.output
    assert "全部数据此前已导入，数据库未改动" in again.output
    single = runner.invoke(args=["import", "logins", str(MONTH / "logins.csv"), "--no-progress"])
    assert single.exit_code == 0 and "新增 0，已存在 182" in single.output
    bad = write_csv(tmp_path / "visits.csv", "visits", [{"id": "x", "gridworker": "gw01", "at": "昨天"}])
    refused = runner.invoke(args=["import", "visits", str(bad), "--no-progress"])
    assert refused.exit_code == 1
    assert "visits.csv 第 2 行，列 at：日期时间格式" in refused.output
    assert "未导入任何数据" in refused.output
    skipped = runner.invoke(args=["import", "visits", str(bad), "--no-progress", "--skip-bad-rows"])
    assert skipped.exit_code == 0 and "跳过有错误的行 1" in skipped.output
    assert "visits.csv 第 2 行，列 at" in skipped.output
    with app.app_context():
        assert counts() == expected_counts()
        db.remove()
    empty = tmp_path / "nothing"
    empty.mkdir()
    none = runner.invoke(args=["import", "all", str(empty)])
    assert none.exit_code != 0 and "没有可导入的文件" in none.output


def test_docs_describe_every_column():
    docs = (Path(__file__).resolve().parents[1] / "docs" / "import.md").read_text(encoding="utf-8")
    for fmt in FORMATS.values():
        assert f"`{fmt.filename}`" in docs
        assert markdown(fmt) in docs, f"docs/import.md: the table of {fmt.filename} is out of date"


def test_month_on_sqlite(tmp_path):
    """Embedded mode: the same month into a SQLite database migrated by Alembic, twice."""
    from commandcenter import create_app
    from commandcenter import db as dbmod
    from commandcenter.migrate import upgrade
    from commandcenter.settings import Settings

    url = f"sqlite:///{tmp_path / 'embedded.db'}"
    upgrade(url)
    settings = Settings.from_env(
        database_url=url, testing=True, instance_path=tmp_path, upload_dir=tmp_path / "uploads", redis_url=None
    )
    app = create_app(settings)
    try:
        with app.app_context():
            install_default_categories()
            db.commit()
            results = import_dir(MONTH, tz=TZ)
            assert all(r.imported and not r.errors for r in results), [str(e) for r in results for e in r.errors][:5]
            assert counts() == expected_counts()
            assert all(r.new == 0 for r in import_dir(MONTH, tz=TZ))
            assert counts() == expected_counts()
            first = db.execute(
                select(Case.reported_at).where(Case.number == rows_of("cases")[0]["number"])
            ).scalar_one()
            assert first == datetime.fromisoformat(rows_of("cases")[0]["reported_at"]).replace(tzinfo=None) - (
                datetime(2026, 1, 1, 8) - datetime(2026, 1, 1)
            )
            db.remove()
    finally:
        db.remove()
        if dbmod._engine is not None and str(dbmod._engine.url) == url:
            dbmod._engine.dispose()
            dbmod._engine = None


def test_open_imported_cases_get_their_warning_moments_and_are_warned_about(ctx, tmp_path):
    """Warning moments are planned from the imported limits as for a new report: an open 乱停车 report
    near its one hour is warned about by the next sweep, as the duty officer would expect after the switch."""
    from datetime import timedelta

    from commandcenter import jobs
    from commandcenter.models import Alert, Category
    from commandcenter.timeutil import local, utcnow

    install_default_categories()
    db.commit()
    assert all(r.imported for r in import_dir(copy_month(tmp_path, "accounts"), tz=TZ))
    now = utcnow().replace(second=0, microsecond=0)

    def stamp(utc: datetime) -> str:
        return local(utc, TZ).strftime("%Y-%m-%d %H:%M")

    parking = {
        "number": "P1",
        "source": "hotline",
        "category_code": "0401",
        "description": "车辆占用消防通道",
        "state": "reported",
        "discovered_at": stamp(now - timedelta(minutes=50)),
        "reported_at": stamp(now - timedelta(minutes=50)),
        "transfer_due": stamp(now + timedelta(minutes=10)),
        "lat": "30.02",
        "lon": "121.02",
    }
    later = parking | {
        "number": "P2",
        "discovered_at": stamp(now - timedelta(minutes=5)),
        "reported_at": stamp(now - timedelta(minutes=5)),
        "transfer_due": stamp(now + timedelta(minutes=55)),
    }
    registered = {
        "number": "E1",
        "source": "hotline",
        "category_code": "0502",
        "description": "路灯不亮",
        "state": "registered",
        "reported_at": stamp(now - timedelta(days=1)),
        "registered_at": stamp(now - timedelta(days=1)),
        "escalate_due": stamp(now + timedelta(days=1)),
        "lat": "30.02",
        "lon": "121.02",
    }
    result = import_file("cases", write_csv(tmp_path / "cases.csv", "cases", [parking, later, registered]), tz=TZ)
    assert result.imported and not result.errors
    cases = {c.number: c for c in db.execute(select(Case)).scalars()}
    minutes = db.execute(select(Category).where(Category.code == "0401")).scalar_one().warn_before_minutes or 15
    assert cases["P1"].transfer_warn_at == now + timedelta(minutes=10) - timedelta(minutes=minutes)
    assert cases["P2"].transfer_warn_at == now + timedelta(minutes=55) - timedelta(minutes=minutes)
    lamp = db.execute(select(Category).where(Category.code == "0502")).scalar_one()
    start, due = now - timedelta(days=1), now + timedelta(days=1)
    expected = (
        due - timedelta(minutes=lamp.warn_before_minutes)
        if lamp.warn_before_minutes
        else start + (due - start) * (lamp.warn_ratio or 0.8)
    )
    assert cases["E1"].escalate_warn_at == expected

    jobs.sweep_alerts()
    numbers = {c.id: n for n, c in cases.items()}
    raised = {(numbers[a.case_id], a.kind) for a in db.execute(select(Alert)).scalars()}
    assert ("P1", "parking_due") in raised and ("P2", "parking_due") not in raised
