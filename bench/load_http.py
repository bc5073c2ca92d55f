"""A small keep-alive HTTP/1.1 client on asyncio for the load test: cheap enough per request (≈ 0.1 ms of
CPU) that a few generator processes can send hundreds of requests a second without becoming what is
measured. One request at a time per connection; connections are pooled per generator process."""

from __future__ import annotations

import asyncio
import time


class HttpError(Exception):
    pass


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.last_used = time.monotonic()

    def close(self) -> None:
        try:
            self.writer.close()
        except Exception:
            pass


class Pool:
    """Connections to one server (host:port). `idle_limit` is below gunicorn's keep-alive (5 s here), so
    that a connection is never reused just as the server closes it (that race is no error of the server)."""

    def __init__(self, host: str, port: int, max_conns: int = 64, idle_limit: float = 2.0):
        self.host, self.port, self.max_conns, self.idle_limit = host, port, max_conns, idle_limit
        self.idle: list[Conn] = []
        self.open = 0
        self.waiters: asyncio.Queue | None = None
        self.sem = asyncio.Semaphore(max_conns)

    async def _get(self) -> Conn:
        now = time.monotonic()
        while self.idle:
            conn = self.idle.pop()
            if now - conn.last_used < self.idle_limit and not conn.reader.at_eof():
                return conn
            conn.close()
            self.open -= 1
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self.open += 1
        return Conn(reader, writer)

    def _put(self, conn: Conn, keep: bool) -> None:
        if keep:
            conn.last_used = time.monotonic()
            self.idle.append(conn)
        else:
            conn.close()
            self.open -= 1

    async def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"", timeout: float = 30.0
    ) -> tuple[int, dict[str, str], bytes]:
        async with self.sem:
            conn = await self._get()
            keep = False
            try:
                result = await asyncio.wait_for(self._exchange(conn, method, path, headers or {}, body), timeout)
                keep = result[1].get("connection", "").lower() != "close"
                return result
            finally:
                self._put(conn, keep)

    async def _exchange(self, conn: Conn, method: str, path: str, headers: dict[str, str], body: bytes):
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        conn.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await conn.writer.drain()
        try:
            head = await conn.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            raise HttpError(f"connection closed before the response ({len(exc.partial)} bytes)") from exc
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        out: dict[str, str] = {}
        for line in header_lines:
            if ":" in line:
                k, v = line.split(":", 1)
                out[k.strip().lower()] = v.strip()
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            data = b""
        elif "content-length" in out:
            data = await conn.reader.readexactly(int(out["content-length"]))
        elif out.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await conn.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await conn.reader.readuntil(b"\r\n")
                    break
                parts.append(await conn.reader.readexactly(size))
                await conn.reader.readexactly(2)
            data = b"".join(parts)
        else:
            data = await conn.reader.read()
            out["connection"] = "close"
        return status, out, data

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()
