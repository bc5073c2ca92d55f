"""RQ job functions. Each opens its own app context (once per worker process) and calls domain code."""

from __future__ import annotations

import logging

from flask import Flask

log = logging.getLogger(__name__)
_app: Flask | None = None


def app() -> Flask:
    global _app
    if _app is None:
        from commandcenter import create_app

        _app = create_app()
    return _app


def sweep_deadlines() -> dict[str, int]:
    """Mark overdue cases, void late parking reports (the safety net behind scheduled warnings)."""
    from commandcenter.cases.loop import sweep_deadlines as sweep

    with app().app_context():
        counts = sweep()
        if any(counts.values()):
            log.info("deadline sweep: %s", counts)
        return counts
