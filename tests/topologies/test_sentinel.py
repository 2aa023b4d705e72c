"""The image behind Redis Sentinel: the service contract, and no old read after a failover."""

from __future__ import annotations

import contextlib
import threading
import uuid

import pytest
import redis

from cartsvc import image, metrics, service
from cartsvc.backends.base import CacheUnavailable
from tests import children, procs
from tests.factories import make_cart
from tests.integration import test_service_contract as contract
from tests.topologies.sentinel import SentinelTopology, client, replication, wait_for


@contextlib.contextmanager
def image_on(settings, topology: SentinelTopology):
    """The image on the topology (by its Sentinel URL), under a key prefix of its own."""
    settings.CARTIMAGE = {
        **settings.CARTIMAGE,
        "BACKEND": "redis",
        "REDIS_URL": topology.url,
        "KEY_PREFIX": f"{settings.CARTIMAGE['KEY_PREFIX']}-sent-{uuid.uuid4().hex[:8]}",
    }
    image._stores.clear()
    image.breaker.reset()
    try:
        yield topology
    finally:
        with contextlib.suppress(CacheUnavailable):
            image.clear()
        image._stores.clear()
        image.breaker.reset()


@pytest.fixture
def on_sentinel(settings, sentinel_topology):
    # tests/conftest.py's clean_image sets up before and tears down after this fixture, so
    # it cleans the run's own store; this one clears the Sentinel store itself.
    with image_on(settings, sentinel_topology) as topology:
        yield topology


# Not marked `contract`: the suite's second run (`pytest -m contract`, embedded) has no Redis.
@pytest.mark.django_db
class TestServiceContractOnSentinel(contract.TestServiceContract):
    """Every public function, its answers and its errors, with the image behind Sentinel."""

    @pytest.fixture(autouse=True)
    def _on_sentinel(self, on_sentinel):
        yield


def cached_version(port: int, cart_id: str) -> int | None:
    """The version the control hash on the server at `port` holds for the cart."""
    with client(port) as conn:
        found = conn.hget(image.image_store().key(cart_id), "v")
    return None if found is None else int(found)


def skus(cart) -> list[str]:
    return sorted(line.sku for line in cart.lines)


@pytest.mark.django_db(transaction=True)
def test_a_write_acknowledged_before_a_failover_is_never_read_older(
    products, on_sentinel, settings
):
    """The last write reached the old primary only; the replica promoted without it still
    caches the version before. Every process must read the acknowledged write."""
    topology = on_sentinel
    old, new = topology.primary, topology.replica
    first, second = make_cart({"SKU-1": 1}), make_cart({"SKU-1": 1})
    carts = (first.id, second.id)
    for cart_id in carts:
        assert service.get_cart(cart_id).version == 2
        assert cached_version(old.port, cart_id) == 2
        wait_for("the replica caches version 2", lambda c=cart_id: cached_version(new.port, c) == 2)
    try:
        # Cut the replica off before the write: frozen, it can not reconnect, and the stream
        # the primary would have sent it (sitting in its socket) is gone with the link.
        topology.freeze(new)
        with client(old.port) as conn:
            conn.client_kill_filter(_type="replica")
            wait_for(
                "the primary has no replica", lambda: not replication(old.port)["connected_slaves"]
            )
        acknowledged = [service.add_line(cart_id, "SKU-2", 1) for cart_id in carts]
        assert [cart.version for cart in acknowledged] == [3, 3]
        assert [cached_version(old.port, cart_id) for cart_id in carts] == [3, 3]
        topology.kill(old)
        topology.thaw(new)
        topology.fail_over_from_dead_primary()

        # The failover happened, and the new primary lacks the write: not vacuous.
        assert topology.primary is new and replication(new.port)["role"] == "master"
        assert all(s.master_port() == new.port for s in topology.sentinels)
        assert [cached_version(new.port, cart_id) for cart_id in carts] == [2, 2]

        # Each cart is read first by a different process: this one reads `second` first,
        # a fresh process `first`.
        image.breaker.reset()
        with contextlib.suppress(CacheUnavailable, redis.RedisError):
            image.image_store().client.ping()  # this process's pool finds the new primary
        errors = metrics.value("redis_errors")
        here = service.get_cart(second.id)
        results = procs.new_queue()
        reader = procs.start(children.read_carts, procs.child_settings(), carts, results)
        [(there, child_errors)] = procs.collect([reader], results)
        here = [service.get_cart(first.id), here]
        assert [cart.version for cart in here] == [3, 3]
        assert [skus(cart) for cart in here] == [["SKU-1", "SKU-2"]] * 2
        assert there == [(3, ["SKU-1", "SKU-2"])] * 2
        # Both processes got their answers through the new primary, not around it.
        assert metrics.value("redis_errors") == errors and child_errors == 0
    finally:
        topology.heal()


@pytest.mark.django_db
def test_service_calls_answer_through_a_failover(products, on_sentinel):
    """Reads and writes go on while the sentinels fail over, and never go back a version."""
    topology = on_sentinel
    cart = make_cart({"SKU-1": 1})
    line = cart.lines[0].id
    failed: list[BaseException] = []

    def fail_over() -> None:
        try:
            topology.failover()
        except BaseException as exc:
            failed.append(exc)

    failover = threading.Thread(target=fail_over)
    during = after = 0
    failover.start()
    try:
        while failover.is_alive() or after < 10:
            during, after = (during + 1, after) if failover.is_alive() else (during, after + 1)
            if (during + after) % 2:
                quantity = 1 + cart.lines[0].quantity % 2
                changed = service.set_quantity(cart.id, line, quantity)
                assert changed.version == cart.version + 1
                cart = changed
            else:
                assert service.get_cart(cart.id) == cart
    finally:
        failover.join(60)
    assert not failed, failed
    assert during > 0  # some calls were made while the failover ran
    assert service.get_cart(cart.id) == cart
