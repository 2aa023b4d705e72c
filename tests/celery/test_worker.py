"""The sweeps on a real worker and beat (separate OS processes) with timeouts of seconds."""

from __future__ import annotations

import time
import uuid

import pytest
from django.db import transaction

from cartsvc import image, service
from cartsvc.models import Cart, CartEvent, CartSnapshot
from cartsvc.tasks import expire_abandoned_carts, sweep_carts
from config.celery import app
from tests.celery.conftest import wait_for
from tests.factories import make_cart

pytestmark = pytest.mark.django_db(transaction=True)


def in_memory(cart_id: str) -> bool:
    return cart_id in image.peek([cart_id])


def expired_events(cart_id: str) -> int:
    return CartEvent.objects.filter(cart_id=cart_id, type="cart_expired").count()


def status(cart_id: str) -> str:
    # From the row, not through the service: a read is activity and would postpone expiry.
    return Cart.objects.get(id=cart_id).status


def test_an_idle_cart_leaves_redis_and_reads_back_identically(products, celery_procs):
    cart = make_cart({"SKU-1": 2, "SKU-2": 1})
    before = service.get_cart(cart.id)
    assert in_memory(cart.id)
    worker, beat = celery_procs.worker(), celery_procs.beat()
    celery_procs.ready(worker, beat)

    wait_for(lambda: not in_memory(cart.id), 15, "the idle cart to be passivated")
    assert CartSnapshot.objects.filter(cart_id=cart.id, version=before.version).exists()
    assert sum(r["passivated"] for r in worker.succeeded("passivate_idle_carts")) >= 1
    assert service.get_cart(cart.id) == before  # rehydrated, identical
    assert in_memory(cart.id)
    # No pickle anywhere: beat keeps its schedule in memory, not in a shelve file.
    assert not list(celery_procs.tmp.glob("beat-schedule*"))


def test_an_abandoned_cart_expires_exactly_once_with_two_beats(products, celery_procs):
    carts = [make_cart({"SKU-1": 1}) for _ in range(20)]
    due_at = time.monotonic() + 3
    env = {"CART_ABANDON_AFTER": 3, "CART_IDLE_TIMEOUT": 3600}
    first = min(carts, key=lambda c: uuid.UUID(c.id)).id  # where every sweep starts
    with transaction.atomic():
        # Hold the first cart's row so that the sweeps of both beats pile up on it and then
        # race through all the carts together, instead of merely following each other.
        Cart.objects.select_for_update().get(id=first)
        # Two beats (a bad deploy) and a worker that runs two tasks at once.
        worker = celery_procs.worker(concurrency=2, **env)
        beats = [celery_procs.beat("beat-1", **env), celery_procs.beat("beat-2", **env)]
        celery_procs.ready(worker, *beats)
        started = time.monotonic()
        time.sleep(max(due_at + 2.5 - time.monotonic(), started + 2.5 - time.monotonic(), 0))
        assert status(first) == "open"

    wait_for(lambda: all(status(c.id) == "expired" for c in carts), 20, "the carts to be expired")
    # Both pool processes were held up on the first cart: the sweeps really ran at once.
    assert len([s for s in worker.durations("expire_abandoned_carts") if s > 1]) >= 2
    # Let both beats send the abandonment sweep a few more times after the expiry.
    sent = [b.sent("cart-abandonment") for b in beats]
    wait_for(
        lambda: all(b.sent("cart-abandonment") >= n + 2 for b, n in zip(beats, sent, strict=True)),
        10,
        "two more abandonment ticks from each beat",
    )
    ran = len(worker.succeeded("expire_abandoned_carts"))
    wait_for(lambda: len(worker.succeeded("expire_abandoned_carts")) >= ran + 2, 10, "the sweeps")

    for cart in carts:
        assert expired_events(cart.id) == 1
    assert service.get_cart(first).status == "expired"
    assert sum(r["expired"] for r in worker.succeeded("expire_abandoned_carts")) == len(carts)


def test_a_busy_cart_is_never_passivated(products, celery_procs):
    idle = make_cart({"SKU-2": 1})
    worker, beat = celery_procs.worker(), celery_procs.beat()
    celery_procs.ready(worker, beat)
    busy = make_cart({"SKU-1": 1})  # used from now on

    idle_gone_at, last_read = None, time.monotonic()
    deadline = last_read + 20
    # Read the busy cart every 0.3 s (IDLE_TIMEOUT is 2 s) until the idle one has been gone
    # for a few sweeps: each time, it must still be in memory before we touch it (unless this
    # process itself stalled for most of an IDLE_TIMEOUT, which would prove nothing).
    while idle_gone_at is None or time.monotonic() < idle_gone_at + 3:
        assert time.monotonic() < deadline, "the idle cart was never passivated"
        if time.monotonic() - last_read < 1.5:
            assert in_memory(busy.id), "the busy cart was passivated"
        assert service.get_cart(busy.id) == busy
        last_read = time.monotonic()
        if idle_gone_at is None and not in_memory(idle.id):
            idle_gone_at = time.monotonic()
        time.sleep(0.3)
    assert not in_memory(idle.id)
    worker.check_alive()


def test_a_task_delivered_twice_and_sweeps_run_concurrently_add_no_event(products, celery_procs):
    carts = [make_cart({"SKU-1": 1}) for _ in range(3)]
    due_at = time.monotonic() + 1.1  # CART_ABANDON_AFTER=1 in the worker
    image.clear()  # no read activity: only the rows' last_activity_at counts
    worker = celery_procs.worker(concurrency=2, CART_ABANDON_AFTER=1)
    celery_procs.ready(worker)
    time.sleep(max(due_at - time.monotonic(), 0))

    # Each message twice, with the same id (a redelivery), all at once on two processes.
    with app.connection_for_write(celery_procs.broker_url) as conn:
        for task in (expire_abandoned_carts, sweep_carts):
            task_id = str(uuid.uuid4())
            for _ in range(2):
                task.apply_async(connection=conn, task_id=task_id)

    wait_for(
        lambda: (
            len(worker.succeeded("expire_abandoned_carts")) == 2
            and len(worker.succeeded("sweep_carts")) == 2
        ),
        15,
        "four task runs",
    )
    total = sum(r["expired"] for r in worker.succeeded("expire_abandoned_carts"))
    total += sum(r["expired"] for r in worker.succeeded("sweep_carts"))
    assert total == len(carts)
    for cart in carts:
        assert expired_events(cart.id) == 1
        versions = list(CartEvent.objects.filter(cart_id=cart.id).values_list("version", flat=True))
        assert versions == list(range(1, len(versions) + 1))


def test_the_embedded_default_needs_no_broker_server(products, celery_procs):
    """What `make run` starts: a worker with an embedded beat on the filesystem transport."""
    cart = make_cart({"SKU-1": 1})
    worker = celery_procs.worker(beat=True, CELERY_BROKER_URL=None)
    celery_procs.ready(worker)
    wait_for(lambda: not in_memory(cart.id), 15, "the idle cart to be passivated")
    assert "filesystem://" in worker.text()
    assert (celery_procs.tmp / "broker" / "queue").is_dir()
