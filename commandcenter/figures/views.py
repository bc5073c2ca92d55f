"""The routes of /figures: the page 口径说明 (every figure of the catalogue, one anchor per key)."""

from __future__ import annotations

from flask import render_template

from ..access import require
from . import bp
from .catalogue import FIGURES, PERIOD_TEXT, SCREENS, grouped


@bp.get("/")
@require("account.self")  # any logged-in account
def index():
    return render_template(
        "figures/index.html", groups=grouped(), total=len(FIGURES), period_text=PERIOD_TEXT, screens=SCREENS
    )
