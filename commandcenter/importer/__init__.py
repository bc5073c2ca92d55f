"""Import of historical data from the platform a city is leaving (`flask import …`, docs/import.md).

    result = import_file("cases", Path("cases.csv"), tz="Asia/Shanghai")
    results = import_dir(Path("export/"), tz=...)   # every known file of the directory, in dependency order

Each file is read whole (UTF-8, with or without BOM), every row is validated, and only then written, in
one transaction per file. A file with errors is not imported at all unless ``skip_bad_rows`` is set, in
which case its good rows are imported and the bad ones still reported. Natural keys make a second run
import nothing and say so. After cases or their history were imported, call ``rebuild_live_counters()``
(the CLI does) so that the live counters agree with the database again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..db import db
from .formats import FORMATS, ORDER, Format
from .loaders import EXISTING, LOADERS, Run
from .validation import RowError, count_records, read_text, records

log = logging.getLogger(__name__)

__all__ = [
    "FORMATS",
    "ORDER",
    "FileResult",
    "RowError",
    "Run",
    "files_in",
    "import_dir",
    "import_file",
    "rebuild_live_counters",
]

PROGRESS_MIN_ROWS = 2_000


@dataclass
class FileResult:
    kind: str
    file: str
    rows: int = 0  # data rows read
    new: int = 0  # rows written
    updated: int = 0  # rows already there whose values changed, updated (base data, standard addresses)
    existing: int = 0  # rows already in the database (left unchanged)
    bad: int = 0  # rows with errors
    errors: list[RowError] = field(default_factory=list)
    warnings: list[RowError] = field(default_factory=list)  # not refusing the file (unknown columns, ignored)
    imported: bool = False  # False: the file was refused (nothing written)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        return self._summary() + "".join(f"\n  提示 {w}" for w in self.warnings)

    def _summary(self) -> str:
        if not self.imported:
            return (
                f"{self.file}：共 {self.rows} 行，{self.bad} 行有错误（{len(self.errors)} 处），未导入任何数据"
                "（修正后重新运行，或加 --skip-bad-rows 只导入正确的行）"
            )
        text = f"{self.file}：共 {self.rows} 行，新增 {self.new}，已存在 {self.existing}（未改动）"
        if self.updated:
            text += f"，更新 {self.updated}"
        if self.bad:
            text += f"，跳过有错误的行 {self.bad}"
        if self.new == 0 and not self.updated and not self.bad:
            text += " —— 没有新数据，数据库未改动"
        return text + f"（{self.seconds:.1f} 秒）"


def _bar(total: int, desc: str, progress: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="行", disable=not progress or total < PROGRESS_MIN_ROWS, leave=False)


def import_file(
    kind: str, path: Path, *, tz: str, skip_bad_rows: bool = False, progress: bool = False, run: Run | None = None
) -> FileResult:
    """Validate and import one file of the given kind; needs an app context (or an initialised engine)."""
    fmt: Format = FORMATS[kind]
    path = Path(path)
    run = run or Run(tz)
    started = time.monotonic()
    result = FileResult(kind, path.name)
    errors = result.errors
    text = read_text(path, errors)
    if text is None:
        return result
    loader = LOADERS[kind](run, path.name)
    loader.errors = errors
    good: list[dict] = []
    bar = _bar(count_records(text), f"校验 {path.name}", progress)
    try:
        for rec in records(fmt, path.name, text, run.clock, errors, result.warnings):
            result.rows += 1
            bar.update(1)
            if rec is None:
                result.bad += 1
                continue
            before = len(errors)
            row = loader.check(rec)
            if row is EXISTING:
                result.existing += 1
            elif row is None or len(errors) > before:
                result.bad += 1
            else:
                good.append(row)
    finally:
        bar.close()
    # a broken header or a CSV syntax error leaves nothing trustworthy to import, even with skip_bad_rows
    fatal = result.rows == 0 or any(e.message.startswith("CSV 格式错误") for e in errors)
    if errors and (not skip_bad_rows or fatal):
        db.rollback()
        run.forget()
        result.seconds = time.monotonic() - started
        return result
    try:
        good, already = loader.finalize(good)
        result.existing += already
        if good:
            bar = _bar(len(good), f"写入 {path.name}", progress)
            try:
                loader.write(good, bar)
            finally:
                bar.close()
        db.commit()
    except Exception:
        db.rollback()
        run.forget()
        raise
    result.updated = sum(1 for r in good if r.get("_id"))
    result.new = len(good) - result.updated
    result.imported = True
    result.seconds = time.monotonic() - started
    log.info("import %s: %s", kind, result.summary())
    return result


def files_in(directory: Path) -> list[tuple[str, Path]]:
    """(kind, path) of the known files present in a directory, in dependency order."""
    return [
        (kind, directory / FORMATS[kind].filename) for kind in ORDER if (directory / FORMATS[kind].filename).is_file()
    ]


def import_dir(
    directory: Path, *, tz: str, skip_bad_rows: bool = False, progress: bool = False, on_result=None
) -> list[FileResult]:
    """Import every known file of a directory in dependency order; stop at the first refused file
    (the files after it may refer to its rows)."""
    run = Run(tz)
    results = []
    for kind, path in files_in(Path(directory)):
        result = import_file(kind, path, tz=tz, skip_bad_rows=skip_bad_rows, progress=progress, run=run)
        results.append(result)
        if on_result is not None:
            on_result(result)
        if not result.imported:
            break
    return results


def rebuild_live_counters() -> str:
    """Recompute the live counters after cases were imported; a message for the operator."""
    try:
        from ..jobs import rebuild_counters

        report = rebuild_counters()
    except Exception as exc:  # Redis down: the data is in, the counters can follow later
        log.warning("counters rebuild after import failed: %s", exc)
        return f"实时计数未能重建（{exc}）：请在 Redis 可用后运行 flask counters rebuild"
    return f"已重建实时计数：检查 {report.get('keys_checked')} 个计数键，修正 {report.get('keys_fixed')} 个"
