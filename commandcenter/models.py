"""The domain model (see shared/domain.md).

Times are stored as naive UTC; the calendar and the screens convert to the configured timezone.
Coordinates are stored in WGS-84 (what GPS gives); GCJ-02 conversion happens at the edges.
Every case row carries its grid, village and town so that dashboards filter by place without joins.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .db import Base
from .timeutil import utcnow

# --- vocabularies (stored as short strings; the Chinese labels live in labels.py) -----------------

PLACE_LEVELS = ("city", "town", "village", "grid")
# town: 镇 / 街道 / 乡; village: 社区 (community) vs 村委 (village) are ranked apart
TOWN_KINDS = ("town", "street", "township")
VILLAGE_KINDS = ("community", "village")
GRID_KINDS = ("comprehensive", "dedicated")

ROLES = (
    "admin",  # system administrator: accounts and settings, not cases (三权分立)
    "security_admin",  # security administrator: roles, locks, unmask grants
    "auditor",  # reads the audit log, nothing else
    "duty_officer",  # 值班员
    "operator",  # 坐席员: registers, dispatches, hotline
    "center_admin",  # town / village center administrator account (login rate is measured on these)
    "department",  # 职能部门 handler
    "supervisor",  # drills down, verifies, marks outstanding
    "leader",  # reads summaries
    "gridworker",  # 网格员, with a post
    "volunteer",  # 网格志愿者 / 平安志愿者
)
GRIDWORKER_POSTS = ("grid_chief", "liaison", "full_time", "part_time", "grid_supervisor")

CASE_SOURCES = ("app", "hotline", "volunteer", "center", "department", "leader", "open311")
CASE_KINDS = ("ordinary", "hazard", "dispute")
CASE_STATES = (
    "reported",  # 信息收集
    "registered",  # 案卷建立
    "dispatched",  # 任务派遣
    "handling",  # 任务处理
    "feedback",  # 处理反馈
    "closed",  # 核查结案
    "rejected",  # invalid 无效
    "duplicate",  # 重复
)
CASE_LEVELS = ("grid", "village", "town", "city")
LIMIT_UNITS = ("minutes", "hours", "days", "work_hours", "work_days")

PERSON_TYPES = (
    "community_correction",  # 社区矫正
    "released_prisoner",  # 刑满释放
    "mental_risk",  # 易肇事肇祸精神障碍
    "drug_user",  # 吸毒人员
    "key_youth",  # 重点青少年
    "key_petitioner",  # 重点上访人员
    "key_other",  # 其他重点人员
    "empty_nest_elderly",  # 空巢老人
)
SENSITIVE_PERSON_TYPES = ("community_correction", "released_prisoner", "mental_risk", "drug_user")
SITE_TYPES = ("key_place", "group_rental", "rental_house")
VISIT_FREQUENCIES = ("weekly", "monthly", "quarterly")


class Place(Base):
    """One node of the hierarchy: city → town/street → village/community → grid."""

    __tablename__ = "places"
    __table_args__ = (
        Index("ix_places_level_parent", "level", "parent_id"),
        Index("ix_places_town", "town_id"),
        Index("ix_places_village", "village_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    level: Mapped[str] = mapped_column(String(10))
    kind: Mapped[str | None] = mapped_column(
        String(20)
    )  # town/street/township, community/village, comprehensive/dedicated
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("places.id"))
    # ancestors, denormalised so that "inside my jurisdiction" is one indexed comparison;
    # each includes the place itself (a town's town_id is its own id)
    city_id: Mapped[int | None] = mapped_column(Integer)
    town_id: Mapped[int | None] = mapped_column(Integer)
    village_id: Mapped[int | None] = mapped_column(Integer)
    population: Mapped[int | None] = mapped_column(Integer)  # census figure, where it applies
    households: Mapped[int | None] = mapped_column(Integer)
    geometry: Mapped[dict | None] = mapped_column(JSON)  # GeoJSON Polygon/MultiPolygon, WGS-84
    center_lat: Mapped[float | None] = mapped_column(Float)
    center_lon: Mapped[float | None] = mapped_column(Float)
    police_beat_id: Mapped[int | None] = mapped_column(ForeignKey("police_beats.id"))  # 警格, grids only
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    parent: Mapped[Place | None] = relationship(remote_side=[id])


class Center(Base):
    """A 综治中心 / 联动站: the town or village center whose own reports and escalations are scored."""

    __tablename__ = "centers"
    id: Mapped[int] = mapped_column(primary_key=True)
    place_id: Mapped[int] = mapped_column(ForeignKey("places.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    level: Mapped[str] = mapped_column(String(10))  # city / town / village


class PoliceBeat(Base):
    __tablename__ = "police_beats"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    town_id: Mapped[int | None] = mapped_column(Integer, index=True)


class Department(Base):
    """职能部门 that cases are dispatched to (water bureau, market supervision, police station...)."""

    __tablename__ = "departments"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    place_id: Mapped[int | None] = mapped_column(ForeignKey("places.id"))  # the city or town it serves


class DepartmentPlace(Base):
    """The places a department serves (a town, a village, or the whole city): dispatch offers it there only."""

    __tablename__ = "department_places"
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"), primary_key=True)
    place_id: Mapped[int] = mapped_column(ForeignKey("places.id"), primary_key=True)


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (Index("ix_accounts_role_place", "role", "place_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20))
    post: Mapped[str | None] = mapped_column(String(20))  # gridworker post
    place_id: Mapped[int] = mapped_column(ForeignKey("places.id"))
    # the place's ancestors, copied so that rates per town need no join
    town_id: Mapped[int | None] = mapped_column(Integer, index=True)
    village_id: Mapped[int | None] = mapped_column(Integer)
    center_id: Mapped[int | None] = mapped_column(ForeignKey("centers.id"))
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    phone: Mapped[str | None] = mapped_column(String(20))
    email: Mapped[str | None] = mapped_column(String(120))  # where notifications by e-mail go (issue 13 §7)
    can_unmask: Mapped[bool] = mapped_column(Boolean, default=False)  # a separate grant (PIPL)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime)
    password_changed_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    totp_secret: Mapped[str | None] = mapped_column(String(64))  # seam for a second factor
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime)  # last app heartbeat
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    place: Mapped[Place] = relationship()


class ApiToken(Base):
    """Bearer tokens for the mobile apps and integrations; only a hash is stored."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)

    account: Mapped[Account] = relationship()


