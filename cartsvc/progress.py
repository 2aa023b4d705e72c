"""Output helpers for commands: a one-line progress bar drawn only on a terminal, counted nouns."""

from __future__ import annotations

import time
from typing import TextIO, cast

from django.core.management.base import OutputWrapper


def counted(n: int, singular: str, plural: str | None = None) -> str:
    """`1 cart`, `2 carts`, `1 mismatch`, `0 mismatches` (pass `plural` when not +s)."""
    return f"{n} {singular if n == 1 else (plural or singular + 's')}"


class Progress:
    def __init__(self, stream: TextIO, total: int, label: str) -> None:
        self.stream = stream
        self.total = max(total, 0)
        self.label = label
        self.done = 0
        self.started = time.monotonic()
        self.enabled = hasattr(stream, "isatty") and stream.isatty() and total > 0
        self._drawn_at = 0.0

    @classmethod
    def on(cls, stdout: OutputWrapper, total: int, label: str) -> Progress:
        """A bar on a command's stdout, drawn on the stream under it: the wrapper would end
        every write with a newline. (django-stubs do not declare `OutputWrapper._out`.)"""
        return cls(cast(TextIO, stdout._out), total, label)

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self._drawn_at > 0.1 or self.done >= self.total):
            self._drawn_at = now
            width = 30
            filled = min(width, int(width * self.done / self.total))
            rate = self.done / max(now - self.started, 1e-9)
            self.stream.write(
                f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] "
                f"{self.done}/{self.total} ({rate:,.0f}/s)"
            )
            self.stream.flush()

    def clear(self) -> None:
        """Erase the bar so a line can be printed; the next `advance` draws it again."""
        if self.enabled and self._drawn_at:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self._drawn_at = 0.0

    def close(self) -> None:
        if self.enabled and self._drawn_at:
            self.stream.write("\n")
            self.stream.flush()
