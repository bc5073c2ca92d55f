"""The working calendar kept in the database (issue 12 §3c, issue 13 §5): a year the library does not know is
imported from the State Council's notice, deadlines counted over an unknown year are marked and recomputed
when it arrives, and the administrator and the duty officers are warned from 1 November."""

from __future__ import annotations

import io
import json
from datetime import date, datetime

import pytest

from commandcenter import calendar_notice, workcalendar
from commandcenter.cases import loop
from commandcenter.db import db
from commandcenter.models import AuditLog, CalendarDay, CalendarYear, Case
from tests.conftest import csrf_from, logged_in, report, shanghai

pytestmark = pytest.mark.postgres

UNKNOWN = max(workcalendar.library_years()) + 1  # the first year the library does not know (2027 today)
# an invented notice for that year (the real one is published by the State Council in November or December)
NOTICE = f"""date,type,name
{UNKNOWN}-01-01,休,元旦
{UNKNOWN}-01-04,休,元旦
{UNKNOWN}-01-05,休,元旦
{UNKNOWN}-01-09,班,元旦调休上班
"""


def upload(client, data: bytes, filename: str, note: str = ""):
    page = client.get("/admin/calendar").get_data(as_text=True)
    return client.post(
        "/admin/calendar",
        data={"csrf_token": csrf_from(page), "note": note, "file": (io.BytesIO(data), filename)},
        content_type="multipart/form-data",
    )


def test_the_administrator_imports_a_year_and_the_days_follow_it(app, world):
    admin = logged_in(app.test_client(), "city_admin")
    assert "工作日历" in admin.get("/").get_data(as_text=True)  # in the menu
    response = upload(admin, NOTICE.encode(), "notice.csv", note="国办发明电〔测试〕1号")
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    page = admin.get(f"/admin/calendar?year={UNKNOWN}").get_data(as_text=True)
    assert f"{UNKNOWN}-01-04" in page and "元旦调休上班" in page and "国办发明电〔测试〕1号" in page
    with app.app_context():
        assert db.get(CalendarYear, UNKNOWN).source == "notice"
        assert db.query(CalendarDay).filter_by(year=UNKNOWN).count() == 4
        jan4, jan9 = date(UNKNOWN, 1, 4), date(UNKNOWN, 1, 9)
        assert jan4.weekday() < 5 and not workcalendar.is_workday(jan4)  # a weekday off
        assert jan9.weekday() >= 5 and workcalendar.is_workday(jan9)  # a weekend worked
        assert workcalendar.is_workday(date(UNKNOWN, 1, 6)) == (date(UNKNOWN, 1, 6).weekday() < 5)
        assert workcalendar.year_known(UNKNOWN)
        row = db.query(AuditLog).filter_by(action="calendar.import", success=True).one()
        assert row.username == "city_admin" and "之前：无" in row.detail and "休 3 天、班 1 天" in row.detail


def test_a_bad_notice_is_refused_naming_its_line_and_field_and_changes_nothing(app, world):
    admin = logged_in(app.test_client(), "city_admin")
    bad = f"date,type,name\n{UNKNOWN}-01-01,休,元旦\n{UNKNOWN}-13-01,休,元旦\n{UNKNOWN}-01-02,加班,元旦\n"
    response = upload(admin, bad.encode(), "notice.csv")
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "第 3 行 date" in page and "第 4 行 type" in page and "应为 休 或 班" in page
    two_years = f"date,type,name\n{UNKNOWN}-01-01,休,元旦\n{UNKNOWN + 1}-01-01,休,元旦\n"
    assert "一个文件只能是一年的安排" in upload(admin, two_years.encode(), "n.csv").get_data(as_text=True)
    weekday_worked = f"date,type,name\n{UNKNOWN}-01-01,休,元旦\n{UNKNOWN}-01-06,班,x\n"
    assert "是工作日，无须标为“班”" in upload(admin, weekday_worked.encode(), "n.csv").get_data(as_text=True)
    assert "文件须为 .csv 或 .json" in upload(admin, b"x", "n.xlsx").get_data(as_text=True)
    with app.app_context():
        assert db.get(CalendarYear, UNKNOWN) is None
        assert db.query(AuditLog).filter_by(action="calendar.import", success=False).count() == 4
    # the supervisor does not administer the calendar
    assert logged_in(app.test_client(), "city_supervisor").get("/admin/calendar").status_code == 403


