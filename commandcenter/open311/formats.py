"""The two wire formats of GeoReport v2, its error list and its W3C date-times.

XML is the spec's reference format; JSON follows it by the Spark convention (a list of
`<request>` elements becomes a JSON array, an empty element becomes null). Both are built from
the same plain Python values, so they can never disagree. XML is built with ElementTree, never
by string concatenation, and characters XML 1.0 cannot carry are dropped on the way out.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from flask import Response, request

from ..inputs import DATE_RANGE_MESSAGE, date_in_range

FORMATS = ("json", "xml")
CONTENT_TYPES = {"json": "application/json; charset=utf-8", "xml": "text/xml; charset=utf-8"}
XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'

# list fields and the element name of their items, as the spec's XML examples write them
ITEM_ELEMENT = {
    "services": "service",
    "service_requests": "request",
    "errors": "error",
    "attributes": "attribute",
    "values": "value",
    "endpoints": "endpoint",
    "formats": "format",
}

_XML_INVALID = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class Open311Error(Exception):
    """One or more errors of one HTTP status, answered as the spec's error list."""

    def __init__(self, status: int, *descriptions: str, headers: dict[str, str] | None = None):
        super().__init__("; ".join(descriptions))
        self.status = status
        self.descriptions = list(descriptions)
        self.headers = dict(headers or {})  # e.g. Retry-After of a 429


# --- output -----------------------------------------------------------------------------------------


def xml_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return _XML_INVALID.sub("", str(value))


def _fill(element: ET.Element, value: object) -> None:
    if isinstance(value, dict):
        for key, child in value.items():
            _append(element, key, child)
    else:
        element.text = xml_text(value)


def _append(parent: ET.Element, name: str, value: object) -> None:
    element = ET.SubElement(parent, name)
    if isinstance(value, list | tuple):
        item_name = ITEM_ELEMENT.get(name, "item")
        for item in value:
            _fill(ET.SubElement(element, item_name), item)
    else:
        _fill(element, value)


def to_xml(root: str, value: object) -> bytes:
    """`to_xml("service_requests", [{...}])` → <service_requests><request>…</request></service_requests>."""
    element = ET.Element(root)
    if isinstance(value, list | tuple):
        item_name = ITEM_ELEMENT[root]
        for item in value:
            _fill(ET.SubElement(element, item_name), item)
    else:
        _fill(element, value)
    return XML_DECLARATION + ET.tostring(element, encoding="unicode").encode("utf-8")


def render(fmt: str, root: str, value: object, status: int = 200) -> Response:
    if fmt == "xml":
        body = to_xml(root, value)
    else:
        body = json.dumps(value, ensure_ascii=False).encode("utf-8")
    return Response(body, status=status, content_type=CONTENT_TYPES[fmt])


def request_format() -> str:
    """The format the client asked for by the resource's extension; JSON when it named none we know."""
    return "xml" if request.path.lower().endswith(".xml") else "json"


def error_response(status: int, *descriptions: str) -> Response:
    errors = [{"code": status, "description": d} for d in descriptions]
    return render(request_format(), "errors", errors, status)


# --- W3C date-times ---------------------------------------------------------------------------------


def w3c(value: datetime | None, tz: str) -> str | None:
    """Naive UTC from the database → local time with its offset: 2026-11-23T18:00:00+08:00."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC).astimezone(ZoneInfo(tz)).isoformat(timespec="seconds")


_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
# a '+' sent unencoded in a query string arrives as a space: 2026-01-01T00:00:00 08:00
_SPACE_OFFSET = re.compile(r"^(.*T[\d:.]+) (\d{2}(?::?\d{2})?)$")


def parse_w3c(value: str, name: str, tz: str, *, end: bool = False) -> datetime:
    """A W3C/ISO 8601 date-time → naive UTC.

    Without an offset the time is read in the jurisdiction's timezone. A bare date as `end` means
    the end of that day, so start_date=2026-01-01&end_date=2026-01-31 covers all of January.
    """
    text = value.strip()
    match = _SPACE_OFFSET.match(text)
    if match:
        text = f"{match.group(1)}+{match.group(2)}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise Open311Error(
            400, f"{name} 不是合法的 W3C 日期时间（例如 2026-01-01T00:00:00+08:00 或 2026-01-01T00:00:00Z）"
        ) from None
    if not date_in_range(parsed):  # year 1 or 9999 overflows the conversion to UTC
        raise Open311Error(400, f"{name} {DATE_RANGE_MESSAGE}")
    if end and _DATE_ONLY.fullmatch(text):
        parsed += timedelta(days=1) - timedelta(microseconds=1)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(tz))
    return parsed.astimezone(UTC).replace(tzinfo=None)
