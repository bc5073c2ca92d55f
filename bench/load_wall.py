"""Wall clients for the load tests: Socket.IO over a websocket (Engine.IO 4), on asyncio with wsproto.

A python-socketio client decodes every push (JSON) in its own threads: 200 of them took most of a core on
this 2-core machine, CPU the server under test then lacked. These clients speak the same protocol to the
server (websocket upgrade with the session cookie, namespace /live, answer the server's pings) and keep
only what the checks need, so that one process holds all of them for a few % of a core.

Two wire formats are understood:
- "batch" (issue 15): one event per room per tick, {"seq", "room", "tick_at", "items": [{"event", "data"}],
  "deltas"}. Every batch is decoded: per room the seq must run 1, 2, 3… without a gap (0 = unnumbered),
  every case item is counted once per (case id, action) and a second one is a duplicate, and a case
  item's data["at_ms"] (the step's commit, unix ms) gives commit → screen = receive time − at_ms.
- the per-event "case" / "alert" / … events of before: counted by name; their "seq" (per room) is read
  without decoding the rest; the first client of each process also decodes its case pushes to find
  duplicates (and, if a push carries "at_ms", commit → screen), the others only count.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from array import array
from collections import Counter

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)


class ClientStats:
    """What one wall client saw: messages, items, per-room sequence, duplicate case items."""

    __slots__ = (
        "messages",
        "items",
        "last_seq",
        "gaps",
        "seq_repeats",
        "unnumbered",
        "seen",
        "other",
        "dups",
        "examples",
        "current_seq",
    )

    def __init__(self):
        self.messages = 0  # Socket.IO events received on /live (a batch counts once)
        self.items = 0  # case/alert/… items, one per old-style event
        self.last_seq: dict[str, int] = {}
        self.gaps = 0  # numbers missing between two successive seqs of a room
        self.seq_repeats = 0  # a seq not above the last one of its room (duplicate or out of order)
        self.unnumbered = 0  # seq 0: the server could not number it
        self.seen = bytearray()  # report items per case id (a byte each, saturating at 255)
        self.other: set = set()  # (case id, action) of the other case items
        self.dups = 0  # case items received more than once
        self.examples: list[str] = []  # the first few gaps, repeats and duplicates, to tell what happened
        self.current_seq = 0  # seq of the message being read

    def note(self, text: str) -> None:
        if len(self.examples) < 4:
            self.examples.append(text)

    def seq(self, room: str, seq: int) -> None:
        if seq <= 0:
            self.unnumbered += 1
            return
        self.current_seq = seq
        last = self.last_seq.get(room)
        if last is not None:
            if seq <= last:
                self.seq_repeats += 1
                self.note(f"{room}: seq {seq} after {last}")
                return
            if seq > last + 1:
                self.gaps += seq - last - 1
                self.note(f"{room}: seq {seq} after {last}")
        self.last_seq[room] = seq

    def case_item(self, case_id: int, action: str) -> None:
        if action == "report" and isinstance(case_id, int) and 0 <= case_id < 50_000_000:
            if case_id >= len(self.seen):
                self.seen.extend(bytes(case_id + 1024 - len(self.seen)))
            n = self.seen[case_id]
            if n:
                self.dups += 1
                self.note(f"case {case_id} report again (seq {self.current_seq})")
            if n < 255:
                self.seen[case_id] = n + 1
            return
        key = (case_id, action)
        if key in self.other:
            self.dups += 1
            self.note(f"case {case_id} {action} again (seq {self.current_seq})")
        else:
            self.other.add(key)


def _seq_of(text: str) -> int | None:
    """The "seq" of an old-style push without decoding the rest of it."""
    i = text.rfind('"seq":')
    if i < 0:
        return None
    j = i + 6
    while j < len(text) and text[j] == " ":
        j += 1
    k = j
    while k < len(text) and text[k].isdigit():
        k += 1
    return int(text[j:k]) if k > j else None


async def wall_client(
    host: str,
    port: int,
    cookie: str,
    counts: Counter,
    connected: asyncio.Event,
    stop: asyncio.Event,
    audit: Counter | None = None,
    stats: ClientStats | None = None,
    latencies: array | None = None,
) -> None:
    """One wall. `counts` (shared by the process) counts events by name ("case" counts case items of
    either format, "batch" the batch messages). With `audit`, old-style case pushes are decoded and
    counted by (case id, action). `stats` and `latencies` (ms, commit → screen) are filled as they come."""
    stats = stats if stats is not None else ClientStats()
    reader, writer = await asyncio.open_connection(host, port)
    ws = WSConnection(ConnectionType.CLIENT)
    writer.write(
        ws.send(
            Request(
                host=f"{host}:{port}",
                target="/socket.io/?EIO=4&transport=websocket",
                extra_headers=[(b"cookie", cookie.encode())],
            )
        )
    )
    buffer: list[str] = []
    joined = False
    room_default = "own"  # old-style pushes do not name their room: a wall is in one room

    def send_text(text: str) -> None:
        writer.write(ws.send(TextMessage(data=text)))

    def on_batch(text: str, received_ms: float) -> None:
        payload = json.loads(text[8:])[1]
        stats.messages += 1
        counts["batch"] += 1
        stats.seq(str(payload.get("room", room_default)), int(payload.get("seq") or 0))
        for item in payload.get("items") or ():
            name, data = item.get("event"), item.get("data") or {}
            stats.items += 1
            counts[name] += 1
            if name == "case":
                stats.case_item(data.get("id"), data.get("action"))
                at_ms = data.get("at_ms")
                if latencies is not None and isinstance(at_ms, int | float):
                    latencies.append(received_ms - at_ms)

    def on_event(text: str, received_ms: float) -> None:
        stats.messages += 1
        stats.items += 1
        name = text[10 : text.find('"', 10)] if text.startswith('42/live,["') else "?"
        counts[name] += 1
        seq = _seq_of(text)
        if seq is not None:
            stats.seq(room_default, seq)
        if name == "case" and (audit is not None or '"at_ms"' in text):
            payload = json.loads(text[8:])[1]
            if audit is not None:
                audit[(payload["id"], payload["action"])] += 1
                stats.case_item(payload["id"], payload["action"])
            if latencies is not None and isinstance(payload.get("at_ms"), int | float):
                latencies.append(received_ms - payload["at_ms"])

    try:
        while not stop.is_set():
            try:
                data = await asyncio.wait_for(reader.read(65536), 1.0)
            except TimeoutError:
                continue
            if not data:
                counts["closed_by_server"] += 1
                return
            received_ms = time.time() * 1000
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, RejectConnection):
                    counts["rejected"] += 1
                    connected.set()
                    return
                if isinstance(event, AcceptConnection):
                    continue
                if isinstance(event, Ping):
                    writer.write(ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    counts["closed_by_server"] += 1
                    return
                elif isinstance(event, TextMessage):
                    buffer.append(event.data)
                    if not event.message_finished:
                        continue
                    text = "".join(buffer)
                    buffer.clear()
                    if text.startswith('42/live,["batch"'):
                        on_batch(text, received_ms)
                    elif text.startswith("42/live,"):
                        on_event(text, received_ms)
                    elif text == "2":
                        send_text("3")  # the server's ping
                    elif text.startswith("0{"):
                        send_text("40/live,")  # open → join the namespace
                    elif text.startswith("40/live,"):
                        joined = True
                        counts["joined"] += 1
                        connected.set()
                    elif text.startswith("44/live"):
                        counts["refused"] += 1
                        connected.set()
                        return
            await writer.drain()
    finally:
        if joined and not stop.is_set():
            counts["lost"] += 1
        if joined:
            counts["connected_at_end"] += int(stop.is_set())
        writer.close()


async def run_clients(jobs: list[tuple[str, int, str]], ready, stop_flag, detail: bool = False):
    counts: Counter = Counter()
    stop = asyncio.Event()
    tasks = []
    audit: Counter = Counter()
    stats = [ClientStats() for _ in jobs]
    latencies = array("f")
    for i, (host, port, cookie) in enumerate(jobs):
        connected = asyncio.Event()
        tasks.append(
            asyncio.create_task(
                wall_client(host, port, cookie, counts, connected, stop, audit if i == 0 else None, stats[i], latencies)
            )
        )
        try:
            await asyncio.wait_for(connected.wait(), 30)
        except TimeoutError:
            counts["connect_timeout"] += 1
        ready.put(1)
    started = time.time()
    while not stop_flag.is_set():
        await asyncio.sleep(0.2)
    stop.set()
    ended = time.time()
    await asyncio.wait(tasks, timeout=5)
    counts["audited_pushes"] = sum(audit.values())
    counts["audited_twice"] = sum(1 for n in audit.values() if n > 1)
    twice = sorted(k for k, n in audit.items() if n > 1)[:5]
    if twice:
        counts[f"twice_e.g._{twice}"] = 1
    counts["seq_gaps"] = sum(s.gaps for s in stats)
    counts["seq_repeats"] = sum(s.seq_repeats for s in stats)
    counts["unnumbered"] = sum(s.unnumbered for s in stats)
    counts["duplicate_items"] = sum(s.dups for s in stats)
    if not detail:
        return counts
    clients = [
        {
            "messages": s.messages,
            "items": s.items,
            "gaps": s.gaps,
            "seq_repeats": s.seq_repeats,
            "unnumbered": s.unnumbered,
            "dups": s.dups,
            "report_items": sum(1 for b in s.seen if b),
            "examples": s.examples,
        }
        for s in stats
    ]
    detail = {
        "clients": clients,
        "cookies": [cookie for _h, _p, cookie in jobs],
        "latency_ms": latencies.tobytes(),
        "seconds": ended - started,
    }
    return counts, detail


def wall_process(jobs: list[tuple[str, int, str]], ready, stop_flag, out) -> None:
    """Counts only (bench_load.py): a dict of numbers."""
    counts = asyncio.run(run_clients(jobs, ready, stop_flag))
    counts = {k.rstrip('"'): v for k, v in counts.items()}
    out.put(counts)
    out.close()
    out.join_thread()
    os._exit(0)


def wall_process_detail(jobs: list[tuple[str, int, str]], ready, stop_flag, out) -> None:
    """Counts and, per client, messages, items, sequence gaps and duplicates, and the commit → screen
    latencies (bench_city.py): (counts, detail)."""
    counts, detail = asyncio.run(run_clients(jobs, ready, stop_flag, detail=True))
    out.put((dict(counts), detail))
    out.close()
    out.join_thread()
    os._exit(0)


def warm_up(ctx, jobs: list[tuple[str, int, str]], drained, settle: float = 3.0) -> None:
    """Connect `jobs` for a moment and let what is pending go out before the measured walls connect: the
    live-push flusher starts with the first socket of a web process, so the pushes of a set-up made before
    (queued, not yet sent) would otherwise reach the first walls of a run. `drained()` waits for the outbox."""
    ready, stop, out = ctx.Queue(), ctx.Event(), ctx.Queue()
    p = ctx.Process(target=wall_process, args=(jobs, ready, stop, out), daemon=True)
    p.start()
    for _ in jobs:
        ready.get(timeout=120)
    drained()
    time.sleep(settle)
    stop.set()
    out.get(timeout=60)
    p.join(10)
