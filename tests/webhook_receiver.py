"""A real HTTP receiver for webhook tests: http.server on a free loopback port, in a thread."""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers each POST with the next status of `answers` (200 when they run out); a 3xx
    points to /elsewhere on the same server. `stall` makes it answer nothing until set."""

    answers: list[int] = field(default_factory=list)
    stall: threading.Event | None = None
    requests: list[Request] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


GUIDE = Path(__file__).resolve().parents[1] / "docs" / "use-in-your-shop.md"
SIGNATURE_CHECK = re.compile(r"```python\n(import hashlib\n.*?def verify\(.*?)```", re.S)


def documented_verify() -> Callable[..., bool]:
    """The `verify` function of docs/use-in-your-shop.md ("Webhooks"), run as printed: the
    tests check signatures the way the guide tells a shop to."""
    found = SIGNATURE_CHECK.search(GUIDE.read_text(encoding="utf-8"))
    assert found, "the guide's Webhooks section has no verify() example"
    namespace: dict[str, Any] = {}
    exec(compile(found.group(1), str(GUIDE), "exec"), namespace)  # the guide, as printed
    return namespace["verify"]


def verify(secret: str, headers: Mapping[str, str], body: bytes) -> bool:
    return documented_verify()(secret, headers, body)


@contextlib.contextmanager
def receiving(receiver: Receiver) -> Iterator[Receiver]:
    """Serve `receiver` until the block ends (the server closed and its thread joined, even
    when the test fails)."""

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            receiver.requests.append(
                Request(self.command, self.path, dict(self.headers.items()), body)
            )

        def do_POST(self) -> None:
            self._record()
            if receiver.stall is not None:
                receiver.stall.wait(30)
                return
            status = receiver.answers.pop(0) if receiver.answers else 200
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", f"http://127.0.0.1:{receiver.port}/elsewhere")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        do_GET = do_POST  # a followed redirect would arrive as a GET

        def log_message(self, format: str, *args: object) -> None:
            pass  # no access log on the test's output

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.port = server.server_address[1]
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="webhook-receiver", daemon=True
    )
    thread.start()
    try:
        yield receiver
    finally:
        if receiver.stall is not None:
            receiver.stall.set()
        server.shutdown()
        server.server_close()
        thread.join(10)
