"""The routes of /tiles."""

from __future__ import annotations

from . import bp  # noqa: F401
