"""GET /api/v1/assessment/<month>: the month's assessment table (the body of assessment.service.month_table),
for token holders with "assessment.view"; an account below the city gets its own town's row only."""

from __future__ import annotations

from flask import jsonify

from ..access import current_account, require
from ..assessment import service
from ..timeutil import current_tz, local_today
from . import bp
from .errors import api_error


@bp.get("/assessment/<month>")
@require("assessment.view")
def assessment_month(month: str):
    key, error = service.month_arg(month, local_today(current_tz()))
    if error:
        return api_error(400, f"month: {error}", "month")
    return jsonify(service.visible_table(current_account(), key))
