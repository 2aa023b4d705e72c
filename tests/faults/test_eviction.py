"""Redis evicting part of an entry (maxmemory + allkeys-lru) never makes a read stale."""

from __future__ import annotations

import random

import pytest

from cartsvc import image, operations, service
from tests.factories import make_cart
from tests.faults.conftest import image_on_own_redis
from tests.faults.test_stalled_reconcile import stall_reconcile

pytestmark = pytest.mark.django_db(transaction=True)

# An eviction is the key disappearing: each case deletes exactly the key(s) LRU could take.


@pytest.fixture
def cache(needs_redis):
    return image.image_store()


def assert_fresh(cart_id: str, version: int | None = None) -> service.Cart:
    """A read now, and a read by a process holding no decoded state (another worker), both
    equal to the rows (at `version` when given)."""
    rows = operations.rows_state(cart_id)
    assert rows is not None
    if version is not None:
        assert rows.version == version
    assert service.get_cart(cart_id) == rows
    image._states.clear()  # what another process knows: nothing decoded
    assert service.get_cart(cart_id) == rows
    assert service.get_cart(cart_id) == rows  # and the entry the read left behind
    return rows


def assert_clean(cart_id: str) -> None:
    assert list(operations.verify_carts([cart_id])) == []


# ---------------------------------------------------------------- 1. the control hash


def test_control_hash_evicted_payload_kept(products, cache):
    cart = make_cart({"SKU-1": 1})
    assert image.peek([cart.id])[cart.id] == cart
    cache.client.delete(cache.key(cart.id))
    assert cache.client.exists(cache.data_key(cart.id))
    assert_fresh(cart.id, cart.version)
    # A write on the hash-less entry, then the hash evicted again under the new payload.
    cache.client.delete(cache.key(cart.id))
    written = service.add_line(cart.id, "SKU-2", 1)
    assert_fresh(cart.id, written.version)
    cache.client.delete(cache.key(cart.id))
    assert_fresh(cart.id, written.version)
    assert_clean(cart.id)


def test_an_orphan_payload_older_than_the_rows_is_never_served(products, cache):
    cart = make_cart({"SKU-1": 1})
    old_payload = cache.client.get(cache.data_key(cart.id))
    written = service.add_line(cart.id, "SKU-1", 1)
    # The hash evicted, and the payload beside it an older one (as if the newer payload
    # had never reached this node): without its hash it must never be read.
    cache.client.delete(cache.key(cart.id))
    cache.client.set(cache.data_key(cart.id), old_payload)
    image._states.clear()
    assert_fresh(cart.id, written.version)
    cache.client.delete(cache.key(cart.id))
    cache.client.set(cache.data_key(cart.id), old_payload)
    image._states.clear()
    after = service.add_line(cart.id, "SKU-1", 1)  # the writer must decide on the rows
    assert after.version == written.version + 1
    assert after.lines[0].quantity == written.lines[0].quantity + 1
    assert_fresh(cart.id, after.version)
    assert_clean(cart.id)


# ---------------------------------------------------------------- 2. the payload


def test_payload_evicted_control_hash_kept(products, cache):
    cart = make_cart({"SKU-1": 1})
    assert image.peek([cart.id])[cart.id] == cart
    cache.client.delete(cache.data_key(cart.id))
    assert cache.client.hexists(cache.key(cart.id), "v")
    assert_fresh(cart.id, cart.version)
    # A writer whose lock finds the hash but no payload decides on the rows.
    cache.client.delete(cache.data_key(cart.id))
    image._states.clear()
    written = service.add_line(cart.id, "SKU-1", 2)
    assert written.lines[0].quantity == 3
    assert_fresh(cart.id, written.version)
    cache.client.delete(cache.data_key(cart.id))
    assert_fresh(cart.id, written.version)
    assert_clean(cart.id)


# ---------------------------------------------------------------- 3. the lease


def test_lease_and_reconcile_keys_evicted_while_reads_and_writes_go_on(products, cache):
    carts = [make_cart({"SKU-1": 1}) for _ in range(3)]
    rng = random.Random(8)
    for step in range(30):
        # The lease, and now and then the reconcile lock, the access index and a wake list.
        cache.client.delete(cache.lease_key)
        if step % 3 == 0:
            cache.client.delete(cache.reconcile_key, cache.seen_key)
        cart = rng.choice(carts)
        if step % 2:
            cache.client.delete(cache.wake_key(cart.id))
            service.add_line(cart.id, rng.choice(["SKU-1", "SKU-2", "SKU-3"]), 1)
            cache.client.delete(cache.lease_key)
        assert service.get_cart(cart.id) == operations.rows_state(cart.id)
    for cart in carts:
        cache.client.delete(cache.lease_key)
        assert_fresh(cart.id)
        assert_clean(cart.id)


