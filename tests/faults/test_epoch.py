"""An entry is served only by the primary it was written under (its epoch, the primary's
replication id): a restart from an older snapshot, a promoted replica or a replica never
serves an older cart."""

from __future__ import annotations

import time

import pytest
import redis

from cartsvc import image, metrics, service
from cartsvc.backends import base as c
from tests.factories import make_cart
from tests.faults.conftest import image_on_own_redis
from tests.topologies.cluster import ClusterNode

pytestmark = pytest.mark.django_db(transaction=True)


def reachable(store) -> None:
    """Wait until the store's client answers again (its pooled connections died with the
    server), then forget the error so that the next call goes to the cache."""
    deadline = time.monotonic() + 10
    while True:
        try:
            store.client.ping()
            break
        except Exception:  # any connection error: the server is not back yet
            assert time.monotonic() < deadline, "redis did not come back"
            time.sleep(0.02)
    image.breaker.reset()


def test_a_restart_from_an_older_snapshot_never_serves_it(products, own_redis, settings):
    # A lease long enough to be in the snapshot, still valid after the restart: only the
    # epoch stands between the snapshot's entry and a reader.
    settings.CARTIMAGE = {**settings.CARTIMAGE, "TRUST_LEASE": 60.0}
    cart = make_cart({"SKU-1": 1})
    assert image.peek([cart.id])[cart.id] == cart
    store = image.image_store()
    store.client.save()  # the snapshot holds this version, cached and leased
    newer = service.add_line(cart.id, "SKU-2", 1)
    assert image.peek([cart.id])[cart.id] == newer

    own_redis.kill()
    own_redis.start()  # loads the snapshot: the older entry and the lease are back
    reachable(store)
    assert int(store.client.hget(store.key(cart.id), "v")) == cart.version
    assert store.client.exists(store.lease_key)

    misses = metrics.value("cache_misses")
    assert service.get_cart(cart.id) == newer
    assert metrics.value("cache_misses") == misses + 1  # read through the cache, not around it
    assert image.peek([cart.id])[cart.id] == newer


def test_an_entry_of_another_epoch_is_a_miss_everywhere(products, own_redis):
    cart = make_cart({"SKU-1": 1})
    store = image.image_store()
    assert store.present([cart.id]) == [cart.id]
    store.client.hset(store.key(cart.id), "e", "0" * 40)  # written under another primary

    assert store.present([cart.id]) == []
    assert store.peek([cart.id]) == {}
    claims = store.claim_many([cart.id], "w", 2000)
    assert claims is not None and claims[0].status == c.CLAIMED
    store.release_claim(cart.id, "w:2")
    store.client.hset(store.key(cart.id), mapping={"v": cart.version, "e": "0" * 40})
    assert store.acquire(cart.id, "t", 5000, 60_000, "").status == c.ACQUIRED_EMPTY
    store.settle(cart.id, "t", "keep", 0, b"", 60_000)
    store.client.hset(store.key(cart.id), mapping={"v": cart.version, "e": "0" * 40})
    assert store.read(cart.id, "r", 2000, 60_000, "").status == c.CLAIMED
    store.release_claim(cart.id, "r")
    assert service.get_cart(cart.id) == cart  # rehydrated and stamped again
    assert store.peek([cart.id]) != {}


def test_a_replica_serves_nothing(products, pair, settings):
    cart = make_cart({"SKU-1": 1})
    pair.in_sync()  # the replica holds the entry and the lease

    # Read within the second the last read stamped: a read that writes nothing (no access
    # to record), which a replica would run if the script were not declared a writer.
    pair.store._client = pair.replica
    image.breaker.reset()
    errors, hits = metrics.value("redis_errors"), metrics.value("cache_hits")
    assert service.get_cart(cart.id) == cart
    assert metrics.value("cache_hits") == hits  # served from PostgreSQL, not the replica
    assert metrics.value("redis_errors") == errors + 1
    with pytest.raises(image.MemoryUnreachable):
        image.peek([cart.id])


def test_a_primary_short_of_its_replicas_serves_nothing(products, settings):
    # min-replicas-to-write, as the README asks of a replicated Redis: a primary cut off from
    # its replicas refuses the scripts, reads included (NOREPLICAS), so it can not serve
    # what a promoted replica has since moved past.
    with image_on_own_redis(settings) as server:
        cart = make_cart({"SKU-1": 1})
        store = image.image_store()
        store.client.config_set("min-replicas-to-write", 1)  # and there is no replica
        image.breaker.reset()
        errors, hits = metrics.value("redis_errors"), metrics.value("cache_hits")
        assert service.get_cart(cart.id) == cart  # read within the second: writes nothing
        assert metrics.value("cache_hits") == hits
        assert metrics.value("redis_errors") == errors + 1
        assert server.process is not None


def test_a_cluster_of_one_primary_answers_the_page_read(products, settings):
    node = ClusterNode()  # the bus port of its own (port + 10000 may not be free, or exist)
    node.start()
    try:
        admin = redis.Redis(port=node.port)
        admin.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        deadline = time.monotonic() + 10
        while admin.cluster("info")["cluster_state"] != "ok":
            assert time.monotonic() < deadline, "the one-node cluster did not come up"
            time.sleep(0.05)
        url = f"redis+cluster://127.0.0.1:{node.port}"
        settings.CARTIMAGE = {**settings.CARTIMAGE, "BACKEND": "redis", "REDIS_URL": url}
        image._stores.clear()
        image.breaker.reset()
        cart = make_cart({"SKU-1": 1})
        assert image.peek([cart.id])[cart.id] == cart
        assert image.in_memory([cart.id]) == {cart.id}
    finally:
        node.stop()
        image._stores.clear()
        image.breaker.reset()
