"""A drain killed mid-batch loses nothing: at most that batch comes again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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


def test_a_batch_whose_transaction_is_lost_is_counted_and_the_others_go_on(products, settings):
    from django.db import connection

    from tests import subscribers

    if connection.vendor != "postgresql":
        pytest.skip("terminates a PostgreSQL session")
    subscribers.RECORDED.clear()
    settings.CARTIMAGE = {
        **settings.CARTIMAGE,
        "SUBSCRIBERS": {
            "lost": "tests.subscribers.loses_its_transaction",
            "probe": "tests.subscribers.record",
        },
    }
    make_cart({"SKU-1": 1})
    first = CartEvent.objects.order_by("position", "id").first()
    found = subscriptions.drain()
    assert found["lost"] == 0 and found["probe"] == CartEvent.objects.count()
    sub = Subscription.objects.get(name="lost")
    assert (sub.failures, sub.failing_event_id, sub.last_id) == (1, first.id, 0)
    assert sub.retry_at is not None and "lost" in sub.last_error
    subscribers.RECORDED.clear()


def test_the_abandoned_signal_is_not_sent_again_when_a_later_cart_fails(products, settings):
    from datetime import timedelta

    from django.utils import timezone

    from cartsvc import lifecycle
    from cartsvc.signals import cart_abandoned

    settings.CARTIMAGE = {**settings.CARTIMAGE, "ABANDON_AFTER": 3600}
    for _ in range(3):
        make_cart({"SKU-1": 1})
    assert lifecycle.expire_abandoned(timezone.now() + timedelta(seconds=3601)) == 3
    expired = CartEvent.objects.filter(type="cart_expired").order_by("position", "id")
    first, failing, last = (str(event.cart_id) for event in expired)
    sent: list[str] = []
    broken = {failing}

    def mailer(sender, cart, **kwargs) -> None:
        sent.append(cart.id)  # an e-mail: not rolled back
        if cart.id in broken:
            raise RuntimeError("SMTP refused")

    cart_abandoned.connect(mailer, weak=False)
    try:
        subscriptions.drain("cartsvc.abandoned")
        assert sent == [first, failing]  # stopped at the failing cart, the first sent once
        broken.clear()
        Subscription.objects.filter(name="cartsvc.abandoned").update(retry_at=None)
        subscriptions.drain("cartsvc.abandoned")
    finally:
        cart_abandoned.disconnect(mailer)
    # Never again for another cart's failure: only the failing one's own attempt repeats.
    assert sent == [first, failing, failing, last]


# A process that nudged, then exits at once (as a management command does): the interpreter
# shuts down while the nudge thread is still sending.
NUDGE_THEN_EXIT = """
import pathlib, sys, time, types
import django
django.setup()
from cartsvc import subscriptions

def slow_send(*args, **kwargs):
    time.sleep(0.5)  # a broker that takes its time
    sys.stderr.write("sent\\n")  # a warning written while the interpreter shuts down
    pathlib.Path(sys.argv[1]).write_text("sent")

subscriptions.current_app = types.SimpleNamespace(send_task=slow_send)
subscriptions._nudger.nudge()
time.sleep(0.1)  # the thread has picked the nudge up
"""


def test_a_process_exits_cleanly_after_its_nudge_is_sent(tmp_path):
    """The nudge thread is waited for at exit: a daemon thread still sending (or writing to
    stderr) while the interpreter shuts down can abort the process."""
    marker = tmp_path / "sent"
    done = subprocess.run(
        [sys.executable, "-c", NUDGE_THEN_EXIT, str(marker)],
        cwd=os.getcwd(),
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert marker.read_text() == "sent"
