"""消息通知: channels, preferences and the delivery log (issue 13 §7)."""

from __future__ import annotations

from . import bp  # noqa: F401
