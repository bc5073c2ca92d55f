"""The caller's own API tokens: list them, revoke one (a lost phone). Creating one is POST /tokens (views.py)."""

from __future__ import annotations

from flask import jsonify

from ..access import current_account, require
from ..auth.service import active_tokens, revoke_token
from ..db import db
from . import bp
from .errors import ApiError


def token_out(token) -> dict:
    from .views import iso

    return {
        "id": token.id,
        "name": token.name,
        "created_at": iso(token.created_at),
        "last_used_at": iso(token.last_used_at),
        "expires_at": iso(token.expires_at),
    }


@bp.get("/tokens")
@require("account.self")
def list_tokens():
    return jsonify({"items": [token_out(t) for t in active_tokens(current_account())]})


@bp.delete("/tokens/<int:token_id>")
@require("account.self")
def delete_token(token_id: int):
    account = current_account()
    token = revoke_token(account, token_id)
    if token is None or token.account_id != account.id:
        db.rollback()
        raise ApiError(404, "令牌不存在", "token_id")
    db.commit()
    return "", 204
