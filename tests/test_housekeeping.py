"""The hourly housekeeping job: the tables that would otherwise only grow (outbox, login locks, browser
sessions) are pruned, and nothing that is still read or is the record is touched."""

from __future__ import annotations

from datetime import timedelta

from commandcenter import housekeeping
from commandcenter.db import db
from commandcenter.models import Account, JobRun, LoginLock, Outbox, WebSession
from commandcenter.timeutil import utcnow
from tests.test_login_security import WRONG, last_reason, login_from


def _account(username: str) -> Account:
    return db.query(Account).filter_by(username=username).one()


def _outbox(processed_days_ago: float | None, created_days_ago: float = 30) -> int:
    now = utcnow()
    row = Outbox(
        topic="case.changed",
        payload={"case_id": 0},
        created_at=now - timedelta(days=created_days_ago),
        processed_at=None if processed_days_ago is None else now - timedelta(days=processed_days_ago),
    )
    db.add(row)
    db.flush()
    return row.id


def test_processed_outbox_rows_past_the_keep_days_go_pending_ones_never(ctx, world):
    old = [_outbox(8) for _ in range(3)]
    recent = _outbox(1)
    pending = _outbox(None, created_days_ago=30)  # work still to do, however old: never deleted
    db.commit()
    assert housekeeping.prune()["outbox"] == 3
    left = set(db.scalars(db.query(Outbox.id).statement))
    assert left == {recent, pending} and not left & set(old)
    assert housekeeping.prune()["outbox"] == 0  # nothing more to do the next hour


def test_outbox_is_pruned_in_batches(ctx, world, monkeypatch):
    monkeypatch.setattr(housekeeping, "BATCH", 4)
    for _ in range(10):
        _outbox(9)
    db.commit()
    assert housekeeping.prune()["outbox"] == 10
    assert db.query(Outbox).count() == 0


def test_spent_login_locks_go_live_ones_stay(ctx, world):
    now = utcnow()
    gw = _account("gw0").id
    db.add_all(
        [
            # a window long past, never locked: counts nothing any more
            LoginLock(account_id=gw, address="203.0.113.1", failures=2, first_failure_at=now - timedelta(hours=2)),
            # a lock that ran out
            LoginLock(
                account_id=gw,
                address="203.0.113.2",
                failures=5,
                first_failure_at=now - timedelta(hours=2),
                locked_until=now - timedelta(hours=1),
            ),
            # still locked
            LoginLock(
                account_id=gw,
                address="203.0.113.3",
                failures=5,
                first_failure_at=now - timedelta(minutes=5),
                locked_until=now + timedelta(minutes=10),
            ),
            # failures still counting in their window
            LoginLock(account_id=gw, address="203.0.113.4", failures=3, first_failure_at=now - timedelta(minutes=5)),
        ]
    )
    db.commit()
    assert housekeeping.prune()["login_locks"] == 2
    assert sorted(lock.address for lock in db.query(LoginLock)) == ["203.0.113.3", "203.0.113.4"]


def test_a_pruned_lock_counts_again_from_the_next_failure(client, ctx, world):
    """Pruning changes nothing a user can tell: the next wrong passwords from that address count from one,
    and the fifth locks the account for that address, as before."""
    for _ in range(4):
        assert login_from(client, "gw1", WRONG, "203.0.113.9").status_code == 400
    lock = db.query(LoginLock).filter_by(address="203.0.113.9").one()
    lock.first_failure_at = utcnow() - timedelta(hours=1)  # the window has passed
    db.commit()
    assert housekeeping.prune()["login_locks"] == 1
    for _ in range(4):
        assert login_from(client, "gw1", WRONG, "203.0.113.9").status_code == 400
    assert last_reason("gw1") == "bad_password"
    assert login_from(client, "gw1", WRONG, "203.0.113.9").status_code == 400
    assert last_reason("gw1") == "bad_password_locked"


def test_sessions_dead_for_half_a_year_go(ctx, world):
    now = utcnow()
    gw = _account("gw0").id
    db.add_all(
        [
            WebSession(
                id="a" * 64, account_id=gw, created_at=now - timedelta(days=200), last_seen_at=now - timedelta(days=190)
            ),
            WebSession(
                id="b" * 64,
                account_id=gw,
                created_at=now - timedelta(days=30),
                last_seen_at=now - timedelta(days=30),
                ended_at=now - timedelta(days=30),
            ),
            WebSession(id="c" * 64, account_id=gw, created_at=now, last_seen_at=now),
        ]
    )
    db.commit()
    assert housekeeping.prune()["web_sessions"] == 1
    assert sorted(s.id[0] for s in db.query(WebSession)) == ["b", "c"]


def test_the_job_is_scheduled_hourly_and_its_runs_are_shown(ctx, world):
    from workers import jobs
    from workers.schedule import SCHEDULE

    assert [(f.__name__, i) for f, _q, i in SCHEDULE if f.__name__ == "housekeeping"] == [("housekeeping", 3600)]
    _outbox(10)
    db.commit()
    assert jobs.housekeeping() == {"outbox": 1, "login_locks": 0, "web_sessions": 0}
    run = db.get(JobRun, "housekeeping")
    assert run.last_status == "ok" and run.runs == 1
