"""地图底图 (issue 13 §6): the basemap under every map (the wall's and any other Plotly map).

Three modes, kept in the SettingValue "basemap" (JSON):

- ``blank``  空白底图 (the default): a plain dark background, no request leaves the server.
- ``style``  样式地址: a MapLibre style URL (http/https) on the city's own network; the browser fetches the
  style (and what it names) from that host, so its origin is added to the page's CSP (connect-src, img-src).
- ``file``   本地瓦片文件: an MBTiles or PMTiles file of raster tiles (png, jpg, webp) kept under the instance
  path and served by this app at ``/tiles/{z}/{x}/{y}.{ext}``. Vector tiles (pbf/mvt) are refused: they need a
  style (fonts, layers) this app does not make; serve them with a tile server and use the ``style`` mode.

The uploaded file is written to a temporary file next to its final place, checked (format, zoom range, bounds,
tile type), and only then renamed into place (atomic): a refused file never replaces the one in use. Each file
is named by its content hash (``tiles-<hash>.<kind>``), so a web process still holding the previous setting
for a few seconds reads the previous file, which is kept until the next change. Files are opened read-only.

Every web process reads the setting from the database (cached per application for CACHE_SECONDS), so a
change applies everywhere without a restart. Every change is audited with the setting before and after.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import mmap
import os
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

from flask import current_app

from .audit import audit
from .db import db
from .models import Account, SettingValue
from .settings import env_int

log = logging.getLogger(__name__)

SETTING_KEY = "basemap"
MODES = ("blank", "style", "file")
MODE_LABELS = {"blank": "空白底图", "style": "样式地址", "file": "本地瓦片文件"}
KINDS = ("mbtiles", "pmtiles")
CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}
VECTOR_FORMATS = ("pbf", "mvt", "mlt")
STYLE_URL_MAX = 500
HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?"
)
MAX_ZOOM = 24
CACHE_SECONDS = 3.0
# the largest tile file an administrator may upload through the page (the `flask basemap set-file` command
# has no limit); BASEMAP_UPLOAD_MAX_MB overrides it. A reverse proxy in front needs client_max_body_size as large.
DEFAULT_UPLOAD_MAX_MB = 1024
BLANK_BACKGROUND = "#07121f"  # the wall's blank style (static/js/wall.js BLANK_STYLE)
DEFAULTS = {"mode": "blank", "style_url": "", "file": None}
CHUNK = 1024 * 1024


class BasemapError(Exception):
    """A refused change; ``problems``: form field → message (in Chinese, naming the field)."""

    def __init__(self, problems: dict[str, str]):
        super().__init__("；".join(problems.values()))
        self.problems = problems


def upload_max_bytes() -> int:
    return max(1, env_int("BASEMAP_UPLOAD_MAX_MB", DEFAULT_UPLOAD_MAX_MB)) * 1024 * 1024


def storage_dir() -> Path:
    """Where the tile file lives: <instance path>/basemap (never a path from the user)."""
    return Path(current_app.config["SETTINGS"].instance_path) / "basemap"


# --- the setting ---------------------------------------------------------------------------------------------


def stored_config() -> dict:
    """The stored setting over the defaults, read from the database now."""
    row = db.get(SettingValue, SETTING_KEY)
    stored = row.value if row is not None and isinstance(row.value, dict) else {}
    config = {k: stored.get(k, default) for k, default in DEFAULTS.items()}
    if config["mode"] not in MODES:
        config["mode"] = "blank"
    if not isinstance(config["file"], dict):
        config["file"] = None
    return config


def _cache() -> dict:
    return current_app.extensions.setdefault("commandcenter.basemap", {})


def config() -> dict:
    """The setting, as this process saw it at most CACHE_SECONDS ago."""
    cache = _cache()
    entry = cache.get("config")
    now = time.monotonic()
    if entry is None or entry[0] < now:
        entry = (now + CACHE_SECONDS, stored_config())
        cache["config"] = entry
    return entry[1]


def forget_cached() -> None:
    _cache().pop("config", None)


def file_path(info: dict | None) -> Path | None:
    """The stored tile file of a setting (its name was made by this module, never given by a user)."""
    if not info or not re.fullmatch(r"tiles-[0-9a-f]{16}\.(mbtiles|pmtiles)", str(info.get("stored", ""))):
        return None
    return storage_dir() / info["stored"]


def file_present(info: dict | None) -> bool:
    path = file_path(info)
    return path is not None and path.is_file()


def client_style(cfg: dict | None = None) -> dict:
    """What the maps' JavaScript needs to build the MapLibre style (static/js/wall.js basemapStyle)."""
    cfg = cfg if cfg is not None else config()
    if cfg["mode"] == "style" and cfg["style_url"]:
        return {"mode": "style", "url": cfg["style_url"]}
    info = cfg["file"]
    if cfg["mode"] == "file" and info and file_present(info):
        return {
            "mode": "file",
            # relative: the page makes it absolute with location.origin (MapLibre needs absolute tile URLs)
            "tiles": f"/tiles/{{z}}/{{x}}/{{y}}.{info['format']}?v={info['version']}",
            "minzoom": info["minzoom"],
            "maxzoom": info["maxzoom"],
            "bounds": info["bounds"],
            "tileSize": info.get("tile_size", 256),
            "attribution": html.escape(info.get("attribution") or ""),
            "background": BLANK_BACKGROUND,
        }
    return {"mode": "blank"}


