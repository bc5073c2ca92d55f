"""区划网格: places and grids, boundaries, merge and split, 一长五员 positions (issue 13 §2)."""

from __future__ import annotations

from . import bp  # noqa: F401
