"""Creating and changing accounts, with the same validation for the CLI, the admin page and imports."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from . import labels
from .audit import audit
from .db import db
from .models import GRIDWORKER_POSTS, ROLES, Account, Place
from .security import hash_password, password_problems

USERNAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{3,64}$")


class AccountError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def create_account(
    *,
    username: str,
    display_name: str,
    password: str,
    role: str,
    place: Place,
    post: str | None = None,
    phone: str | None = None,
    check_password: bool = True,
    password_hash: str | None = None,
    **extra,
) -> Account:
    if not USERNAME_RE.match(username or ""):
        raise AccountError("username", "用户名须为 3–64 位字母、数字、下划线、点或连字符")
    if db.query(Account.id).filter_by(username=username).first():
        raise AccountError("username", "用户名已存在")
    if role not in ROLES:
        raise AccountError("role", f"未知角色：{role}")
    if post is not None and post not in GRIDWORKER_POSTS:
        raise AccountError("post", f"未知岗位：{post}")
    if not display_name or len(display_name) > 64:
        raise AccountError("display_name", "姓名不能为空且不超过 64 个字符")
    if password_hash is None:
        if check_password:
            problems = password_problems(password, username)
            if problems:
                raise AccountError("password", "；".join(problems))
        password_hash = hash_password(password)
    account = Account(
        username=username,
        display_name=display_name,
        password_hash=password_hash,
        role=role,
        post=post,
        place_id=place.id,
        place=place,
        phone=phone,
        town_id=place.town_id,
        village_id=place.village_id,
        **extra,
    )
    db.add(account)
    db.flush()
    return account


# --- enabling and disabling (三权分立) --------------------------------------------------------------
# The three administrators keep each other in check: the system administrator (admin) may not switch off the
# security administrator or the auditor who watch over it. Who may enable or disable whom:
#   admin          → every account except security_admin and auditor accounts (other admins included)
#   security_admin → security_admin and auditor accounts only
#   anyone else    → nobody
# Nobody changes their own account, and the last active account of admin, security_admin and auditor can never
# be disabled (the system would be left without one of the three).
CONTROL_ROLES = ("admin", "security_admin", "auditor")
MANAGED_BY: dict[str, frozenset[str] | None] = {
    "admin": None,  # None: every role not in the security administrator's set
    "security_admin": frozenset({"security_admin", "auditor"}),
}


def active_counts() -> dict[str, int]:
    """Active accounts per control role (to tell, for a whole page at once, which is the last one)."""
    rows = db.execute(
        select(Account.role, func.count(Account.id))
        .where(Account.role.in_(CONTROL_ROLES), Account.active.is_(True))
        .group_by(Account.role)
    ).all()
    return {role: 0 for role in CONTROL_ROLES} | {role: n for role, n in rows}


def may_manage(actor: Account | None, account: Account) -> bool:
    """Whether the actor's role may enable or disable an account of this role at all."""
    if actor is None or not actor.active or actor.role not in MANAGED_BY:
        return False
    managed = MANAGED_BY[actor.role]
    if managed is None:
        return account.role not in MANAGED_BY["security_admin"]
    return account.role in managed


def active_refusal(
    actor: Account | None, account: Account, active: bool, counts: dict[str, int] | None = None
) -> str | None:
    """Why `actor` may not set `account` to `active` (a Chinese sentence), or None when allowed.
    `counts` (from active_counts()) saves a query per row when a page asks for many accounts."""
    role_name = labels.ROLE.get(account.role, account.role)
    if not may_manage(actor, account):
        if actor is not None and actor.role == "admin":
            return f"系统管理员不能启用或停用{role_name}账号（三权分立），请由安全管理员办理"
        return f"无权启用或停用{role_name}账号"
    if not active and account.active and account.role in CONTROL_ROLES:
        if counts is None:
            counts = active_counts()
        if counts.get(account.role, 0) <= 1:
            return f"{account.username} 是最后一个启用的{role_name}账号，不能停用"
    if account.id == actor.id:
        return "不能启用或停用本人账号"
    return None


def set_account_active(actor: Account, account: Account, active: bool) -> bool:
    """Enable or disable `account` by `actor` under the rules above; raises AccountError("active", …) when
    refused. Disabling ends the account's web sessions, revokes its API tokens and disconnects its sockets.
    Audited; the caller commits. Returns whether anything changed."""
    from .auth.service import end_sessions  # (auth imports much; not at module level)

    if not active and account.role in CONTROL_ROLES:
        # two administrators disabling the last two of a role at once: on PostgreSQL the second waits for the
        # first and then counts again, so one of them is refused (SQLite serialises writers anyway)
        db.execute(
            select(Account.id)
            .where(Account.role == account.role, Account.active.is_(True))
            .with_for_update(key_share=True)
        )
        db.refresh(account)
    refusal = active_refusal(actor, account, active)
    if refusal is not None:
        raise AccountError("active", refusal)
    if account.active == active:
        return False
    account.active = active
    audit("account.enable" if active else "account.disable", "account", account.id, account=actor)
    if not active:
        end_sessions(account, reason="账号停用")
    return True
