"""积分 (points and rankings)."""

from flask import Blueprint

bp = Blueprint("points", __name__, url_prefix="/points")

from . import views  # noqa: E402,F401  (registers the routes on bp)
