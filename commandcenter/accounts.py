"""Creating and changing accounts, with the same validation for the CLI, the admin page and imports."""

from __future__ import annotations

import re

from .db import db
from .models import GRIDWORKER_POSTS, ROLES, Account, Place
from .security import hash_password, password_problems

USERNAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{3,64}$")


class AccountError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def create_account(*, username: str, display_name: str, password: str, role: str, place: Place,
                   post: str | None = None, phone: str | None = None, check_password: bool = True,
                   password_hash: str | None = None, **extra) -> Account:
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
        username=username, display_name=display_name, password_hash=password_hash, role=role,
        post=post, place_id=place.id, place=place, phone=phone,
        town_id=place.town_id, village_id=place.village_id,
        **extra,
    )
    db.add(account)
    db.flush()
    return account
