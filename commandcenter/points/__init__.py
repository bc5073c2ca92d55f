"""积分 (points and rankings)."""

from flask import Blueprint

bp = Blueprint("points", __name__, url_prefix="/points")
