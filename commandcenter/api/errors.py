"""JSON errors for the API: a clear Chinese message and the field at fault."""

from __future__ import annotations

from flask import jsonify


class ApiError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


def api_error(status: int, message: str, field: str | None = None):
    response = jsonify({"error": {"message": message, "field": field}})
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="commandcenter"'
    return response
