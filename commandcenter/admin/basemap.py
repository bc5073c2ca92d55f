"""地图底图: the basemap of every map, and the local tiles served at /tiles (issue 13 §6)."""

from __future__ import annotations

from . import bp  # noqa: F401
