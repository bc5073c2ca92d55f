"""Creating and changing accounts, with the same validation for the CLI, the admin page and imports."""

from __future__ import annotations

import re
import secrets

from sqlalchemy import func, select

from . import labels
from .audit import audit
from .db import db
from .models import GRIDWORKER_POSTS, ROLES, Account, Center, Department, Place
from .security import hash_password, mask_email, mask_phone, password_problems

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


# --- the administrator's account page: create, edit, reset, unlock, move, sessions, tokens (issue 13 §4) -------
# One home for the page and the CLI. Who may change whom is may_manage above (三权分立): the system administrator
# every account but security_admin and auditor accounts, and never into one of those roles; the security
# administrator those two roles only. Nobody changes their own role. Every change is audited with before and after.

_UNCHANGED: object = object()
ONE_TIME_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
ONE_TIME_SYMBOLS = "@#%+=!"
ONE_TIME_LENGTH = 12
CLI_ACTOR = "服务器命令行"


def may_hold(actor: Account | None, role: str) -> bool:
    """Whether the actor may give an account this role (create it with it, or change it to it)."""
    return may_manage(actor, Account(role=role))


def _role_refusal(actor: Account | None, role: str) -> str:
    role_name = labels.ROLE.get(role, role)
    if actor is not None and actor.role == "admin":
        return f"系统管理员不能管理{role_name}账号（三权分立），请由安全管理员办理"
    if actor is not None and actor.role == "security_admin":
        return f"安全管理员只管理安全管理员和审计员账号，{role_name}账号由系统管理员管理"
    return f"无权管理{role_name}账号"


def check_manage(actor: Account | None, account: Account, field: str = "account") -> None:
    """Refuse (AccountError) when the actor may not change this account at all. actor None: the server's
    command line (`flask accounts …`), run by whoever administers the host."""
    if actor is None:
        return
    if not may_manage(actor, account):
        raise AccountError(field, _role_refusal(actor, account.role))


def one_time_password(username: str | None = None) -> str:
    """A random password that satisfies password_problems: letters and digits without look-alikes (0/O, 1/l/I),
    one symbol, at least one of each class."""
    while True:
        chars = [secrets.choice(ONE_TIME_ALPHABET) for _ in range(ONE_TIME_LENGTH - 1)]
        chars.insert(secrets.randbelow(ONE_TIME_LENGTH), secrets.choice(ONE_TIME_SYMBOLS))
        candidate = "".join(chars)
        if (
            re.search(r"[A-Z]", candidate)
            and re.search(r"[a-z]", candidate)
            and re.search(r"[0-9]", candidate)
            and not password_problems(candidate, username)
        ):
            return candidate


def _place_text(place_id: int | None) -> str:
    if place_id is None:
        return "—"
    place = db.get(Place, place_id)
    return f"{place.name}({place.code})" if place is not None else f"#{place_id}"


def _snapshot(account: Account) -> dict[str, str]:
    """The administered fields of an account as short text, for the audit's before and after."""
    center = db.get(Center, account.center_id) if account.center_id else None
    department = db.get(Department, account.department_id) if account.department_id else None
    return {
        "username": account.username,
        "display_name": account.display_name or "",
        "role": account.role,
        "post": account.post or "—",
        "place": _place_text(account.place_id),
        "center": center.name if center else "—",
        "department": department.name if department else "—",
        "phone": mask_phone(account.phone) or "—",  # masked in the log too (PIPL)
        "email": mask_email(account.email) or "—",
    }


def clean_email(email: str | None) -> str | None:
    """An e-mail address for notifications (docs/notifications.md), or None; refused naming the field."""
    from .notify import EMAIL, EMAIL_MAX

    email = (email or "").strip()
    if email and (len(email) > EMAIL_MAX or not EMAIL.match(email)):
        raise AccountError("email", f"电子邮箱格式不正确，应如 name@example.gov.cn，且不超过 {EMAIL_MAX} 个字符")
    return email or None


def changes_text(before: dict[str, str], after: dict[str, str]) -> str:
    """`role: operator→supervisor；place: A(1)→B(2)`: the fields that changed, before and after."""
    return "；".join(f"{k}: {before.get(k, '—')}→{v}" for k, v in after.items() if before.get(k) != v) or "无变化"


