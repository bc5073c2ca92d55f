"""Bounds on what a request may carry, shared by every form, query string, URL and JSON body (issue 11).

- **Ids** are PostgreSQL ``integer`` columns: 1 … 2 147 483 647. A larger id in a URL (``<int:…>``) matches no
  route (404); a larger one in a query or form field is refused with a 4xx that names the field, before any
  view sees it (SQLite, the embedded database, cannot even compare it: OverflowError).
- **Dates** a person or a client may send lie between 2000-01-01 and 2100-12-31 (one definition, here). Outside
  it, the arithmetic of time zones and deadlines overflows Python's datetime (years 1 and 9999).
- **JSON bodies** are at most ``JSON_MAX_DEPTH`` levels deep (a body 100 000 levels deep raised RecursionError).
"""

from __future__ import annotations

import re
from datetime import date, datetime

from flask import Flask, render_template, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import NotFound
from werkzeug.routing import IntegerConverter

# --- ids ---------------------------------------------------------------------------------------------------

DB_INT_MAX = 2**31 - 1  # PostgreSQL integer: every id column
_DB_INT_DIGITS = len(str(DB_INT_MAX))

# query-string and form fields that carry an id (or a page number) somewhere in the application
ID_FIELDS = frozenset(
    {
        "category",
        "category_id",
        "town",
        "town_id",
        "village",
        "village_id",
        "grid",
        "grid_id",
        "place",
        "place_id",
        "before_id",
        "page",
        "department_id",
        "assignee_id",
        "person_id",
        "site_id",
        "account_id",
        "case_id",
        "token_id",
        "story",
    }
)
_INTEGER_RE = re.compile(r"^\s*[+-]?[0-9]+\s*$")


def in_id_range(value: int) -> bool:
    return -DB_INT_MAX <= value <= DB_INT_MAX


def parse_id(text: str | None) -> int | None:
    """A positive id that fits the database's integer columns, or None (empty, not a number, out of range)."""
    text = (text or "").strip()
    if not (text.isascii() and text.isdigit()) or len(text) > _DB_INT_DIGITS:  # int() of 5000 digits raises
        return None
    value = int(text)
    return value if 0 < value <= DB_INT_MAX else None


def integer_out_of_range(text: str) -> bool:
    """True for an integer literal that no id column can hold (a non-number is the view's business)."""
    if not _INTEGER_RE.match(text):
        return False
    digits = text.strip().lstrip("+-").lstrip("0") or "0"
    return len(digits) > _DB_INT_DIGITS or not in_id_range(int(digits))


class BoundedIntConverter(IntegerConverter):
    """``<int:…>`` that takes only ids a database integer column can hold: a larger one is a 404.

    NotFound rather than werkzeug's ValidationError: the latter reports the other methods of the same path
    (a POST beside a GET) as 405, while no object with that id exists whatever the method.
    """

    def __init__(
        self, map, fixed_digits: int = 0, min: int | None = None, max: int | None = DB_INT_MAX, signed: bool = False
    ) -> None:
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=DB_INT_MAX if max is None else max, signed=signed)

    def to_python(self, value: str):
        digits = value.lstrip("-").lstrip("0")
        if len(digits) > _DB_INT_DIGITS or (digits and not in_id_range(int(digits))):  # no int() of 5000 digits
            raise NotFound()
        return super().to_python(value)


# --- dates -------------------------------------------------------------------------------------------------

DATE_MIN = date(2000, 1, 1)
DATE_MAX = date(2100, 12, 31)
DATE_RANGE_TEXT = f"{DATE_MIN.isoformat()} 至 {DATE_MAX.isoformat()}"
DATE_RANGE_MESSAGE = f"须在 {DATE_RANGE_TEXT} 之间"


def date_in_range(value: date | datetime) -> bool:
    """Is the (local or offset) calendar day of `value` within DATE_MIN … DATE_MAX?"""
    day = value.date() if isinstance(value, datetime) else value
    return DATE_MIN <= day <= DATE_MAX


def parse_date(text: str | None) -> date | None:
    """YYYY-MM-DD within the sane range; ValueError with a Chinese message otherwise (None when empty)."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = date.fromisoformat(text)
    except ValueError:
        raise ValueError("日期格式应为 YYYY-MM-DD") from None
    if not date_in_range(value):
        raise ValueError(f"日期{DATE_RANGE_MESSAGE}")
    return value


# --- the field at fault --------------------------------------------------------------------------------------


class InputError(Exception):
    """A request field the application refuses before any view reads it; answered as 4xx naming the field."""

    def __init__(self, status: int, field: str, message: str):
        super().__init__(message)
        self.status, self.field, self.message = status, field, message


def _is_api() -> bool:
    return request.path.startswith(("/api/", "/healthz"))


def _answer(exc: InputError):
    if _is_api():
        from .api.errors import api_error

        return api_error(exc.status, exc.message, exc.field)
    return render_template("error.html", code=exc.status, message=exc.message), exc.status


def check_id_fields() -> None:
    """Refuse an id (query string or urlencoded form) that no integer column can hold."""
    if request.path.startswith("/open311/"):  # its own fields and error format (formats.py)
        return
    sources = [request.args]
    if request.mimetype == "application/x-www-form-urlencoded":
        sources.append(request.form)
    for source in sources:
        for key, value in source.items(multi=True):
            if key in ID_FIELDS and integer_out_of_range(value):
                status = 422 if _is_api() else 400
                raise InputError(status, key, f"{key}: 数值超出范围（编号、页码应为 1 到 {DB_INT_MAX} 的整数）")


# --- JSON depth ------------------------------------------------------------------------------------------------

JSON_MAX_DEPTH = 32


class JSONTooDeep(InputError):
    """Not a ValueError on purpose: ``request.get_json(silent=True)`` must not turn it into "no body"."""

    def __init__(self):
        super().__init__(400, "body", f"body: JSON 嵌套不能超过 {JSON_MAX_DEPTH} 层")


def json_depth_exceeds(data, limit: int = JSON_MAX_DEPTH) -> bool:
    """Is any array or object nested more than `limit` levels deep? (iterative: no recursion to exhaust)"""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


class DepthLimitedJSONProvider(DefaultJSONProvider):
    """Flask's JSON, refusing bodies nested deeper than JSON_MAX_DEPTH (every ``request.get_json``)."""

    def loads(self, s, **kwargs):
        try:
            data = super().loads(s, **kwargs)
        except RecursionError:
            raise JSONTooDeep() from None
        if json_depth_exceeds(data):
            raise JSONTooDeep()
        return data


# --- wiring ----------------------------------------------------------------------------------------------------


def init_app(app: Flask) -> None:
    """Call before the blueprints are registered: their ``<int:…>`` rules take the converter when added."""
    app.url_map.converters["int"] = BoundedIntConverter
    old = app.json
    app.json = DepthLimitedJSONProvider(app)
    for attr in ("ensure_ascii", "sort_keys", "compact", "mimetype"):
        setattr(app.json, attr, getattr(old, attr))
    app.before_request(check_id_fields)
    app.register_error_handler(InputError, _answer)
