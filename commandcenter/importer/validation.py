"""Reading an import file and turning its cells into typed values, with errors that name the place.

Every error carries the file name, the line (the header is line 1) and the column, and reads in Chinese:
``cases.csv 第 12 行，列 reported_at：日期时间格式应为 YYYY-MM-DD HH:MM[:SS]，而不是 “3/11/2026”``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from shapely.geometry import shape
from shapely.validation import explain_validity

from .formats import (
    BOOL,
    BOOL_LABELS,
    CHOICE,
    DATE,
    DATETIME,
    FLOAT,
    GEOJSON,
    INT,
    JSON,
    LAT,
    LON,
    TEXT,
    Column,
    Format,
)

ID_NUMBER = re.compile(r"^(\d{17}[\dX]|\d{15})$")


@dataclass(frozen=True)
class RowError:
    file: str
    line: int | None  # None: the file as a whole
    column: str | None
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f" 第 {self.line} 行"
        if self.column:
            where += f"，列 {self.column}"
        return f"{where}：{self.message}"


class CellError(ValueError):
    """One bad cell; raised by the parsers, turned into a RowError by the caller."""


def _short(value: str, n: int = 40) -> str:
    return value if len(value) <= n else value[:n] + "…"


class LocalClock:
    """Local wall-clock time → naive UTC, fast for zones without DST (Asia/Shanghai)."""

    def __init__(self, tz: str):
        self.zone = ZoneInfo(tz)
        offsets = {self.zone.utcoffset(datetime(y, m, 15)) for y in range(2000, 2041) for m in (1, 4, 7, 10)}
        self.fixed: timedelta | None = offsets.pop() if len(offsets) == 1 else None

    def to_utc(self, value: datetime) -> datetime:
        if value.tzinfo is not None:
            return value.astimezone(UTC).replace(tzinfo=None)
        if self.fixed is not None:
            return value - self.fixed
        return value.replace(tzinfo=self.zone).astimezone(UTC).replace(tzinfo=None)

    def to_local(self, value_utc: datetime) -> datetime:
        if self.fixed is not None:
            return value_utc + self.fixed
        return value_utc.replace(tzinfo=UTC).astimezone(self.zone).replace(tzinfo=None)


# what Excel writes: year first, "/" "-" or "." between, no zero padding ("2025/11/3 9:05", "2025-11-03 9:05:00")
LOOSE_DATETIME = re.compile(
    r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[ T]+(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.\d+)?)?)?$"
)


def _loose(text: str) -> datetime | None:
    """A year-first date (and time) without zero padding, or None when the text is not one."""
    m = LOOSE_DATETIME.match(text)
    if m is None:
        return None
    y, mo, d, h, mi, sec = (int(x) if x else 0 for x in m.groups())
    try:
        return datetime(y, mo, d, h, mi, sec)
    except ValueError:
        return None


def parse_datetime(text: str, clock: LocalClock) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("/", "-") if "/" in text[:8] else text)
    except ValueError:
        value = _loose(text)
        if value is None:
            raise CellError(f"日期时间格式应为 YYYY-MM-DD HH:MM[:SS]，而不是“{_short(text)}”") from None
        if LOOSE_DATETIME.match(text).group(4) is None:
            raise CellError(f"缺少时刻：应为 YYYY-MM-DD HH:MM[:SS]，而不是“{_short(text)}”") from None
    if len(text) <= 10:  # a bare date is not a time
        raise CellError(f"缺少时刻：应为 YYYY-MM-DD HH:MM[:SS]，而不是“{_short(text)}”")
    if not 1990 <= value.year <= 2100:
        raise CellError(f"年份 {value.year} 不合理")
    return clock.to_utc(value).replace(microsecond=0)


def parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        m = LOOSE_DATETIME.match(text)
        value = _loose(text) if m is not None and m.group(4) is None else None
        if value is None:
            raise CellError(f"日期格式应为 YYYY-MM-DD，而不是“{_short(text)}”") from None
        return value.date()


def parse_geojson(text: str) -> tuple[dict, float, float]:
    """A GeoJSON (Multi)Polygon, or a Feature holding one → (geometry, center_lat, center_lon)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CellError(f"不是有效的 JSON：{exc.msg}（第 {exc.pos + 1} 个字符）") from None
    if isinstance(data, dict) and data.get("type") == "Feature":
        data = data.get("geometry")
    if not isinstance(data, dict) or data.get("type") not in ("Polygon", "MultiPolygon"):
        raise CellError("边界须是 GeoJSON Polygon 或 MultiPolygon")
    try:
        geom = shape(data)
    except Exception as exc:  # shapely raises several kinds for malformed coordinates
        raise CellError(f"GeoJSON 坐标有误：{exc}") from None
    if geom.is_empty:
        raise CellError("边界为空")
    minx, miny, maxx, maxy = geom.bounds
    if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        raise CellError("边界坐标超出经纬度范围（GeoJSON 坐标顺序为 [经度, 纬度]）")
    if not geom.is_valid:
        raise CellError(f"边界不是有效的多边形：{explain_validity(geom)}")
    center = geom.centroid
    if not geom.contains(center):
        center = geom.representative_point()
    return data, round(center.y, 7), round(center.x, 7)


