"""The wall display (指挥大屏) for duty officers: six panels, each its own fragment route.

Routes (all need `wall.view`, scoped to the viewer's place):

- ``GET /wall``                 the whole wall; every panel is rendered by the same code as its fragment
- ``GET /wall/panel/<name>``    one panel: map, attendance, logins, counts, alerts, rankings
- ``GET /wall/geojson``         the grid polygons of the viewer's place (simplified), with an ETag

The figures come from the live counters (commandcenter.counters, Redis or fakeredis); only the hourly
chart, the map's open-case points and the alert ticker read tables, each with an indexed query over
today's rows or the open alerts (see queries.py).
"""

from flask import Blueprint

bp = Blueprint("wall", __name__, url_prefix="/wall")

from . import views  # noqa: E402,F401  (registers the routes)
