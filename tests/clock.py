"""An injected clock: `timezone.now()` moved by a fixed offset, so tests age carts without
sleeping (a sleep is slow, and under load it proves nothing about the order of events)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

_real_now = timezone.now


def shift_clock(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """From now on (until the test ends), every `timezone.now()` of the app is `seconds` off
    the real clock; Redis keeps its own clock, which the sweep's cutoffs are compared with."""

    def now() -> datetime:
        return _real_now() + timedelta(seconds=seconds)

    monkeypatch.setattr(timezone, "now", now)
