"""Both image stores answer the same typed results with the same statuses, step by step
through the protocol: the Lua scripts and the SQLite transactions agree with `base`."""

from __future__ import annotations

import uuid

import pytest

from cartsvc import image
from cartsvc.backends import base as c
from cartsvc.backends.redis import RedisStore
from cartsvc.backends.sqlite import EmbeddedStore
from cartsvc.events import dump_state
from tests.conftest import redis_backend
from tests.factories import cart_state

CART = "00000000-0000-4000-8000-000000000001"
OTHER = "00000000-0000-4000-8000-000000000002"
KEEP = 60_000


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    if request.param == "sqlite":
        yield EmbeddedStore(str(tmp_path / "image.sqlite3"))
        return
    if not redis_backend():
        pytest.skip("needs the Redis backend (REDIS_URL)")
    found = RedisStore(image.image_store().client, f"tbk-contract-{uuid.uuid4().hex[:8]}")
    yield found
    found.clear()


def test_no_lease_then_reconcile(store):
    assert store.read(CART, "t1", 2000, KEEP, "") == c.Read(c.NO_LEASE)
    assert store.acquire(CART, "t1", 5000, KEEP, "") == c.Acquired(c.NO_LEASE)
    assert store.claim_many([CART], "t1", 2000) is None
    begun = store.reconcile_begin(0, "r1", 1000)
    assert isinstance(begun, c.Reconcile) and begun.status == c.RECONCILING
    assert store.reconcile_begin(0, "r2", 1000).status == c.WAIT
    store.reconcile_end(0, "r1", begun.now_ms + KEEP, [])
    assert store.reconcile_begin(0, "r3", 1000).status == c.LEASED


def test_read_claim_fill_hit(store):
    now = store.reconcile_begin(0, "r", 1000).now_ms
    store.reconcile_end(0, "r", now + KEEP, [])

    claimed = store.read(CART, "t1", 2000, KEEP, "")
    assert claimed.status == c.CLAIMED and claimed.gen
    assert store.read(CART, "t2", 2000, KEEP, "") == c.Read(c.FILLING)
    assert store.fill(CART, claimed.gen, "t1", 3, b'{"v":3}', KEEP) is True
    assert store.read(CART, "t3", 2000, KEEP, "") == c.Read(c.HIT, payload=b'{"v":3}')
    assert store.read(CART, "t4", 2000, KEEP, "3") == c.Read(c.HIT_SAME)

    claims = store.claim_many([CART, OTHER], "w", 2000)
    assert claims is not None and claims[0] == c.Claim(c.HIT, version=3)
    assert claims[1].status == c.CLAIMED and claims[1].gen
    assert store.fill_many([(OTHER, claims[1].gen, "w:3", 1, b'{"v":1}')], KEEP) == [True]
    assert store.peek([CART, OTHER]) == {CART: (3, b'{"v":3}'), OTHER: (1, b'{"v":1}')}


def test_acquire_busy_settle(store):
    now = store.reconcile_begin(0, "r", 1000).now_ms
    store.reconcile_end(0, "r", now + KEEP, [])

    assert store.acquire(CART, "w1", 5000, KEEP, "") == c.Acquired(c.ACQUIRED_EMPTY)
    busy = store.acquire(CART, "w2", 5000, KEEP, "")
    assert busy.status == c.BUSY and 0 < busy.wait_ms <= 5000
    assert store.read(CART, "t1", 2000, KEEP, "") == c.Read(c.BUSY)
    assert store.locked(CART) is True
    assert store.settle(CART, "w1", "set", 2, b'{"v":2}', KEEP) is True

    assert store.acquire(CART, "w3", 5000, KEEP, "2") == c.Acquired(c.ACQUIRED_SAME)
    # An entry under a writer's lock is not what memory serves (a read goes to the database).
    assert store.peek([CART]) == {} and store.present([CART]) == []
    assert store.settle(CART, "w3", "keep", 0, b"", KEEP) is True
    assert store.peek([CART]) == {CART: (2, b'{"v":2}')} and store.present([CART]) == [CART]
    assert store.acquire(CART, "w4", 5000, KEEP, "") == c.Acquired(
        c.ACQUIRED, version=2, payload=b'{"v":2}'
    )
    assert store.settle(CART, "w4", "drop", 0, b"", KEEP) is True
    assert store.present([CART]) == []


class FailingStore(EmbeddedStore):
    calls = 0

    def read(self, *args, **kwargs) -> c.Read:
        FailingStore.calls += 1
        raise c.CacheUnavailable("down")