class LoginRecord(Base):
    """Every login attempt, success or not: feeds the login-rate panel and the audit."""

    __tablename__ = "login_records"
    __table_args__ = (Index("ix_login_records_at", "at"), Index("ix_login_records_account_at", "account_id", "at"))
    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    username: Mapped[str] = mapped_column(String(64))
    success: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(String(40))
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    address: Mapped[str | None] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(10), default="web")  # web / app / api
    import_key: Mapped[str | None] = mapped_column(String(80), unique=True)  # set by `flask import logins`


class LoginLock(Base):
    """Failed logins counted per account *and* address: five wrong passwords from one address lock the
    account for that address only, so an attacker elsewhere cannot lock its owner out (kept in the
    database, so a lock survives a restart)."""

    __tablename__ = "login_locks"
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    address: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    first_failure_at: Mapped[datetime | None] = mapped_column(DateTime)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime, index=True)


class SecurityAlert(Base):
    """Something the security administrator must look at, e.g. failed logins on one account from many
    addresses (a guessing attack); raised once per account and window, acknowledged by a person."""

    __tablename__ = "security_alerts"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(String(40))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    detail: Mapped[str] = mapped_column(Text)
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime)
    acknowledged_by_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))


class Category(Base):
    """Category tree: big class (1) → small class (2) → item (3), each node carrying its limits."""

    __tablename__ = "categories"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id"))
    depth: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(10), default="ordinary")
    dispatch_limit: Mapped[int | None] = mapped_column(Integer)
    dispatch_unit: Mapped[str | None] = mapped_column(String(12))
    handle_limit: Mapped[int | None] = mapped_column(Integer)
    handle_unit: Mapped[str | None] = mapped_column(String(12))
    must_escalate: Mapped[bool] = mapped_column(Boolean, default=False)
    escalate_to: Mapped[str | None] = mapped_column(String(10))  # level it must reach
    escalate_limit: Mapped[int | None] = mapped_column(Integer)
    escalate_unit: Mapped[str | None] = mapped_column(String(12))
    # 乱停车: reported and transferred to the city platform within this many minutes of discovery
    transfer_limit_minutes: Mapped[int | None] = mapped_column(Integer)
    warn_ratio: Mapped[float] = mapped_column(Float, default=0.8)  # warn when this share of a limit is used
    warn_before_minutes: Mapped[int | None] = mapped_column(Integer)  # or this long before it
    filing_condition: Mapped[str | None] = mapped_column(Text)
    closing_condition: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    parent: Mapped[Category | None] = relationship(remote_side=[id])


