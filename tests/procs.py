"""Run test code in separate OS processes against the test database and cache."""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

from django.conf import settings
from django.db import connection

_ctx = multiprocessing.get_context("spawn")


def child_settings(**cartimage: Any) -> dict[str, Any]:
    """What a child needs to talk to this test run's database and cache."""
    return {
        "db_name": connection.settings_dict["NAME"],
        "caches": settings.CACHES,
        "cartimage": {**settings.CARTIMAGE, **cartimage},
    }


def bootstrap(config: dict[str, Any]) -> None:
    """First thing a spawned child does: point Django at the parent's test database."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.conf import settings as child

    child.DATABASES["default"]["NAME"] = config["db_name"]
    child.CACHES = config["caches"]
    child.CARTIMAGE = config["cartimage"]
    import django

    django.setup()


def start(target: Any, *args: Any) -> multiprocessing.Process:
    process = _ctx.Process(target=target, args=args, daemon=True)
    process.start()
    return process


def collect(workers: list[Any], results: Any, timeout: float = 120) -> list[Any]:
    """One result per worker; fails fast, naming the exit code, if a worker dies first."""
    import queue
    import time

    found, deadline = [], time.monotonic() + timeout
    while len(found) < len(workers):
        try:
            found.append(results.get(timeout=0.2))
        except queue.Empty:
            dead = [w.exitcode for w in workers if w.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                raise AssertionError(f"workers died or hung: exit codes {dead}") from None
    for worker in workers:
        worker.join(30)
    return found


def new_queue() -> Any:
    return _ctx.Queue()


def new_event() -> Any:
    return _ctx.Event()