def style_origin(cfg: dict | None = None) -> str | None:
    """The origin the browser fetches a configured style from (for the page's CSP), or None."""
    cfg = cfg if cfg is not None else config()
    if cfg["mode"] != "style" or not cfg["style_url"]:
        return None
    parts = urlsplit(cfg["style_url"])
    return f"{parts.scheme}://{parts.netloc}"


def snapshot(cfg: dict) -> dict:
    """The setting as the audit log keeps it."""
    info = cfg.get("file") or None
    if info:
        info = {k: info.get(k) for k in ("name", "kind", "format", "minzoom", "maxzoom", "bounds", "size", "version")}
    return {"mode": cfg["mode"], "style_url": cfg["style_url"], "file": info}


# --- validation ------------------------------------------------------------------------------------------------


def check_style_url(value) -> tuple[str, str | None]:
    """(url, problem): a MapLibre style address, http or https, with a host and no spaces."""
    url = str(value or "").strip()
    if not url:
        return url, "样式地址（style_url）不能为空"
    if len(url) > STYLE_URL_MAX:
        return url, f"样式地址（style_url）不能超过 {STYLE_URL_MAX} 个字符"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() or c in "\"'<>\\" for c in url):
        return url, "样式地址（style_url）须是以 http:// 或 https:// 开头的完整地址（含主机名），不含空格和引号"
    if parts.username or parts.password:
        return url, "样式地址（style_url）不能包含用户名或密码"
    if not HOST.fullmatch(parts.netloc):  # it goes into the pages' CSP: a host name or address and a port only
        return url, "样式地址（style_url）的主机名无效（只能是域名或 IP 地址，可带端口）"
    return url, None


