"""/dept/: a department's work queue (职能部门工作台, issue 14 §2)."""

from flask import Blueprint

bp = Blueprint("dept", __name__, url_prefix="/dept")

from . import views  # noqa: E402,F401  (routes on bp)
