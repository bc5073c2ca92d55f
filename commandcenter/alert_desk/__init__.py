"""The duty officer's alert desk (预警处置): open alerts of his jurisdiction, acknowledged with who and when."""

from flask import Blueprint

bp = Blueprint("alerts", __name__, url_prefix="/alerts")

from . import views  # noqa: E402,F401  (registers the routes on bp)
