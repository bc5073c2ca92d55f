"""The live counters (commandcenter/counters.py) on real Redis (redis_conn) and PostgreSQL (world).

Cases are driven through commandcenter.cases.loop with explicit `now=` values (naive UTC; local
Asia/Shanghai is UTC+8) by the world's real accounts; their outbox rows are drained into Redis and
the figures read back with case_counts. The expected figures are written out in each test (or, for
the random run, recounted here from the case_steps table with the definitions restated), never
taken from the module under test.
"""

from __future__ import annotations

import random
import threading
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta

import fakeredis
import pytest
from redis import Redis
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from commandcenter import counters
from commandcenter.access import Forbidden
from commandcenter.accounts import create_account
from commandcenter.cases import loop
from commandcenter.cases.loop import ReportInput, TransitionError
from commandcenter.db import Base, db, session_factory
from commandcenter.models import (
    Account,
    Case,
    CaseStep,
    Category,
    Heartbeat,
    LoginRecord,
    Outbox,
    Patrol,
    Place,
    SignIn,
)
from commandcenter.timeutil import local
from tests.conftest import report as shared_report
from tests.conftest import shanghai
from tests.world import WorldView

M = timedelta(minutes=1)
H = timedelta(hours=1)
D = timedelta(days=1)
T0 = datetime(2026, 3, 10, 1, 0)  # UTC = local Tue 2026-03-10 09:00
DAY0 = date(2026, 3, 10)


def zero(**nonzero) -> dict[str, int]:
    counts = dict.fromkeys(counters.FIELDS, 0)
    counts.update({k.replace("__", ":"): v for k, v in nonzero.items()})
    return counts