def test_a_deadline_over_an_unknown_year_is_marked_and_recomputed_when_the_year_arrives(app, world, w):
    """A 15-work-day case registered on 11 December runs into the unknown year: counted Monday–Friday, its
    deadline is marked; once the notice is imported (three days off in early January), it moves three
    workdays later and is no longer marked."""
    category = w.cat("0301")  # 违法建设: 15 work days
    assert (category.handle_limit, category.handle_unit) == (15, "work_days")
    registered = shanghai(UNKNOWN - 1, 12, 11, 10)
    case = report(w, "gw0", "0301", registered)
    loop.register(case, w.a("town0_operator"), now=registered)
    case = db.get(Case, case.id)
    assumed_due = case.handle_due
    assert case.deadline_assumed and assumed_due > datetime(UNKNOWN, 1, 1)
    client = logged_in(app.test_client(), "town0_operator")
    assert "按假定日历" in client.get(f"/cases/{case.id}").get_data(as_text=True)

    days, _ = calendar_notice.parse("n.csv", NOTICE.encode())
    done = calendar_notice.load_year(None, days)
    assert done == {"year": UNKNOWN, "holidays": 3, "workdays": 1, "recomputed": 1}
    db.expire_all()
    case = db.get(Case, case.id)
    expected = workcalendar.deadline_utc(registered, 15, "work_days")
    assert case.handle_due == expected and case.handle_due > assumed_due
    assert not case.deadline_assumed
    assert "按假定日历" not in client.get(f"/cases/{case.id}").get_data(as_text=True)


def test_the_cli_loads_a_json_notice(app, world, runner, tmp_path):
    path = tmp_path / "notice.json"
    path.write_text(
        json.dumps(
            {
                "year": UNKNOWN,
                "note": "国办发明电〔测试〕2号",
                "days": [
                    {"date": f"{UNKNOWN}-10-01", "type": "休", "name": "国庆节"},
                    {"date": f"{UNKNOWN}-10-09", "type": "班", "name": "国庆节调休上班"},
                ],
            },
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    result = runner.invoke(args=["calendar", "import", str(path)])
    assert result.exit_code == 0, result.output
    assert f"已导入 {UNKNOWN} 年" in result.output
    shown = runner.invoke(args=["calendar", "show", str(UNKNOWN)])
    assert f"{UNKNOWN}-10-01  休  国庆节" in shown.output
    (tmp_path / "bad.json").write_text('{"year": 1999, "days": [{"date": "1999-01-01", "type": "休"}]}')
    refused = runner.invoke(args=["calendar", "import", str(tmp_path / "bad.json")])
    assert refused.exit_code == 1 and "days[0] date" in refused.output


@pytest.mark.parametrize(
    ("today", "role", "warned"),
    [
        (date(UNKNOWN - 1, 10, 31), "city_admin", False),
        (date(UNKNOWN - 1, 11, 1), "city_admin", True),
        (date(UNKNOWN - 1, 11, 1), "city_duty_officer", True),
        (date(UNKNOWN - 1, 11, 1), "town0_duty", True),
        (date(UNKNOWN - 1, 11, 1), "city_supervisor", False),
    ],
)
def test_a_missing_year_is_announced_from_the_first_of_november(app, world, monkeypatch, today, role, warned):
    monkeypatch.setattr(calendar_notice, "local_today", lambda *_: today)
    page = logged_in(app.test_client(), role).get("/cases/" if role != "city_admin" else "/admin/calendar")
    html = page.get_data(as_text=True)
    assert (f"{UNKNOWN} 年节假日安排尚未导入" in html) is warned, html[:300]


def test_the_warning_ends_when_the_year_is_imported(app, world, monkeypatch):
    monkeypatch.setattr(calendar_notice, "local_today", lambda *_: date(UNKNOWN - 1, 11, 20))
    duty = logged_in(app.test_client(), "city_duty_officer")
    assert "尚未导入" in duty.get("/alerts/").get_data(as_text=True)
    with app.app_context():
        calendar_notice.load_year(None, calendar_notice.parse("n.csv", NOTICE.encode())[0])
    assert "尚未导入" not in duty.get("/alerts/").get_data(as_text=True)