def style_host(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc if parts.hostname else ""


def _sniff(data: bytes) -> tuple[str | None, int | None]:
    """(format, width in pixels) of one tile, from its first bytes."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return "png", int.from_bytes(data[16:20], "big")
    if data[:3] == b"\xff\xd8\xff":
        return "jpg", _jpeg_width(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp", _webp_width(data)
    if data[:2] == b"\x1f\x8b":
        return "pbf", None  # gzip: a compressed vector tile
    return None, None


def _jpeg_width(data: bytes) -> int | None:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(data[i + 7 : i + 9], "big")
        i += 2 + length
    return None


def _webp_width(data: bytes) -> int | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        return int.from_bytes(data[26:28], "little") & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        return 1 + (int.from_bytes(data[21:25], "little") & 0x3FFF)
    if chunk == b"VP8X" and len(data) >= 30:
        return 1 + int.from_bytes(data[24:27], "little")
    return None


def _tile_size(width: int | None) -> int:
    return width if width in (256, 512) else 256


def _refuse_vector(fmt: str) -> BasemapError:
    return BasemapError(
        {
            "file": f"瓦片文件（file）是矢量瓦片（{fmt}）：本系统只直接显示栅格瓦片（png、jpg、webp）；"
            "矢量瓦片需要配套的样式，请用瓦片服务发布后选择“样式地址”"
        }
    )


def _bounds(values) -> list[float] | None:
    try:
        w, s, e, n = (float(v) for v in values)
    except (TypeError, ValueError):
        return None
    if not (-180 <= w < e <= 180 and -85.06 <= s < n <= 85.06):
        return None
    return [round(w, 6), round(s, 6), round(e, 6), round(n, 6)]


def _tile_bounds(z: int, x0: int, x1: int, y0: int, y1: int) -> list[float]:
    """[w, s, e, n] of XYZ tiles x0..x1 × y0..y1 at zoom z."""
    import math

    n = 1 << z

    def lat(y: int) -> float:
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * y / n))))

    bounds = [x0 / n * 360 - 180, lat(y1 + 1), (x1 + 1) / n * 360 - 180, lat(y0)]
    return [
        round(max(-180.0, min(180.0, v)), 6) if i % 2 == 0 else round(max(-85.05, min(85.05, v)), 6)
        for i, v in enumerate(bounds)
    ]


def _ro_sqlite(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, check_same_thread=False)
    con.execute("PRAGMA query_only = ON")
    con.execute("PRAGMA trusted_schema = OFF")  # a crafted file's views may not call functions
    return con


def _inspect_mbtiles(path: Path) -> dict:
    bad = BasemapError({"file": "瓦片文件（file）不是有效的 MBTiles 文件（缺少 tiles 或 metadata 表，或文件已损坏）"})
    try:
        con = _ro_sqlite(path)
    except sqlite3.Error as exc:
        raise bad from exc
    try:
        meta = {str(k).lower(): "" if v is None else str(v) for k, v in con.execute("SELECT name, value FROM metadata")}
        first = con.execute("SELECT tile_data FROM tiles WHERE tile_data IS NOT NULL LIMIT 1").fetchone()
        if first is None:
            raise BasemapError({"file": "瓦片文件（file）中没有瓦片"})
        zmin, zmax = con.execute("SELECT MIN(zoom_level), MAX(zoom_level) FROM tiles").fetchone()
        declared = meta.get("format", "").strip().lower()
        sniffed, width = _sniff(bytes(first[0]))
        fmt = {"jpeg": "jpg"}.get(declared, declared) or sniffed
        if fmt in VECTOR_FORMATS or sniffed == "pbf":
            raise _refuse_vector(fmt or "pbf")
        if fmt not in CONTENT_TYPES or (sniffed and sniffed != fmt):
            raise BasemapError({"file": f"瓦片文件（file）的瓦片格式“{fmt or '未知'}”不受支持：只支持 png、jpg、webp"})
        bounds = _bounds(meta.get("bounds", "").split(","))
        if bounds is None:
            x0, x1, r0, r1 = con.execute(
                "SELECT MIN(tile_column), MAX(tile_column), MIN(tile_row), MAX(tile_row) FROM tiles WHERE zoom_level = ?",
                (zmax,),
            ).fetchone()
            flip = (1 << int(zmax)) - 1  # MBTiles rows count from the south (TMS)
            bounds = _tile_bounds(int(zmax), int(x0), int(x1), flip - int(r1), flip - int(r0))
    except BasemapError:
        raise
    except (sqlite3.Error, TypeError, ValueError) as exc:
        raise bad from exc
    finally:
        con.close()
    return {
        "kind": "mbtiles",
        "format": fmt,
        "minzoom": int(zmin),
        "maxzoom": int(zmax),
        "bounds": bounds,
        "tile_size": _tile_size(width),
        "attribution": meta.get("attribution", "")[:300],
        "title": meta.get("name", "")[:100],
    }


def _inspect_pmtiles(path: Path) -> dict:
    from pmtiles.reader import Reader, all_tiles
    from pmtiles.tile import Compression, TileType, deserialize_header

    size = path.stat().st_size
    bad = BasemapError({"file": "瓦片文件（file）不是有效的 PMTiles（第 3 版）文件，或文件不完整"})
    try:
        with open(path, "rb") as f:
            header = deserialize_header(f.read(127))
    except Exception as exc:  # MagicNumberNotFound, SpecVersionUnsupported, a short file
        raise bad from exc
    ends = [
        header["root_offset"] + header["root_length"],
        header["metadata_offset"] + header["metadata_length"],
        header["leaf_directory_offset"] + header["leaf_directory_length"],
        header["tile_data_offset"] + header["tile_data_length"],
    ]
    if max(ends) > size:
        raise bad
    kind = header["tile_type"]
    if kind in (TileType.MVT, TileType.MLT):
        raise _refuse_vector("mvt" if kind == TileType.MVT else "mlt")
    fmt = {TileType.PNG: "png", TileType.JPEG: "jpg", TileType.WEBP: "webp"}.get(kind)
    if fmt is None:
        raise BasemapError({"file": f"瓦片文件（file）的瓦片格式“{kind.name.lower()}”不受支持：只支持 png、jpg、webp"})
    if header["tile_compression"] not in (Compression.NONE, Compression.UNKNOWN):
        raise BasemapError({"file": "瓦片文件（file）的栅格瓦片经过压缩（gzip 等），请用未压缩的瓦片重新生成"})
    if header["addressed_tiles_count"] == 0 or header["tile_data_length"] == 0:
        raise BasemapError({"file": "瓦片文件（file）中没有瓦片"})
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapping:

        def get_bytes(offset: int, length: int) -> bytes:
            return mapping[offset : offset + length]

        try:
            meta = Reader(get_bytes).metadata() if header["metadata_length"] else {}
            _zxy, first = next(all_tiles(get_bytes))
        except StopIteration as exc:
            raise BasemapError({"file": "瓦片文件（file）中没有瓦片"}) from exc
        except Exception as exc:
            raise bad from exc
    sniffed, width = _sniff(bytes(first))
    if sniffed and sniffed != fmt:
        raise BasemapError({"file": f"瓦片文件（file）声明为 {fmt}，瓦片实际是 {sniffed}"})
    meta = meta if isinstance(meta, dict) else {}
    bounds = _bounds(
        [header["min_lon_e7"] / 1e7, header["min_lat_e7"] / 1e7, header["max_lon_e7"] / 1e7, header["max_lat_e7"] / 1e7]
    )
    return {
        "kind": "pmtiles",
        "format": fmt,
        "minzoom": int(header["min_zoom"]),
        "maxzoom": int(header["max_zoom"]),
        "bounds": bounds or [-180.0, -85.05, 180.0, 85.05],
        "tile_size": _tile_size(width),
        "attribution": str(meta.get("attribution") or "")[:300],
        "title": str(meta.get("name") or "")[:100],
    }


def inspect_file(path: Path) -> dict:
    """Format, tile type, zoom range and bounds of an MBTiles or PMTiles file (by its content, not its name);
    BasemapError naming the field ``file`` when it is neither, holds vector tiles, or is empty."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"SQLite format 3\x00"):
        info = _inspect_mbtiles(path)
    elif head.startswith(b"PMTiles"):
        info = _inspect_pmtiles(path)
    else:
        raise BasemapError({"file": "瓦片文件（file）不是 MBTiles 或 PMTiles 文件"})
    if not (0 <= info["minzoom"] <= info["maxzoom"] <= MAX_ZOOM):
        raise BasemapError(
            {"file": f"瓦片文件（file）的缩放级别 {info['minzoom']}–{info['maxzoom']} 超出 0–{MAX_ZOOM}"}
        )
    return info


# --- storing a file ------------------------------------------------------------------------------------------


@dataclass
class Staged:
    """A checked tile file waiting in the storage directory under a temporary name."""

    path: Path
    name: str
    size: int
    sha256: str
    info: dict

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def stage(stream, original_name: str, *, max_bytes: int | None) -> Staged:
    """Copy an uploaded (or local) file next to its final place, bounded, and check it. The caller places or
    discards the result."""
    directory = storage_dir()
    tmp = directory / f".upload-{secrets.token_hex(8)}.part"
    digest, size = hashlib.sha256(), 0
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with open(tmp, "xb") as out:
            while chunk := stream.read(CHUNK):
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise BasemapError(
                        {
                            "file": f"瓦片文件（file）超过上传上限 {max_bytes // (1024 * 1024)} MB（可用命令 flask basemap set-file 导入）"
                        }
                    )
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if size == 0:
            raise BasemapError({"file": "瓦片文件（file）：请选择要上传的 .mbtiles 或 .pmtiles 文件"})
        info = inspect_file(tmp)
    except OSError as exc:  # the instance directory is full or not writable
        _remove(tmp)
        log.error("basemap upload not stored: %s", exc)
        raise BasemapError({"file": f"瓦片文件（file）无法保存到实例目录 basemap/（{exc.strerror or exc}）"}) from exc
    except BaseException:
        _remove(tmp)
        raise
    name = Path(str(original_name or "")).name[:100] or f"tiles.{info['kind']}"
    return Staged(tmp, name, size, digest.hexdigest(), info)


def _place(staged: Staged) -> dict:
    """Rename a checked file into place (atomic) and describe it for the setting."""
    version = staged.sha256[:16]
    stored = f"tiles-{version}.{staged.info['kind']}"
    final = staged.path.parent / stored
    os.chmod(staged.path, 0o440)
    os.replace(staged.path, final)
    return {
        **{
            k: staged.info[k]
            for k in ("kind", "format", "minzoom", "maxzoom", "bounds", "tile_size", "attribution", "title")
        },
        "stored": stored,
        "name": staged.name,
        "size": staged.size,
        "version": version,
    }


def _sweep(keep: set[str]) -> None:
    """Remove tile files no longer named by the setting (the one just replaced is kept, see the module doc)."""
    directory = storage_dir()
    if not directory.is_dir():
        return
    for path in directory.glob("tiles-*"):
        if path.name not in keep:
            path.unlink(missing_ok=True)
    for path in directory.glob(".upload-*.part"):  # left by a crash, an hour old
        try:
            if time.time() - path.stat().st_mtime > 3600:
                path.unlink(missing_ok=True)
        except OSError:
            pass


# --- changing the setting ----------------------------------------------------------------------------------------


def save(account: Account | None, *, mode, style_url=None, staged: Staged | None = None) -> dict:
    """Store the basemap: ``mode`` blank/style/file; ``style_url`` for style; ``staged`` a checked new file for
    file (without one the file already stored is kept). Audited before/after; the caller commits. A refused
    change raises BasemapError and leaves the stored file and setting as they were."""
    problems: dict[str, str] = {}
    before = stored_config()
    mode = str(mode or "").strip()
    if staged is not None and mode != "file":  # a file chosen, then another mode: the file is not taken
        staged.discard()
        staged = None
    if mode not in MODES:
        problems["mode"] = "底图类型（mode）须是 空白底图、样式地址 或 本地瓦片文件 之一"
    url = before["style_url"]
    if mode == "style":
        url, problem = check_style_url(style_url)
        if problem:
            problems["style_url"] = problem
    elif style_url not in (None, ""):
        url, problem = check_style_url(style_url)
        if problem:  # kept for later only when it is a valid address
            url = before["style_url"]
    if mode == "file" and staged is None and not file_present(before["file"]):
        problems["file"] = "瓦片文件（file）：请选择要上传的 .mbtiles 或 .pmtiles 文件"
    if problems:
        if staged is not None:
            staged.discard()
        raise BasemapError(problems)
    info = before["file"]
    if staged is not None:
        info = _place(staged)
    after = {"mode": mode, "style_url": url, "file": info}
    row = db.get(SettingValue, SETTING_KEY)
    value = json.loads(json.dumps(after))
    if row is None:
        db.add(SettingValue(key=SETTING_KEY, value=value, updated_by_id=account.id if account else None))
    else:
        row.value = value
        row.updated_by_id = account.id if account else None
    db.flush()
    detail = json.dumps({"before": snapshot(before), "after": snapshot(after)}, ensure_ascii=False, sort_keys=True)
    audit("map.basemap", "setting", SETTING_KEY, detail=detail[:4000], account=account)
    keep = {i["stored"] for i in (info, before["file"]) if i and i.get("stored")}
    _sweep(keep)
    forget_cached()
    return after


def refused(exc: BasemapError, account: Account | None = None) -> None:
    """Roll back a refused change and audit the refusal on its own."""
    db.rollback()
    audit(
        "map.basemap",
        "setting",
        SETTING_KEY,
        success=False,
        detail="；".join(exc.problems.values())[:500],
        account=account,
        commit=True,
    )


# --- reading tiles -------------------------------------------------------------------------------------------


@dataclass
class Tile:
    data: bytes
    content_type: str
    etag: str


class PMTilesFile:
    """A read-only PMTiles file: the pmtiles package's header, directory and lookup functions (as its Reader)
    over one mapping of the file, with the parsed directories kept (the Reader parses them on every tile)."""

    DIRECTORIES_KEPT = 256

    def __init__(self, path: Path):
        from pmtiles.tile import deserialize_header

        with open(path, "rb") as f:
            self._mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self.header = deserialize_header(self._mapping[0:127])
        self._directories: dict[tuple[int, int], list] = {}

    def _directory(self, offset: int, length: int) -> list:
        from pmtiles.tile import deserialize_directory

        key = (offset, length)
        entries = self._directories.get(key)
        if entries is None:
            entries = deserialize_directory(self._mapping[offset : offset + length])
            if len(self._directories) >= self.DIRECTORIES_KEPT:
                self._directories.clear()
            self._directories[key] = entries
        return entries

    def get(self, z: int, x: int, y: int) -> bytes | None:
        from pmtiles.tile import find_tile, zxy_to_tileid

        tile_id, h = zxy_to_tileid(z, x, y), self.header
        offset, length = h["root_offset"], h["root_length"]
        for _depth in range(4):  # the format's deepest directory tree
            entry = find_tile(self._directory(offset, length), tile_id)
            if entry is None:
                return None
            if entry.run_length > 0:
                start = h["tile_data_offset"] + entry.offset
                return self._mapping[start : start + entry.length]
            offset, length = h["leaf_directory_offset"] + entry.offset, entry.length
        return None


_pm_lock = threading.Lock()
_pm_files: dict[str, PMTilesFile] = {}


def _pmtiles_file(path: Path) -> PMTilesFile:
    """One mapping of each PMTiles file per process (a file never changes under its content-hash name)."""
    key = str(path)
    with _pm_lock:
        found = _pm_files.get(key)
        if found is None:
            if len(_pm_files) >= 4:
                _pm_files.clear()  # the mappings close when the last request using them ends
            found = _pm_files[key] = PMTilesFile(path)
    return found


def read_tile(z: int, x: int, y: int) -> Tile | None:
    """The tile z/x/y (XYZ, y from the north) of the configured local file, or None."""
    cfg = config()
    info = cfg["file"]
    if cfg["mode"] != "file" or not info or not (0 <= z <= MAX_ZOOM) or not (0 <= x < (1 << z) and 0 <= y < (1 << z)):
        return None
    path = file_path(info)
    if path is None or not path.is_file():
        return None
    data = None
    try:
        if info["kind"] == "mbtiles":
            con = _ro_sqlite(path)
            try:
                row = con.execute(
                    "SELECT tile_data FROM tiles WHERE zoom_level = ? AND tile_column = ? AND tile_row = ?",
                    (z, x, (1 << z) - 1 - y),  # TMS: rows count from the south
                ).fetchone()
            finally:
                con.close()
            data = bytes(row[0]) if row and row[0] is not None else None
        else:
            found = _pmtiles_file(path).get(z, x, y)
            data = bytes(found) if found else None
    except (OSError, sqlite3.Error, ValueError) as exc:
        log.warning("basemap tile %s/%s/%s unreadable: %s", z, x, y, exc)
        return None
    if not data:
        return None
    return Tile(data, CONTENT_TYPES[info["format"]], f"{info['version']}-{z}-{x}-{y}")


def describe(info: dict | None) -> dict | None:
    """The stored file for the page: format, zoom range, bounds, size."""
    if not info:
        return None
    size = int(info.get("size") or 0)
    human = f"{size / 1024 / 1024:.1f} MB" if size >= 1024 * 1024 else f"{size / 1024:.1f} KB"
    return {**info, "size_text": human, "present": file_present(info)}


# --- `flask basemap …` ------------------------------------------------------------------------------------------


def _cli_group():
    import sys

    import click
    from flask.cli import AppGroup

    group = AppGroup("basemap", help="地图底图：本地瓦片文件（MBTiles/PMTiles）或空白底图（页面见 /admin/map）。")

    @group.command("set-file")
    @click.argument("path", type=click.Path(exists=True, dir_okay=False))
    def set_file(path: str) -> None:
        """Check a local MBTiles/PMTiles file, copy it under the instance path and use it (no size limit)."""
        try:
            with open(path, "rb") as source:
                staged = stage(source, Path(path).name, max_bytes=None)
            after = save(None, mode="file", staged=staged)
        except BasemapError as exc:
            refused(exc)
            for problem in exc.problems.values():
                click.echo(f"{path}: {problem}", err=True)
            sys.exit(1)
        db.commit()
        info = after["file"]
        click.echo(
            f"已设置本地瓦片底图：{info['kind']} · {info['format']} · 缩放 {info['minzoom']}–{info['maxzoom']} · "
            f"范围 {', '.join(str(v) for v in info['bounds'])} · {describe(info)['size_text']}"
        )

    @group.command("clear")
    def clear() -> None:
        """Back to the blank basemap (the uploaded file is kept until the next change)."""
        save(None, mode="blank")
        db.commit()
        click.echo("已恢复空白底图")

    @group.command("show")
    def show() -> None:
        """The basemap in use."""
        cfg = stored_config()
        click.echo(f"{MODE_LABELS[cfg['mode']]}（{cfg['mode']}）")
        if cfg["mode"] == "style":
            click.echo(f"样式地址：{cfg['style_url']}")
        if cfg["file"]:
            info = describe(cfg["file"])
            state = "" if info["present"] else "（文件缺失）"
            click.echo(
                f"瓦片文件：{info['name']}{state} · {info['kind']} · {info['format']} · "
                f"缩放 {info['minzoom']}–{info['maxzoom']} · {info['size_text']}"
            )

    return group


cli = _cli_group()
