"""The routes of /g/: server-rendered pages and their htmx fragments.

The pages only read. Sign-ins, patrols, reports, photos, self-closing, visits and case steps are sent by the
phone (``static/js/gridworker.js``, through its offline queue) to the JSON API with the browser session and
the page's CSRF token (``web.identify`` accepts a cookie-authenticated API write only with X-CSRFToken): the
very same code path, rules and idempotency keys as the native app, no second home for any rule.
"""

from __future__ import annotations

from flask import current_app, render_template, request, send_from_directory, url_for

from ..access import current_account, public, require
from ..audit import audit
from ..settings import ROOT
from ..timeutil import current_tz, local_today
from ..web import wants_fragment
from . import bp, service

# the phone needs its location (sign-in, patrol, report) and its camera; every other page keeps both off
PERMISSIONS_POLICY = "geolocation=(self), camera=(self), microphone=()"


@bp.after_request
def allow_location(response):
    response.headers["Permissions-Policy"] = PERMISSIONS_POLICY
    return response


def _render(template: str, fragment: str | None = None, **context):
    context.setdefault("me", current_account())
    name = fragment if fragment and wants_fragment() else template
    return render_template(name, **context)


@bp.get("/")
@require("fieldwork.app")
def index():
    account = current_account()
    return _render(
        "gridworker/index.html",
        "gridworker/_work.html" if request.args.get("part") == "work" else "gridworker/_today.html",
        tab="home",
        today=service.today_of(account),
        goal=service.PATROL_GOAL_MINUTES,
        cases=service.my_cases(account),
        due=service.visits_falling_due(account),
        sites_due=service.sites_falling_due(account),
    )


@bp.get("/report")
@require("fieldwork.app")
def report():
    account = current_account()
    categories = service.leaf_categories()
    return _render(
        "gridworker/report.html",
        tab="report",
        categories=categories,
        paths=service.category_paths(categories),
        grid_map=service.grid_map(account.place),
    )


@bp.get("/cases")
@require("fieldwork.app")
def cases():
    return _render(
        "gridworker/cases.html", "gridworker/_cases.html", tab="cases", cases=service.my_cases(current_account())
    )


@bp.get("/visits")
@require("fieldwork.app")
def visits():
    account = current_account()
    today = local_today(current_tz())
    rows = service.my_persons(account, today)
    # a list of persons is a view of personal data (the persons module's rule): on record, masked
    audit("person.list", "person", None, detail=f"网格员移动端走访清单 显示{len(rows)}人（已脱敏）", commit=True)
    return _render(
        "gridworker/visits.html",
        "gridworker/_visits.html",
        tab="visits",
        rows=rows,
        sites=service.my_sites(account, today),
        today=today,
        soon=service.DUE_SOON_DAYS,
        selected=request.args.get("person", type=int),
        selected_site=request.args.get("site", type=int),
    )


# --- the PWA: manifest and service worker (public: the browser fetches them without asking the user) -------


@bp.get("/manifest.webmanifest")
@public
def manifest():
    body = {
        "name": "网格员工作台",
        "short_name": "网格员",
        "lang": "zh-CN",
        "start_url": url_for("gridworker.index"),
        "scope": url_for("gridworker.index"),
        "display": "standalone",
        "orientation": "portrait",
        "background_color": "#f4f6f9",
        "theme_color": "#1f4e8c",
        "icons": [
            {
                "src": url_for("static", filename="img/gridworker-icon.svg"),
                "sizes": "any",
                "type": "image/svg+xml",
                "purpose": "any maskable",
            },
            {"src": url_for("static", filename="img/gridworker-icon-192.png"), "sizes": "192x192", "type": "image/png"},
        ],
    }
    response = current_app.response_class(
        current_app.json.dumps(body, ensure_ascii=False), mimetype="application/manifest+json"
    )
    return response


@bp.get("/sw.js")
@public
def service_worker():
    """Served from /g/ so that its scope is /g/ (a script under /static/ could not control /g/ pages)."""
    response = send_from_directory(ROOT / "static" / "js", "gridworker-sw.js", mimetype="text/javascript", max_age=0)
    response.headers["Service-Worker-Allowed"] = url_for("gridworker.index")
    response.headers["Cache-Control"] = "no-cache"
    return response
