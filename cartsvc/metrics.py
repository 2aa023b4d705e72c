"""In-process counters and timings of the image (exported by the metrics endpoint)."""

from __future__ import annotations

import threading
from collections import Counter

_lock = threading.Lock()
counters: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
timings: dict[tuple[str, tuple[tuple[str, str], ...]], list[float]] = {}


def inc(name: str, amount: int = 1, **labels: str) -> None:
    key = (name, tuple(sorted(labels.items())))
    with _lock:
        counters[key] += amount


def observe(name: str, seconds: float, **labels: str) -> None:
    key = (name, tuple(sorted(labels.items())))
    with _lock:
        total = timings.setdefault(key, [0, 0.0])
        total[0] += 1
        total[1] += seconds


def value(name: str, **labels: str) -> int:
    return counters[(name, tuple(sorted(labels.items())))]


def reset() -> None:
    with _lock:
        counters.clear()
        timings.clear()
