"""The chaos run's clients: API calls on shared carts, every attempt recorded, retries keyed."""

from __future__ import annotations

import http.client
import json
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench.chaos.history import ALLOWED_503, Request

SKUS = 24  # seed_demo's SKU-0001..SKU-0024
# A logical call is retried (same Idempotency-Key) for this long before the client gives up.
RETRY_FOR = 60.0
ATTEMPT_TIMEOUT = 30.0
# Lines a cart may hold before clients prefer removing (MAX_LINES is 100).
FULL_CART = 30

# An epoch-anchored monotonic clock: one process's requests compare exactly (no clock steps).
_EPOCH = time.time() - time.monotonic()


def now() -> float:
    return _EPOCH + time.monotonic()


class Answer:
    """One attempt's outcome: status and body, or the reason there was no answer."""

    def __init__(self, status: int | None, body: Any, error: str | None) -> None:
        self.status = status
        self.body = body
        self.error = error

    @property
    def code(self) -> str | None:
        if self.status is None:
            return self.error
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return self.body["error"].get("code")
        return None

    @property
    def version(self) -> int | None:
        if self.status is not None and 200 <= self.status < 300 and isinstance(self.body, dict):
            version = self.body.get("version")
            return version if isinstance(version, int) else None
        return None

    @property
    def retryable(self) -> bool:
        return self.status is None or (self.status == 503 and self.code in ALLOWED_503)


def _no_answer(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return "connection reset"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "disconnected"
    if isinstance(exc, http.client.IncompleteRead):
        return "incomplete answer"
    return type(exc).__name__


class Load:
    """`clients` threads doing API calls on a shared pool of carts until `stop()`; each
    attempt becomes a Request labelled with the fault running when it was sent."""

    def __init__(self, port: int, seed: int, phase: Callable[[], str]) -> None:
        self.port = port
        self.seed = seed
        self.phase = phase
        self.history: list[Request] = []
        self.carts: list[str] = []
        self.lines: dict[str, tuple[int, list[int]]] = {}  # cart -> (version, line ids) seen
        self._lock = threading.Lock()
        self._writing = 0
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._done: set[str] = set()

    # ------------------------------------------------------------ one call

    def _send(self, method: str, path: str, body: Any, key: str | None) -> Answer:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None or method in ("POST", "PATCH"):
            data = json.dumps(body if body is not None else {}).encode()
            headers["Content-Type"] = "application/json"
        if key is not None:
            headers["Idempotency-Key"] = key
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=ATTEMPT_TIMEOUT)
        try:
            conn.request(method, f"/api/v1{path}", body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            return Answer(None, None, _no_answer(exc))
        finally:
            conn.close()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return Answer(response.status, parsed, None)

    def call(
        self, client: str, cart: str, op: str, method: str, path: str, body: Any = None
    ) -> Answer:
        """One logical call: attempts until an answer that is not retryable, or RETRY_FOR
        seconds; mutations carry one Idempotency-Key over all attempts."""
        key = None if op == "read" else uuid.uuid4().hex
        if op == "add":
            # The key in the line's options: the event log says which add made which line.
            body = {**body, "options": {"k": key}}
        give_up = time.monotonic() + RETRY_FOR
        while True:
            fault, writing = self.phase(), op != "read"
            if writing:
                with self._lock:
                    self._writing += 1
            sent = now()
            try:
                answer = self._send(method, path, body, key)
            finally:
                answered = now()
                if writing:
                    with self._lock:
                        self._writing -= 1
            if op == "open" and answer.version is not None:
                cart = answer.body["id"]
            self.history.append(
                Request(
                    client=client,
                    cart_id=cart,
                    op=op,
                    sent=sent,
                    answered=None if answer.status is None else answered,
                    status=answer.status,
                    version=answer.version,
                    key=key,
                    error_code=answer.code,
                    fault=fault,
                )
            )
            if answer.version is not None:
                self._saw(answer.body)
            if not answer.retryable or time.monotonic() > give_up:
                return answer
            time.sleep(random.uniform(0.05, 0.25))

    def _saw(self, body: dict[str, Any]) -> None:
        cart, version = body.get("id"), body.get("version")
        lines = [line["id"] for line in body.get("lines", ())]
        if not isinstance(cart, str) or not isinstance(version, int):
            return
        with self._lock:
            if cart not in self.lines or self.lines[cart][0] < version:
                self.lines[cart] = (version, lines)

    def open_cart(self, client: str) -> str | None:
        answer = self.call(client, "(opening)", "open", "POST", "/carts", {})
        if answer.version is None:
            return None
        cart = answer.body["id"]
        with self._lock:
            self.carts.append(cart)
        return cart

    # ------------------------------------------------------------ clients

    def writes_in_flight(self) -> int:
        return self._writing

    def _one(self, client: str, rng: random.Random) -> None:
        with self._lock:
            cart = rng.choice(self.carts)
            _, lines = self.lines.get(cart, (0, []))
        draw = rng.random()
        if draw < 0.03:
            self.open_cart(client)
        elif draw < 0.43:
            self.call(client, cart, "read", "GET", f"/carts/{cart}")
        elif lines and (len(lines) >= FULL_CART or draw < 0.50):
            line = rng.choice(lines)
            self.call(client, cart, "remove", "DELETE", f"/carts/{cart}/lines/{line}")
        elif lines and draw < 0.65:
            line, quantity = rng.choice(lines), rng.randint(1, 3)
            path = f"/carts/{cart}/lines/{line}"
            self.call(client, cart, "set_quantity", "PATCH", path, {"quantity": quantity})
        else:
            sku = f"SKU-{rng.randint(1, SKUS):04d}"
            path = f"/carts/{cart}/lines"
            self.call(client, cart, "add", "POST", path, {"sku": sku, "quantity": 1})

    def _client(self, client: str) -> None:
        rng = random.Random(f"{self.seed}:{client}")
        while not self._stopping.is_set():
            self._one(client, rng)
        self._done.add(client)  # a client that crashed (a driver bug) never gets here

    def start(self, clients: int) -> None:
        for n in range(clients):
            name = f"c{n:02d}"
            thread = threading.Thread(target=self._client, args=(name,), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def read_all(self, client: str) -> None:
        """Read every cart once (after the faults: a stale entry left in memory shows)."""
        for cart in list(self.carts):
            self.call(client, cart, "read", "GET", f"/carts/{cart}")

    def halt(self) -> None:
        """Clients stop after their call in progress; nobody waits for them."""
        self._stopping.set()

    def stop(self) -> list[str]:
        """Each client ends its call in progress (its retries included), then stops; the
        clients that did not end well (crashed or hung), which makes the run void."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(RETRY_FOR + 2 * ATTEMPT_TIMEOUT)
        return [t.name for t in self._threads if t.name not in self._done]
