"""`flask open311 …`: manage the API keys of Open311 clients."""

from __future__ import annotations

from flask import Flask


def register_open311_cli(app: Flask) -> None:
    pass
