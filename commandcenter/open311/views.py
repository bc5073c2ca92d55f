"""Open311 GeoReport v2 endpoints (http://wiki.open311.org/GeoReport_v2), under /open311/v2/.

    GET  discovery.{json|xml}                 service discovery
    GET  services.{json|xml}                  one service per active small class / item
    GET  services/{service_code}.{json|xml}   its definition (no extra attributes)
    POST requests.{json|xml}                  form-encoded, api_key required → the new case's number
    GET  requests.{json|xml}                  filters: service_request_id, service_code, start_date,
                                              end_date (span ≤ 90 days, default the last 90), status
    GET  requests/{service_request_id}.{json|xml}
    GET  tokens/{token}.{json|xml}

Every error, including unknown paths and wrong methods under /open311/v2/, is the spec's list of
{code, description}: 403 for a missing or wrong api_key, 404 for what does not exist, 429 past a
rate limit (a client's own budget, or an address's budget of wrong api_keys: see badkeys), 400 for
everything else that cannot be done (the spec's "general service error") — never a 500.
Only one jurisdiction is served, so jurisdiction_id is accepted and ignored.
"""

from __future__ import annotations

import logging

from flask import current_app, request
from werkzeug.exceptions import HTTPException

from ..access import Forbidden, public
from ..cases.loop import TransitionError
from ..db import db
from ..ratelimit import intake_limited
from ..security import token_digest
from . import bp, service
from .formats import Open311Error, error_response, render

log = logging.getLogger(__name__)

FMT = "<any(json, xml):fmt>"
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


# --- errors: always the spec's list ---------------------------------------------------------------


@bp.errorhandler(Open311Error)
def handle_open311_error(exc: Open311Error):
    response = error_response(exc.status, *exc.descriptions)
    response.headers.update(exc.headers)
    return response


@bp.errorhandler(TransitionError)
def handle_transition_error(exc: TransitionError):
    db.rollback()
    return error_response(400, exc.message)


@bp.errorhandler(Forbidden)
def handle_forbidden(exc: Forbidden):
    return error_response(403, exc.message)


@bp.errorhandler(HTTPException)
def handle_http_error(exc: HTTPException):
    if exc.code == 429:
        response = error_response(429, "请求过于频繁，请稍后再试")
    elif exc.code == 405:
        response = error_response(400, f"{request.path} 不支持 {request.method} 方法")
    elif exc.code == 404:
        response = error_response(404, f"{request.path} 不存在")
    elif exc.code == 413:
        response = error_response(400, "请求体过大")
    else:
        response = error_response(400, f"请求无法处理：{exc.description}")
    original = exc.get_response().headers
    for header in ("Retry-After", "Allow"):
        if header in original:
            response.headers[header] = original[header]
    return response


@bp.errorhandler(Exception)
def handle_unexpected(exc: Exception):
    """The spec's "general service error": a 400 the client can report, not a 500."""
    log.exception("open311: unexpected error")
    db.rollback()
    response = error_response(400, "服务暂时无法处理该请求，请稍后重试；如持续出现请联系城市网格化服务管理中心")
    response.headers["Retry-After"] = "5"
    return response


# --- rate limit: per client key when there is one -------------------------------------------------


def _rate_key() -> str:
    api_key = (request.form.get("api_key") or "").strip() if request.mimetype in service.FORM_TYPES else ""
    if api_key:
        return "open311:" + token_digest(api_key)[:16]
    return "open311-ip:" + (request.remote_addr or "unknown")


# --- the endpoints --------------------------------------------------------------------------------


@bp.get("/")
@public
def index():
    return render("json", "discovery", service.discovery(request.url_root.rstrip("/") + bp.url_prefix))


@bp.get(f"/discovery.{FMT}")
@public
def discovery(fmt: str):
    return render(fmt, "discovery", service.discovery(request.url_root.rstrip("/") + bp.url_prefix))


@bp.get(f"/services.{FMT}")
@public
def services(fmt: str):
    catalog = service.Catalog()
    return render(fmt, "services", [catalog.describe(c) for c in catalog.services()])


@bp.get(f"/services/<service_code>.{FMT}")
@public
def service_definition(service_code: str, fmt: str):
    return render(fmt, "service_definition", service.definition(service_code))


@bp.post(f"/requests.{FMT}")
@intake_limited(_rate_key)
@public
def create_request(fmt: str):
    """201 with the new case's number; 200 with the same number when a device re-sends the same report."""
    case, created, element = service.create_request(request.form)
    return render(fmt, "service_requests", [element], 201 if created else 200)


@bp.get(f"/requests.{FMT}")
@public
def list_requests(fmt: str):
    return render(fmt, "service_requests", service.serialize(service.find_requests(request.args)))


@bp.get(f"/requests/<service_request_id>.{FMT}")
@public
def get_request(service_request_id: str, fmt: str):
    return render(fmt, "service_requests", service.serialize([service.find_request(service_request_id)]))


@bp.get(f"/tokens/<token>.{FMT}")
@public
def get_token(token: str, fmt: str):
    return render(fmt, "service_requests", [service.find_token(token)])


@bp.route("/<path:anything>", methods=ALL_METHODS)
@public
def not_found(anything: str):
    """Anything else under /open311/v2/ (a wrong path, format or method) still answers in the spec's words."""
    adapter = current_app.url_map.bind("localhost")
    for method in ("GET", "POST"):
        try:
            endpoint, _args = adapter.match(request.path, method=method)
        except HTTPException:
            continue
        if endpoint != request.endpoint:
            raise Open311Error(400, f"{request.path} 不支持 {request.method} 方法")
    if request.path.rsplit(".", 1)[-1].lower() not in ("json", "xml"):
        raise Open311Error(404, f"{request.path} 不存在；资源须以 .json 或 .xml 结尾")
    raise Open311Error(404, f"{request.path} 不存在")
