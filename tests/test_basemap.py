"""地图底图 (issue 13 §6): the administrator sets a basemap (blank, a style URL, or a local MBTiles/PMTiles
file), the app serves the file's tiles at /tiles/{z}/{x}/{y} to logged-in pages only, the wall gets the style,
refusals name their field, and every change is audited with the setting before and after."""

from __future__ import annotations

import gzip
import io
import json
import sqlite3
import struct
import zlib
from pathlib import Path

import pytest

from commandcenter import basemap
from commandcenter.db import db
from commandcenter.models import AuditLog, SettingValue
from tests.conftest import csrf_from, logged_in

RED, BLUE, GREEN, TEAL = (220, 20, 60), (30, 60, 200), (20, 160, 60), (0, 128, 128)


# --- tile files made in the test -----------------------------------------------------------------------------


def png(rgb: tuple[int, int, int], size: int = 256) -> bytes:
    """A one-colour RGB PNG, in pure Python."""
    raw = b"".join(b"\x00" + bytes(rgb) * size for _ in range(size))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def make_mbtiles(path: Path, tiles: dict[tuple[int, int, int], bytes], *, fmt: str | None = "png", **meta) -> Path:
    """An MBTiles file; ``tiles`` keyed by XYZ (z, x, y from the north), stored with the TMS row (from the south)."""
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE metadata (name TEXT, value TEXT)")
    con.execute("CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB)")
    con.execute("CREATE UNIQUE INDEX tile_index ON tiles (zoom_level, tile_column, tile_row)")
    values = {"name": "测试底图", **({"format": fmt} if fmt else {}), **meta}
    con.executemany("INSERT INTO metadata VALUES (?, ?)", list(values.items()))
    con.executemany(
        "INSERT INTO tiles VALUES (?, ?, ?, ?)", [(z, x, (1 << z) - 1 - y, data) for (z, x, y), data in tiles.items()]
    )
    con.commit()
    con.close()
    return path


def make_pmtiles(path: Path, tiles: dict[tuple[int, int, int], bytes], *, tile_type=None, bounds=None, **meta) -> Path:
    """A PMTiles (v3) file written with the pmtiles package's writer."""
    from pmtiles.tile import Compression, TileType, zxy_to_tileid
    from pmtiles.writer import Writer

    w, s, e, n = bounds or (119.5, 30.5, 120.5, 31.5)
    with open(path, "wb") as f:
        writer = Writer(f)
        for tile_id, data in sorted((zxy_to_tileid(z, x, y), data) for (z, x, y), data in tiles.items()):
            writer.write_tile(tile_id, data)
        writer.finalize(
            {
                "tile_type": tile_type or TileType.PNG,
                "tile_compression": Compression.NONE if tile_type in (None, TileType.PNG) else Compression.GZIP,
                "min_lon_e7": int(w * 1e7),
                "min_lat_e7": int(s * 1e7),
                "max_lon_e7": int(e * 1e7),
                "max_lat_e7": int(n * 1e7),
            },
            meta,
        )
    return path


def two_colour_tiles() -> dict[tuple[int, int, int], bytes]:
    """z1: the north-west tile red, the south-west tile blue (a TMS flip would swap them); z2: one green tile."""
    return {(1, 0, 0): png(RED), (1, 0, 1): png(BLUE), (2, 3, 1): png(GREEN)}


# --- helpers ------------------------------------------------------------------------------------------------


def post_map(client, *, mode: str, style_url: str = "", file: tuple[bytes, str] | None = None):
    page = client.get("/admin/map").get_data(as_text=True)
    data = {"csrf_token": csrf_from(page), "mode": mode, "style_url": style_url}
    if file is not None:
        data["file"] = (io.BytesIO(file[0]), file[1])
    return client.post("/admin/map", data=data, content_type="multipart/form-data")


def audit_rows(app, success: bool = True) -> list[AuditLog]:
    with app.app_context():
        rows = db.query(AuditLog).filter_by(action="map.basemap", success=success).order_by(AuditLog.id).all()
        db.expunge_all()
        return rows


def stored_files(app) -> list[str]:
    directory = Path(app.config["SETTINGS"].instance_path) / "basemap"
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


def wall_basemap(client) -> dict:
    import re

    html = client.get("/wall").get_data(as_text=True)
    match = re.search(r"data-basemap='([^']*)'", html)
    assert match, "the wall carries no basemap"
    return json.loads(match.group(1))


# --- tests ----------------------------------------------------------------------------------------------


