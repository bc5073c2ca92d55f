"""`flask import` takes what an old platform feeds it (issue 13, section 8): Excel's dates, the Chinese labels
of states, sources, levels, kinds and yes/no, extra columns (ignored with a warning), codes whose leading
zero Excel dropped, and a clear word when the category table is still empty. Everything else stays strict."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from commandcenter.categories import install_default_categories
from commandcenter.db import db
from commandcenter.importer import FORMATS, import_dir, import_file
from commandcenter.importer.formats import ALIAS_TABLES, aliases_markdown
from commandcenter.importer.validation import CellError, LocalClock, parse_date, parse_datetime
from commandcenter.models import Case, CaseStep, Place
from tests.test_import import TZ, copy_month

DOCS = Path(__file__).resolve().parents[1] / "docs" / "import.md"


def write(path: Path, header: list[str], rows: list[dict]) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in header})
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def test_excel_dates_without_zero_padding():
    clock = LocalClock(TZ)
    assert parse_datetime("2025/11/3 9:05", clock) == datetime(2025, 11, 3, 1, 5)
    assert parse_datetime("2025-11-3 9:05:07", clock) == datetime(2025, 11, 3, 1, 5, 7)
    assert parse_datetime("2025.1.13 17:30", clock) == datetime(2025, 1, 13, 9, 30)
    assert parse_datetime("2025-11-03 09:05", clock) == datetime(2025, 11, 3, 1, 5)
    assert parse_date("2025/11/3") == date(2025, 11, 3)
    # still strict: day-first dates, bare dates for a time, impossible dates
    for bad, message in (
        ("3/11/2026", "日期时间格式应为"),
        ("2025/11/3", "缺少时刻"),
        ("2025/2/30 9:00", "日期时间格式应为"),
        ("2025/11/3 25:00", "日期时间格式应为"),
        ("昨天", "日期时间格式应为"),
    ):
        with pytest.raises(CellError, match=message):
            parse_datetime(bad, clock)
    with pytest.raises(CellError, match="日期格式应为"):
        parse_date("2025/11/3 9:05")


def test_docs_print_the_label_tables():
    docs = DOCS.read_text(encoding="utf-8")
    assert aliases_markdown() in docs, "docs/import.md: the tables of Chinese labels are out of date"
    assert "flask categories install-default" in docs
    for _, table in ALIAS_TABLES:
        assert table  # every table has labels


def test_old_platform_cases_file_imports(ctx, tmp_path):
    """Chinese labels, Excel dates, a dropped leading zero, and two extra columns: imported, with warnings."""
    install_default_categories()
    db.commit()
    assert all(r.imported for r in import_dir(copy_month(tmp_path, "accounts"), tz=TZ))
    header = [*FORMATS["cases"].names[:3], "旧系统编号", *FORMATS["cases"].names[3:], "备注"]
    base = {"category_code": "502", "description": "路灯不亮", "grid_code": "330100001001001", "旧系统编号": "X-1"}
    rows = [
        base
        | {
            "number": "OLD1",
            "source": "网格员上报",
            "state": "已结案",
            "level": "网格",
            "valid": "是",
            "overdue": "否",
            "reported_at": "2025/11/3 9:05",
            "closed_at": "2025/11/4 16:30",
            "备注": "随便",
        },
        base
        | {
            "number": "OLD2",
            "source": "12345热线",
            "state": "处理中",
            "level": "镇街",
            "reported_at": "2025-11-5 8:00:00",
        },
        base
        | {
            "number": "OLD3",
            "source": "hotline",
            "state": " 已 结案 ",
            "reported_at": "2025/11/6 10:00",
            "closed_at": "2025/11/6 11:00",
            "self_handled": "无",
        },
    ]
    result = import_file("cases", write(tmp_path / "cases.csv", header, rows), tz=TZ)
    assert result.errors == [], [str(e) for e in result.errors]
    assert result.imported and result.new == 3
    cases = {c.number: c for c in db.execute(select(Case)).scalars()}
    assert {(w.line, w.column) for w in result.warnings} == {(1, "旧系统编号"), (1, "备注")}
    assert "提示 cases.csv 第 1 行，列 备注：未知的列，已忽略" in result.summary()
    one = cases["OLD1"]
    assert (one.source, one.state, one.level, one.valid, one.overdue) == ("app", "closed", "grid", True, False)
    assert one.category.code == "0502"
    assert one.reported_at == datetime(2025, 11, 3, 1, 5) and one.closed_at == datetime(2025, 11, 4, 8, 30)
    assert (cases["OLD3"].state, cases["OLD3"].self_handled) == ("closed", False)
    two = cases["OLD2"]
    assert (two.source, two.state, two.level, two.escalated_to_town) == ("hotline", "handling", "town", True)


def test_labels_are_still_checked_and_errors_name_the_place(ctx, tmp_path):
    install_default_categories()
    db.commit()
    assert all(r.imported for r in import_dir(copy_month(tmp_path, "accounts"), tz=TZ))
    header = list(FORMATS["cases"].names) + ["extra"]
    base = {"category_code": "502", "description": "路灯不亮", "grid_code": "330100001001001"}
    rows = [
        base | {"number": "B1", "source": "网格员上报", "state": "已完成", "reported_at": "2025/11/3 9:05"},
        base | {"number": "B2", "source": "飞鸽传书", "state": "待立案", "reported_at": "2025/11/3 9:05"},
        base | {"number": "B3", "source": "app", "state": "待立案", "reported_at": "3/11/2025 9:05"},
        base | {"number": "B4", "source": "app", "state": "待立案", "reported_at": "2025/11/3 9:05", "valid": "也许"},
        base | {"number": "B5", "source": "app", "state": "待立案", "reported_at": "2025/11/3 9:05"},
        base
        | {"number": "B6", "category_code": "77", "source": "app", "state": "待立案", "reported_at": "2025/11/3 9:05"},
    ]
    result = import_file("cases", write(tmp_path / "cases.csv", header, rows), tz=TZ)
    assert not result.imported
    got = {(e.file, e.line, e.column): e.message for e in result.errors}
    assert set(got) == {
        ("cases.csv", 2, "state"),
        ("cases.csv", 3, "source"),
        ("cases.csv", 4, "reported_at"),
        ("cases.csv", 5, "valid"),
        ("cases.csv", 7, "category_code"),
    }
    assert "“已完成”无效" in got[("cases.csv", 2, "state")] and "中文写法" in got[("cases.csv", 2, "state")]
    assert [w.column for w in result.warnings] == ["extra"]
    assert db.execute(select(Case.id)).first() is None


def test_history_and_places_accept_labels_and_padded_codes(ctx, tmp_path):
    install_default_categories()
    db.commit()
    places = write(
        tmp_path / "places.csv",
        ["code", "name", "level", "kind", "parent_code", "active", "旧字段"],
        [
            {"code": "0330", "name": "测试市", "level": "市"},
            {"code": "0330001", "name": "东街道", "level": "镇街", "kind": "街道", "parent_code": "330"},
            {"code": "0330001001", "name": "南社区", "level": "村社", "kind": "社区", "parent_code": "330001"},
            {
                "code": "0330001001001",
                "name": "一网格",
                "level": "网格",
                "kind": "综合网格",
                "parent_code": "0330001001",
            },
            {
                "code": "0330001002",
                "name": "北村",
                "level": "村",
                "kind": "村委",
                "parent_code": "330001",
                "active": "否",
            },
        ],
    )
    result = import_file("places", places, tz=TZ)
    assert result.imported and result.new == 5, [str(e) for e in result.errors]
    grid = db.execute(select(Place).where(Place.code == "0330001001001")).scalar_one()
    town = db.execute(select(Place).where(Place.code == "0330001")).scalar_one()
    assert (grid.level, grid.kind, grid.town_id) == ("grid", "comprehensive", town.id)
    assert (town.level, town.kind) == ("town", "street")
    north = db.execute(select(Place).where(Place.code == "0330001002")).scalar_one()
    assert (north.kind, north.active) == ("village", False)

    cases = write(
        tmp_path / "cases.csv",
        list(FORMATS["cases"].names),
        [
            {
                "number": "H1",
                "source": "网格员上报",
                "category_code": "502",
                "description": "路灯不亮",
                "grid_code": "330001001001",
                "state": "已立案",
                "reported_at": "2025/11/3 9:05",
                "registered_at": "2025/11/3 9:30",
            }
        ],
    )
    assert import_file("cases", cases, tz=TZ).new == 1
    history = write(
        tmp_path / "cases_history.csv",
        list(FORMATS["history"].names),
        [
            {"case_number": "H1", "at": "2025/11/3 9:05", "action": "report", "to_state": "待立案", "to_level": "网格"},
            {
                "case_number": "H1",
                "at": "2025/11/3 9:30",
                "action": "register",
                "from_state": "待立案",
                "to_state": "已立案",
                "from_level": "网格",
            },
        ],
    )
    done = import_file("history", history, tz=TZ)
    assert done.imported and done.new == 2, [str(e) for e in done.errors]
    steps = db.execute(select(CaseStep).order_by(CaseStep.at)).scalars().all()
    assert [(s.from_state, s.to_state, s.to_level) for s in steps] == [
        (None, "reported", "grid"),
        ("reported", "registered", "grid"),
    ]


def test_empty_category_table_names_the_command(ctx, tmp_path):
    assert all(r.imported for r in import_dir(copy_month(tmp_path, "accounts"), tz=TZ))
    header = list(FORMATS["cases"].names)
    row = {"source": "app", "category_code": "0502", "description": "x", "state": "reported"}
    rows = [row | {"number": f"E{i}", "reported_at": "2025-11-03 09:05"} for i in range(3)]
    result = import_file("cases", write(tmp_path / "cases.csv", header, rows), tz=TZ, skip_bad_rows=True)
    assert result.bad == 3 and result.new == 0
    assert len(result.errors) == 1, [str(e) for e in result.errors]
    error = result.errors[0]
    assert (error.file, error.line, error.column) == ("cases.csv", None, "category_code")
    assert "还没有任何事件类别" in error.message and "flask categories install-default" in error.message


def test_missing_required_column_still_refuses_and_lists_the_unknown_ones(ctx, tmp_path):
    path = write(tmp_path / "persons.csv", ["code", "name", "person_kind", "grid_code"], [{"code": "P1"}])
    result = import_file("persons", path, tz=TZ, skip_bad_rows=True)
    assert not result.imported and not result.warnings
    assert {(e.line, e.column) for e in result.errors} == {(1, "person_type"), (1, "person_kind")}


def test_cli_prints_the_warnings(app, tmp_path):
    with app.app_context():
        db.remove()
    path = write(
        tmp_path / "places.csv",
        ["code", "name", "level", "区划全称"],
        [{"code": "330100", "name": "测湖市", "level": "市", "区划全称": "某省测湖市"}],
    )
    result = app.test_cli_runner().invoke(args=["import", "places", str(path), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "新增 1" in result.output and "提示 places.csv 第 1 行，列 区划全称：未知的列，已忽略" in result.output
