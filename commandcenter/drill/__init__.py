"""逐级下钻 (city → town → village → grid → gridworker → case)."""

from flask import Blueprint

bp = Blueprint("drill", __name__, url_prefix="/drill")