def test_blank_is_the_default_and_no_tile_is_served(app, world):
    duty = logged_in(app.test_client(), "city_duty_officer")
    assert wall_basemap(duty) == {"mode": "blank"}
    response = duty.get("/tiles/1/0/0.png")
    assert response.status_code == 404 and response.data == b""
    admin = logged_in(app.test_client(), "city_admin")
    page = admin.get("/admin/map").get_data(as_text=True)
    assert "当前：<b>空白底图</b>" in page and "地图底图" in admin.get("/").get_data(as_text=True)


def test_an_admin_uploads_an_mbtiles_file_and_its_tiles_are_served(app, world, tmp_path):
    path = make_mbtiles(tmp_path / "city.mbtiles", two_colour_tiles(), bounds="120.0,31.0,120.2,31.1", minzoom="1")
    admin = logged_in(app.test_client(), "city_admin")
    response = post_map(admin, mode="file", file=(path.read_bytes(), "苏州天地图.mbtiles"))
    assert response.status_code == 302, response.get_data(as_text=True)[:800]

    page = admin.get("/admin/map").get_data(as_text=True)
    assert "当前：<b>本地瓦片文件</b>" in page and "苏州天地图.mbtiles" in page
    assert "MBTILES · 栅格瓦片 png · 256×256" in page
    assert '<td id="basemap-zoom">1–2</td>' in page
    assert '<td id="basemap-bounds">120.0, 31.0, 120.2, 31.1</td>' in page
    assert "KB</td>" in page

    duty = logged_in(app.test_client(), "city_duty_officer")
    red = duty.get("/tiles/1/0/0.png")
    assert red.status_code == 200 and red.data == png(RED) and red.headers["Content-Type"] == "image/png"
    assert duty.get("/tiles/1/0/1").data == png(BLUE)  # XYZ y=1 is the south: TMS row 0
    assert duty.get("/tiles/2/3/1.png").data == png(GREEN)
    assert "private" in red.headers["Cache-Control"] and "max-age" in red.headers["Cache-Control"]
    etag = red.headers["ETag"]
    assert etag and duty.get("/tiles/1/0/0.png", headers={"If-None-Match": etag}).status_code == 304
    for missing in ("/tiles/1/1/1.png", "/tiles/0/0/0", "/tiles/3/9/0.png", "/tiles/30/0/0.png"):
        response = duty.get(missing)
        assert response.status_code == 404 and response.data == b"", missing

    style = wall_basemap(duty)
    assert style["mode"] == "file" and style["tiles"].startswith("/tiles/{z}/{x}/{y}.png?v=")
    assert style["minzoom"] == 1 and style["maxzoom"] == 2 and style["bounds"] == [120.0, 31.0, 120.2, 31.1]

    (row,) = audit_rows(app)
    detail = json.loads(row.detail)
    assert row.username == "city_admin" and row.object_type == "setting" and row.object_id == "basemap"
    assert detail["before"]["mode"] == "blank" and detail["before"]["file"] is None
    assert detail["after"]["mode"] == "file" and detail["after"]["file"]["name"] == "苏州天地图.mbtiles"
    assert detail["after"]["file"]["minzoom"] == 1 and detail["after"]["file"]["format"] == "png"
    files = stored_files(app)
    assert len(files) == 1 and files[0].startswith("tiles-") and files[0].endswith(".mbtiles")


def test_an_mbtiles_file_without_metadata_bounds_gets_them_from_its_tiles(app, world, tmp_path):
    path = make_mbtiles(tmp_path / "nob.mbtiles", {(2, 3, 1): png(GREEN, 512)}, fmt=None)
    with app.app_context():
        info = basemap.inspect_file(path)
    assert info["format"] == "png" and info["tile_size"] == 512 and (info["minzoom"], info["maxzoom"]) == (2, 2)
    assert info["bounds"] == pytest.approx([90.0, 0.0, 180.0, 66.513], abs=0.001)  # XYZ 2/3/1, stored as TMS row 2


