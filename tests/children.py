"""Entry points of spawned test processes; Django is imported only after bootstrap."""

from __future__ import annotations

import os
import signal

from tests.procs import bootstrap


def add_many(config, cart_id, sku, calls, go, results) -> None:
    bootstrap(config)
    from cartsvc import service

    errors = []
    go.wait(60)
    for _ in range(calls):
        try:
            service.add_line(cart_id, sku, 1)
        except Exception as exc:
            errors.append(repr(exc))
    results.put(errors)


def add_then_die(config, cart_id, sku, hook_point, results) -> None:
    """Run one add_line and SIGKILL this process at the named hook point."""
    bootstrap(config)
    from cartsvc import image, service

    def die(**_context) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    image.HOOKS[hook_point] = die
    service.add_line(cart_id, sku, 1)
    results.put("survived")


def read_cart(config, cart_id, go, results) -> None:
    bootstrap(config)
    from cartsvc import service

    go.wait(60)
    cart = service.get_cart(cart_id)
    results.put(cart.version)


def read_carts(config, cart_ids, results) -> None:
    """Read each cart once; answer (version, skus) per cart and the Redis errors seen."""
    bootstrap(config)
    from cartsvc import metrics, service

    carts = [service.get_cart(cart_id) for cart_id in cart_ids]
    found = [(cart.version, sorted(line.sku for line in cart.lines)) for cart in carts]
    results.put((found, metrics.value("redis_errors")))


def drain_until_killed(config, name, batch, results) -> None:
    """Drain one subscription in batches of `batch` (its handler blocks: to be killed)."""
    bootstrap(config)
    from cartsvc import subscriptions

    subscriptions.BATCH = batch
    results.put("draining")
    subscriptions.drain(name, budget=60)


def add_with_nudges(config, cart_id, sku, calls, go, results) -> None:
    """`calls` adds with the nudge on, recording which threads asked the broker; then waits
    for `go` and does one more."""
    bootstrap(config)
    import threading

    from celery import current_app

    from cartsvc import metrics, service

    senders = []
    send = current_app.send_task

    def spied(*args, **kwargs):
        senders.append(threading.current_thread().name)
        return send(*args, **kwargs)

    current_app.send_task = spied
    import time

    for _ in range(calls):
        service.add_line(cart_id, sku, 1)
    deadline = time.monotonic() + 30  # the nudge thread's failed send, however long it took
    while not metrics.value("subscription_nudge_errors") and time.monotonic() < deadline:
        time.sleep(0.05)
    results.put(("added", metrics.value("subscription_nudge_errors")))
    go.wait(120)
    service.add_line(cart_id, sku, 1)  # the broker is back: this one's nudge goes through
    errors = metrics.value("subscription_nudge_errors")
    time.sleep(1)  # the nudge thread's send: it has no result to wait on
    results.put((senders, metrics.value("subscription_nudge_errors") - errors))