def test_every_store_call_goes_through_one_guard(tmp_path, caplog):
    """A failure of any typed call is counted once, logged with the method's name, and trips
    the breaker, which then answers the next call without asking the store."""
    from cartsvc import metrics

    failing = FailingStore(str(tmp_path / "image.sqlite3"))
    before = metrics.value("redis_errors")
    with pytest.raises(c.CacheUnavailable):
        image._guarded(failing.read, CART, "t", 2000, KEEP, "")
    assert metrics.value("redis_errors") == before + 1
    assert any("cache read failed" in r.getMessage() for r in caplog.records)
    with pytest.raises(c.CacheUnavailable, match="skipped"):
        image._guarded(failing.read, CART, "t", 2000, KEEP, "")
    assert FailingStore.calls == 1
    assert metrics.value("redis_errors") == before + 1


def owned_state(owner: int | None, status: str = "open") -> bytes:
    return dump_state(cart_state(owner_id=owner, status=status))


@pytest.mark.parametrize(
    ("owner", "status", "viewer", "seen"),
    [
        (None, "open", "-", True),  # an anonymous cart: its bearer may use it
        (None, "open", "7", True),
        (7, "open", "7", True),  # its owner
        (7, "open", "8", False),  # another user
        (7, "open", "-", False),  # a visitor
        (7, "closed", "7", False),  # a closed cart is no one's
        (None, "closed", "-", False),
    ],
)
def test_acquire_checks_the_viewer_before_it_touches_the_lock(store, owner, status, viewer, seen):
    now = store.reconcile_begin(0, "r", 1000).now_ms
    store.reconcile_end(0, "r", now + KEEP, [])
    payload = owned_state(owner, status)
    assert base_fill(store, 3, payload)
    assert c.visible_in_payload(payload, viewer) is seen
    got = store.acquire(CART, "w1", 5000, KEEP, "", viewer)
    if seen:
        assert got == c.Acquired(c.ACQUIRED, version=3, payload=payload)
        assert store.locked(CART)
        return
    assert got == c.Acquired(c.HIDDEN)
    assert not store.locked(CART)
    # Taken by its writer meanwhile: still HIDDEN for the foreign viewer, who waits for nothing.
    assert store.acquire(CART, "w2", 5000, KEEP, "3") == c.Acquired(c.ACQUIRED_SAME)
    assert store.acquire(CART, "w3", 5000, KEEP, "", viewer) == c.Acquired(c.HIDDEN)
    assert store.settle(CART, "w2", "keep", 0, b"", KEEP) is True


def test_acquire_with_a_viewer_and_nothing_trusted_in_memory_takes_nothing(store):
    now = store.reconcile_begin(0, "r", 1000).now_ms
    store.reconcile_end(0, "r", now + KEEP, [])
    assert store.acquire(CART, "w1", 5000, KEEP, "", "-") == c.Acquired(c.UNSEEN)
    assert not store.locked(CART)
    assert base_fill(store, 2, b'{"v":2}')  # cached, but not a state the check can read
    assert store.acquire(CART, "w1", 5000, KEEP, "", "-") == c.Acquired(c.UNSEEN)
    assert not store.locked(CART)
    # A live writer's lock on a cart the viewer may see: BUSY, as without a viewer.
    assert base_fill(store, 4, owned_state(None), cart_id=OTHER)
    assert store.acquire(OTHER, "w2", 5000, KEEP, "").status == c.ACQUIRED
    busy = store.acquire(OTHER, "w3", 5000, KEEP, "", "-")
    assert busy.status == c.BUSY and busy.wait_ms > 0


def base_fill(store, version: int, payload: bytes, cart_id: str = CART) -> bool:
    claimed = store.read(cart_id, "f", 2000, KEEP, "")
    assert claimed.status == c.CLAIMED
    return store.fill(cart_id, claimed.gen, "f", version, payload, KEEP)


def test_acquire_runs_meanwhile_once_with_the_lock_request_in_flight(store):
    """`meanwhile` runs once per acquire; on Redis after the request is sent and before its
    reply is read (so a catalog query waits together with the lock), on SQLite first."""
    from tests.redis_spy import record_requests_and_replies

    now = store.reconcile_begin(0, "r", 1000).now_ms
    store.reconcile_end(0, "r", now + KEEP, [])
    with record_requests_and_replies([]) as steps:
        found = store.acquire(CART, "w1", 5000, KEEP, "", "", lambda: steps.append("meanwhile"))
    assert found == c.Acquired(c.ACQUIRED_EMPTY)
    if isinstance(store, RedisStore):
        assert steps == ["send", "meanwhile", "read"]
    else:
        assert steps == ["meanwhile"]
