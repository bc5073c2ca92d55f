"""月度通报 (the monthly bulletin)."""

from flask import Blueprint

bp = Blueprint("bulletin", __name__, url_prefix="/bulletins")
