"""Wall clients for the load test: Socket.IO over a websocket (Engine.IO 4), on asyncio with wsproto.

A python-socketio client decodes every push (JSON) in its own threads: 200 of them took most of a core on
this 2-core machine, CPU the server under test then lacked. These clients speak the same protocol to the
server (websocket upgrade with the session cookie, namespace /live, answer the server's pings) but only
count the pushes by their event name, so that one process holds all of them for a few % of a core.
"""

from __future__ import annotations

import asyncio
import json
import os
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


async def wall_client(
    host: str,
    port: int,
    cookie: str,
    counts: Counter,
    connected: asyncio.Event,
    stop: asyncio.Event,
    audit: Counter | None = None,
) -> None:
    """One wall. With `audit`, it also decodes each case push and counts it by (case id, action): a
    push that arrives twice shows there (the others only count, to stay cheap)."""
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

    def send_text(text: str) -> None:
        writer.write(ws.send(TextMessage(data=text)))

    try:
        while not stop.is_set():
            try:
                data = await asyncio.wait_for(reader.read(65536), 1.0)
            except TimeoutError:
                continue
            if not data:
                counts["closed_by_server"] += 1
                return
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
                    if text.startswith("42/live,"):
                        counts[text[10:15]] += 1  # '42/live,["case",…' → 'case"'
                        if audit is not None and text.startswith('42/live,["case"'):
                            payload = json.loads(text[8:])[1]
                            audit[(payload["id"], payload["action"])] += 1
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


async def run_clients(jobs: list[tuple[str, int, str]], ready, stop_flag) -> Counter:
    counts: Counter = Counter()
    stop = asyncio.Event()
    tasks = []
    audit: Counter = Counter()
    for i, (host, port, cookie) in enumerate(jobs):
        connected = asyncio.Event()
        tasks.append(
            asyncio.create_task(wall_client(host, port, cookie, counts, connected, stop, audit if i == 0 else None))
        )
        try:
            await asyncio.wait_for(connected.wait(), 30)
        except TimeoutError:
            counts["connect_timeout"] += 1
        ready.put(1)
    while not stop_flag.is_set():
        await asyncio.sleep(0.5)
    stop.set()
    await asyncio.wait(tasks, timeout=5)
    counts["audited_pushes"] = sum(audit.values())
    counts["audited_twice"] = sum(1 for n in audit.values() if n > 1)
    twice = sorted(k for k, n in audit.items() if n > 1)[:5]
    if twice:
        counts[f"twice_e.g._{twice}"] = 1
    return counts


def wall_process(jobs: list[tuple[str, int, str]], ready, stop_flag, out) -> None:
    counts = asyncio.run(run_clients(jobs, ready, stop_flag))
    counts = {k.rstrip('"'): v for k, v in counts.items()}
    out.put(counts)
    out.close()
    out.join_thread()
    os._exit(0)
