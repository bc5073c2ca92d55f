"""领导移动端 (the leaders' phone summary)."""

from flask import Blueprint

bp = Blueprint("mobile", __name__, url_prefix="/m")