class Case(Base):
    """An event (事件 / 案件) from any source, through the six-step loop."""

    __tablename__ = "cases"
    __table_args__ = (
        UniqueConstraint("source", "client_key", name="uq_cases_source_client_key"),
        Index("ix_cases_town_reported", "town_id", "reported_at"),
        Index("ix_cases_village_reported", "village_id", "reported_at"),
        Index("ix_cases_grid_reported", "grid_id", "reported_at"),
        Index("ix_cases_state", "state"),
        Index("ix_cases_category_reported", "category_id", "reported_at"),
        Index("ix_cases_reported_at", "reported_at"),
        Index("ix_cases_reporter", "reporter_id", "reported_at"),
        Index("ix_cases_transfer_warn", "transfer_warn_at"),
        Index("ix_cases_escalate_warn", "escalate_warn_at"),
        Index("ix_cases_handle_due", "handle_due"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(24), unique=True)  # 案卷号
    source: Mapped[str] = mapped_column(String(12))
    client_key: Mapped[str | None] = mapped_column(String(80))  # idempotency key chosen by the client
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id"))
    kind: Mapped[str] = mapped_column(String(10))
    description: Mapped[str] = mapped_column(Text)
    address: Mapped[str | None] = mapped_column(String(200))
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    grid_id: Mapped[int | None] = mapped_column(ForeignKey("places.id"))
    village_id: Mapped[int | None] = mapped_column(Integer)
    town_id: Mapped[int | None] = mapped_column(Integer)
    reporter_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    reporter_center_id: Mapped[int | None] = mapped_column(ForeignKey("centers.id"))  # a center's own report
    caller_name: Mapped[str | None] = mapped_column(String(64))  # hotline / Open311 contact
    caller_phone: Mapped[str | None] = mapped_column(String(20))
    external_ref: Mapped[str | None] = mapped_column(String(64))  # 12345 work-order number
    state: Mapped[str] = mapped_column(String(12), default="reported")
    level: Mapped[str] = mapped_column(String(10), default="grid")
    valid: Mapped[bool | None] = mapped_column(Boolean)
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    self_handled: Mapped[bool] = mapped_column(Boolean, default=False)  # 自办自结
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    discovered_at: Mapped[datetime] = mapped_column(DateTime)
    reported_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    registered_at: Mapped[datetime | None] = mapped_column(DateTime)
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime)
    transferred_at: Mapped[datetime | None] = mapped_column(DateTime)  # to the city platform (乱停车)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime)
    dispatch_due: Mapped[datetime | None] = mapped_column(DateTime)
    handle_due: Mapped[datetime | None] = mapped_column(DateTime)
    escalate_due: Mapped[datetime | None] = mapped_column(DateTime)
    transfer_due: Mapped[datetime | None] = mapped_column(DateTime)
    # when the duty officer must be warned (known at report/registration; see alerts.py)
    transfer_warn_at: Mapped[datetime | None] = mapped_column(DateTime)
    escalate_warn_at: Mapped[datetime | None] = mapped_column(DateTime)
    overdue: Mapped[bool] = mapped_column(Boolean, default=False)  # 逾期 (the handling limit)
    overdue_at: Mapped[datetime | None] = mapped_column(DateTime)
    # the other stage limits (domain §2): dispatched after its dispatch limit, or still undispatched past it
    # (派遣超时); the escalation target reached after its limit, or still not reached past it (流转超时)
    dispatch_late: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    escalate_late: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # a limit of this case was counted over a year whose holidays were not known (Monday–Friday assumed);
    # recomputed when the year's calendar is imported (workcalendar.recompute_assumed_deadlines)
    deadline_assumed: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # the limits of its category when it was reported (a later edit of the category applies to new cases only):
    # {"dispatch_limit": n, "dispatch_unit": u, "handle_limit": …, "escalate_to": level, …}: categories.LIMIT_FIELDS
    limits: Mapped[dict | None] = mapped_column(JSON)
    paused_at: Mapped[datetime | None] = mapped_column(DateTime)
    pause_reason: Mapped[str | None] = mapped_column(String(200))
    escalated_to_town: Mapped[bool] = mapped_column(Boolean, default=False)
    escalated_to_city: Mapped[bool] = mapped_column(Boolean, default=False)
    escalated_by_center_id: Mapped[int | None] = mapped_column(ForeignKey("centers.id"))  # 流转 by a town center
    rework_count: Mapped[int] = mapped_column(Integer, default=0)
    outstanding: Mapped[bool] = mapped_column(Boolean, default=False)  # 优秀网格事件
    outstanding_story: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}

    category: Mapped[Category] = relationship()
    grid: Mapped[Place | None] = relationship(foreign_keys=[grid_id])
    reporter: Mapped[Account | None] = relationship(foreign_keys=[reporter_id])
    steps: Mapped[list[CaseStep]] = relationship(order_by="CaseStep.id", back_populates="case")
    photos: Mapped[list[CasePhoto]] = relationship(order_by="CasePhoto.id")


