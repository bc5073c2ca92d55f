"""The heartbeat's lane: `POST /api/v1/heartbeats` answered before Flask's request machinery (issue 15).

A city's phones send a heartbeat a minute each: at 15,000 gridworkers that is 250 of the 280 requests a
second of its peak, and most of a heartbeat's CPU was Flask's own machinery around two Redis round trips
(the request context, the session interface, the before/after hooks, the response object). The lane answers
the ordinary heartbeat (a token this process has cached, a valid body, within the intake limit, Redis up)
with the **same functions** the Flask view goes through, in the same order:

1. the token: `web.cached_token_account` (the cached half of `web.load_account_from_token`: expiry, last use);
2. the account: `access.has_permission(account, "case.report")` (the view's `require`) and
   `auth.service.password_expired` (the `identify` hook's check);
3. the body: `views.parse_json` with `schemas.HeartbeatIn` and the app's JSON provider (what the view's
   `parse` calls);
4. the limit: `ratelimit.intake_limit_state` with the view's key and endpoint (its `intake_limited`);
5. the heartbeat: `heartbeats.to_redis` (what `heartbeats.record` does first);
6. the answer: 204 with `web.security_header_items`, `ratelimit.limit_headers` and `Cache-Control: no-store`.

Anything else — no token or one not cached here, a wrong content type, a query string, a body that does not
validate, a request over the limit, Redis not answering, a password to change, an error of any kind — goes to
Flask untouched (its body put back), which answers it as it always has: the lane has no answers of its own
but the 204. A request the lane gave up on after counting it against the limit is not counted again: the lane
leaves its count in the WSGI environ (`ratelimit.COUNTED`, a key no client can set) and Flask's limit check
takes it. `tests/test_heartbeat_lane.py` proves the two answer alike. `app.config["HEARTBEAT_LANE"] = False`
turns the lane off.
"""

from __future__ import annotations

import io
import logging
import time

from werkzeug.http import parse_options_header
from werkzeug.wsgi import get_content_length

from .. import heartbeats, web
from ..access import has_permission
from ..auth.service import password_expired
from ..ratelimit import COUNTED, intake_limit_state, limit_headers
from ..security import token_digest
from ..timeutil import utcnow
from .errors import ApiError
from .schemas import HeartbeatIn
from .views import parse_json

log = logging.getLogger(__name__)

PATH = "/api/v1/heartbeats"
ENDPOINT = "api.heartbeat"  # the Flask view's endpoint: the intake limit's key names it
MAX_BODY = 1024  # a heartbeat's body is about 40 bytes; a bigger one is Flask's to judge
LOG_EVERY_S = 60


class HeartbeatLane:
    """WSGI middleware in front of the app (create_app installs it)."""

    def __init__(self, app, wsgi_app) -> None:
        self.app = app
        self.next = wsgi_app
        self.permission = app.view_functions[ENDPOINT]._permission  # the view's own `require`

    def __call__(self, environ, start_response):
        if (
            environ.get("PATH_INFO") == PATH
            and environ.get("REQUEST_METHOD") == "POST"
            and not environ.get("QUERY_STRING")
            and self.app.config.get("HEARTBEAT_LANE", True)
        ):
            headers = self.answer(environ)
            if headers is not None:
                start_response("204 NO CONTENT", headers)
                return []
        return self.next(environ, start_response)

    def answer(self, environ) -> list[tuple[str, str]] | None:
        """The 204's headers once the heartbeat is in, or None: Flask answers (the body is put back)."""
        auth = environ.get("HTTP_AUTHORIZATION", "")
        if not auth.startswith("Bearer "):
            return None
        if environ.get("HTTP_TRANSFER_ENCODING"):
            return None  # chunked (werkzeug's development server may keep a Content-Length beside it)
        length = get_content_length(environ)  # as werkzeug reads it for Flask ("+40" is no length)
        if length is None or not 0 < length <= MAX_BODY:
            return None
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)  # for Flask, if it is Flask's to answer
        if len(body) != length:
            return None
        try:
            with self.app.app_context():
                return self._heartbeat(environ, auth[7:].strip(), body)
        except Exception:  # never an answer of the lane's own: Flask's handlers decide what the client sees
            now = time.monotonic()
            if now - self._logged_at >= LOG_EVERY_S:  # not a traceback for each of 250 heartbeats a second
                self._logged_at = now
                log.exception("heartbeat lane: handed to Flask (logged at most every %d s)", LOG_EVERY_S)
            return None

    _logged_at = float("-inf")

    def _heartbeat(self, environ, token: str, body: bytes) -> list[tuple[str, str]] | None:
        now = utcnow()
        account = web.cached_token_account(token_digest(token), now)
        if account is None or account is web.TOKEN_NOT_CACHED:
            return None
        if not has_permission(account, self.permission) or password_expired(account):
            return None

        def load():  # None when not JSON, or nested too deep: either way Flask gives the answer
            try:
                return self.app.json.loads(body)
            except Exception:
                return None

        mimetype = parse_options_header(environ.get("CONTENT_TYPE", ""))[0].lower()  # as request.mimetype
        try:
            point = parse_json(HeartbeatIn, mimetype, load)
        except ApiError:
            return None  # Flask gives the answer that names the field
        key = f"account:{account.id}"
        state = intake_limit_state(key, ENDPOINT)
        # counted once: if Flask answers after all, its limit check takes this count instead of counting again
        environ[COUNTED] = (key, ENDPOINT, state)
        if state is not None and not state[3]:
            return None  # over the limit: Flask's 429, with its message
        if not heartbeats.to_redis(account.id, account.town_id, point.lat, point.lon, now):
            return None  # Redis is down: Flask writes it to the database
        headers = list(web.security_header_items(self.app.config["SETTINGS"].secure_cookies))
        headers.append(("Cache-Control", "no-store"))
        if state is not None:
            item, remaining, reset, _allowed = state
            headers += limit_headers(item, remaining, reset, 204)
        return headers
