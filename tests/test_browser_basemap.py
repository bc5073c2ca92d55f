"""The basemap in Debian's chromium: the administrator uploads a local MBTiles file on /admin/map, the wall
draws its tiles (fetched from /tiles/ on 127.0.0.1, nothing from any other host), and with the default blank
basemap no tile is asked for. Screenshots go to test-artifacts/."""

from __future__ import annotations

import math
import struct
import zlib
from urllib.parse import urlsplit

import pytest

from tests.conftest import ARTIFACTS, PASSWORD
from tests.test_basemap import make_mbtiles, png
from tests.test_browser_wall import open_wall

pytestmark = [pytest.mark.browser, pytest.mark.live]

TILE_COLOUR = (200, 40, 160)  # a colour nothing else on the wall has
BLANK_COLOUR = (0x07, 0x12, 0x1F)  # the blank style's background
AREA = (119.6, 30.7, 120.6, 31.4)  # around the test world (lon 120.0–120.2, lat 31.0–31.1)
MAX_ZOOM = 10  # MapLibre scales the z10 tiles up at the wall's zoom


def tiles_over(area, max_zoom: int) -> dict[tuple[int, int, int], bytes]:
    """One-colour tiles (XYZ) covering the area at zooms 0..max_zoom."""
    tile = png(TILE_COLOUR)
    w, s, e, n = area

    def xy(lon: float, lat: float, z: int) -> tuple[int, int]:
        scale = 1 << z
        rad = math.radians(lat)
        return int((lon + 180) / 360 * scale), int((1 - math.asinh(math.tan(rad)) / math.pi) / 2 * scale)

    tiles = {}
    for z in range(max_zoom + 1):
        (x0, y0), (x1, y1) = xy(w, n, z), xy(e, s, z)
        for x in range(x0, x1 + 1):
            for y in range(y0, y1 + 1):
                tiles[(z, x, y)] = tile
    return tiles


def decode_png(data: bytes) -> tuple[int, int, int, list[bytes]]:
    """(width, height, bytes per pixel, rows) of an 8-bit RGB/RGBA PNG such as a screenshot."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6)
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for r in range(height):
        kind, line = raw[r * (stride + 1)], bytearray(raw[r * (stride + 1) + 1 : (r + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, bpp, rows


def map_pixel(page, name: str) -> tuple[int, int, int]:
    """The colour in the middle of the wall's map with the grid and case layers hidden (the basemap alone)."""
    page.evaluate(
        "() => { const el = document.getElementById('plot-map'); "
        "return Plotly.restyle(el, {visible: false}, el.data.map((_, i) => i)); }"
    )
    page.wait_for_timeout(1500)  # the raster fade-in
    shot = page.locator("#plot-map").screenshot(path=str(ARTIFACTS / name))
    width, height, bpp, rows = decode_png(shot)
    row = rows[height // 2]
    return tuple(row[(width // 2) * bpp : (width // 2) * bpp + 3])


def close_to(colour, expected, tolerance: int = 12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(colour, expected, strict=True))


def record(page) -> list[tuple[str, int]]:
    """(url, status) of every response the page gets."""
    seen: list[tuple[str, int]] = []
    page.on("response", lambda response: seen.append((response.url, response.status)))
    return seen


def test_the_wall_draws_an_uploaded_local_basemap_and_asks_no_other_host(world, live_server, browser, page, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    path = make_mbtiles(tmp_path / "city.mbtiles", tiles_over(AREA, MAX_ZOOM), bounds=",".join(map(str, AREA)))

    # the administrator uploads it on /admin/map (another browser)
    admin_context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="zh-CN")
    admin = admin_context.new_page()
    admin.goto(live_server.url + "/login")
    admin.fill("#username", "city_admin")
    admin.fill("#password", PASSWORD)
    admin.click("button[type=submit]")
    admin.wait_for_url(live_server.url + "/")
    admin.goto(live_server.url + "/admin/map")
    admin.check("input[name=mode][value=file]")
    admin.set_input_files("#f-file", str(path))
    admin.click("form.basemap-form button[type=submit]")
    admin.wait_for_selector("#basemap-zoom")
    assert "已保存地图底图：本地瓦片文件" in admin.content()
    assert admin.locator("#basemap-zoom").inner_text() == f"0–{MAX_ZOOM}"
    admin.screenshot(path=str(ARTIFACTS / "admin-map.png"))
    admin_context.close()

    # the wall: tiles from /tiles/ on 127.0.0.1, nothing from anywhere else
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    responses = record(page)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    open_wall(page, live_server.url)
    page.wait_for_function(
        "() => performance.getEntriesByType('resource').some(e => e.name.includes('/tiles/'))", timeout=15000
    )
    page.wait_for_timeout(1000)
    tiles = [(url, status) for url, status in responses if urlsplit(url).path.startswith("/tiles/")]
    assert tiles and any(status == 200 for _url, status in tiles), tiles
    assert any(urlsplit(url).path.startswith("/tiles/10/") for url, _status in tiles), tiles  # overzoomed z10
    hosts = {urlsplit(url).hostname for url in requested if urlsplit(url).scheme in ("http", "https", "ws", "wss")}
    assert hosts == {"127.0.0.1"}, hosts
    assert page.outside_requests == []
    assert errors == []
    page.screenshot(path=str(ARTIFACTS / "wall-basemap.png"))
    colour = map_pixel(page, "wall-basemap-map.png")
    assert close_to(colour, TILE_COLOUR), colour


def test_the_blank_default_asks_for_no_tile(world, live_server, page):
    ARTIFACTS.mkdir(exist_ok=True)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    open_wall(page, live_server.url)
    page.wait_for_timeout(2000)
    assert not [url for url in requested if "/tiles/" in url]
    assert {urlsplit(url).hostname for url in requested if urlsplit(url).scheme in ("http", "https")} == {"127.0.0.1"}
    assert page.outside_requests == []
    colour = map_pixel(page, "wall-blank-map.png")
    assert close_to(colour, BLANK_COLOUR), colour