class CaseStep(Base):
    """The timeline: who, when, from what state (and level) to what, and a note."""

    __tablename__ = "case_steps"
    __table_args__ = (Index("ix_case_steps_case", "case_id", "id"), Index("ix_case_steps_at", "at"))
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))  # None = the system
    action: Mapped[str] = mapped_column(String(20))
    from_state: Mapped[str | None] = mapped_column(String(12))
    to_state: Mapped[str] = mapped_column(String(12))
    from_level: Mapped[str | None] = mapped_column(String(10))
    to_level: Mapped[str | None] = mapped_column(String(10))
    note: Mapped[str | None] = mapped_column(Text)
    # the note was written for the public on purpose (公开答复): only such notes leave through Open311
    public: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # the phone's idempotency key of a step sent from its offline queue (接收, 反馈): a resend finds it
    client_key: Mapped[str | None] = mapped_column(String(80), unique=True)

    case: Mapped[Case] = relationship(back_populates="steps")
    actor: Mapped[Account | None] = relationship()


class CasePhoto(Base):
    __tablename__ = "case_photos"
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    stored_name: Mapped[str] = mapped_column(String(80))  # our own name, never the client's path
    content_type: Mapped[str] = mapped_column(String(40))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    uploaded_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Dispute(Base):
    """矛盾纠纷: screened (排查) at a level, mediated (调处), resolved or not."""

    __tablename__ = "disputes"
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), primary_key=True)
    screening_level: Mapped[str] = mapped_column(String(10))  # grid / village / town
    mediation_level: Mapped[str | None] = mapped_column(String(10))
    outcome: Mapped[str] = mapped_column(String(12), default="pending")  # pending / resolved / unresolved
    mediated_at: Mapped[datetime | None] = mapped_column(DateTime)


