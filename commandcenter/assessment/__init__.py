"""月度考核 (the ten indicators of domain.md §4)."""

from flask import Blueprint

bp = Blueprint("assessment", __name__, url_prefix="/assessment")
