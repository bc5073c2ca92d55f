"""重点人员 (persons to be visited; masked, every unmasking logged)."""

from flask import Blueprint

bp = Blueprint("persons", __name__, url_prefix="/persons")