class Alert(Base):
    """A deadline warning, raised once per case and kind, cleared when the case moves on."""

    __tablename__ = "alerts"
    __table_args__ = (
        UniqueConstraint("case_id", "kind", name="uq_alerts_case_kind"),
        Index("ix_alerts_open", "cleared_at", "town_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    kind: Mapped[str] = mapped_column(String(20))  # escalation_due / parking_due / overdue
    town_id: Mapped[int | None] = mapped_column(Integer)
    due_at: Mapped[datetime] = mapped_column(DateTime)
    raised_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    cleared_at: Mapped[datetime | None] = mapped_column(DateTime)
    acknowledged_by_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime)


class Outbox(Base):
    """Follow-up work recorded in the same transaction as the change, so a Redis outage loses nothing."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_pending", "processed_at", "id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    topic: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(DateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)


class Patrol(Base):
    """巡查: at least one hour each workday."""

    __tablename__ = "patrols"
    __table_args__ = (Index("ix_patrols_worker_started", "gridworker_id", "started_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    gridworker_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    grid_id: Mapped[int | None] = mapped_column(ForeignKey("places.id"))
    town_id: Mapped[int | None] = mapped_column(Integer, index=True)
    started_at: Mapped[datetime] = mapped_column(DateTime)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime)
    track: Mapped[list | None] = mapped_column(JSON)  # [[lon, lat, unix_ts], ...]
    distance_m: Mapped[float | None] = mapped_column(Float)
    client_key: Mapped[str | None] = mapped_column(String(80), unique=True)


class SignIn(Base):
    """签到: one per gridworker per day."""

    __tablename__ = "sign_ins"
    __table_args__ = (
        UniqueConstraint("account_id", "day", name="uq_sign_ins_account_day"),
        Index("ix_sign_ins_day_town", "day", "town_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    town_id: Mapped[int | None] = mapped_column(Integer)
    day: Mapped[date] = mapped_column(Date)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)


class Heartbeat(Base):
    """App check-ins; a gridworker is online while these keep coming."""

    __tablename__ = "heartbeats"
    __table_args__ = (Index("ix_heartbeats_account_at", "account_id", "at"), Index("ix_heartbeats_at", "at"))
    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)


class Person(Base):
    """Someone to be visited. Identity numbers and phones are masked on every screen by default."""

    __tablename__ = "persons"
    __table_args__ = (Index("ix_persons_town_type", "town_id", "person_type"), Index("ix_persons_grid", "grid_id"))
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str | None] = mapped_column(String(40), unique=True)  # the id in the platform it came from
    name: Mapped[str] = mapped_column(String(64))
    id_number: Mapped[str | None] = mapped_column(String(18))
    phone: Mapped[str | None] = mapped_column(String(20))
    person_type: Mapped[str] = mapped_column(String(24))
    visit_frequency: Mapped[str] = mapped_column(String(10))
    address: Mapped[str | None] = mapped_column(String(200))
    grid_id: Mapped[int] = mapped_column(ForeignKey("places.id"))
    village_id: Mapped[int | None] = mapped_column(Integer)
    town_id: Mapped[int | None] = mapped_column(Integer)
    assigned_to_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Site(Base):
    """A place to be visited: key place (重点场所), group rental (群租房), rental house (出租屋)."""

    __tablename__ = "sites"
    __table_args__ = (Index("ix_sites_town_type", "town_id", "site_type"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str | None] = mapped_column(String(40), unique=True)  # the id in the platform it came from
    name: Mapped[str] = mapped_column(String(100))
    site_type: Mapped[str] = mapped_column(String(16))
    visit_frequency: Mapped[str] = mapped_column(String(10))
    address: Mapped[str | None] = mapped_column(String(200))
    grid_id: Mapped[int] = mapped_column(ForeignKey("places.id"))
    village_id: Mapped[int | None] = mapped_column(Integer)
    town_id: Mapped[int | None] = mapped_column(Integer)
    assigned_to_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Visit(Base):
    """走访 of a person or a site."""

    __tablename__ = "visits"
    __table_args__ = (
        Index("ix_visits_person_at", "person_id", "at"),
        Index("ix_visits_site_at", "site_id", "at"),
        Index("ix_visits_town_at", "town_id", "at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    gridworker_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id"))
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"))
    town_id: Mapped[int | None] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(DateTime)
    note: Mapped[str | None] = mapped_column(Text)
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    client_key: Mapped[str | None] = mapped_column(String(80), unique=True)


class BaseDataCount(Base):
    """信息采集 figures per village and month: the inputs of 人房关联率 and the collection panels."""

    __tablename__ = "base_data_counts"
    __table_args__ = (UniqueConstraint("place_id", "month", name="uq_base_data_place_month"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    place_id: Mapped[int] = mapped_column(ForeignKey("places.id"))
    town_id: Mapped[int | None] = mapped_column(Integer, index=True)
    month: Mapped[str] = mapped_column(String(7))  # YYYY-MM
    registered_population: Mapped[int] = mapped_column(Integer, default=0)
    linked_persons: Mapped[int] = mapped_column(Integer, default=0)  # linked to a standard address
    households: Mapped[int] = mapped_column(Integer, default=0)
    buildings: Mapped[int] = mapped_column(Integer, default=0)
    houses: Mapped[int] = mapped_column(Integer, default=0)
    shops: Mapped[int] = mapped_column(Integer, default=0)
    enterprises: Mapped[int] = mapped_column(Integer, default=0)


class PartyOrganization(Base):
    """党组织 in a grid or village."""

    __tablename__ = "party_organizations"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    place_id: Mapped[int] = mapped_column(ForeignKey("places.id"))
    town_id: Mapped[int | None] = mapped_column(Integer, index=True)
    members: Mapped[int] = mapped_column(Integer, default=0)


class PartyActivity(Base):
    __tablename__ = "party_activities"
    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("party_organizations.id"), index=True)
    held_on: Mapped[date] = mapped_column(Date)
    title: Mapped[str] = mapped_column(String(200))


class AuditLog(Base):
    """Append-only: the application has no path to edit or delete it (and PostgreSQL refuses to)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_at", "at"), Index("ix_audit_account_at", "account_id", "at"))
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    account_id: Mapped[int | None] = mapped_column(Integer)
    username: Mapped[str | None] = mapped_column(String(64))
    address: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(40))
    object_type: Mapped[str | None] = mapped_column(String(30))
    object_id: Mapped[str | None] = mapped_column(String(40))
    success: Mapped[bool] = mapped_column(Boolean, default=True)
    detail: Mapped[str | None] = mapped_column(Text)


