"""Event subscriptions: drain throughput, and the delay from a command to its handler.

Prints a Markdown table: events per second handed to a no-op handler and to each read-model
subscription the app has (from the beginning of the log), and the delay from a command's
event being recorded to its handler running, p50 and p99, while commands arrive steadily and
a drain loop runs (the worker's job, in a thread here). Runs on the bench database.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from django.conf import settings
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from bench.run import SKUS, ensure_database, fresh_schema, log, make_products
from cartsvc import service, subscriptions
from cartsvc.models import CartEvent

CARTS = 400
STEADY_SECONDS = 10.0
COMMANDS_PER_SECOND = 50
delays: list[float] = []


def noop(events: list[subscriptions.Delivered]) -> None:
    """A handler that does nothing: what the machinery itself costs."""


def timed(events: list[subscriptions.Delivered]) -> None:
    now = timezone.now()
    delays.extend((now - event.recorded_at).total_seconds() for event in events)


def make_history() -> int:
    for number in range(CARTS):
        cart = service.open_cart()
        for sku in SKUS[: 1 + number % 3]:
            service.add_line(cart.id, sku, 1 + number % 2)
    return CartEvent.objects.count()


def throughput(name: str) -> float:
    subscriptions.reset(name)
    started = time.perf_counter()
    delivered = 0
    while True:
        count = sum(subscriptions.drain(name, budget=30).values())
        if not count:
            break
        delivered += count
    return delivered / (time.perf_counter() - started)


def steady_delay() -> tuple[float, float, int]:
    subscriptions.reset("timed", to="now")
    delays.clear()
    stop = threading.Event()

    def drainer() -> None:
        while not stop.is_set():
            if not subscriptions.drain("timed", budget=1)["timed"]:
                time.sleep(0.005)
        connection.close()

    thread = threading.Thread(target=drainer)
    thread.start()
    cart = service.open_cart()
    gap = 1 / COMMANDS_PER_SECOND
    deadline = time.monotonic() + STEADY_SECONDS
    while time.monotonic() < deadline:
        started = time.monotonic()
        service.add_line(cart.id, SKUS[0], 1)
        service.remove_line(cart.id, service.get_cart(cart.id).lines[0].id)
        time.sleep(max(0.0, gap * 2 - (time.monotonic() - started)))
    time.sleep(1)
    stop.set()
    thread.join()
    ordered = sorted(delays)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1000, p99 * 1000, len(ordered)


def main() -> int:
    ensure_database()
    fresh_schema()
    make_products()
    log("building the event log")
    events = make_history()
    # This module as it runs (as __main__, its `delays` are the ones read below).
    own = {"noop": f"{__name__}.noop", "timed": f"{__name__}.timed"}
    with override_settings(CARTIMAGE={**settings.CARTIMAGE, "SUBSCRIBERS": own}):
        # Untimed first: what a process pays once (connections, statements prepared after a
        # few runs) must not land on whichever row is measured first.
        throughput("noop")
        rows = [("no-op handler", throughput("noop"))]
        for name in subscriptions.subscribers():
            if name.startswith("cartsvc."):
                rows.append((name, throughput(name)))
        p50, p99, count = steady_delay()
    print(f"| drain, {events} events from the beginning of the log | events/s |")
    print("|---|---:|")
    for name, rate in rows:
        print(f"| {name} | {rate:,.0f} |")
    print()
    print(
        f"Commit to handler, {COMMANDS_PER_SECOND} commands/s for {STEADY_SECONDS:.0f} s, a "
        f"drain loop polling every 5 ms when idle ({count} events): p50 {p50:.1f} ms, "
        f"p99 {p99:.1f} ms."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