class W(WorldView):
    def chain(self, g: int) -> list[int]:
        """grid, village, town and city ids of grid index g (8 grids: 2 per village, 4 per town)."""
        return [self.grid(g), self.village(g // 2), self.town(g // 4), self.city]

    def all_places(self) -> list[int]:
        return [self.city, *[p.id for p in self.world.towns + self.world.villages + self.world.grids]]


@pytest.fixture
def w(ctx, world):
    return W(world)


def report(w: W, who: str = "gw0", code: str = "0502", at: datetime = T0, grid: int = 0, **extra) -> Case:
    return shared_report(w, who, code, at, grid=grid, by_grid_id=True, **extra)


def drain_all(r, w: W, limit: int = 500) -> int:
    total = 0
    while True:
        n = counters.drain_outbox(r, db, w.city, limit=limit)
        total += n
        if n == 0:
            return total


def pending_rows() -> list[Outbox]:
    return (
        db.execute(
            select(Outbox)
            .where(Outbox.processed_at.is_(None))
            .order_by(Outbox.id)
            .execution_options(populate_existing=True)
        )
        .scalars()
        .all()
    )


def counter_keys(r) -> dict[str, dict[str, str]]:
    """Every case counter key and its raw content."""
    out = {}
    for key in r.scan_iter(match="cc:c:*"):
        out[key.decode()] = {f.decode(): v.decode() for f, v in r.hgetall(key).items()}
    return out


class Expect:
    """What every place should hold, day by day and month by month, as steps are taken."""

    def __init__(self, r, w: W):
        self.r, self.w = r, w
        self.want: dict[tuple[str, str, int], Counter] = defaultdict(Counter)
        self.days: set[date] = set()
        self.months: set[str] = set()

    def add(self, grid: int, at: datetime, *fields: str) -> None:
        day = local(at).date()
        self.days.add(day)
        self.months.add(day.strftime("%Y%m"))
        for pid in self.w.chain(grid):
            for f in fields:
                self.want[("d", day.strftime("%Y%m%d"), pid)][f] += 1
                self.want[("m", day.strftime("%Y%m"), pid)][f] += 1

    def check(self) -> None:
        drain_all(self.r, self.w)
        places = self.w.all_places()
        for day in sorted(self.days):
            got = counters.case_counts_many(self.r, places, day=day)
            for pid in places:
                assert got[pid] == zero(
                    **{k.replace(":", "__"): v for k, v in self.want[("d", day.strftime("%Y%m%d"), pid)].items()}
                ), (day, pid)
        for month in sorted(self.months):
            got = counters.case_counts_many(self.r, places, month=month)
            for pid in places:
                assert got[pid] == zero(**{k.replace(":", "__"): v for k, v in self.want[("m", month, pid)].items()}), (
                    month,
                    pid,
                )


# --- 1. each action moves the right fields, at every level, by day and by month ----------------------


def test_each_action_moves_its_fields_at_every_level(w, redis_conn):
    r, x = redis_conn, Expect(redis_conn, w)
    op0, admin0, dept0 = w.a("town0_operator"), w.a("town0_admin"), w.a("dept0")

    # the normal loop with one rework: report, register, dispatch, accept, feedback, rework, feedback, close
    c1 = report(w, "gw0", "0501", T0)  # 井盖缺损: a hazard
    x.add(0, T0, "reported", "reported:hazard")
    x.check()
    loop.register(c1, op0, now=T0 + 10 * M)
    x.add(0, T0 + 10 * M, "registered")
    x.check()
    loop.dispatch(c1, admin0, department_id=w.dept(0), now=T0 + 20 * M)
    x.add(0, T0 + 20 * M, "dispatched")
    x.check()
    loop.accept(c1, dept0, now=T0 + 30 * M)
    loop.feedback(c1, dept0, "已更换井盖", now=T0 + 2 * H)
    x.check()  # accept and feedback count nothing
    loop.rework(c1, op0, "井盖未固定", now=T0 + 3 * H)
    x.add(0, T0 + 3 * H, "reworked")
    x.check()
    loop.feedback(c1, dept0, "已固定", now=T0 + 4 * H)
    loop.close(c1, op0, now=T0 + 5 * H)
    x.add(0, T0 + 5 * H, "closed")
    x.check()

    # a dispute in grid 3 (town 0, village 1) rejected as invalid
    c2 = report(w, "gw3", "2001", T0 + H, grid=3)
    x.add(3, T0 + H, "reported", "reported:dispute")
    loop.reject(c2, op0, "现场核实无此情况", now=T0 + 2 * H)
    x.add(3, T0 + 2 * H, "rejected")
    x.check()

    # a duplicate of c1; the "merge" step written on c1 counts nothing
    c3 = report(w, "gw0", "0502", T0 + 6 * H)
    x.add(0, T0 + 6 * H, "reported", "reported:ordinary")
    loop.mark_duplicate(c3, op0, c1, now=T0 + 7 * H)
    x.add(0, T0 + 7 * H, "duplicate")
    x.check()

    # town 1: escalated grid → village (nothing) → town (escalated:town) → city (escalated:city)
    c4 = report(w, "gw5", "0502", T0 + H, grid=5)
    x.add(5, T0 + H, "reported", "reported:ordinary")
    loop.escalate(c4, w.a("gw5"), note="网格无法处置", now=T0 + 2 * H)
    x.check()
    loop.escalate(c4, w.a("village2_admin"), note="村级无法处置", now=T0 + 3 * H)
    x.add(5, T0 + 3 * H, "escalated:town")
    x.check()
    loop.escalate(c4, w.a("town1_admin"), note="需市级协调", now=T0 + 4 * H)
    x.add(5, T0 + 4 * H, "escalated:city")
    x.check()
    outbox = [
        o.payload
        for o in db.execute(select(Outbox).order_by(Outbox.id)).scalars()
        if o.payload["case_id"] == c4.id and o.payload["action"] == "escalate"
    ]
    assert [p["level"] for p in outbox] == ["village", "town", "city"]

    # straight from the grid to the city: escalated:city only
    c5 = report(w, "gw1", "0502", T0 + 8 * H, grid=1)
    x.add(1, T0 + 8 * H, "reported", "reported:ordinary")
    loop.escalate(c5, w.a("gw1"), to_level="city", note="重大情况", now=T0 + 9 * H)
    x.add(1, T0 + 9 * H, "escalated:city")
    x.check()

    # self-handled: closed (not registered)
    c6 = report(w, "gw6", "0502", T0 + 2 * H, grid=6)
    x.add(6, T0 + 2 * H, "reported", "reported:ordinary")
    loop.self_close(c6, w.a("gw6"), "当场处理完毕", now=T0 + 3 * H)
    x.add(6, T0 + 3 * H, "closed")
    x.check()

    # 乱停车 found two hours before it is reported: auto_reject in the report's own transaction
    c7 = report(w, "gw2", "0401", T0 + 3 * H, grid=2, discovered_at=T0 + H)
    assert c7.state == "rejected"
    x.add(2, T0 + 3 * H, "reported", "reported:ordinary", "rejected")
    x.check()

    # overdue: the deadline sweep's step
    c8 = report(w, "gw4", "0502", T0 + 4 * H, grid=4)
    x.add(4, T0 + 4 * H, "reported", "reported:ordinary")
    loop.register(c8, w.a("town1_operator"), now=T0 + 5 * H)
    x.add(4, T0 + 5 * H, "registered")
    sweep_at = T0 + 10 * D
    swept = loop.sweep_deadlines(now=sweep_at)  # c8 is also undispatched past its dispatch limit: no counter
    assert (swept["overdue"], swept["auto_rejected"], swept["dispatch_late"]) == (1, 0, 1)
    x.add(4, sweep_at, "overdue")
    x.check()

    # the local day and month: 23:59 on 31 March and 00:01 on 1 April (local) are different days and months
    c9 = report(w, "gw7", "0502", shanghai(2026, 3, 31, 23, 59), grid=7)
    x.add(7, shanghai(2026, 3, 31, 23, 59), "reported", "reported:ordinary")
    loop.register(c9, w.a("town1_operator"), now=shanghai(2026, 4, 1, 0, 1))
    x.add(7, shanghai(2026, 4, 1, 0, 1), "registered")
    x.check()
    assert counters.case_counts(r, w.grid(7), day=date(2026, 3, 31)) == zero(reported=1, reported__ordinary=1)
    assert counters.case_counts(r, w.grid(7), day=date(2026, 4, 1)) == zero(registered=1)
    assert counters.case_counts(r, w.grid(7), month="2026-04") == zero(registered=1)
    assert counters.case_counts(r, w.grid(7), month=date(2026, 3, 5))["reported"] == 1

    # the whole city, day 0 (local 2026-03-10) and the month
    assert counters.case_counts(r, w.city, day=DAY0) == zero(
        reported=8,
        reported__ordinary=6,
        reported__hazard=1,
        reported__dispute=1,
        registered=2,
        dispatched=1,
        reworked=1,
        closed=2,
        rejected=2,
        duplicate=1,
        escalated__town=1,
        escalated__city=2,
    )
    assert counters.case_counts(r, w.city, month="202603") == zero(
        reported=9,
        reported__ordinary=7,
        reported__hazard=1,
        reported__dispute=1,
        registered=2,
        dispatched=1,
        reworked=1,
        closed=2,
        rejected=2,
        duplicate=1,
        escalated__town=1,
        escalated__city=2,
        overdue=1,
    )
    assert counters.case_counts(r, w.town(1), day=DAY0) == zero(
        reported=3, reported__ordinary=3, registered=1, closed=1, escalated__town=1, escalated__city=1
    )
    # keys expire: days after DAY_TTL, months after MONTH_TTL
    assert 0 < r.ttl(counters.day_key(DAY0, w.city)) <= counters.DAY_TTL
    assert counters.DAY_TTL < r.ttl(counters.month_key("202603", w.city)) <= counters.MONTH_TTL
    assert counters.case_counts(r, w.city, day=date(2026, 3, 9)) == zero()
    with pytest.raises(ValueError):
        counters.case_counts(r, w.city, day=DAY0, month="202603")


# --- 2. exactly once ----------------------------------------------------------------------------------


def test_the_same_outbox_row_counts_once(w, redis_conn):
    r = redis_conn
    report(w, "gw0", "0501", T0)
    row = pending_rows()[0]
    assert counters.apply_case_event(r, row.id, row.payload, w.city) is True
    assert counters.apply_case_event(r, row.id, row.payload, w.city) is False
    assert counters.apply_case_events(r, [(row.id, row.payload), (row.id, row.payload)], w.city) == [False, False]
    for pid in w.chain(0):
        assert counters.case_counts(r, pid, day=DAY0) == zero(reported=1, reported__hazard=1)
    assert 0 < r.ttl(f"cc:done:{row.id}") <= counters.DONE_TTL
    # the drain then marks the row processed without counting it again
    assert drain_all(r, w) == 1
    assert pending_rows() == []
    assert counters.case_counts(r, w.city, day=DAY0) == zero(reported=1, reported__hazard=1)


def test_crash_after_counting_before_marking_processed(w, redis_conn):
    r = redis_conn
    cases = [report(w, f"gw{g}", "0502", T0 + g * M, grid=g) for g in range(3)]
    loop.register(cases[0], w.a("town0_operator"), now=T0 + H)
    rows = pending_rows()
    assert len(rows) == 4
    # a job counted the first two rows and died before its commit
    for row in rows[:2]:
        assert counters.apply_case_event(r, row.id, row.payload, w.city)
    assert len(pending_rows()) == 4

    # a drain dies inside its batch, after the counters and before the commit (KeyboardInterrupt, SIGTERM...)
    class Killed(BaseException):
        pass

    def die(_row):
        raise Killed

    with pytest.raises(Killed):
        counters.drain_outbox(r, db, w.city, on_event=die)
    assert len(pending_rows()) == 4  # rolled back: still to do
    assert counters.case_counts(r, w.town(0), day=DAY0) == zero(reported=3, reported__ordinary=3, registered=1)

    seen = []
    assert counters.drain_outbox(r, db, w.city, on_event=lambda row: seen.append(row.payload["action"])) == 4
    assert seen == ["report", "report", "report", "register"]
    assert pending_rows() == []
    assert counters.case_counts(r, w.town(0), day=DAY0) == zero(reported=3, reported__ordinary=3, registered=1)
    assert counters.case_counts(r, w.grid(0), day=DAY0) == zero(reported=1, reported__ordinary=1, registered=1)
    rep = counters.reconcile(r, db, DAY0, DAY0, w.city)
    assert (rep["keys_fixed"], rep["drift"], rep["pending"]) == (0, [], 0)


def test_every_counter_key_expires_even_after_redis_lost_everything(w, redis_conn):
    """This process remembers which keys it gave a TTL; a FLUSHALL (or a reconcile deleting a key)
    must make it give them one again."""
    r = redis_conn
    payload = {
        "case_id": 1,
        "action": "report",
        "state": "reported",
        "level": "grid",
        "town_id": w.town(0),
        "village_id": w.village(0),
        "grid_id": w.grid(0),
        "kind": "ordinary",
        "at": T0.isoformat(),
    }
    keys = [k(p, pid) for pid in w.chain(0) for k, p in ((counters.day_key, DAY0), (counters.month_key, "202603"))]

    def ttls() -> list[int]:
        return [r.ttl(k) for k in keys]

    assert counters.apply_case_event(r, 1, payload, w.city)
    assert all(t > 0 for t in ttls())
    assert counters.apply_case_event(r, 2, payload, w.city)
    r.flushdb()
    assert counters.apply_case_event(r, 3, payload, w.city)
    assert all(t > 0 for t in ttls()), ttls()
    # a reconcile that deletes a key (no such step in the database) ...
    rep = counters.reconcile(r, db, DAY0, DAY0, w.city)
    assert rep["keys_fixed"] == 8 and not any(r.exists(k) for k in keys)
    assert counters.apply_case_event(r, 4, payload, w.city)  # ... and a writer recreates it
    assert all(t > 0 for t in ttls()), ttls()
    assert counters.apply_case_event(r, 5, {**payload, "action": "accept"}, w.city)  # counts nothing
    assert not r.exists("cc:done:5")


def test_racing_appliers_count_each_event_once(w, redis_conn, redis_url):
    payload = {
        "case_id": 1,
        "action": "report",
        "state": "reported",
        "level": "grid",
        "town_id": w.town(0),
        "village_id": w.village(0),
        "grid_id": w.grid(0),
        "kind": "ordinary",
        "at": T0.isoformat(),
    }
    applied = []

    def worker(seed: int) -> None:
        client = Redis.from_url(redis_url)
        ids = list(range(1, 61))
        random.Random(seed).shuffle(ids)
        applied.append(sum(counters.apply_case_event(client, i, payload, w.city) for i in ids))

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(applied) == 60
    assert counters.case_counts(redis_conn, w.city, day=DAY0)["reported"] == 60


def test_concurrent_drains_share_the_rows(w, redis_conn, redis_url):
    """Two workers with their own sessions: SKIP LOCKED gives every row to exactly one of them."""
    for i in range(40):
        report(w, f"gw{i % 8}", "0502", T0 + i * M, grid=i % 8)
    city_id = w.city
    taken = []

    def worker() -> None:
        session, client = session_factory(), Redis.from_url(redis_url)
        try:
            mine = 0
            while n := counters.drain_outbox(client, session, city_id, limit=3):
                mine += n
            taken.append(mine)
        finally:
            session.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(taken) == 40
    assert pending_rows() == []
    assert counters.case_counts(redis_conn, w.city, day=DAY0) == zero(reported=40, reported__ordinary=40)
    assert counters.case_counts(redis_conn, w.town(1), day=DAY0)["reported"] == 20


def test_drains_pause_while_a_reconcile_rewrites(w, redis_conn):
    r = redis_conn
    report(w, "gw0", "0502", T0)
    r.set(counters.RECONCILE_KEY, "someone")  # a reconcile is running elsewhere
    assert counters.drain_outbox(r, db, w.city) == 0
    assert len(pending_rows()) == 1
    with pytest.raises(TimeoutError):
        counters.reconcile(r, db, DAY0, DAY0, w.city, wait_s=0.2)
    r.delete(counters.RECONCILE_KEY)
    assert counters.drain_outbox(r, db, w.city) == 1

    import time as _time

    r.zadd(counters.DRAINERS_KEY, {"busy-drain": _time.time() + 60})  # a drain in the middle of its batch
    with pytest.raises(TimeoutError):
        counters.reconcile(r, db, DAY0, DAY0, w.city, wait_s=0.3)
    assert not r.exists(counters.RECONCILE_KEY)  # given back: drains go on
    r.zadd(counters.DRAINERS_KEY, {"busy-drain": _time.time() - 1})  # ... that died: its lease ran out
    assert counters.reconcile(r, db, DAY0, DAY0, w.city, wait_s=0.3)["keys_fixed"] == 0
    assert r.zcard(counters.DRAINERS_KEY) == 0


def test_a_reconcile_holds_the_drains_only_while_it_lives(w, redis_conn, monkeypatch):
    """A long reconcile renews its flag; one that died (worker killed, Redis lost mid-way) frees the
    drains when its short lease runs out, not minutes later (CI once saw the counters frozen for 5 min)."""
    import time as _time

    r = redis_conn
    from commandcenter.counters import drain, reconcile_cases

    monkeypatch.setattr(reconcile_cases, "RECONCILE_LEASE_S", 0.6)  # the lease taken and renewed
    monkeypatch.setattr(drain, "RECONCILE_LEASE_S", 0.6)
    original = reconcile_cases.true_case_counts

    def slow_truth(*args, **kwargs):
        _time.sleep(2.0)  # three leases long
        return original(*args, **kwargs)

    monkeypatch.setattr(reconcile_cases, "true_case_counts", slow_truth)
    report(w, "gw0", "0502", T0)
    db.commit()
    result = {}
    engine = db.get_bind()

    def run():
        with Session(engine) as session:
            result["report"] = counters.reconcile(r, session, DAY0, DAY0, w.city, wait_s=1)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert wait_for_flag(r, present=True)
        _time.sleep(1.5)  # past two leases: still held, because it is renewed
        assert r.exists(counters.RECONCILE_KEY) and r.pttl(counters.RECONCILE_KEY) <= 600
        assert counters.drain_outbox(r, db, w.city) == 0
    finally:
        thread.join(10)
    assert not r.exists(counters.RECONCILE_KEY) and result["report"]["pending"] == 1
    assert counters.drain_outbox(r, db, w.city) == 1

    report(w, "gw0", "0502", T0 + M)
    db.commit()
    counters._pause_drains(r, 1)  # a reconcile took the flag and died: nobody renews or releases it
    assert counters.drain_outbox(r, db, w.city) == 0
    assert wait_for_flag(r, present=False, within=1.5)
    assert counters.drain_outbox(r, db, w.city) == 1
    assert counters.case_counts(r, w.city, day=DAY0)["reported"] == 2


def wait_for_flag(r, present: bool, within: float = 3.0) -> bool:
    import time as _time

    deadline = _time.monotonic() + within
    while _time.monotonic() < deadline:
        if bool(r.exists(counters.RECONCILE_KEY)) == present:
            return True
        _time.sleep(0.02)
    return False


def test_a_drain_lets_a_reconcile_start_once_its_counters_are_written(w, redis_conn):
    """The pushes after the counters (seconds when Redis is slow) no longer hold a reconcile back."""
    r = redis_conn
    report(w, "gw0", "0502", T0)
    db.commit()
    seen = []
    assert counters.drain_outbox(r, db, w.city, on_event=lambda row: seen.append(r.zcard(counters.DRAINERS_KEY))) == 1
    assert seen == [0] and counters.case_counts(r, w.city, day=DAY0)["reported"] == 1


def test_a_drain_whose_lease_ran_out_leaves_its_rows_to_the_next_round(w, redis_conn, monkeypatch):
    """A dead drain holds a reconcile back for DRAIN_LEASE_S at most (the first wall after a Redis outage waited
    30 s for one); a live drain whose rows took longer than that to read does not apply them behind the back
    of a reconcile that went ahead: they stay unprocessed, and the next round counts them once."""
    from commandcenter.counters import drain

    assert drain.DRAIN_LEASE_S <= 10
    r = redis_conn
    report(w, "gw0", "0502", T0)
    db.commit()
    registered = drain._register_drainer

    def slow_read(r_, *args):
        token = registered(r_, *args)
        # the rows took longer than the lease to read: a reconcile found the lease expired and removed it
        r_.zrem(counters.DRAINERS_KEY, token)
        return token

    monkeypatch.setattr(drain, "_register_drainer", slow_read)
    assert counters.drain_outbox(r, db, w.city) == 0
    assert counters.case_counts(r, w.city, day=DAY0)["reported"] == 0
    assert len(pending_rows()) == 1
    monkeypatch.setattr(drain, "_register_drainer", registered)
    assert counters.drain_outbox(r, db, w.city) == 1
    assert counters.case_counts(r, w.city, day=DAY0)["reported"] == 1
    assert r.zcard(counters.DRAINERS_KEY) == 0


def test_reconcile_beside_live_traffic_never_loses_or_doubles(w, redis_conn, redis_url):
    """A reconcile loop in another thread while cases are reported and drained: every reconcile sees
    zero drift, and the final figures equal the recount."""
    r, city_id = redis_conn, w.city
    stop, reports, errors = threading.Event(), [], []

    def reconciler() -> None:
        session, client = session_factory(), Redis.from_url(redis_url)
        try:
            while not stop.is_set():
                reports.append(counters.reconcile(client, session, DAY0, DAY0 + D, city_id))
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            session.close()

    thread = threading.Thread(target=reconciler)
    thread.start()
    try:
        for i in range(60):
            c = report(w, f"gw{i % 8}", ("0502", "0501", "2001")[i % 3], T0 + i * 10 * M, grid=i % 8)
            if i % 2:
                loop.register(c, w.a(f"town{(i % 8) // 4}_operator"), now=T0 + i * 10 * M + M)
            counters.drain_outbox(r, db, city_id, limit=1 + i % 4)
    finally:
        stop.set()
        thread.join()
    assert not errors, errors
    assert len(reports) >= 3
    assert [rep["drift"] for rep in reports if rep["drift"]] == []
    drain_all(r, w)
    final = counters.reconcile(r, db, DAY0, DAY0 + D, city_id)
    assert (final["keys_fixed"], final["drift"]) == (0, [])
    assert counters.case_counts(r, city_id, day=DAY0) == zero(
        reported=60, reported__ordinary=20, reported__hazard=20, reported__dispute=20, registered=30
    )


# --- 3. a thousand random changes equal a fresh recount -----------------------------------------------

CODES = ["0502", "0502", "0501", "2001", "0401", "1002", "9901"]


class RandomCity:
    """Random legal steps over ~100 cases in both towns, taken by the accounts allowed to take them."""

    def __init__(self, w: W, rnd: random.Random, now: datetime):
        self.w, self.rnd, self.now = w, rnd, now
        self.cases: list[Case] = []
        self.grid_of: dict[int, int] = {}
        self.changes = self.refused = 0

    def actor(self, action: str, case: Case) -> Account:
        g = self.grid_of[case.id]
        t, v = g // 4, g // 2
        if action in ("register", "reject", "duplicate", "close", "rework", "pause", "resume", "transfer"):
            name = "city_operator" if case.level == "city" else f"town{t}_operator"
        elif action == "dispatch":
            name = "city_center" if case.level == "city" else f"town{t}_admin"
        elif action in ("accept", "feedback"):
            name = "dept0"
        elif action == "escalate":
            name = {"grid": f"gw{g}", "village": f"village{v}_admin", "town": f"town{t}_admin"}[case.level]
        else:  # self_close
            name = f"gw{g}"
        return self.w.a(name)

    def moves(self, case: Case) -> dict[str, float]:
        """Legal next steps of the case and how likely each is (terminal refusals are kept rare)."""
        s = case.state
        out: dict[str, float] = {}
        if s == "reported":
            out = {"register": 10, "reject": 0.7, "duplicate": 0.5}
            if not case.category.must_escalate and case.reporter_id:
                out["self_close"] = 1
        elif s == "registered":
            out = {"dispatch": 10, "reject": 0.5, "duplicate": 0.3, "pause" if case.paused_at is None else "resume": 2}
        elif s == "dispatched":
            out = {"accept": 10}
        elif s == "handling":
            out = {"feedback": 10}
        elif s == "feedback":
            out = {"close": 5, "rework": 4}
        if s in loop.ALLOWED_FROM["escalate"] and case.level != "city":
            out["escalate"] = 1.5
        if (
            case.transfer_due is not None
            and case.transferred_at is None
            and s in loop.OPEN_STATES
            and self.now <= case.transfer_due
        ):
            out["transfer"] = 5
        return out

    def report(self) -> None:
        g = self.rnd.randrange(8)
        code = self.rnd.choice(CODES)
        late = code == "0401" and self.rnd.random() < 0.3  # found long ago: void at once
        case, _ = loop.report_case(
            ReportInput(
                category_id=self.w.cat(code).id,
                description="随机事件",
                grid_id=self.w.grid(g),
                discovered_at=self.now - 2 * H if late else None,
            ),
            actor=self.w.a(f"gw{g}"),
            source="app",
            client_key=None,
            now=self.now,
        )
        self.cases.append(case)
        self.grid_of[case.id] = g

    def step(self) -> None:
        self.now += self.rnd.randint(1, 90) * M
        if self.rnd.random() < 0.03:
            counts = loop.sweep_deadlines(now=self.now)
            self.changes += counts["overdue"] + counts["auto_rejected"]
            return
        open_cases = [c for c in self.cases if self.moves(c)]
        if not open_cases or (len(self.cases) < 100 and self.rnd.random() < 0.3):
            self.report()
            self.changes += 1
            return
        case = self.rnd.choice(open_cases)
        moves = self.moves(case)
        action = self.rnd.choices(list(moves), list(moves.values()))[0]
        actor = self.actor(action, case)
        now = self.now
        try:
            if action == "register":
                loop.register(case, actor, now=now)
            elif action == "reject":
                loop.reject(case, actor, "核实无效", now=now)
            elif action == "duplicate":
                originals = [
                    c
                    for c in self.cases
                    if c.id != case.id and c.town_id == case.town_id and c.state not in ("rejected", "duplicate")
                ]
                if not originals:
                    return
                loop.mark_duplicate(case, actor, self.rnd.choice(originals), now=now)
            elif action == "dispatch":
                loop.dispatch(case, actor, department_id=self.w.dept(0), now=now)
            elif action == "accept":
                loop.accept(case, actor, now=now)
            elif action == "feedback":
                loop.feedback(case, actor, "已处置", now=now)
            elif action == "close":
                loop.close(case, actor, now=now)
            elif action == "rework":
                loop.rework(case, actor, "不合格", now=now)
            elif action == "escalate":
                above = [lv for lv in ("village", "town", "city") if loop.LEVEL_RANK[lv] > loop.LEVEL_RANK[case.level]]
                loop.escalate(case, actor, to_level=self.rnd.choice(above), note="上报上级", now=now)
            elif action == "self_close":
                loop.self_close(case, actor, "当场解决", now=now)
            elif action == "pause":
                loop.pause(case, actor, "等待配合", now=now)
            elif action == "resume":
                loop.resume(case, actor, now=now)
            elif action == "transfer":
                loop.transfer_to_city(case, actor, now=now)
            self.changes += 1
        except (TransitionError, Forbidden):
            db.rollback()
            self.refused += 1


def recount(w: W) -> dict[tuple[str, str, int], Counter]:
    """The definitions, restated: steps by action class, local day and month, at grid/village/town/city."""
    out: dict[tuple[str, str, int], Counter] = defaultdict(Counter)
    rows = db.execute(
        select(
            CaseStep.action, CaseStep.to_level, CaseStep.at, Case.kind, Case.grid_id, Case.village_id, Case.town_id
        ).join(Case, Case.id == CaseStep.case_id)
    ).all()
    classes = {
        "register": "registered",
        "dispatch": "dispatched",
        "rework": "reworked",
        "close": "closed",
        "self_close": "closed",
        "reject": "rejected",
        "auto_reject": "rejected",
        "duplicate": "duplicate",
        "overdue": "overdue",
    }
    for action, to_level, at, kind, grid_id, village_id, town_id in rows:
        if action == "report":
            fields = ["reported", f"reported:{kind}"]
        elif action == "escalate":
            fields = [f"escalated:{to_level}"] if to_level in ("town", "city") else []
        else:
            fields = [classes[action]] if action in classes else []
        day = local(at).date()
        for pid in (grid_id, village_id, town_id, w.city):
            for f in fields:
                out[("d", day.strftime("%Y%m%d"), pid)][f] += 1
                out[("m", day.strftime("%Y%m"), pid)][f] += 1
    return out


def test_a_thousand_random_changes_equal_a_fresh_recount(w, redis_conn):
    r, rnd = redis_conn, random.Random(20260310)
    start = shanghai(2026, 3, 20, 8, 0)
    city = RandomCity(w, rnd, start)
    crashed = 0
    next_drain = rnd.randint(1, 40)
    checked_midway = False
    while city.changes < 1000:
        city.step()
        if city.changes >= next_drain:
            next_drain = city.changes + rnd.randint(1, 40)
            if rnd.random() < 0.15:  # a job counts the next rows and dies before marking them
                for row in pending_rows()[: rnd.randint(1, 3)]:
                    counters.apply_case_event(r, row.id, row.payload, w.city)
                    crashed += 1
            else:
                counters.drain_outbox(r, db, w.city, limit=rnd.choice([1, 5, 50, 500]))
        if not checked_midway and city.changes >= 500:
            # mid-run, with rows still waiting (and some counted but not marked): no drift either
            checked_midway = True
            rep = counters.reconcile(r, db, local(start).date(), local(city.now).date(), w.city)
            assert (rep["keys_fixed"], rep["drift"]) == (0, []), rep
    assert city.refused < 50, city.refused
    assert len(city.cases) >= 90 and crashed > 0
    actions = Counter(db.execute(select(CaseStep.action)).scalars())
    assert {
        "report",
        "register",
        "dispatch",
        "close",
        "rework",
        "escalate",
        "reject",
        "duplicate",
        "self_close",
        "overdue",
        "auto_reject",
    } <= set(actions), actions

    drain_all(r, w, limit=37)
    assert pending_rows() == []
    first, last = local(start).date(), local(city.now).date()
    assert first.month != last.month  # the run crosses a month boundary

    truth = recount(w)
    places = w.all_places()
    day = first
    while day <= last:
        got = counters.case_counts_many(r, places, day=day)
        for pid in places:
            want = truth.get(("d", day.strftime("%Y%m%d"), pid), Counter())
            assert got[pid] == {f: want.get(f, 0) for f in counters.FIELDS}, (day, pid)
        day += D
    for month in {first.strftime("%Y%m"), last.strftime("%Y%m")}:
        got = counters.case_counts_many(r, places, month=month)
        for pid in places:
            want = truth.get(("m", month, pid), Counter())
            assert got[pid] == {f: want.get(f, 0) for f in counters.FIELDS}, (month, pid)
    assert sum(truth[("m", m, w.city)]["reported"] for m in ("202603", "202604")) == actions["report"]

    rep = counters.reconcile(r, db, first, last, w.city)
    assert (rep["keys_fixed"], rep["drift"], rep["pending"]) == (0, [], 0)
    assert rep["keys_checked"] > 100


# --- 4. after FLUSHALL, reconcile restores the same figures -------------------------------------------


def _some_activity(w: W) -> None:
    op = w.a("town0_operator")
    for g, code in [(0, "0501"), (3, "2001"), (5, "0502"), (6, "1002")]:
        c = report(w, f"gw{g}", code, T0 + g * H, grid=g)
        if g == 0:
            loop.register(c, op, now=T0 + 10 * H)
            loop.dispatch(c, w.a("town0_admin"), department_id=w.dept(0), now=T0 + 20 * H)  # next local day
        if g == 3:
            loop.reject(c, op, "无效", now=shanghai(2026, 4, 1, 10))
        if g == 5:
            loop.escalate(c, w.a("gw5"), to_level="town", note="上报", now=T0 + 6 * H)


def test_flushall_then_reconcile_restores_the_same_figures(w, redis_conn):
    r = redis_conn
    _some_activity(w)
    drain_all(r, w)
    before = counter_keys(r)
    assert before

    r.flushdb()
    assert counters.case_counts(r, w.city, day=DAY0) == zero()
    rep = counters.reconcile(r, db, DAY0, date(2026, 4, 1), w.city)
    assert counter_keys(r) == before
    assert rep["keys_fixed"] == rep["keys_checked"] == len(before)
    assert (f"cc:c:d:20260310:{w.city}", "reported", 0, 4) in rep["drift"]
    assert all(cached == 0 for _key, _field, cached, _true in rep["drift"])
    assert len(rep["drift"]) == counters.DRIFT_LIMIT  # capped
    assert rep["months"] == ["202603", "202604"]
    assert 0 < r.ttl(f"cc:c:d:20260310:{w.city}") <= counters.DAY_TTL
    assert counters.DAY_TTL < r.ttl(f"cc:c:m:202603:{w.city}") <= counters.MONTH_TTL

    again = counters.reconcile(r, db, DAY0, date(2026, 4, 1), w.city)
    assert (again["keys_fixed"], again["drift"]) == (0, [])


def test_reconcile_leaves_rows_not_yet_drained_to_the_drain(w, redis_conn):
    r = redis_conn
    _some_activity(w)
    rows = pending_rows()
    counters.drain_outbox(r, db, w.city, limit=3)
    for row in pending_rows()[:2]:  # counted, not marked
        counters.apply_case_event(r, row.id, row.payload, w.city)
    r.flushdb()  # ... and then Redis lost everything, done markers included
    rep = counters.reconcile(r, db, DAY0, date(2026, 4, 1), w.city)
    assert rep["pending"] == len(rows) - 3
    drain_all(r, w)
    rep = counters.reconcile(r, db, DAY0, date(2026, 4, 1), w.city)
    assert (rep["keys_fixed"], rep["drift"], rep["pending"]) == (0, [], 0)
    assert counters.case_counts(r, w.city, day=DAY0) == zero(
        reported=4, reported__ordinary=1, reported__hazard=2, reported__dispute=1, registered=1, escalated__town=1
    )


# --- 5. a tampered counter is fixed and reported ------------------------------------------------------


def test_tampered_counters_are_fixed_and_listed(w, redis_conn):
    r = redis_conn
    _some_activity(w)
    drain_all(r, w)
    before = counter_keys(r)
    town_day = f"cc:c:d:20260310:{w.town(0)}"
    city_month = f"cc:c:m:202603:{w.city}"
    grid_day = f"cc:c:d:20260310:{w.grid(7)}"  # grid 7 had nothing
    town_reported = int(before[town_day]["reported"])
    r.hincrby(town_day, "reported", 3)
    r.hdel(city_month, "registered")
    r.hset(grid_day, "closed", 5)
    r.hset(f"cc:c:d:20260311:{w.grid(0)}", "dispatched", "garbage")
    r.persist(f"cc:c:d:20260310:{w.village(0)}")  # lost its TTL, figures right
    r.hset(f"cc:c:d:20260501:{w.city}", "reported", 9)  # outside the range: not touched

    rep = counters.reconcile(r, db, DAY0, date(2026, 4, 1), w.city)
    assert rep["keys_fixed"] == 4
    assert sorted(rep["drift"]) == sorted(
        [
            (town_day, "reported", town_reported + 3, town_reported),
            (city_month, "registered", 0, 1),
            (grid_day, "closed", 5, 0),
            (f"cc:c:d:20260311:{w.grid(0)}", "dispatched", "garbage", 1),
        ]
    )
    assert rep["ttl_fixed"] == 1 and r.ttl(f"cc:c:d:20260310:{w.village(0)}") > 0
    after = counter_keys(r)
    assert after.pop(f"cc:c:d:20260501:{w.city}") == {"reported": "9"}
    assert after == before
    assert not r.exists(grid_day)


# --- 6. presence: online, attendance, admin login rate, patrol ---------------------------------------


def test_presence_online_attendance_logins_patrol(w, redis_conn):
    r = redis_conn
    now = T0 + 8 * H  # local 17:00
    ids = {name: w.world.accounts[name].id for name in w.world.accounts}
    t0, t1 = w.town(0), w.town(1)

    # heartbeats: gw0, gw1 (town 0) and gw4 (town 1) a minute ago; gw2 seven minutes ago
    beats = [("gw0", now - M), ("gw1", now - 2 * M), ("gw4", now - M), ("gw2", now - 7 * M), ("gw0", now - 20 * M)]
    for name, at in beats:
        db.add(Heartbeat(account_id=ids[name], at=at))
        counters.apply_heartbeat(r, ids[name], w.a(name).town_id, at)
    assert counters.online_count(r, t0, now) == 2  # gw0's late, older heartbeat did not push it back
    assert counters.online_count(r, t1, now) == 1
    assert counters.online_count(r, None, now) == 3
    assert counters.online_count(r, t0, now, window_s=600) == 3
    assert counters.online_accounts(r, t0, now) == sorted([ids["gw0"], ids["gw1"]])
    assert counters.online_count(r, t0, now + 10 * M) == 0

    # sign-ins of the local day
    for name in ("gw0", "gw1", "gw4"):
        db.add(SignIn(account_id=ids[name], town_id=w.a(name).town_id, day=DAY0, at=T0))
    assert counters.apply_sign_in(r, ids["gw0"], t0, DAY0) is True
    assert counters.apply_sign_in(r, ids["gw0"], t0, DAY0) is False
    counters.apply_sign_in(r, ids["gw1"], t0, DAY0)
    counters.apply_sign_in(r, ids["gw4"], t1, DAY0)
    assert (
        counters.attendance_count(r, DAY0, t0),
        counters.attendance_count(r, DAY0, t1),
        counters.attendance_count(r, DAY0),
    ) == (2, 1, 3)
    assert counters.attendance_count(r, DAY0 + D, t0) == 0

    # admin login rate: town 0 has 4 center_admin accounts, 2 logged in this month → 50%
    extra = create_account(
        username="village0_admin2",
        display_name="二号管理员",
        password="",
        role="center_admin",
        place=db.get(Place, w.village(0)),
        password_hash="x",
        center_id=w.world.centers["village0"].id,
    )
    db.flush()
    admins0 = db.query(Account).filter_by(role="center_admin", town_id=t0).count()
    assert admins0 == 4
    logins = [
        ("town0_admin", True, T0),
        ("village0_admin", True, T0 + D),
        ("town0_admin", True, T0 + 2 * D),
        ("village1_admin", False, T0),
        ("town0_operator", True, T0),
        ("village2_admin", True, shanghai(2026, 2, 28, 23)),
    ]  # last month
    for name, ok, at in logins:
        acc = w.a(name)
        db.add(LoginRecord(account_id=acc.id, username=name, success=ok, at=at))
        if ok:
            counters.apply_login(r, acc.id, acc.town_id, local(at).date(), acc.role == "center_admin")
    assert counters.login_rate(r, "202603", t0, admins0) == 0.5
    assert counters.login_rate(r, "2026-03", t1, 2) == 0.0
    assert counters.login_rate(r, "202602", t1, 2) == 0.5
    assert counters.login_rate(r, "202603", t1, 0) is None
    assert counters.logged_in_count(r, "202603") == 2

    # patrol minutes per local day; a patrol across midnight is split
    patrols = [
        ("gw0", shanghai(2026, 3, 10, 9), shanghai(2026, 3, 10, 10, 10)),
        ("gw1", shanghai(2026, 3, 10, 14), shanghai(2026, 3, 10, 14, 50)),
        ("gw4", shanghai(2026, 3, 10, 23, 30), shanghai(2026, 3, 11, 0, 45)),
    ]
    for i, (name, start, end) in enumerate(patrols):
        acc = w.a(name)
        db.add(Patrol(gridworker_id=acc.id, town_id=acc.town_id, started_at=start, ended_at=end))
        assert counters.apply_patrol(r, acc.id, acc.town_id, start, end, patrol_id=i + 1) is True
    assert counters.apply_patrol(r, ids["gw0"], t0, *patrols[0][1:], patrol_id=1) is False  # once only
    db.commit()
    assert counters.patrol_minutes(r, DAY0, t0) == {ids["gw0"]: 70.0, ids["gw1"]: 50.0}
    assert counters.patrol_minutes(r, DAY0, t1) == {ids["gw4"]: 30.0}
    assert counters.patrol_minutes(r, DAY0 + D, t1) == {ids["gw4"]: 45.0}
    assert counters.patrol_compliance(r, t0, [ids["gw0"], ids["gw1"]], [DAY0]) == {
        "compliant": 1,
        "total": 2,
        "rate": 0.5,
    }
    assert counters.patrol_compliance(r, t0, [ids["gw0"]], [DAY0, DAY0 + D])["rate"] == 0.0

    snap = counters.presence_many(r, [t0, t1, None], now, DAY0, "202603")
    assert snap == {
        t0: {"online": 2, "attended": 2, "logged_in": 2},
        t1: {"online": 1, "attended": 1, "logged_in": 0},
        None: {"online": 3, "attended": 3, "logged_in": 2},
    }

    # rebuilt from the database after Redis lost it all
    r.flushdb()
    rep = counters.reconcile_presence(r, db, DAY0, "202603", now)
    assert rep["keys_fixed"] > 0 and (f"cc:att:20260310:{t0}", "members", 0, 2) in rep["drift"]
    assert counters.presence_many(r, [t0, t1, None], now, DAY0, "202603") == snap
    assert counters.online_accounts(r, t0, now) == sorted([ids["gw0"], ids["gw1"]])
    assert counters.login_rate(r, "202603", t0, admins0) == 0.5
    assert counters.patrol_minutes(r, DAY0, t0) == {ids["gw0"]: 70.0, ids["gw1"]: 50.0}
    assert counters.patrol_minutes(r, DAY0, t1) == {ids["gw4"]: 30.0}
    again = counters.reconcile_presence(r, db, DAY0, "202603", now)
    assert (again["keys_fixed"], again["drift"]) == (0, [])
    # a stray member and a wrong patrol figure are fixed and listed
    r.sadd(f"cc:att:20260310:{t1}", "999999")
    r.hset(f"cc:patrol:20260310:{t0}", str(ids["gw1"]), 75)
    rep = counters.reconcile_presence(r, db, DAY0, "202603", now)
    assert sorted(rep["drift"]) == sorted(
        [(f"cc:att:20260310:{t1}", "members", 2, 1), (f"cc:patrol:20260310:{t0}", str(ids["gw1"]), 75.0, 50.0)]
    )
    assert counters.attendance_count(r, DAY0, t1) == 1
    assert extra.id
    counters.apply_heartbeat(r, ids["gw3"], t0, now + 2 * H)  # members older than an hour are trimmed
    assert r.zcard(f"cc:online:{t0}") == 1


# --- 7. embedded mode: the same functions on fakeredis -----------------------------------------------


def test_fakeredis_counts_drains_and_reconciles(w, redis_conn):
    fake = fakeredis.FakeRedis()
    _some_activity(w)
    assert counters.drain_outbox(fake, db, w.city) == len(db.execute(select(Outbox)).all())
    row = db.execute(select(Outbox).order_by(Outbox.id)).scalars().first()
    assert counters.apply_case_event(fake, row.id, row.payload, w.city) is False
    expected = zero(
        reported=4, reported__ordinary=1, reported__hazard=2, reported__dispute=1, registered=1, escalated__town=1
    )
    assert counters.case_counts(fake, w.city, day=DAY0) == expected
    before = counter_keys(fake)
    fake.flushall()
    rep = counters.reconcile(fake, db, DAY0, date(2026, 4, 1), w.city)
    assert rep["keys_fixed"] == len(before) and counter_keys(fake) == before
    counters.apply_heartbeat(fake, 1, w.town(0), T0)
    counters.apply_sign_in(fake, 1, w.town(0), DAY0)
    counters.apply_login(fake, 1, w.town(0), "202603", True)
    assert counters.online_count(fake, w.town(0), T0 + M) == 1
    assert counters.attendance_count(fake, DAY0, w.town(0)) == 1
    assert counters.login_rate(fake, "202603", w.town(0), 4) == 0.25
    assert counter_keys(redis_conn) == {}  # the real Redis was not touched


def _sqlite_city(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'embedded.db'}")
    Base.metadata.create_all(engine)
    session = Session(engine, expire_on_commit=False)
    city = Place(code="C", name="市", level="city")
    session.add(city)
    session.flush()
    town = Place(code="T", name="镇", level="town", parent_id=city.id, city_id=city.id)
    session.add(town)
    session.flush()
    village = Place(code="V", name="村", level="village", parent_id=town.id, city_id=city.id, town_id=town.id)
    session.add(village)
    session.flush()
    grid = Place(
        code="G",
        name="网格",
        level="grid",
        parent_id=village.id,
        city_id=city.id,
        town_id=town.id,
        village_id=village.id,
    )
    session.add(grid)
    cat = Category(code="9901", name="其他", depth=2, kind="ordinary")
    session.add(cat)
    session.flush()
    for p in (town, village, grid):
        p.town_id = town.id
    village.village_id = grid.village_id = village.id
    session.commit()
    return engine, session, {"city": city.id, "town": town.id, "village": village.id, "grid": grid.id, "cat": cat.id}


def _sqlite_steps(session, ids, steps):
    """Write a case and its steps with their outbox rows, as the loop does (one case per call)."""
    first = steps[0][1]
    case = Case(
        number=f"N{first:%H%M%S%f}",
        source="app",
        category_id=ids["cat"],
        kind=steps[0][2],
        description="x",
        grid_id=ids["grid"],
        village_id=ids["village"],
        town_id=ids["town"],
        discovered_at=first,
        reported_at=first,
    )
    session.add(case)
    session.flush()
    for action, at, _kind, level in steps:
        session.add(CaseStep(case_id=case.id, at=at, action=action, to_state="x", to_level=level))
        session.add(
            Outbox(
                topic="case.changed",
                payload={
                    "case_id": case.id,
                    "action": action,
                    "state": "x",
                    "level": level,
                    "town_id": ids["town"],
                    "village_id": ids["village"],
                    "grid_id": ids["grid"],
                    "kind": case.kind,
                    "at": at.isoformat(),
                },
            )
        )
    session.commit()


@pytest.mark.parametrize("tz", ["Asia/Shanghai", "Europe/Berlin"])
def test_sqlite_and_fakeredis_embedded_mode(tmp_path, tz):
    """Embedded mode: SQLite + fakeredis, with a fixed-offset zone and one that changes offset (DST)."""
    engine, session, ids = _sqlite_city(tmp_path)
    fake = fakeredis.FakeRedis()
    try:
        # around the local midnight of 28/29 March (Berlin switches to summer time on the 29th at 01:00 UTC)
        base = datetime(2026, 3, 28, 22, 30)
        for i in range(6):
            at = base + i * 47 * M
            _sqlite_steps(
                session,
                ids,
                [
                    ("report", at, ("ordinary", "hazard")[i % 2], "grid"),
                    ("register", at + 40 * M, None, "grid"),
                    ("escalate", at + 50 * M, None, "town"),
                    ("close", at + 3 * H, None, "town"),
                ],
            )
        assert counters.drain_outbox(fake, session, None, limit=7, tz=tz) == 7  # city looked up from the town
        assert counters.drain_outbox(fake, session, ids["city"], tz=tz) == 17
        assert counters.drain_outbox(fake, session, ids["city"], tz=tz) == 0
        days = sorted(
            {local(base + i * 47 * M + k, tz).date() for i in range(6) for k in (0 * M, 40 * M, 50 * M, 3 * H)}
        )
        month = counters.case_counts(fake, ids["city"], month="202603")
        assert month == zero(
            reported=6, reported__ordinary=3, reported__hazard=3, registered=6, escalated__town=6, closed=6
        )
        assert sum(counters.case_counts(fake, ids["grid"], day=d, tz=tz)["reported"] for d in days) == 6
        before = counter_keys(fake)
        rep = counters.reconcile(fake, session, days[0], days[-1], ids["city"], tz=tz)
        assert (rep["keys_fixed"], rep["drift"]) == (0, []), rep
        fake.flushall()
        rep = counters.reconcile(fake, session, days[0], days[-1], ids["city"], tz=tz)
        assert rep["keys_fixed"] == len(before) and counter_keys(fake) == before
    finally:
        session.close()
        engine.dispose()


def test_malformed_outbox_row_does_not_block_the_drain(w, redis_conn):
    r = redis_conn
    report(w, "gw0", "0502", T0)
    db.add(Outbox(topic="case.changed", payload={"case_id": 1, "action": "report"}))  # no time, no place
    db.add(Outbox(topic="other.topic", payload={}))
    db.commit()
    report(w, "gw1", "0502", T0 + M, grid=1)
    assert counters.drain_outbox(r, db, w.city) == 3
    assert counters.case_counts(r, w.city, day=DAY0)["reported"] == 2
    assert [o.topic for o in pending_rows()] == ["other.topic"]  # not ours
