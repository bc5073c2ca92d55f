"""/g/: the gridworker's phone pages (网格员移动端, a PWA; issue 14 §1)."""

from flask import Blueprint

bp = Blueprint("gridworker", __name__, url_prefix="/g")

from . import views  # noqa: E402,F401  (routes on bp)
