"""A drain killed mid-batch loses nothing: at most that batch comes again."""

from __future__ import annotations

import os
import signal
import time

import pytest

from cartsvc import subscriptions
from cartsvc.models import CartEvent, Subscription
from tests import children, procs
from tests.factories import make_cart

pytestmark = pytest.mark.django_db(transaction=True)


def lines(path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def test_a_worker_killed_mid_batch_loses_nothing(products, settings, tmp_path, monkeypatch):
    log = tmp_path / "delivered"
    monkeypatch.setenv("CART_TEST_DELIVERY_LOG", str(log))
    subscribers = {"filelog": "tests.subscribers.to_file"}
    settings.CARTIMAGE = {**settings.CARTIMAGE, "SUBSCRIBERS": subscribers}
    for _ in range(6):
        make_cart({"SKU-1": 1, "SKU-2": 1})
    every = sorted(CartEvent.objects.values_list("id", flat=True))
    assert len(every) > 10

    block = tmp_path / "delivered.block"
    block.touch()  # the handler blocks after writing its first batch
    results = procs.new_queue()
    worker = procs.start(
        children.drain_until_killed,
        procs.child_settings(SUBSCRIBERS=subscribers),
        "filelog",
        5,
        results,
    )
    assert results.get(timeout=60) == "draining"
    deadline = time.monotonic() + 30
    while len(lines(log)) < 5:
        assert time.monotonic() < deadline, "the worker did not deliver its first batch"
        time.sleep(0.02)
    os.kill(worker.pid, signal.SIGKILL)
    worker.join(10)
    first_batch = lines(log)
    assert first_batch == every[:5]

    block.unlink()
    subscriptions.drain("filelog")
    delivered = lines(log)
    assert sorted(set(delivered)) == every  # nothing lost
    again = [event_id for event_id in set(delivered) if delivered.count(event_id) > 1]
    assert set(again) <= set(first_batch)  # at most the killed batch, once more
    assert Subscription.objects.get(name="filelog").last_id == every[-1]
