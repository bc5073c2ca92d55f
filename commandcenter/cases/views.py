"""The center's case screens: list with filters, case page with timeline and actions, queue, hotline."""

from flask import Blueprint

bp = Blueprint("cases", __name__, url_prefix="/cases")
hotline_bp = Blueprint("hotline", __name__, url_prefix="/hotline")