def _validate(
    role: str,
    place: Place | None,
    post: str | None,
    center: Center | None,
    department: Department | None,
    display_name: str,
    phone: str | None,
) -> None:
    """The rules every account keeps, whoever writes it; messages name the field."""
    if not role:
        raise AccountError("role", "请选择角色")
    if role not in ROLES:
        raise AccountError("role", f"未知角色：{role}")
    if not display_name or len(display_name) > 64:
        raise AccountError("display_name", "姓名不能为空且不超过 64 个字符")
    if phone is not None and not re.fullmatch(r"[0-9+\-() ]{3,20}", phone):
        raise AccountError("phone", "电话号码只能包含数字、空格和 + - ( )，最长 20 位")
    if place is None:
        raise AccountError("place", "请选择所属区划或网格")
    if role == "gridworker" and place.level != "grid":
        raise AccountError("place", "网格员的所属区划必须是一个网格")
    if post is not None:
        if post not in GRIDWORKER_POSTS:
            raise AccountError("post", f"未知岗位：{post}")
        if role != "gridworker":
            raise AccountError("post", "只有网格员有岗位")
    if center is not None:
        if role != "center_admin":
            raise AccountError("center", "只有综治中心管理员账号属于综治中心")
        if center.place_id != place.id:
            raise AccountError("center", f"综治中心「{center.name}」不在所属区划「{place.name}」")
    if role == "department" and department is None:
        raise AccountError("department", "职能部门账号必须选择所属职能部门")
    if department is not None and role != "department":
        raise AccountError("department", "只有职能部门账号属于职能部门")


def _active_place(place: Place | None) -> Place | None:
    if place is not None and not place.active:
        raise AccountError("place", f"区划「{place.name}」已停用")
    return place


def add_account(
    actor: Account | None,
    *,
    username: str,
    display_name: str,
    role: str,
    place: Place | None,
    post: str | None = None,
    phone: str | None = None,
    center: Center | None = None,
    department: Department | None = None,
    email: str | None = None,
) -> tuple[Account, str]:
    """A new account with a one-time password (returned, shown once, stored only as its hash); the owner must
    change it at the first login. Audited; the caller commits."""
    if role in ROLES and actor is not None and not may_hold(actor, role):
        raise AccountError("role", _role_refusal(actor, role))
    _validate(role, _active_place(place), post, center, department, display_name, phone)
    email = clean_email(email)
    password = one_time_password(username)
    account = create_account(
        username=username,
        display_name=display_name,
        password=password,
        role=role,
        place=place,
        post=post,
        phone=phone,
        center_id=center.id if center else None,
        department_id=department.id if department else None,
        must_change_password=True,
    )
    account.email = email
    after = _snapshot(account)
    audit(
        "account.create",
        "account",
        account.id,
        detail="；".join(f"{k}: {v}" for k, v in after.items() if v != "—")
        + "；一次性密码已发放"
        + ("" if actor else f"（{CLI_ACTOR}）"),
        account=actor,
    )
    return account, password


def update_account(
    actor: Account | None,
    account: Account,
    *,
    role=_UNCHANGED,
    place=_UNCHANGED,
    center=_UNCHANGED,
    department=_UNCHANGED,
    display_name=_UNCHANGED,
    phone=_UNCHANGED,
    post=_UNCHANGED,
    email=_UNCHANGED,
) -> bool:
    """Change an account's role, place, center, department, name, phone, e-mail or post (arguments left out stay as they
    are; None clears). Changing the role away from gridworker / center_admin / department clears the post, center
    or department unless given. Refuses (AccountError naming the field) what breaks the rules or 三权分立.
    Audited with before and after; the caller commits. Returns whether anything changed."""
    check_manage(actor, account, "role" if role is not _UNCHANGED else "account")
    before = _snapshot(account)
    new_role = account.role if role is _UNCHANGED else role
    if new_role != account.role:
        if actor is not None and actor.id == account.id:
            raise AccountError("role", "不能修改本人账号的角色")
        if new_role not in ROLES:
            raise AccountError("role", f"未知角色：{new_role}" if new_role else "请选择角色")
        if actor is not None and not may_hold(actor, new_role):
            raise AccountError("role", _role_refusal(actor, new_role))
        if account.active and account.role in CONTROL_ROLES and active_counts().get(account.role, 0) <= 1:
            role_name = labels.ROLE.get(account.role, account.role)
            raise AccountError("role", f"{account.username} 是最后一个启用的{role_name}账号，不能改为其他角色")
    new_place = account.place if place is _UNCHANGED else place
    if place is not _UNCHANGED and (place is None or place.id != account.place_id):
        _active_place(place)
    if post is _UNCHANGED:
        post = account.post if new_role == "gridworker" else None
    if center is _UNCHANGED:
        center = db.get(Center, account.center_id) if account.center_id and new_role == "center_admin" else None
    if department is _UNCHANGED:
        department = (
            db.get(Department, account.department_id) if account.department_id and new_role == "department" else None
        )
    name = account.display_name if display_name is _UNCHANGED else (display_name or "").strip()
    phone = account.phone if phone is _UNCHANGED else ((phone or "").strip() or None)
    # a phone number kept as it was (an imported one, say) is not judged again
    _validate(new_role, new_place, post, center, department, name, phone if phone != account.phone else None)
    email = account.email if email is _UNCHANGED else clean_email(email)
    phone_changed = phone != account.phone or email != account.email
    account.email = email
    account.role, account.post, account.display_name, account.phone = new_role, post, name, phone
    account.place, account.place_id = new_place, new_place.id
    account.town_id, account.village_id = new_place.town_id, new_place.village_id
    account.center_id = center.id if center else None
    account.department_id = department.id if department else None
    after = _snapshot(account)
    if after == before and not phone_changed:
        return False
    audit("account.update", "account", account.id, detail=changes_text(before, after), account=actor)
    return True


