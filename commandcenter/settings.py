"""Settings, read once from the environment.

The embedded defaults (SQLite under instance/, no Redis, jobs in-process) are the values below;
server mode is reached by setting DATABASE_URL and REDIS_URL, nothing else changes.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def env_int(name: str, default: int) -> int:
    value = env_str(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError as exc:  # a typo in a setting must stop the start, loudly
        raise RuntimeError(f"setting {name} must be an integer, got {value!r}") from exc


def ratio(value) -> float:
    """A share: 0.9, "0.9", 90 and "90%" all mean 90 %."""
    number = float(str(value).strip().rstrip("%"))
    if number > 1:
        number /= 100
    if not 0 <= number <= 1:
        raise ValueError(f"not a share: {value!r}")
    return number


def env_ratio(name: str, default: float) -> float:
    value = env_str(name)
    if value is None:
        return default
    try:
        return ratio(value)
    except ValueError as exc:
        raise RuntimeError(f"setting {name} must be a share such as 0.9 or 90%, got {value!r}") from exc


def env_seconds(name: str, default: float) -> float:
    """A positive number of seconds, fractions allowed ("0.5")."""
    value = env_str(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError as exc:
        raise RuntimeError(f"setting {name} must be a number of seconds, got {value!r}") from exc
    if not 0 < number < 3600:
        raise RuntimeError(f"setting {name} must be between 0 and 3600 seconds, got {value!r}")
    return number


def env_clock_time(name: str) -> time | None:
    """A local time of day "HH:MM", or None when unset or empty."""
    value = (env_str(name) or "").strip()
    if not value:
        return None
    try:
        hour, minute = (int(x) for x in value.split(":"))
        return time(hour, minute)
    except ValueError as exc:
        raise RuntimeError(f"setting {name} must be a time of day such as 12:00, or empty, got {value!r}") from exc


def env_positive_int(name: str, default: int) -> int:
    value = env_int(name, default)
    if value < 1:
        raise RuntimeError(f"setting {name} must be a positive integer, got {value!r}")
    return value


def env_bool(name: str, default: bool) -> bool:
    value = env_str(name)
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def env_intervals(name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    """Seconds between retries, comma-separated ("10,60,300"): one more attempt per number."""
    value = env_str(name)
    if value is None:
        return default
    try:
        numbers = tuple(int(part) for part in value.split(","))
    except ValueError:
        numbers = ()
    if not numbers or any(n < 1 for n in numbers) or len(numbers) > 10:
        raise RuntimeError(f"setting {name} must be 1 to 10 positive whole seconds such as 10,60,300, got {value!r}")
    return numbers


def normalize_database_url(url: str) -> str:
    """We use psycopg2 (SQLAlchemy 2.1 would otherwise pick psycopg 3 for a plain postgresql:// URL)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    return url


def _secret_key(instance: Path) -> str:
    """Keep a generated key in instance/ so sessions survive a restart without a secret in the repo."""
    key = env_str("SECRET_KEY")
    if key:
        return key
    instance.mkdir(parents=True, exist_ok=True)
    path = instance / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


@dataclass
class Settings:
    instance_path: Path = field(default_factory=lambda: Path(env_str("INSTANCE_PATH", str(ROOT / "instance"))))
    database_url: str = ""
    redis_url: str | None = None
    secret_key: str = ""
    timezone: str = "Asia/Shanghai"
    # embedded = SQLite + in-process jobs + demo; server = PostgreSQL + Redis + separate workers
    mode: str = "embedded"
    session_idle_minutes: int = 30
    password_max_age_days: int = 90
    login_max_failures: int = 5
    login_lock_minutes: int = 15
    # failed logins on one account from this many addresses within the lock window raise a security alert
    login_alert_addresses: int = 3
    # reverse proxies in front of the app that append X-Forwarded-For / set X-Forwarded-Proto (nginx: 1);
    # 0 = none: the headers are ignored, since anyone could send them
    trusted_proxies: int = 0
    # origins besides the page's own that may open the live sockets (the wall), e.g. the address users type
    # when the proxy passes a different Host; empty = same origin only (SOCKET_ALLOWED_ORIGINS, comma-separated)
    socket_allowed_origins: tuple[str, ...] = ()
    # how often each web process checks that its live sockets' sessions are still valid (idle, ended)
    socket_check_seconds: int = 30
    secure_cookies: bool = False
    upload_max_bytes: int = 5 * 1024 * 1024
    upload_dir: Path = field(default_factory=lambda: ROOT / "instance" / "uploads")
    duplicate_radius_m: int = 100
    duplicate_window_hours: int = 24
    login_rate_limit: str = "10 per minute"
    intake_rate_limit: str = "600 per minute"
    api_token_days: int = 30
    # the app may report patrols that started at most this many days ago; history comes by `flask import`
    patrol_max_age_days: int = 2
    # counting work days (工作日): by default the day of registration is day 0 at any hour, and a limit of N
    # work days ends at the close of the N-th workday after it. With a time here (WORK_DAY_SAME_DAY_BEFORE,
    # e.g. 12:00), a case registered on a workday before that local time counts its own day as day 1.
    work_day_same_day_before: time | None = None
    allow_default_passwords: bool = True
    testing: bool = False
    # the database connections of one process (web or worker): see docs/operations.md for the sizing
    db_pool_size: int = 20
    db_max_overflow: int = 30
    db_pool_timeout: int = 10  # seconds a request waits for a free connection before it answers 503
    # the wall (a city may override these on the editable setting "wall", see wall/config.py)
    wall_attendance_threshold: float = 0.90  # towns below this attendance today are highlighted
    # 签到 window: gridworkers sign in each morning until this local time; before it ends the wall does not
    # flag low attendance (SIGN_IN_WINDOW_END, "HH:MM")
    sign_in_window_end: time = time(9, 0)
    wall_login_threshold: float = 0.36  # admin login rate this month below this is shown in red
    wall_ticker_rows: int = 7  # alert rows on the ticker
    wall_max_points: int = 5000  # open cases drawn on the map at most
    # notifications (SMS, robots, e-mail): seconds before each retry of a failed send; attempts = len + 1
    notify_retry_intervals: tuple[int, ...] = (10, 60, 300)
    # issue 15: live pushes go out at most once per room per tick, carrying everything that changed in it
    push_tick_seconds: float = 1.0
    # issue 15: heartbeats live in Redis; a row per account is written to the database at most this often
    presence_persist_seconds: int = 300
    # issue 15: an API token and its account are trusted from a per-process cache this long at most (0 = always
    # read); a change made through the app reaches every process within a second anyway (token_cache.py)
    token_cache_seconds: int = 300
    # processed outbox rows are kept this many days, then deleted by the hourly housekeeping job
    outbox_keep_days: int = 7

    @classmethod
    def from_env(cls, **overrides) -> Settings:
        s = cls()
        if "instance_path" in overrides:
            s.instance_path = Path(overrides.pop("instance_path"))
        s.instance_path.mkdir(parents=True, exist_ok=True)
        s.database_url = overrides.pop("database_url", None) or env_str(
            "DATABASE_URL", f"sqlite:///{s.instance_path / 'commandcenter.db'}"
        )
        s.redis_url = overrides.pop("redis_url") if "redis_url" in overrides else env_str("REDIS_URL")
        s.secret_key = _secret_key(s.instance_path)
        s.timezone = env_str("CC_TIMEZONE", "Asia/Shanghai")
        s.mode = "server" if s.database_url.startswith("postgresql") else "embedded"
        s.session_idle_minutes = env_int("SESSION_IDLE_MINUTES", 30)
        s.password_max_age_days = env_int("PASSWORD_MAX_AGE_DAYS", 90)
        s.login_max_failures = env_int("LOGIN_MAX_FAILURES", 5)
        s.login_lock_minutes = env_int("LOGIN_LOCK_MINUTES", 15)
        s.login_alert_addresses = env_int("LOGIN_ALERT_ADDRESSES", 3)
        s.trusted_proxies = env_int("TRUSTED_PROXIES", 0)
        s.socket_allowed_origins = tuple(
            o.strip() for o in (env_str("SOCKET_ALLOWED_ORIGINS") or "").split(",") if o.strip()
        )
        s.socket_check_seconds = max(1, env_int("SOCKET_CHECK_SECONDS", 30))
        s.secure_cookies = env_bool("SECURE_COOKIES", s.mode == "server")
        s.upload_max_bytes = env_int("UPLOAD_MAX_BYTES", 5 * 1024 * 1024)
        s.upload_dir = Path(
            overrides.pop("upload_dir", None) or env_str("UPLOAD_DIR", str(s.instance_path / "uploads"))
        )
        s.duplicate_radius_m = env_int("DUPLICATE_RADIUS_M", 100)
        s.duplicate_window_hours = env_int("DUPLICATE_WINDOW_HOURS", 24)
        s.login_rate_limit = env_str("LOGIN_RATE_LIMIT", "10 per minute")
        s.intake_rate_limit = env_str("INTAKE_RATE_LIMIT", "600 per minute")
        s.api_token_days = env_int("API_TOKEN_DAYS", 30)
        s.patrol_max_age_days = env_int("PATROL_MAX_AGE_DAYS", 2)
        s.work_day_same_day_before = env_clock_time("WORK_DAY_SAME_DAY_BEFORE")
        # no default passwords in server mode (等保): demo accounts only exist in embedded mode
        s.allow_default_passwords = env_bool("ALLOW_DEMO_PASSWORDS", s.mode == "embedded")
        s.db_pool_size = env_positive_int("DB_POOL_SIZE", 20)
        s.db_max_overflow = env_int("DB_MAX_OVERFLOW", 30)
        s.db_pool_timeout = env_positive_int("DB_POOL_TIMEOUT", 10)
        s.wall_attendance_threshold = env_ratio("WALL_ATTENDANCE_THRESHOLD", 0.90)
        s.sign_in_window_end = env_clock_time("SIGN_IN_WINDOW_END") or time(9, 0)
        s.wall_login_threshold = env_ratio("WALL_LOGIN_THRESHOLD", 0.36)
        s.wall_ticker_rows = env_positive_int("WALL_TICKER_ROWS", 7)
        s.wall_max_points = env_positive_int("WALL_MAX_POINTS", 5000)
        s.notify_retry_intervals = env_intervals("NOTIFY_RETRY_INTERVALS", (10, 60, 300))
        s.push_tick_seconds = env_seconds("PUSH_TICK_SECONDS", 1.0)
        s.presence_persist_seconds = env_positive_int("PRESENCE_PERSIST_SECONDS", 300)
        s.token_cache_seconds = env_int("TOKEN_CACHE_SECONDS", 300)
        s.outbox_keep_days = env_positive_int("OUTBOX_KEEP_DAYS", 7)
        for key, value in overrides.items():
            if not hasattr(s, key):
                raise TypeError(f"unknown setting {key}")
            setattr(s, key, value)
        return s