def test_a_pmtiles_file_is_served_with_its_zoom_range_and_bounds(app, world, tmp_path):
    path = make_pmtiles(tmp_path / "city.pmtiles", two_colour_tiles(), attribution="<b>天地图</b> GS(2024)0001号")
    admin = logged_in(app.test_client(), "city_admin")
    response = post_map(admin, mode="file", file=(path.read_bytes(), "city.pmtiles"))
    assert response.status_code == 302, response.get_data(as_text=True)[:800]
    page = admin.get("/admin/map").get_data(as_text=True)
    assert "PMTILES · 栅格瓦片 png" in page and '<td id="basemap-zoom">1–2</td>' in page
    assert '<td id="basemap-bounds">119.5, 30.5, 120.5, 31.5</td>' in page
    assert "&lt;b&gt;天地图&lt;/b&gt;" in page  # shown as text

    duty = logged_in(app.test_client(), "city_duty_officer")
    assert duty.get("/tiles/1/0/0.png").data == png(RED)
    assert duty.get("/tiles/1/0/1.png").data == png(BLUE)
    assert duty.get("/tiles/2/3/1.png").data == png(GREEN)
    assert duty.get("/tiles/2/0/0.png").status_code == 404
    style = wall_basemap(duty)
    assert style["attribution"] == "&lt;b&gt;天地图&lt;/b&gt; GS(2024)0001号"  # MapLibre renders it as HTML

    # a new file replaces the old one; the tiles follow at once in this process
    second = make_pmtiles(tmp_path / "v2.pmtiles", {(1, 0, 0): png(TEAL)})
    assert post_map(admin, mode="file", file=(second.read_bytes(), "v2.pmtiles")).status_code == 302
    assert duty.get("/tiles/1/0/0.png").data == png(TEAL)
    assert duty.get("/tiles/1/0/1.png").status_code == 404
    assert len(stored_files(app)) == 2  # the previous file is kept for processes still reading it


def test_tiles_need_a_login(app, world, tmp_path):
    with app.app_context():
        with open(make_mbtiles(tmp_path / "a.mbtiles", two_colour_tiles()), "rb") as f:
            basemap.save(None, mode="file", staged=basemap.stage(f, "a.mbtiles", max_bytes=None))
        db.commit()
    anonymous = app.test_client()
    response = anonymous.get("/tiles/1/0/0.png")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    gridworker = logged_in(app.test_client(), "gw0")  # any logged-in account may see the maps' basemap
    assert gridworker.get("/tiles/1/0/0.png").data == png(RED)


@pytest.mark.parametrize("username", ["city_duty_officer", "city_supervisor", "city_security_admin", "town0_admin"])
def test_only_the_administrator_changes_the_basemap(app, world, username):
    client = logged_in(app.test_client(), username)
    assert client.get("/admin/map").status_code == 403
    home = client.get("/").get_data(as_text=True)
    response = client.post(
        "/admin/map", data={"csrf_token": csrf_from(home), "mode": "style", "style_url": "http://10.0.0.5/s.json"}
    )
    assert response.status_code == 403
    with app.app_context():
        assert db.get(SettingValue, "basemap") is None


def test_a_post_without_the_csrf_token_is_refused(app, world):
    admin = logged_in(app.test_client(), "city_admin")
    response = admin.post("/admin/map", data={"mode": "style", "style_url": "http://10.0.0.5/s.json"})
    assert response.status_code == 400 and "CSRF" in response.get_data(as_text=True)
    with app.app_context():
        assert db.get(SettingValue, "basemap") is None


def test_a_style_url_is_used_and_its_host_is_named_and_allowed(app, world):
    admin = logged_in(app.test_client(), "city_admin")
    url = "http://10.0.0.5:8080/styles/basic/style.json"
    assert post_map(admin, mode="style", style_url=url).status_code == 302
    page = admin.get("/admin/map").get_data(as_text=True)
    assert '浏览器将从 <b id="basemap-current-host">10.0.0.5:8080</b> 获取样式和瓦片' in page
    duty = logged_in(app.test_client(), "city_duty_officer")
    assert wall_basemap(duty) == {"mode": "style", "url": url}
    csp = duty.get("/wall").headers["Content-Security-Policy"]
    assert "connect-src 'self' http://10.0.0.5:8080;" in csp and "img-src 'self' http://10.0.0.5:8080 " in csp
    assert duty.get("/tiles/1/0/0.png").status_code == 404
    (row,) = audit_rows(app)
    detail = json.loads(row.detail)
    assert detail["before"]["mode"] == "blank" and detail["after"] == {"mode": "style", "style_url": url, "file": None}

    # back to blank: the default CSP again, audited with the URL before
    assert post_map(admin, mode="blank").status_code == 302
    assert wall_basemap(duty) == {"mode": "blank"}
    assert "10.0.0.5" not in duty.get("/wall").headers["Content-Security-Policy"]
    last = json.loads(audit_rows(app)[-1].detail)
    assert last["before"]["mode"] == "style" and last["after"]["mode"] == "blank"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://10.0.0.5/style.json",
        "10.0.0.5/style.json",
        "http:///style.json",
        "http://a b/style.json",
        "http://a;script-src*/style.json",  # would add a directive to the CSP
        "http://user:pw@10.0.0.5/style.json",
        "",
    ],
)
def test_a_bad_style_url_is_refused_naming_the_field(app, world, url):
    admin = logged_in(app.test_client(), "city_admin")
    response = post_map(admin, mode="style", style_url=url)
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and 'id="err-style_url"' in page and "样式地址（style_url）" in page
    with app.app_context():
        assert db.get(SettingValue, "basemap") is None
    (failed,) = audit_rows(app, success=False)
    assert failed.username == "city_admin" and "style_url" in failed.detail


