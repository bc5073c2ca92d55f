"""The drill-down's .xlsx export: one sheet of the table (every text cell written as text, never as a
formula: exports.xlsx_cell), a second sheet saying what the table is, and the line its audit row keeps."""

from __future__ import annotations

import io
import re

from ..exports import xlsx_append, xlsx_cell
from ..models import Place
from .service import Column, Query

SHEET_TITLE_BAD = re.compile(r"[\[\]:*?/\\]")  # characters Excel does not allow in a sheet's name


def workbook(place: Place, q: Query, title: str, columns: tuple[Column, ...], rows: list) -> bytes:
    """Chinese headers on row 1, one row per child; rates as numbers formatted as percentages; a flagged
    cell carries the flag's message as a comment. A second sheet says what the table is."""
    from openpyxl import Workbook
    from openpyxl.comments import Comment
    from openpyxl.styles import Font, PatternFill

    wb = Workbook()
    ws = wb.active
    ws.title = SHEET_TITLE_BAD.sub("_", title)[:31] or "表格"
    xlsx_append(ws, [c.label for c in columns])
    for cell in ws[1]:
        cell.font = Font(bold=True)
    warn = PatternFill("solid", fgColor="FFF4E0")
    for r, row in enumerate(rows, start=2):
        for c, column in enumerate(columns, start=1):
            value = column.value(row)
            if column.kind == "bool":
                value = None if value is None else ("达标" if value else "未达标")
            cell = xlsx_cell(ws, r, c, value)  # text typed by people may start with "=": kept as text
            if column.kind == "rate":
                cell.number_format = "0.00%"
            elif column.kind == "num":
                cell.number_format = "0.00"
            message = column.flag(row)
            if message:
                cell.comment = Comment(f"数据质量提示：{message}", "指挥中心")
                cell.fill = warn
    for c, column in enumerate(columns, start=1):
        ws.column_dimensions[ws.cell(row=1, column=c).column_letter].width = max(10, min(30, len(column.label) * 2 + 4))
    ws.freeze_panes = "B2"
    about = wb.create_sheet("说明")
    f = q.filters
    for line in (
        ("单位", place.name),
        ("表格", title),
        ("统计时段", q.period.label),
        ("开始日期", q.period.start.isoformat()),
        ("结束日期", q.period.end.isoformat()),
        ("事件类型", f.kind or "全部"),
        ("事件类别", f.category_id or "全部"),
        ("事件状态", f.state or "全部"),
        ("事件来源", f.source or "全部"),
        ("说明", "空白表示分母为 0、比率无定义；带批注的单元格为数据质量存疑的数字。"),
    ):
        xlsx_append(about, line)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def export_what(place: Place, q: Query, title: str) -> str:
    """What an export holds, for its audit row: the place, the table, the period and the filters."""
    f = q.filters
    filters = (
        "，".join(
            f"{k}={v}"
            for k, v in (("类型", f.kind), ("类别", f.category_id), ("状态", f.state), ("来源", f.source))
            if v
        )
        or "无筛选"
    )
    return f"{place.name}（{place.code}）{title}；{q.period.start.isoformat()} 至 {q.period.end.isoformat()}；{filters}"
