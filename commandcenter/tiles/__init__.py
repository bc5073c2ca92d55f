"""/tiles: the basemap a city configured, served from its own local tile file (issue 13 §6)."""

from flask import Blueprint

bp = Blueprint("tiles", __name__, url_prefix="/tiles")

from . import views  # noqa: E402,F401  (routes on bp)
