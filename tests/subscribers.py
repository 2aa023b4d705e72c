"""Subscription handlers the tests plug in through CARTIMAGE["SUBSCRIBERS"]."""

from __future__ import annotations

import os

RECORDED: list[tuple[str, int, int]] = []  # (cart id, version, event id), in delivery order
FAIL_ON: set[int] = set()  # event ids `failing` raises on


def record(events) -> None:
    RECORDED.extend((e.cart_id, e.version, e.id) for e in events)


def failing(events) -> None:
    for event in events:
        if event.id in FAIL_ON:
            raise RuntimeError(f"handler bug on event {event.id}")
    RECORDED.extend((e.cart_id, e.version, e.id) for e in events)


def to_file(events) -> None:
    """Appends each event id to $CART_TEST_DELIVERY_LOG (flushed), then, if the file
    $CART_TEST_DELIVERY_LOG.block exists, waits for its removal: a worker to kill mid-batch."""
    path = os.environ["CART_TEST_DELIVERY_LOG"]
    with open(path, "a") as log:
        for event in events:
            log.write(f"{event.id}\n")
        log.flush()
        os.fsync(log.fileno())
    import time

    while os.path.exists(path + ".block"):
        time.sleep(0.01)
