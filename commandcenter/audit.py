"""The audit trail (安全审计): who did what to which object, from where, and whether it worked."""

from __future__ import annotations

from flask import g, has_request_context, request

from .db import db
from .models import AuditLog


def client_address() -> str | None:
    return request.remote_addr if has_request_context() else None


def audit(
    action: str,
    object_type: str | None = None,
    object_id: object = None,
    *,
    success: bool = True,
    detail: str | None = None,
    account=None,
    commit: bool = False,
) -> None:
    """Add an audit row to the current transaction (or commit it on its own when asked)."""
    account = account if account is not None else (g.get("account") if has_request_context() else None)
    db.add(
        AuditLog(
            account_id=account.id if account else None,
            username=account.username if account else None,
            address=client_address(),
            action=action,
            object_type=object_type,
            object_id=None if object_id is None else str(object_id),
            success=success,
            detail=detail,
        )
    )
    if commit:
        db.commit()
