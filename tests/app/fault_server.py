"""A scriptable HTTP/1.1 upstream on 127.0.0.1 for the fault suite: each request takes the next scripted
behaviour (a status with headers, a slow answer, a reset mid-body, a hang-up before answering), and every request
it saw is recorded with its headers and body.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


@dataclass
class Seen:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Step:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"ok":true}'
    content_type: str = "application/json"
    delay: float = 0.0
    fault: str | None = None  # "reset_mid_body" | "hang_up"


@dataclass
class FaultServer:
    url: str = ""
    script: list[Step] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)

    @property
    def attempts(self) -> int:
        return len(self.seen)

    def next_step(self) -> Step:
        return self.script.pop(0) if self.script else Step()


def _abort(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with RST
    writer.close()


@asynccontextmanager
async def fault_server() -> AsyncIterator[FaultServer]:
    state = FaultServer()
    open_writers: set[asyncio.StreamWriter] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        open_writers.add(writer)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, target, _ = line.decode().split(" ", 2)
                headers: dict[str, str] = {}
                while (h := await reader.readline()) not in (b"\r\n", b""):
                    k, _, v = h.decode().partition(":")
                    headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                state.seen.append(Seen(method, target, headers, body))
                step = state.next_step()
                if step.delay:
                    await asyncio.sleep(step.delay)
                if step.fault == "hang_up":
                    _abort(writer)
                    return
                head = f"HTTP/1.1 {step.status} X\r\nContent-Length: {len(step.body)}\r\n"
                head += f"Content-Type: {step.content_type}\r\n"
                head += "".join(f"{k}: {v}\r\n" for k, v in step.headers.items())
                if step.fault == "reset_mid_body":
                    writer.write((head + "\r\n").encode() + step.body[: len(step.body) // 2])
                    await writer.drain()
                    await asyncio.sleep(0.02)
                    _abort(writer)
                    return
                writer.write((head + "\r\n").encode() + step.body)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    state.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield state
    finally:
        server.close()
        for writer in open_writers:
            writer.close()
        await server.wait_closed()
