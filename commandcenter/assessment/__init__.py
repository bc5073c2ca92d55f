"""月度考核 (the ten indicators of domain.md §4).

- `rules`: the indicators as plain functions over a figures object (no database);
- `service`: the figures from the data, the month's table, closing (freezing) a month;
- `views`: the page, the chart, the close button, the rules page and the JSON table.
"""

from flask import Blueprint

bp = Blueprint("assessment", __name__, url_prefix="/assessment")

from . import views  # noqa: E402,F401  (registers the routes on bp)