def parser(col: Column, clock: LocalClock):  # noqa: C901 - one small function per type
    """A function: the stripped, non-empty text of a cell of this column → its value (or CellError)."""
    t = col.type
    if t == TEXT:
        limit = col.max_len

        def text_(text: str) -> str:
            if limit and len(text) > limit:
                raise CellError(f"超过 {limit} 个字符（{len(text)} 个）")
            return text

        return text_
    if t == CHOICE:
        allowed = frozenset(col.choices)
        aliases = {label: code for label, code in col.aliases.items() if code in allowed}
        hint = f"，或其中文写法（如 {'、'.join(list(aliases)[:3])}，见 docs/import.md）" if aliases else ""

        def choice(text: str) -> str:
            if text in allowed:
                return text
            code = aliases.get("".join(text.split())) or (text.lower() if text.lower() in allowed else None)
            if code is None:
                raise CellError(f"取值“{_short(text)}”无效，应为 {'、'.join(col.choices)} 之一{hint}")
            return code

        return choice
    if t == DATETIME:
        fixed = clock.fixed
        fromiso = datetime.fromisoformat

        def datetime_(text: str) -> datetime:
            # the common case first: "YYYY-MM-DD HH:MM:SS" in a zone without DST
            if fixed is not None and len(text) == 19 and text[4] == "-" and text[10] == " ":
                try:
                    value = fromiso(text)
                except ValueError:
                    pass
                else:
                    if 1990 <= value.year <= 2100:
                        return value - fixed
            return parse_datetime(text, clock)

        return datetime_
    if t == INT:

        def int_(text: str) -> int:
            try:
                value = int(text)
            except ValueError:
                raise CellError(f"应为整数，而不是“{_short(text)}”") from None
            if value < 0:
                raise CellError("不能为负数")
            return value

        return int_
    if t in (FLOAT, LAT, LON):

        def float_(text: str) -> float:
            try:
                value = float(text)
            except ValueError:
                raise CellError(f"应为数字，而不是“{_short(text)}”") from None
            if value != value or value in (float("inf"), float("-inf")):
                raise CellError("应为有限的数字")
            if t == LAT and not -90 <= value <= 90:
                raise CellError(f"纬度 {text} 超出 −90…90")
            if t == LON and not -180 <= value <= 180:
                raise CellError(f"经度 {text} 超出 −180…180")
            if t == FLOAT and value < 0:
                raise CellError("不能为负数")
            return value

        return float_
    if t == BOOL:

        def bool_(text: str) -> bool:
            value = BOOL_LABELS.get(text.lower())
            if value is not None:
                return value
            raise CellError(f"应为 是/否（或 1/0、true/false），而不是“{_short(text)}”")

        return bool_
    if t == DATE:
        return parse_date
    if t == GEOJSON:
        return parse_geojson
    if t == JSON:

        def json_(text: str):
            try:
                return json.loads(text)
            except ValueError as exc:
                raise CellError(f"不是有效的 JSON：{exc.msg}") from None

        return json_
    raise AssertionError(t)  # pragma: no cover


