"""Count Redis round trips: every request written to a connection is one round trip."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from redis.connection import AbstractConnection


class RoundTrips:
    def __init__(self) -> None:
        self.count = 0


@contextlib.contextmanager
def count_round_trips() -> Iterator[RoundTrips]:
    spy = RoundTrips()
    original = AbstractConnection.send_packed_command

    def send(self, command, check_health=True):
        spy.count += 1
        return original(self, command, check_health)

    AbstractConnection.send_packed_command = send
    try:
        yield spy
    finally:
        AbstractConnection.send_packed_command = original


@contextlib.contextmanager
def record_requests_and_replies(steps: list[str]) -> Iterator[list[str]]:
    """Append "send" to `steps` for every request written to a connection and "read" for
    every reply read, in the order they happen (other steps may be appended meanwhile)."""
    send, read = AbstractConnection.send_packed_command, AbstractConnection.read_response

    def sending(self, *args, **kwargs):
        steps.append("send")
        return send(self, *args, **kwargs)

    def reading(self, *args, **kwargs):
        steps.append("read")
        return read(self, *args, **kwargs)

    AbstractConnection.send_packed_command = sending
    AbstractConnection.read_response = reading
    try:
        yield steps
    finally:
        AbstractConnection.send_packed_command = send
        AbstractConnection.read_response = read
