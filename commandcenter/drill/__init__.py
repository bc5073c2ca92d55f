"""逐级下钻 (city → town → village → grid → gridworker → case)."""

from flask import Blueprint

bp = Blueprint("drill", __name__, url_prefix="/drill")

from . import views  # noqa: E402,F401  (registers the routes on bp)