class SettingValue(Base):
    """Editable rulebooks (assessment weights, points) kept as JSON under a key."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(60), primary_key=True)
    value: Mapped[dict] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))


class WebSession(Base):
    """A browser session kept on the server, so that logout and the idle limit end it for real."""

    __tablename__ = "web_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the cookie's token
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime)
    address: Mapped[str | None] = mapped_column(String(64))


class Open311Client(Base):
    """A civic-reporting client allowed to POST to Open311; its api_key is stored only as a hash."""

    __tablename__ = "open311_clients"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    api_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Open311Token(Base):
    """The spec's `token` returned when a request is queued before it has a service_request_id.

    Our requests are created at once, so every token maps straight to its case."""

    __tablename__ = "open311_tokens"
    token: Mapped[str] = mapped_column(String(40), primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    client_id: Mapped[int | None] = mapped_column(ForeignKey("open311_clients.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class CalendarYear(Base):
    """A year of the official working calendar that the city holds: from the State Council's notice
    (imported) or from the chinesecalendar library (seeded). A year absent here and from the library is
    assumed to be Monday–Friday, and the deadlines counted over it are marked so."""

    __tablename__ = "calendar_years"
    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    source: Mapped[str] = mapped_column(String(20))  # library / notice
    note: Mapped[str | None] = mapped_column(String(200))  # e.g. 国办发明电〔2026〕N号
    loaded_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    loaded_by_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))


class CalendarDay(Base):
    """A day that differs from Monday–Friday: a holiday (休) on a weekday or weekend, or a make-up workday (班)."""

    __tablename__ = "calendar_days"
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    year: Mapped[int] = mapped_column(ForeignKey("calendar_years.year"), index=True)
    workday: Mapped[bool] = mapped_column(Boolean)
    name: Mapped[str | None] = mapped_column(String(40))


class JobRun(Base):
    """The last run of each periodic job, for the operator page (in both modes)."""

    __tablename__ = "job_runs"
    name: Mapped[str] = mapped_column(String(60), primary_key=True)
    last_started_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_status: Mapped[str | None] = mapped_column(String(10))  # ok / failed
    last_detail: Mapped[str | None] = mapped_column(Text)
    runs: Mapped[int] = mapped_column(Integer, default=0)


class AssessmentMonth(Base):
    """A closed month of the assessment (考核): the rules and figures it was computed with, frozen.

    While a month is open its table is computed from the data on every request; closing it stores the
    rules, the figures of every town and the resulting table, so that it stays reproducible after later
    corrections of the data or of the rules."""

    __tablename__ = "assessment_months"
    __table_args__ = (UniqueConstraint("place_id", "month", name="uq_assessment_place_month"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    place_id: Mapped[int] = mapped_column(ForeignKey("places.id"))  # the city whose towns are assessed
    month: Mapped[str] = mapped_column(String(7))  # YYYY-MM
    rules: Mapped[dict] = mapped_column(JSON)
    figures: Mapped[dict] = mapped_column(JSON)  # town id (str) -> the figures object, as a dict
    table: Mapped[dict] = mapped_column(JSON)  # the scored table as the JSON endpoint returns it
    closed_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    closed_by_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))


class Bulletin(Base):
    """月度通报 of a town or the city for a month: generated parts, free text kept, the built .docx."""

    __tablename__ = "bulletins"
    __table_args__ = (UniqueConstraint("place_id", "month", name="uq_bulletins_place_month"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    place_id: Mapped[int] = mapped_column(ForeignKey("places.id"))
    month: Mapped[str] = mapped_column(String(7))  # YYYY-MM
    title: Mapped[str | None] = mapped_column(String(200))
    problems: Mapped[str | None] = mapped_column(Text)  # 存在问题 (free text, written by a person)
    requirements: Mapped[str | None] = mapped_column(Text)  # 下步要求 (free text)
    story_case_ids: Mapped[list | None] = mapped_column(JSON)  # outstanding cases picked for the stories
    status: Mapped[str] = mapped_column(String(10), default="draft")  # draft / queued / running / done / failed
    progress: Mapped[int] = mapped_column(Integer, default=0)  # 0..100 while a build runs
    progress_note: Mapped[str | None] = mapped_column(String(200))
    job_id: Mapped[str | None] = mapped_column(String(64))
    content: Mapped[dict | None] = mapped_column(JSON)  # the generated sections, tables and rankings
    docx: Mapped[bytes | None] = mapped_column(LargeBinary)
    built_at: Mapped[datetime | None] = mapped_column(DateTime)
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))


class StandardAddress(Base):
    """标准地址: one entry of the city's standard address list (imported), placed in its grid."""

    __tablename__ = "standard_addresses"
    __table_args__ = (Index("ix_standard_addresses_grid", "grid_id"), Index("ix_standard_addresses_town", "town_id"))
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)  # the address id in the list it came from
    address: Mapped[str] = mapped_column(String(200))
    grid_id: Mapped[int | None] = mapped_column(ForeignKey("places.id"))
    village_id: Mapped[int | None] = mapped_column(Integer)
    town_id: Mapped[int | None] = mapped_column(Integer)
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


