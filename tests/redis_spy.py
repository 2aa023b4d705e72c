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