def test_bad_tile_files_are_refused_naming_the_field_and_the_file_in_use_stays(app, world, tmp_path):
    from pmtiles.tile import TileType

    admin = logged_in(app.test_client(), "city_admin")
    good = make_mbtiles(tmp_path / "good.mbtiles", two_colour_tiles())
    assert post_map(admin, mode="file", file=(good.read_bytes(), "good.mbtiles")).status_code == 302
    vector_tile = gzip.compress(b"\x1a\x02x\x01")
    cases = {
        "not a tile file": ((b"hello, not tiles\n" * 20, "notes.mbtiles"), "不是 MBTiles 或 PMTiles 文件"),
        "a sqlite file without tiles": (
            (_sqlite_bytes(tmp_path / "other.db", "CREATE TABLE things (a)"), "other.mbtiles"),
            "不是有效的 MBTiles 文件",
        ),
        "vector mbtiles": (
            (make_mbtiles(tmp_path / "v.mbtiles", {(0, 0, 0): vector_tile}, fmt="pbf").read_bytes(), "v.mbtiles"),
            "矢量瓦片（pbf）",
        ),
        "vector pmtiles": (
            (
                make_pmtiles(tmp_path / "v.pmtiles", {(0, 0, 0): vector_tile}, tile_type=TileType.MVT).read_bytes(),
                "v.pmtiles",
            ),
            "矢量瓦片（mvt）",
        ),
        "empty mbtiles": ((make_mbtiles(tmp_path / "e.mbtiles", {}).read_bytes(), "e.mbtiles"), "没有瓦片"),
        "truncated pmtiles": (
            (make_pmtiles(tmp_path / "t.pmtiles", two_colour_tiles()).read_bytes()[:200], "t.pmtiles"),
            "不是有效的 PMTiles",
        ),
    }
    for name, (file, message) in cases.items():
        response = post_map(admin, mode="file", file=file)
        page = response.get_data(as_text=True)
        assert response.status_code == 400, name
        assert 'id="err-file"' in page and "瓦片文件（file）" in page and message in page, (name, page[-3000:])
    assert len(audit_rows(app, success=False)) == len(cases)
    # the file in use is untouched, nothing left behind
    duty = logged_in(app.test_client(), "city_duty_officer")
    assert duty.get("/tiles/1/0/0.png").data == png(RED)
    assert len(stored_files(app)) == 1 and len(audit_rows(app)) == 1
    # saving "file" again without choosing a file keeps the file in use
    assert post_map(admin, mode="file").status_code == 302
    assert duty.get("/tiles/1/0/0.png").data == png(RED)


def _sqlite_bytes(path: Path, ddl: str) -> bytes:
    con = sqlite3.connect(path)
    con.execute(ddl)
    con.commit()
    con.close()
    return path.read_bytes()


def test_file_mode_without_any_file_is_refused(app, world):
    admin = logged_in(app.test_client(), "city_admin")
    response = post_map(admin, mode="file")
    assert response.status_code == 400 and "瓦片文件（file）：请选择要上传的" in response.get_data(as_text=True)
    response = post_map(admin, mode="satellite")
    assert response.status_code == 400 and 'id="err-mode"' in response.get_data(as_text=True)


def test_the_upload_size_is_bounded(app, world, tmp_path, monkeypatch):
    monkeypatch.setenv("BASEMAP_UPLOAD_MAX_MB", "1")
    admin = logged_in(app.test_client(), "city_admin")
    big = b"SQLite format 3\x00" + bytes(1_500_000)  # over the limit, under the request limit
    response = post_map(admin, mode="file", file=(big, "big.mbtiles"))
    assert response.status_code == 400 and "瓦片文件（file）超过上传上限 1 MB" in response.get_data(as_text=True)
    huge = bytes(3_000_000)  # over the request limit: refused before the upload is read
    response = post_map(admin, mode="file", file=(huge, "huge.mbtiles"))
    assert response.status_code == 400 and "瓦片文件（file）超过上传上限 1 MB" in response.get_data(as_text=True)
    assert stored_files(app) == [] and len(audit_rows(app, success=False)) == 2


