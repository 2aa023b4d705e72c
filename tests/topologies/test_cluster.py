"""The image on a real Redis Cluster: the contract, writers under resharding and failover, ops."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from cartsvc import image, lifecycle, operations, service
from cartsvc.backends.base import CacheUnavailable
from cartsvc.conf import conf
from cartsvc.models import CartEvent
from tests import procs
from tests.conftest import redis_backend
from tests.factories import make_product
from tests.integration import test_service_contract as contract
from tests.topologies import writers
from tests.topologies.cluster import RedisClusterTopology

PROCESSES, CALLS = 8, 25
# Adds per writer while a slot moves or a primary dies (writes then pay the cache's errors).
FAULT_CALLS = 16
SKU = "SKU-HOT"


@contextlib.contextmanager
def image_on_cluster(settings, topology: RedisClusterTopology) -> Iterator[None]:
    """The image on the Cluster, under a key prefix of its own, emptied and forgotten after."""
    settings.CARTIMAGE = {
        **settings.CARTIMAGE,
        "BACKEND": "redis",
        "REDIS_URL": topology.url,
        "KEY_PREFIX": f"tclu-{uuid.uuid4().hex[:8]}",
    }
    image._stores.clear()
    image.breaker.reset()
    try:
        yield
    finally:
        image.breaker.reset()
        with contextlib.suppress(CacheUnavailable):
            image.clear()
        with contextlib.suppress(CacheUnavailable):
            image.image_store().client.close()
        image._stores.clear()
        image.breaker.reset()


@pytest.fixture
def on_cluster(settings, cluster_topology) -> Iterator[RedisClusterTopology]:
    with image_on_cluster(settings, cluster_topology):
        yield cluster_topology


@pytest.mark.django_db
class TestServiceContractOnCluster(contract.TestServiceContract):
    """The whole service contract, the image on the Cluster (the embedded-only contract run
    does not take it: it has no `contract` mark)."""

    @pytest.fixture(autouse=True)
    def _image_on_cluster(self, on_cluster):
        return on_cluster


# ---------------------------------------------------------------- helpers


def logged_versions(cart_id: str) -> list[int]:
    return list(
        CartEvent.objects.filter(cart_id=cart_id)
        .order_by("version")
        .values_list("version", flat=True)
    )


def events_so_far(cart_ids: list[str]) -> int:
    return CartEvent.objects.filter(cart_id__in=cart_ids).count()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.02)


def carts_on_every_primary(topology: RedisClusterTopology, per_primary: int) -> list[str]:
    """Open `per_primary` carts on each primary (as the cluster's slot map is now)."""
    store = image.image_store()
    owner: dict[int, int] = {}  # slot -> port of its primary
    chosen: dict[int, list[str]] = {p.port: [] for p in topology.primaries()}
    while any(len(ids) < per_primary for ids in chosen.values()):
        cart_id = str(uuid.uuid4())
        slot = store.client.keyslot(store.key(cart_id))
        if slot not in owner:
            owner[slot] = topology.primary_of(slot).port
        if len(chosen[owner[slot]]) < per_primary:
            chosen[owner[slot]].append(cart_id)
    ids = [cart_id for group in zip(*chosen.values(), strict=True) for cart_id in group]
    for cart_id in ids:
        service.open_cart(cart_id)
    return ids


def run_writers(
    plans: list[list[str]],
    during: Callable[[Callable[[], bool]], None] | None = None,
    pause_at: int | None = None,
    resume: Any = None,
) -> list[tuple[list, list]]:
    """One spawned writer per plan (see writers.add_and_read), started together;
    `during(running)` runs in this process meanwhile (`running()`: some writer is not done)."""
    config = procs.child_settings(MAX_LINE_QUANTITY=1000)
    go, results = procs.new_event(), procs.new_queue()
    workers = [
        procs.start(writers.add_and_read, config, plan, SKU, go, results, pause_at, resume)
        for plan in plans
    ]
    go.set()
    if during is not None:
        try:
            during(lambda: any(worker.is_alive() for worker in workers))
        except BaseException:
            for worker in workers:  # none goes on writing into the next test
                worker.kill()
                worker.join()
            raise
    return procs.collect(workers, results)


def check_history(cart_ids: list[str], outcomes: list[tuple[list, list]]) -> None:
    """No acknowledged add lost or doubled, versions gapless, no stale read."""
    assert [error for _observed, errors in outcomes for error in errors] == []
    adds = Counter(cart_id for observed, _ in outcomes for cart_id, _w, _r in observed)
    for cart_id in cart_ids:
        logged = logged_versions(cart_id)
        # cart_opened, then exactly one event per acknowledged add.
        assert logged == list(range(1, adds[cart_id] + 2)), cart_id
        written = sorted(w for observed, _ in outcomes for c, w, _r in observed if c == cart_id)
        assert written == logged[1:], cart_id  # each add answered with its own version
        final = service.get_cart(cart_id)
        assert final.version == logged[-1]
        assert final.lines[0].quantity == adds[cart_id]
    for observed, _ in outcomes:
        last_seen: dict[str, int] = {}
        for cart_id, written, read in observed:
            # A process never sees a cart older than what it saw or wrote before.
            assert written > last_seen.get(cart_id, 0), (cart_id, written, last_seen)
            assert read >= written, (cart_id, written, read)
            last_seen[cart_id] = read


@pytest.fixture
def hot_sku(db, settings):
    settings.CARTIMAGE = {**settings.CARTIMAGE, "MAX_LINE_QUANTITY": 1000}
    return make_product(SKU, stock=100_000)


# ---------------------------------------------------------------- writers under fire

on_committed_rows = pytest.mark.django_db(transaction=True)


@on_committed_rows
def test_eight_writers_on_one_cart_and_on_carts_over_all_shards(on_cluster, hot_sku):
    hot = service.open_cart().id
    spread = carts_on_every_primary(on_cluster, per_primary=8)
    # Each writer: 25 adds on the one hot cart, 25 over the 24 carts of all three primaries.
    plans = [
        [cart_id for j in range(CALLS) for cart_id in (hot, spread[(i * CALLS + j) % 24])]
        for i in range(PROCESSES)
    ]
    outcomes = run_writers(plans)
    check_history([hot, *spread], outcomes)
    assert len(logged_versions(hot)) == PROCESSES * CALLS + 1


@on_committed_rows
def test_a_slot_migrated_while_writers_add_to_its_cart(on_cluster, hot_sku):
    hot = service.open_cart().id
    store = image.image_store()
    slot = store.client.keyslot(store.key(hot))
    source = on_cluster.primary_of(slot)
    target = next(p for p in on_cluster.primaries() if p is not source)
    moved_under_load: list[int] = []

    def migrate(running: Callable[[], bool]) -> None:
        def more_writes() -> None:
            wanted = events_so_far([hot]) + 5
            wait_for(lambda: events_so_far([hot]) >= wanted or not running(), "five more writes")

        # One key at a time, each after five more writes: writes meet the slot half moved.
        with on_cluster.migrating(slot, target) as migration:
            while running():
                more_writes()
                if running() and migration.move(1):
                    moved_under_load.append(events_so_far([hot]))
                elif not migration.remaining():
                    break

    outcomes = run_writers([[hot] * FAULT_CALLS] * PROCESSES, during=migrate)
    assert on_cluster.primary_of(slot) is target
    assert len(moved_under_load) >= 2, "keys moved while the writers ran"
    check_history([hot], outcomes)
    assert len(logged_versions(hot)) == PROCESSES * FAULT_CALLS + 1


def fresh_reads(cart_ids: list[str]) -> dict[str, int]:
    """The versions a process that never read these carts before reads."""
    go, results = procs.new_event(), procs.new_queue()
    reader = procs.start(writers.read_versions, procs.child_settings(), cart_ids, go, results)
    go.set()
    [seen] = procs.collect([reader], results)
    return seen


@on_committed_rows
def test_a_primary_killed_and_its_lagging_replica_promoted_while_writers_add(on_cluster, hot_sku):
    carts = carts_on_every_primary(on_cluster, per_primary=2)
    store = image.image_store()
    slot = store.client.keyslot(store.key(carts[0]))
    replica = on_cluster.replica_of(on_cluster.primary_of(slot))
    plans = [[carts[(i + j) % len(carts)] for j in range(FAULT_CALLS)] for i in range(PROCESSES)]
    before, resume = FAULT_CALLS // 3, procs.new_event()
    read_after_promotion: dict[str, int] = {}
    logged_then: dict[str, int] = {}

    def kill(running: Callable[[], bool]) -> None:
        # Every writer does a third of its adds (which the frozen replica never gets) and
        # waits; the primary is killed, the replica promoted lacking those writes (with the
        # entries they replaced); a new process reads every cart; then the writers go on.
        wait_for(lambda: events_so_far(carts) >= len(carts) + PROCESSES * before, "a third written")
        on_cluster.kill_primary_of(slot, killed=replica.thaw, replica=replica)
        read_after_promotion.update(fresh_reads(carts))
        logged_then.update({cart_id: logged_versions(cart_id)[-1] for cart_id in carts})
        resume.set()

    for cart_id in carts:
        service.get_cart(cart_id)  # an entry at version 1, on the primary and its replica
    assert on_cluster.primary_of(slot).client.execute_command("WAIT", 1, 5000) == 1
    on_cluster.freeze_behind(replica)
    try:
        outcomes = run_writers(plans, during=kill, pause_at=before, resume=resume)
    finally:
        replica.thaw()
    assert read_after_promotion == logged_then
    check_history(carts, outcomes)


# ---------------------------------------------------------------- operations across shards


@pytest.fixture(params=["one redis", "cluster"])
def topology(request, settings):
    """The same test on the run's one Redis and on the Cluster: the same answers."""
    if request.param == "one redis":
        if not redis_backend():
            pytest.skip("needs the Redis backend (REDIS_URL)")
        yield None
        return
    cluster = request.getfixturevalue("cluster_topology")
    with image_on_cluster(settings, cluster):
        yield cluster


def open_spread_carts(topology: RedisClusterTopology | None, count: int = 12) -> list[str]:
    """`count` carts with a line each (on the Cluster: spread over all three primaries)."""
    if topology is None:
        ids = [service.open_cart().id for _ in range(count)]
    else:
        ids = carts_on_every_primary(topology, per_primary=count // 3)
    for cart_id in ids:
        service.add_line(cart_id, "SKU-1", 1)
    return sorted(ids)


@pytest.mark.django_db
def test_warm_carts_loads_every_shard(topology, products):
    ids = open_spread_carts(topology)
    image.clear()
    assert operations.in_memory(ids) == set()
    dry = operations.warm_carts(dry_run=True)
    assert (dry.warmed, dry.already, dry.failed) == (12, 0, 0)
    warmed = operations.warm_carts(batch_size=5)
    assert (warmed.warmed, warmed.already, warmed.failed) == (12, 0, 0)
    assert operations.in_memory(ids) == set(ids)
    assert image.in_memory_count() == 12
    again = operations.warm_carts()
    assert (again.warmed, again.already, again.failed) == (0, 12, 0)


@pytest.mark.django_db
def test_the_sweep_passivates_idle_carts_on_every_shard(topology, products):
    ids = open_spread_carts(topology)
    assert image.in_memory_count() == 12
    result = lifecycle.sweep(timezone.now() + timedelta(seconds=conf.IDLE_TIMEOUT + 60))
    assert result.passivated == 12
    assert operations.in_memory(ids) == set()
    assert image.in_memory_count() == 0
    assert [service.get_cart(i).version for i in ids] == [2] * 12  # back from the database


@pytest.mark.django_db
def test_verify_carts_checks_memory_on_every_shard(topology, products):
    ids = open_spread_carts(topology)
    assert list(operations.verify_carts()) == []
    assert list(operations.verify_carts(ids)) == []
    # Rows that disagree with the log are found wherever the cart's memory lives.
    CartEvent.objects.filter(cart_id=ids[-1], version=2).delete()
    found = list(operations.verify_carts())
    assert {m.cart_id for m in found} == {ids[-1]}


@pytest.mark.django_db
def test_the_admin_page_reads_memory_of_every_shard(topology, products, admin_client):
    ids = open_spread_carts(topology)
    evicted = ids[::3]
    for cart_id in evicted:
        assert operations.evict_cart(cart_id)
    peeked = image.peek(ids)
    assert sorted(peeked) == sorted(set(ids) - set(evicted))
    assert all(peeked[i] == service.get_cart(i) for i in peeked)
    for cart_id in evicted:
        assert operations.memory_image(cart_id) is None
    response = admin_client.get("/admin/cartsvc/cart/")
    assert response.status_code == 200
    shown = {str(cart.pk): cart.in_memory_now for cart in response.context["cl"].result_list}
    assert shown == {cart_id: cart_id not in evicted for cart_id in ids}