def move_gridworker(actor: Account | None, account: Account, grid: Place | None) -> bool:
    """Move a gridworker to another grid. His cases, patrols and visits keep their reporter and their own grid
    (history stays his and where it happened); from now on the new grid's figures count him. Audited; the caller
    commits. Returns whether he moved."""
    check_manage(actor, account, "grid")
    if account.role != "gridworker":
        raise AccountError("grid", "只有网格员可以调整网格")
    if grid is None or grid.level != "grid":
        raise AccountError("grid", "请选择一个网格")
    _active_place(grid)
    if grid.id == account.place_id:
        return False
    before = _place_text(account.place_id)
    account.place, account.place_id = grid, grid.id
    account.town_id, account.village_id = grid.town_id, grid.village_id
    audit("account.move", "account", account.id, detail=f"place: {before}→{_place_text(grid.id)}", account=actor)
    return True


def reset_password(actor: Account | None, account: Account) -> str:
    """A new one-time password for the account (returned once; only its hash is kept): the owner must change it
    at the next login, and every web session and API token of the account ends (end_sessions commits this).
    The audit says that it was reset, never the password."""
    from .auth.service import end_sessions
    from .timeutil import utcnow

    check_manage(actor, account, "password")
    if actor is not None and actor.id == account.id:
        raise AccountError("password", "本人密码请在「修改密码」页修改")
    password = one_time_password(account.username)
    account.password_hash = hash_password(password)
    account.password_changed_at = utcnow()
    account.must_change_password = True
    audit(
        "password.reset",
        "account",
        account.id,
        detail="发放一次性密码，下次登录须修改" + ("" if actor else f"（{CLI_ACTOR}）"),
        account=actor,
    )
    end_sessions(account, reason="管理员重置密码")
    return password


def unlock_account(actor: Account | None, account: Account) -> int:
    """Lift every login lock of the account (from all addresses). Audited; the caller commits.
    Returns the number of lock rows removed."""
    from .models import LoginLock

    check_manage(actor, account, "lock")
    locks = db.execute(select(LoginLock).where(LoginLock.account_id == account.id)).scalars().all()
    if not locks:
        return 0
    addresses = "、".join(sorted(lk.address for lk in locks))
    for lock in locks:
        db.delete(lock)
    audit(
        "login.unlock", "account", account.id, detail=f"解除 {account.username} 的登录锁定：{addresses}", account=actor
    )
    return len(locks)


def end_account_session(actor: Account | None, account: Account, session_id: str) -> bool:
    """End one open web session of the account (and the sockets it opened). Commits. False: no such open session."""
    from .models import WebSession
    from .realtime import disconnect_web_sessions
    from .timeutil import utcnow

    check_manage(actor, account, "session")
    ws = db.get(WebSession, session_id)
    if ws is None or ws.account_id != account.id or ws.ended_at is not None:
        return False
    ws.ended_at = utcnow()
    audit("session.end", "account", account.id, detail=f"结束 {account.username} 的一个登录会话（{ws.address or '—'}）")
    db.commit()
    disconnect_web_sessions([ws.id])
    return True


def revoke_account_token(actor: Account | None, account: Account, token_id: int):
    """Revoke one API token of the account; None when it has no such token. Audited; the caller commits."""
    from .models import ApiToken

    check_manage(actor, account, "token")
    token = db.get(ApiToken, token_id)
    if token is None or token.account_id != account.id:
        return None
    if not token.revoked:
        token.revoked = True
        audit("api_token.revoke", "api_token", token.id, detail=f"账号 {account.username}：{token.name}", account=actor)
    return token
