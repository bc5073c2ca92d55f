"""/figures: 口径说明, the catalogue of every figure shown anywhere (issue 12 §1)."""

from flask import Blueprint

bp = Blueprint("figures", __name__, url_prefix="/figures")

from . import views  # noqa: E402,F401  (routes on bp)
