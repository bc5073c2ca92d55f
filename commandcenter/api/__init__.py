"""JSON API v1 (/api/v1/) for the mobile apps, the 12345 hotline system and integrations."""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

from . import assessment, fieldwork, tokens, views  # noqa: E402,F401
