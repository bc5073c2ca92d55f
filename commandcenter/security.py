"""Passwords, tokens and masking: the identity rules of 等保2.0 and PIPL in plain functions."""

from __future__ import annotations

import hashlib
import re
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()
# verifying against this keeps the time of "no such user" equal to "wrong password"
_DUMMY_HASH = _hasher.hash("not-a-real-password-Zz9!")

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def password_problems(password: str, username: str | None = None) -> list[str]:
    """Chinese messages for each rule the password breaks (empty list: acceptable)."""
    problems = []
    if len(password) < PASSWORD_MIN_LENGTH:
        problems.append(f"密码长度至少 {PASSWORD_MIN_LENGTH} 位")
    if len(password) > PASSWORD_MAX_LENGTH:
        problems.append(f"密码长度不能超过 {PASSWORD_MAX_LENGTH} 位")
    classes = sum(bool(re.search(p, password)) for p in (r"[A-Z]", r"[a-z]", r"[0-9]", r"[^A-Za-z0-9]"))
    if classes < 3:
        problems.append("密码须包含大写字母、小写字母、数字、符号中的至少三类")
    if username and username.lower() in password.lower():
        problems.append("密码不能包含用户名")
    return problems


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _keep_ends(value: str, head: int, tail: int, hidden_min: int = 4) -> str:
    """At most `head` leading and `tail` trailing characters shown, at least `hidden_min` hidden."""
    n = len(value)
    while head + tail > max(0, n - hidden_min):
        if head > tail or (head == tail and head > 0):
            head -= 1
        else:
            tail -= 1
    return value[:head] + "*" * (n - head - tail) + value[n - tail :]


def mask_id_number(value: str | None) -> str:
    """3205**********1234: the first four and last four characters at most, at least four always hidden
    (a short passport number shows less, never almost all of it)."""
    if not value:
        return ""
    if len(value) <= 8:
        return "*" * len(value)
    return _keep_ends(value, 4, 4)


def mask_phone(value: str | None) -> str:
    """138****5678; a short number shows less, at least four characters are always hidden."""
    if not value:
        return ""
    if len(value) < 7:
        return "*" * len(value)
    return _keep_ends(value, 3, 4)


# a house, building, unit, room or group number: digits (ASCII or full-width, joined by - # /), or
# Chinese numerals written before 号/弄/幢/栋/楼/单元/室/层/组…
_ADDRESS_NUMBER = re.compile(
    r"[0-9０-９]+(?:\s*[-－—#＃/／]\s*[0-9０-９]+)*"
    r"|[零〇一二三四五六七八九十百千两]+(?=\s*(?:号|弄|幢|栋|楼|单元|室|层|组|户|座|排|巷))"
)


def mask_address(value: str | None) -> str:
    """人民路 * 号 * 幢: the street, community or village is kept, every house, building and room number
    is replaced by * (one per character). An address without any number keeps at most its first half
    (at least two characters are always hidden)."""
    if not value:
        return ""
    masked = _ADDRESS_NUMBER.sub(lambda m: re.sub(r"\S", "*", m.group()), value)
    if masked != value:
        return masked
    hidden = max(2, len(value) - len(value) // 2)
    return value[: max(0, len(value) - hidden)] + "*" * min(hidden, len(value))


def mask_email(value: str | None) -> str:
    """n***@example.gov.cn: the first character of the mailbox and the domain."""
    if not value:
        return ""
    local_part, _, domain = value.partition("@")
    return (local_part[:1] + "***@" + domain) if domain else "*" * len(value)


def mask_name(value: str | None) -> str:
    """张*明: the family name and the last character."""
    if not value:
        return ""
    if len(value) == 1:
        return value
    if len(value) == 2:
        return value[0] + "*"
    return value[0] + "*" * (len(value) - 2) + value[-1]