# --- notifications (issue 13 §7) ------------------------------------------------------------------


NOTIFY_CHANNEL_KINDS = ("sms_http", "dingtalk", "wecom", "smtp")
NOTIFY_EVENTS = ("dispatch", "rework", "warning", "overdue")
NOTIFY_STATUSES = ("queued", "sent", "failed")


class NotifyChannel(Base):
    """A way out of the browser the city configured: an SMS gateway, a group robot, or a mail server.

    ``config`` holds what may be shown (URL, host, body template…); ``secret`` (the gateway key, the
    加签 secret, the SMTP password) is shown masked and never written to the audit or the log."""

    __tablename__ = "notify_channels"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(12))  # NOTIFY_CHANNEL_KINDS
    name: Mapped[str] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    config: Mapped[dict] = mapped_column(JSON, default=dict)
    secret: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class NotifyPreference(Base):
    """An account's choice: which events reach it, through which kinds of channel (no row = the defaults)."""

    __tablename__ = "notify_preferences"
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    events: Mapped[list] = mapped_column(JSON, default=list)  # NOTIFY_EVENTS switched on
    channels: Mapped[list] = mapped_column(JSON, default=list)  # NOTIFY_CHANNEL_KINDS switched on
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class NotifyDelivery(Base):
    """One message through one channel: queued, sent or failed, with its attempts and the last error.

    ``key`` (event + account + channel) is unique: a retried drain or sweep cannot create a second one."""

    __tablename__ = "notify_deliveries"
    __table_args__ = (
        UniqueConstraint("key", name="uq_notify_deliveries_key"),
        Index("ix_notify_deliveries_due", "status", "next_attempt_at"),
        Index("ix_notify_deliveries_created", "created_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(120))
    event: Mapped[str] = mapped_column(String(12))  # NOTIFY_EVENTS, or "test"
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    channel_id: Mapped[int] = mapped_column(ForeignKey("notify_channels.id"))
    channel_kind: Mapped[str] = mapped_column(String(12))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))  # None: a group robot message
    recipient: Mapped[str | None] = mapped_column(String(500))  # phone, e-mail, or the robot's @-mobiles
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(8), default="queued")  # NOTIFY_STATUSES
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)

    channel: Mapped[NotifyChannel] = relationship()
    account: Mapped[Account | None] = relationship()
    case: Mapped[Case | None] = relationship()


