"""12345 热线受理: the operator takes a citizen's call as a work order; its number is the idempotency key."""

from flask import Blueprint

bp = Blueprint("hotline", __name__, url_prefix="/hotline")

from . import views  # noqa: E402,F401  (registers the routes on bp)