def test_the_cli_sets_shows_and_clears_a_tile_file(app, world, runner, tmp_path):
    path = make_mbtiles(tmp_path / "cli.mbtiles", two_colour_tiles())
    result = runner.invoke(args=["basemap", "set-file", str(path)])
    assert result.exit_code == 0, result.output
    assert "已设置本地瓦片底图：mbtiles · png · 缩放 1–2" in result.output
    shown = runner.invoke(args=["basemap", "show"])
    assert "本地瓦片文件（file）" in shown.output and "cli.mbtiles" in shown.output
    duty = logged_in(app.test_client(), "city_duty_officer")
    assert duty.get("/tiles/1/0/1.png").data == png(BLUE)

    bad = runner.invoke(args=["basemap", "set-file", str(_write(tmp_path / "x.mbtiles", b"nope" * 10))])
    assert bad.exit_code == 1 and "不是 MBTiles 或 PMTiles 文件" in bad.output
    assert duty.get("/tiles/1/0/1.png").data == png(BLUE)

    cleared = runner.invoke(args=["basemap", "clear"])
    assert cleared.exit_code == 0 and "已恢复空白底图" in cleared.output
    assert duty.get("/tiles/1/0/1.png").status_code == 404
    assert wall_basemap(duty) == {"mode": "blank"}
    rows = audit_rows(app)
    assert [json.loads(r.detail)["after"]["mode"] for r in rows] == ["file", "blank"]
    assert all(r.username is None for r in rows) and len(audit_rows(app, success=False)) == 1


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_a_change_made_by_another_process_applies_without_a_restart(app, world, monkeypatch):
    """Each web process reads the setting from the database, cached briefly: a row written by another process
    is seen once the cache expires."""
    import time

    monkeypatch.setattr(basemap, "CACHE_SECONDS", 0.5)
    duty = logged_in(app.test_client(), "city_duty_officer")
    assert wall_basemap(duty) == {"mode": "blank"}
    with app.app_context():
        db.add(SettingValue(key="basemap", value={"mode": "style", "style_url": "https://10.1.1.1/s.json"}))
        db.commit()
    time.sleep(0.6)
    assert wall_basemap(duty) == {"mode": "style", "url": "https://10.1.1.1/s.json"}


def test_a_file_that_cannot_be_stored_is_refused_and_a_lost_file_falls_back_to_blank(app, world, tmp_path, monkeypatch):
    admin = logged_in(app.test_client(), "city_admin")
    path = make_mbtiles(tmp_path / "ok.mbtiles", two_colour_tiles())
    assert post_map(admin, mode="file", file=(path.read_bytes(), "ok.mbtiles")).status_code == 302
    duty = logged_in(app.test_client(), "city_duty_officer")
    assert wall_basemap(duty)["mode"] == "file"

    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with monkeypatch.context() as patch:
        patch.setattr(basemap, "storage_dir", lambda: blocker / "basemap")
        response = post_map(admin, mode="file", file=(path.read_bytes(), "ok.mbtiles"))
    assert response.status_code == 400 and "瓦片文件（file）无法保存到实例目录" in response.get_data(as_text=True)

    # the stored file disappears (e.g. another machine without the shared directory): blank maps, a warning
    for stored in (Path(app.config["SETTINGS"].instance_path) / "basemap").glob("tiles-*"):
        stored.unlink()
    app.extensions["commandcenter.basemap"].clear()
    assert wall_basemap(duty) == {"mode": "blank"}
    assert duty.get("/tiles/1/0/0.png").status_code == 404
    assert "瓦片文件在本机不存在" in admin.get("/admin/map").get_data(as_text=True)


def test_a_large_pmtiles_file_with_leaf_directories_is_read(app, world, tmp_path):
    """Tens of thousands of tiles: the writer splits the directory into leaves; every tile is still found."""
    import random

    rng = random.Random(13)
    tiles = {(0, 0, 0): png(RED)}
    for x in range(256):
        for y in range(0, 256, 2):
            tiles[(8, x, y)] = b"\x89PNG\r\n\x1a\n" + rng.randbytes(rng.randint(1, 300))
    path = make_pmtiles(tmp_path / "big.pmtiles", tiles)
    tile_file = basemap.PMTilesFile(path)
    assert tile_file.header["leaf_directory_length"] > 0
    for key in rng.sample(sorted(tiles), 200):
        assert tile_file.get(*key) == tiles[key], key
    assert tile_file.get(8, 5, 1) is None and tile_file.get(3, 0, 0) is None

    admin = logged_in(app.test_client(), "city_admin")
    assert post_map(admin, mode="file", file=(path.read_bytes(), "big.pmtiles")).status_code == 302
    assert admin.get("/tiles/8/200/100.png").data == tiles[(8, 200, 100)]
    assert admin.get("/tiles/0/0/0.png").data == png(RED)