# --- places administration (issue 13 §2) ----------------------------------------------------------

GRID_POSITIONS = ("grid_chief", "liaison", "full_time", "part_time", "grid_supervisor", "volunteer")  # 一长五员
MULTI_HOLDER_POSITIONS = ("part_time", "volunteer")  # several people may hold these


class GridPosition(Base):
    """One holder of a 一长五员 position of a grid: an account of that grid, or a person without an account
    (name + phone; the phone is masked wherever it is shown)."""

    __tablename__ = "grid_positions"
    __table_args__ = (Index("ix_grid_positions_grid", "grid_id", "position"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    grid_id: Mapped[int] = mapped_column(ForeignKey("places.id"))
    position: Mapped[str] = mapped_column(String(20))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    name: Mapped[str | None] = mapped_column(String(64))
    phone: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))

    account: Mapped[Account | None] = relationship(foreign_keys=[account_id])


# --- department work queue (issue 14 §2) ---------------------------------------------------------

EXTENSION_STATUSES = ("pending", "approved", "refused")


class ExtensionRequest(Base):
    """申请延期: a department asks the center for more time to handle a case; an operator or a center admin
    of the case's place approves (the case's handle_due moves) or refuses it with a note."""

    __tablename__ = "extension_requests"
    __table_args__ = (Index("ix_extension_requests_case_status", "case_id", "status"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    requested_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    days: Mapped[int] = mapped_column(Integer)  # working days asked for
    reason: Mapped[str] = mapped_column(Text)
    old_due: Mapped[datetime | None] = mapped_column(DateTime)  # handle_due when asked
    new_due: Mapped[datetime | None] = mapped_column(DateTime)  # proposed when asked; the granted one once approved
    status: Mapped[str] = mapped_column(String(10), default="pending")  # EXTENSION_STATUSES
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime)
    note: Mapped[str | None] = mapped_column(Text)

    requested_by: Mapped[Account | None] = relationship(foreign_keys=[requested_by_id])
    decided_by: Mapped[Account | None] = relationship(foreign_keys=[decided_by_id])
