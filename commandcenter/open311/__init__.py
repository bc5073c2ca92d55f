"""Open311 GeoReport v2 (/open311/v2/): existing civic-reporting clients file and read reports."""

from flask import Blueprint

bp = Blueprint("open311", __name__, url_prefix="/open311/v2")

from . import views  # noqa: E402,F401
