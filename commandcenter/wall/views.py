"""The wall's routes: the page, one route per panel (the page is made of the same fragments), the GeoJSON."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC

from flask import abort, current_app, g, make_response, render_template, request
from markupsafe import Markup
from redis.exceptions import RedisError

from .. import jobs, labels
from ..access import current_account, require
from ..timeutil import local, utcnow
from . import bp, config, polygons, priming, queries

log = logging.getLogger(__name__)


@dataclass
class Wall:
    """Everything a panel needs to know about the request: who, where, when, and the counters."""

    account: object
    scope: queries.Scope
    r: object
    now: object
    tz: str
    settings: dict
    memo: dict = field(default_factory=dict)  # figures two panels share, computed once per request

    def presence(self):
        if "presence" not in self.memo:
            self.memo["presence"] = queries.presence(
                self.r, self.scope, self.now, self.tz, int(self.settings["online_window_s"])
            )
        return self.memo["presence"]

    @property
    def local_now(self):
        return local(self.now, self.tz)

    @property
    def now_ms(self) -> int:
        """The server's clock for the page (the wall PC's own clock may be wrong)."""
        return int(self.now.replace(tzinfo=UTC).timestamp() * 1000)


def _wall() -> Wall:
    if "wall" not in g:
        account = current_account()
        tz = current_app.config["SETTINGS"].timezone
        scope = queries.scope_of(account)
        r = jobs.counters_redis()
        try:
            priming.ensure_counters(r, scope.city_id or jobs.city_id(), tz)
        except RedisError as exc:  # the panels say it below; the page itself still renders
            log.warning("wall: counters unavailable (%s)", exc.__class__.__name__)
        g.wall = Wall(account=account, scope=scope, r=r, now=utcnow(), tz=tz, settings=config.wall_settings())
    return g.wall


# --- what each panel computes --------------------------------------------------------------------------


def _map(w: Wall) -> dict:
    return {"data": queries.map_data(w.r, w.scope, w.now, w.tz, int(w.settings["max_points"]))}


def _attendance(w: Wall) -> dict:
    """Today's sign-ins over the gridworkers. Until the morning 签到 window ends (SIGN_IN_WINDOW_END) the day's
    attendance is still filling up: nothing is flagged red and the panel says 签到进行中 (issue 12 §5)."""
    rows, total = w.presence()
    rows = [row for row in rows if row.workers]
    threshold = w.settings["attendance_threshold"]
    window_end = current_app.config["SETTINGS"].sign_in_window_end
    signing = w.local_now.time() < window_end

    def is_low(rate: float | None) -> bool:
        return not signing and rate is not None and rate < threshold

    chart = {
        "names": [row.unit.name for row in rows],
        "attendance": [round(100 * row.attendance_rate, 2) for row in rows],
        "online": [round(100 * row.online_rate, 2) for row in rows],
        "label": [f"在线 {row.online} · 签到 {row.attended} / {row.workers}" for row in rows],
        "low": [is_low(row.attendance_rate) for row in rows],
        "threshold": round(100 * threshold, 2),
    }
    low = [row.unit.name for row in rows if is_low(row.attendance_rate)]
    return {
        "rows": rows,
        "total": total,
        "threshold": threshold,
        "chart": chart,
        "low": low,
        "signing": signing,
        "window_end": window_end.strftime("%H:%M"),
        "total_low": is_low(total.attendance_rate),
    }


def _logins(w: Wall) -> dict:
    rows, total = w.presence()
    rows = [row for row in rows if row.admins]
    return {
        "rows": rows,
        "total": total,
        "threshold": w.settings["login_threshold"],
        "below": sum(1 for row in rows if row.login_rate < w.settings["login_threshold"]),
    }


def _counts(w: Wall) -> dict:
    counts = queries.today_counts(w.r, w.scope, w.now, w.tz)
    hourly = queries.hourly_reports(w.scope, w.now, w.tz)
    return {"counts": counts, "tiles": queries.COUNT_TILES, "hourly": hourly}


def _alerts(w: Wall) -> dict:
    ticker = queries.alert_ticker(w.scope, w.now, int(w.settings["ticker_rows"]))
    towns = {u.id: u.name for u in w.scope.units} if w.scope.level == "city" else {}
    return {"ticker": ticker, "towns": towns, "now_ms": w.now_ms, "alert_keys": queries.ALERT_FIGURES}


def _rankings(w: Wall) -> dict:
    return {"groups": queries.rankings(w.r, w.scope, w.now, w.tz), "unit_level": w.scope.unit_level}


# name → (title, context function); the order is the order of the panels in the page source
PANELS: dict[str, tuple[str, Callable[[Wall], dict]]] = {
    "map": ("实时事件地图", _map),
    "counts": ("今日事件", _counts),
    "attendance": ("网格员在线与出勤", _attendance),
    "alerts": ("临期与逾期预警", _alerts),
    "logins": ("管理员账号本月登录率", _logins),
    "rankings": ("本月排名", _rankings),
}


def fmt_left(seconds: float) -> str:
    """Time left before a limit, as the ticker shows it (wall.js counts down in the same format)."""
    past = seconds < 0
    s = int(abs(seconds))
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    body = f"{days}天{hours}时" if days else f"{hours}时{minutes:02d}分" if hours else f"{minutes:02d}:{secs:02d}"
    return ("超时 " if past else "剩 ") + body


def render_panel(name: str, w: Wall) -> str:
    title, compute = PANELS[name]
    try:
        context = compute(w)
    except RedisError as exc:
        log.warning("wall panel %s: counters unavailable (%s)", name, exc.__class__.__name__)
        return render_template("wall/_unavailable.html", name=name, title=title, w=w)
    return render_template(
        f"wall/_{name}.html",
        name=name,
        title=title,
        w=w,
        L=labels,
        left=lambda due: fmt_left((due - w.now).total_seconds()),
        **context,
    )


# --- routes ---------------------------------------------------------------------------------------------


@bp.get("/", strict_slashes=False)
@require("wall.view")
def index():
    w = _wall()
    panels = {name: Markup(render_panel(name, w)) for name in PANELS}
    return render_template("wall/index.html", w=w, panels=panels)


@bp.get("/panel/<name>")
@require("wall.view")
def panel(name: str):
    if name not in PANELS:
        abort(404)
    response = make_response(render_panel(name, _wall()))
    response.headers["X-Wall-Panel"] = name  # the page swaps in nothing else (e.g. a login page)
    return response


@bp.get("/geojson")
@require("wall.view")
def geojson():
    """The viewer's grids. The body is kept in memory per place; the ETag lets the page revalidate
    (If-None-Match → 304) instead of downloading the polygons again."""
    body, etag = polygons.grid_geojson(queries.scope_of(current_account()))
    if etag in request.if_none_match:
        response = make_response("", 304)
    else:
        response = make_response(body)
        response.mimetype = "application/geo+json"
    response.set_etag(etag)
    response.headers["Cache-Control"] = "private, no-cache"  # revalidate: the grids of a place rarely change
    return response


@bp.get("/positions")
@require("position.view")
def positions():
    """The positions layer: the viewer's own gridworkers (a town wall: its town), polled by wall.js.
    A role without position.view (a leader) gets 403 and the wall draws no layer."""
    from flask import jsonify

    from .. import positions as pos

    found = pos.live_positions(current_account())
    tz = current_app.config["SETTINGS"].timezone
    response = jsonify({"window_s": pos.online_window_s(), "items": [p.out(tz) for p in found]})
    response.headers["Cache-Control"] = "private, no-store"
    return response