def test_reconcile_lock_evicted_under_a_stale_entry_drops_it(products, cache):
    # A writer that found no lease and a reconciler holding the lock (hung) writes dirty:
    # the old entry stays in Redis, fenced only by the missing lease and the dirty mark.
    cart = make_cart({"SKU-1": 1})
    stall_reconcile(cache)
    written = service.add_line(cart.id, "SKU-1", 1)
    assert image.peek([cart.id])[cart.id] == cart  # the stale entry is still there
    # LRU takes the reconcile lock (and the lease stays absent): the next reader reconciles.
    cache.client.delete(cache.reconcile_key)
    assert_fresh(cart.id, written.version)
    cache.client.delete(cache.lease_key, cache.reconcile_key)
    assert_fresh(cart.id, written.version)
    assert_clean(cart.id)


# ---------------------------------------------------------------- 4, 5. during a write


def evict_during_write(cache, cart_id: str, point: str, keys: list[str]) -> dict:
    """At `point` of the next write: delete `keys`, then read the cart (a read in between)."""
    inside: dict = {}

    def evict_then_read(**_context):
        image.HOOKS.pop(point)
        cache.client.delete(*keys)
        inside["rows"] = operations.rows_state(cart_id)
        inside["read"] = service.get_cart(cart_id)
        image._states.clear()
        inside["other"] = service.get_cart(cart_id)

    image.HOOKS[point] = evict_then_read
    return inside


@pytest.mark.parametrize("point", ["before_commit", "after_commit"])
@pytest.mark.parametrize("part", ["control", "payload", "both"])
def test_evicted_while_a_write_is_in_flight(products, cache, point, part):
    cart = make_cart({"SKU-1": 1})
    assert image.peek([cart.id])[cart.id] == cart
    keys = {
        "control": [cache.key(cart.id)],
        "payload": [cache.data_key(cart.id)],
        "both": [cache.key(cart.id), cache.data_key(cart.id)],
    }[part]
    inside = evict_during_write(cache, cart.id, point, keys)
    written = service.add_line(cart.id, "SKU-2", 1)
    assert written.version == cart.version + 1
    # The read in between saw what was committed then (the old version before the commit).
    assert inside["read"] == inside["rows"] == inside["other"]
    # The writer's publication left no stale entry: the next read is the writer's version.
    assert service.get_cart(cart.id) == written
    cached = image.peek([cart.id])
    assert cached in ({}, {cart.id: written})
    assert_fresh(cart.id, written.version)
    assert_clean(cart.id)


@pytest.mark.parametrize("point", ["before_commit", "after_commit"])
def test_control_hash_evicted_in_flight_and_a_second_writer_takes_the_lock(products, cache, point):
    # The evicted hash held the first writer's lock: a second writer takes it meanwhile and
    # commits and publishes first. Before the first one's commit, the version check makes it
    # decide again; after it, its late publication must not put its older version back.
    cart = make_cart({"SKU-1": 1})
    second = {}

    def evict_then_write(**_context):
        image.HOOKS.pop(point)
        cache.client.delete(cache.key(cart.id))
        second["cart"] = service.add_line(cart.id, "SKU-2", 1)

    image.HOOKS[point] = evict_then_write
    written = service.add_line(cart.id, "SKU-3", 1)
    latest = max(written, second["cart"], key=lambda state: state.version)
    assert latest.version == cart.version + 2
    assert {line.sku for line in latest.lines} == {"SKU-1", "SKU-2", "SKU-3"}
    assert_fresh(cart.id, latest.version)
    assert_clean(cart.id)


# ---------------------------------------------------------------- 6. a real maxmemory run


@pytest.fixture
def lru_redis(settings):
    """The image on a redis-server of its own with 2 MB and allkeys-lru."""
    with image_on_own_redis(
        settings, "--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru"
    ) as server:
        yield server


def test_a_real_maxmemory_run_evicts_and_every_read_stays_fresh(products, lru_redis):
    cache = image.image_store()
    rng = random.Random(8)
    carts = [make_cart({"SKU-1": 1, "SKU-2": 1}).id for _ in range(40)]
    ballast = 0
    partial = {"control": 0, "payload": 0, "both": 0}
    # Redis samples keys at random to find the least recently used: go on (a bounded number
    # of rounds) until some cart's keys were among those it took, so the run always tests it.
    for round_number in range(30):
        if round_number >= 6 and sum(partial.values()) > 0:
            break
        # Fresh keys filling the memory: LRU must make room, taking older keys (carts' too).
        for _ in range(12):
            cache.client.set(f"ballast:{ballast}", rng.randbytes(48 * 1024))
            ballast += 1
        for cart_id in carts:
            control = cache.client.exists(cache.key(cart_id))
            payload = cache.client.exists(cache.data_key(cart_id))
            if control and not payload:
                partial["payload"] += 1
            if payload and not control:
                partial["control"] += 1
            if not (control or payload):
                partial["both"] += 1
            if rng.random() < 0.3:
                service.add_line(cart_id, rng.choice(["SKU-1", "SKU-3", "SKU-4"]), 1)
            if rng.random() < 0.5:
                image._states.clear()  # now and then read as another process would
            assert service.get_cart(cart_id) == operations.rows_state(cart_id)
    stats = cache.client.info("stats")
    assert stats["evicted_keys"] > 0, stats
    assert sum(partial.values()) > 0, partial  # carts' keys were among them
    image._states.clear()
    for cart_id in carts:
        assert service.get_cart(cart_id) == operations.rows_state(cart_id)
    assert list(operations.verify_carts(carts)) == []