@dataclass
class Record:
    line: int
    values: dict  # column name → typed value (None when empty)


def read_text(path: Path, errors: list[RowError]) -> str | None:
    """The file decoded as UTF-8 (with or without BOM), or None with an error recorded."""
    name = path.name
    try:
        raw = path.read_bytes()
    except OSError as exc:
        errors.append(RowError(name, None, None, f"无法读取文件：{exc.strerror or exc}"))
        return None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        errors.append(
            RowError(name, line, None, "文件不是 UTF-8 编码（从 Excel 或 GBK 系统导出的文件请另存为“CSV UTF-8”）")
        )
        return None


def count_records(text: str) -> int:
    """Roughly the number of data lines (for the progress bar)."""
    return max(0, text.count("\n") - 1)


def records(
    fmt: Format,
    name: str,
    text: str,
    clock: LocalClock,
    errors: list[RowError],
    warnings: list[RowError] | None = None,
) -> Iterator[Record | None]:
    """Typed records of a file; a record with a bad cell is yielded as None after its errors are noted.

    Unknown columns (an old platform's extra fields) are ignored, with a warning on line 1. Header problems
    (a missing required column, a repeated one) are errors on line 1 and nothing is yielded; the unknown
    columns are then errors too, since one of them is likely the misspelled missing column.
    """
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        errors.append(RowError(name, None, None, "文件为空（缺少标题行）"))
        return
    except csv.Error as exc:
        errors.append(RowError(name, 1, None, f"CSV 格式错误：{exc}"))
        return
    header = [h.strip() for h in header]
    known = set(fmt.names)
    unknown = [h for h in header if h not in known]
    problems = False
    seen = set()
    for h in header:
        if h in seen and h in known:
            errors.append(RowError(name, 1, h, "列名重复"))
            problems = True
        seen.add(h)
    for c in fmt.columns:
        if c.required and c.name not in seen:
            errors.append(RowError(name, 1, c.name, "缺少必填列"))
            problems = True
    if problems:
        for h in dict.fromkeys(unknown):
            errors.append(RowError(name, 1, h or "（空）", f"未知的列；{fmt.filename} 的列为：{', '.join(fmt.names)}"))
        return
    if unknown and warnings is not None:
        for h in dict.fromkeys(unknown):
            warnings.append(RowError(name, 1, h or "（空）", "未知的列，已忽略（不导入）"))
    # (index in the row, column name, parser) of the known columns; the unknown ones are skipped
    parsers = [(i, h, parser(fmt.column(h), clock)) for i, h in enumerate(header) if h in known]
    width = len(header)
    empty = {c.name: None for c in fmt.columns}
    required = [c for c in fmt.columns if c.required]
    line = 1  # line where the previous record ended
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            errors.append(RowError(name, reader.line_num, None, f"CSV 格式错误：{exc}"))
            return
        start, line = line + 1, reader.line_num
        if not any(cells):
            continue  # blank lines are allowed
        if len(cells) != width:
            errors.append(RowError(name, start, None, f"应有 {width} 列，实有 {len(cells)} 列（检查逗号与引号）"))
            yield None
            continue
        values = dict(empty)
        bad: set[str] = set()
        for i, col_name, parse in parsers:
            cell = cells[i]
            if not cell or not (cell := cell.strip()):
                continue
            try:
                values[col_name] = parse(cell)
            except CellError as exc:
                errors.append(RowError(name, start, col_name, str(exc)))
                bad.add(col_name)
        for col in required:
            if values[col.name] is None and col.name not in bad:
                errors.append(RowError(name, start, col.name, "必填，不能为空"))
                bad.add(col.name)
        if bad:
            yield None
        else:
            yield Record(start, values)
