"""工作日历: the years of the working calendar and the import of the State Council's notice
(rules in commandcenter/calendar_notice.py)."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from ..access import current_account, require
from ..audit import audit
from ..db import db
from . import bp


@bp.route("/calendar", methods=["GET", "POST"])
@require("calendar.edit")
def calendar():
    """工作日历: the years the city holds, a year's holidays and make-up workdays, and the import of the State
    Council's notice (CSV or JSON, formats in commandcenter/calendar_notice.py and docs/operations.md)."""
    from .. import calendar_notice as notice
    from ..inputs import DATE_MAX, DATE_MIN
    from ..timeutil import local_today
    from ..workcalendar import library_years

    problems: list[str] = []
    if request.method == "POST":
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            problems = ["file：请选择国务院节假日安排通知的 CSV 或 JSON 文件"]
        else:
            data = upload.stream.read(256 * 1024 + 1)
            try:
                if len(data) > 256 * 1024:
                    raise notice.NoticeError(["file：文件不能超过 256 KB"])
                days, note = notice.parse(upload.filename, data)
                note = (request.form.get("note") or "").strip()[: notice.NOTE_MAX] or note
                done = notice.load_year(current_account(), days, note)
            except notice.NoticeError as exc:
                db.rollback()
                problems = exc.problems
                audit(
                    "calendar.import",
                    "calendar_year",
                    None,
                    success=False,
                    detail="；".join(problems)[:500],
                    commit=True,
                )
            else:
                flash(
                    f"已导入 {done['year']} 年工作日历：放假 {done['holidays']} 天，调休上班 {done['workdays']} 天；"
                    f"重新计算按假定日历计算的时限 {done['recomputed']} 件",
                    "info",
                )
                return redirect(url_for("admin.calendar", year=done["year"]))
    today = local_today()
    year = request.args.get("year", type=int) or today.year
    if not DATE_MIN.year <= year <= DATE_MAX.year:
        year = today.year
    return render_template(
        "admin/calendar.html",
        years=notice.held_years(),
        library=library_years(),
        year=year,
        rows=notice.year_rows(year),
        problems=problems,
    ), 400 if problems else 200
