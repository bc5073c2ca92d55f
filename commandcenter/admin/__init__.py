"""Administration, kept apart by role (三权分立): accounts (admin), locks (security admin),
the audit log (auditor), and the job queues (admin)."""

from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")

from . import accounts, basemap, calendar, categories, notifications, organisation, places, security, views  # noqa: E402,F401  (routes on bp)
