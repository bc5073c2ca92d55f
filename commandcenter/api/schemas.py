"""Validated shapes of the JSON API. Unknown fields are refused, every message names its field."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..inputs import DATE_RANGE_MESSAGE, date_in_range

ClientKey = Annotated[
    str,
    Field(
        min_length=8,
        max_length=80,
        pattern=r"^[A-Za-z0-9_\-:.]+$",
        description="client-chosen idempotency key: a retry with the same key returns the same case",
    ),
]
CategoryCode = Annotated[
    str, Field(pattern=r"^\d{4}(\d{2})?$", description="small class (4 digits) or item (6 digits)")
]


def _sane(value: datetime) -> datetime:
    """Year 1 or 9999 cannot be converted to UTC or carry a deadline (OverflowError): refused as a field error."""
    if not date_in_range(value):
        raise ValueError(f"时间{DATE_RANGE_MESSAGE}")
    return value


# every date-time a client sends: with its offset, and between 2000-01-01 and 2100-12-31 (inputs.py)
SaneDatetime = Annotated[AwareDatetime, AfterValidator(_sane)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @model_validator(mode="before")
    @classmethod
    def _no_control_characters(cls, data):
        """NUL and other control characters are never text a person typed (and PostgreSQL refuses NUL)."""
        if isinstance(data, dict):
            for key, value in data.items():
                if isinstance(value, str) and any(ord(ch) < 32 and ch not in "\t\r\n" for ch in value):
                    raise ValueError(f"{key}: 含有不允许的控制字符")
        return data


class TokenRequest(Strict):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=128)
    device_name: str = Field(default="app", min_length=1, max_length=64)


class TokenOut(BaseModel):
    token: str
    expires_at: datetime
    account: AccountOut


class AccountOut(BaseModel):
    id: int
    username: str
    display_name: str
    role: str
    post: str | None
    place_code: str
    place_name: str


class CaseReport(Strict):
    client_key: ClientKey
    category_code: CategoryCode
    description: str = Field(min_length=1, max_length=2000)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    address: str | None = Field(default=None, max_length=200)
    grid_code: str | None = Field(default=None, pattern=r"^\d{6,32}$")
    discovered_at: SaneDatetime | None = None
    self_handled: bool = False


class HotlineWorkOrder(Strict):
    work_order_no: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")
    caller_name: str | None = Field(default=None, max_length=64)
    caller_phone: str | None = Field(
        default=None, max_length=32, description="checked by the domain (cases.loop.clean_phone)"
    )
    category_code: CategoryCode
    description: str = Field(min_length=1, max_length=2000)
    address: str | None = Field(default=None, max_length=200)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    grid_code: str | None = Field(default=None, pattern=r"^\d{6,32}$")
    received_at: SaneDatetime | None = None


class CaseAction(Strict):
    # lengths and required-ness are the domain's (cases.actions.perform), the same for every door
    note: str | None = None
    department_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    assignee_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    to_level: Literal["village", "town", "city"] | None = None
    original_number: str | None = Field(default=None, max_length=24)
    public: bool = Field(default=False, description="the note is the reply to the public (公开答复, shown by Open311)")
    days: int | None = Field(default=None, ge=0, le=10**6, description="申请延期 (extend): working days asked for")
    # 重新定位 (relocate): a standard address by id, or a point (WGS-84) with an optional address text
    lat: float | None = Field(default=None, ge=-90, le=90, description="重新定位 (relocate): latitude, WGS-84")
    lon: float | None = Field(default=None, ge=-180, le=180, description="重新定位 (relocate): longitude, WGS-84")
    address: str | None = Field(default=None, max_length=200, description="重新定位 (relocate): new address text")
    address_id: int | None = Field(
        default=None, ge=1, le=2**31 - 1, description="重新定位 (relocate): a standard address (标准地址) id"
    )
    client_key: ClientKey | None = Field(
        default=None,
        description="接收 (accept) and 反馈 (feedback) only: the app's idempotency key of the step; a resend with "
        "the same key by the same account answers 200 with the step already taken (no second step, whatever the "
        "case's state is now); the same key from another account is refused (422, field client_key)",
    )


class HeartbeatIn(Strict):
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)


class SignInIn(HeartbeatIn):
    at: SaneDatetime | None = Field(
        default=None,
        description="when the sign-in was taken on the phone (ISO 8601 with its offset, or unix seconds), for a "
        "sign-in sent later from the offline queue: not in the future (5 minutes of slack) and not older than 12 "
        "hours; the day signed in is the local day of `at`. Default: the time of arrival.",
    )


class SignInOut(BaseModel):
    day: str
    at: datetime
    created: bool


class PatrolIn(Strict):
    client_key: ClientKey
    started_at: SaneDatetime
    ended_at: SaneDatetime
    track: list[Annotated[list[float], Field(min_length=3, max_length=3, description="[经度, 纬度, unix 秒]")]] = Field(
        default_factory=list,
        max_length=5000,
        description="a point at least every 10 minutes of the patrol, inside [started_at, ended_at], in time order",
    )

    @model_validator(mode="after")
    def _finite_coordinates(self):
        """NaN, Infinity and coordinates that do not exist are refused, naming the point (track[i])."""
        for index, (lon, lat, ts) in enumerate(self.track):
            if not all(math.isfinite(x) for x in (lon, lat, ts)):
                raise ValueError(f"track[{index}]: 轨迹点须为有限数字（不能是 NaN 或 Infinity）")
            if not -180 <= lon <= 180:
                raise ValueError(f"track[{index}]: 经度须在 -180 到 180 之间")
            if not -90 <= lat <= 90:
                raise ValueError(f"track[{index}]: 纬度须在 -90 到 90 之间")
        return self


class PatrolOut(BaseModel):
    id: int
    minutes: float | None
    distance_m: float | None
    created: bool


class VisitIn(Strict):
    client_key: ClientKey
    person_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    site_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    at: SaneDatetime
    note: str | None = Field(default=None, max_length=2000)
    lat: float | None = Field(default=None, ge=-90, le=90, allow_inf_nan=False)
    lon: float | None = Field(default=None, ge=-180, le=180, allow_inf_nan=False)


class VisitOut(BaseModel):
    id: int
    created: bool


class StepOut(BaseModel):
    at: datetime
    action: str
    action_label: str
    from_state: str | None
    to_state: str
    from_level: str | None
    to_level: str | None
    actor: str | None
    note: str | None


class CaseOut(BaseModel):
    id: int
    number: str
    state: str
    state_label: str
    kind: str
    category_code: str
    category_name: str
    level: str
    source: str
    description: str
    address: str | None
    lat: float | None
    lon: float | None
    grid_code: str | None
    self_handled: bool
    valid: bool | None
    overdue: bool
    duplicate_of: str | None
    discovered_at: datetime
    reported_at: datetime
    registered_at: datetime | None
    closed_at: datetime | None
    handle_due: datetime | None
    transfer_due: datetime | None
    photos: int
    steps: list[StepOut] | None = None


class CaseList(BaseModel):
    items: list[CaseOut]
    next_before_id: int | None


class CategoryOut(BaseModel):
    code: str
    name: str
    depth: int
    kind: str
    parent_code: str | None
    handle_limit: int | None
    handle_unit: str | None
    must_escalate: bool
    transfer_limit_minutes: int | None


class PhotoOut(BaseModel):
    id: int
    content_type: str
    size: int
    sha256: str


class ErrorBody(BaseModel):
    message: str
    field: str | None


class ErrorOut(BaseModel):
    error: ErrorBody


TokenOut.model_rebuild()

MESSAGES = {
    "missing": "缺少必填字段",
    "extra_forbidden": "不允许的字段",
    "string_too_short": "长度不足（至少 {min_length} 个字符）",
    "string_too_long": "长度超出限制（最多 {max_length} 个字符）",
    "string_pattern_mismatch": "格式不正确",
    "string_type": "须为字符串",
    "float_parsing": "须为数字",
    "float_type": "须为数字",
    "int_parsing": "须为整数",
    "int_type": "须为整数",
    "bool_parsing": "须为 true 或 false",
    "bool_type": "须为 true 或 false",
    "greater_than_equal": "不能小于 {ge}",
    "less_than_equal": "不能大于 {le}",
    "datetime_parsing": "时间格式不正确，应为 ISO 8601，例如 2026-11-23T09:30:00+08:00",
    "datetime_type": "时间格式不正确，应为 ISO 8601",
    "datetime_from_date_parsing": "时间格式不正确，应为 ISO 8601",
    "timezone_aware": "时间须带时区，例如 2026-11-23T09:30:00+08:00",
    "literal_error": "取值不在允许范围内",
    "model_type": "须为 JSON 对象",
    "model_attributes_type": "须为 JSON 对象",
    "finite_number": "须为有限数字",
    "too_short": "元素个数不足（至少 {min_length} 个）",
    "too_long": "元素个数过多（最多 {max_length} 个）",
    "value_error": "{msg}",
}


def first_error(exc: ValidationError) -> tuple[str, str]:
    """The first problem as (field, Chinese message)."""
    err = exc.errors(include_url=False)[0]
    field = ".".join(str(part) for part in err["loc"]) or "body"
    if not err["loc"] and err["type"] == "value_error" and ": " in str(err.get("msg", "")):
        # a whole-model check names its field at the start of its message
        message = str(err["msg"]).removeprefix("Value error, ")
        return message.split(": ", 1)[0], message
    template = MESSAGES.get(err["type"], "取值不正确")
    context = dict(err.get("ctx") or {})
    context.setdefault("msg", str(err.get("msg", "")).removeprefix("Value error, "))
    try:
        message = template.format(**context)
    except (KeyError, IndexError):
        message = template
    return field, f"{field}: {message}"
