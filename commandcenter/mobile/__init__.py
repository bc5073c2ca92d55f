"""领导移动端: the leaders' phone summary (/m).

One small page for a slow phone: no htmx, no chart library. The trend chart is an SVG drawn here on the
server (30 bars and a line), the style sheet is a few hundred bytes, and the page refreshes itself every
five minutes with a meta refresh (which the CSP allows, unlike an inline script).

What it shows, for the viewer's place:
- 今日: reported, closed, closure rate, overdue (stats.figures over today), open alerts (临期预警 not yet cleared);
- 本月: reported, closure rate, timeliness, attendance, patrol compliance (stats.figures over the month so far);
- 镇街排名: last month's assessment (assessment.service.month_table: the frozen table once the month is closed,
  computed otherwise); a town account sees its own rank among all towns, a city account every town;
- 近30日趋势: reports per local day (bars) and closures per local day (line), from stats.trend.
"""

from flask import Blueprint

bp = Blueprint("mobile", __name__, url_prefix="/m")

from . import views  # noqa: E402,F401  (registers the routes on bp)
