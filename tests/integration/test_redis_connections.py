"""The scripts' own connections (RedisStore's free list): the pool checkout's guarantees, kept."""

from __future__ import annotations

import os
import uuid

import pytest

from cartsvc import image
from cartsvc.backends import base as c
from cartsvc.backends.redis import RedisStore
from tests.redis_spy import count_round_trips

pytestmark = pytest.mark.usefixtures("needs_redis")

CART = "8b1f3c0e-0000-4000-8000-000000000001"
KEEP = 60_000


@pytest.fixture
def store():
    found = RedisStore(image.image_store().client, f"tconn-{uuid.uuid4().hex[:8]}")
    now = found.reconcile_begin(0, "r", 1000).now_ms
    found.reconcile_end(0, "r", now + KEEP, [])
    yield found
    found.clear()


def scripts(store: RedisStore):
    store.read(CART, "t", 2000, KEEP, "")  # sets the free list up
    return store._scripts_run


def test_one_connection_serves_calls_in_turn_and_goes_through_no_pool_checkout(store):
    runner = scripts(store)
    pool = store.client.connection_pool
    checkouts = []
    original = pool.get_connection
    pool.get_connection = lambda *a, **k: checkouts.append(1) or original(*a, **k)
    try:
        with count_round_trips() as trips:
            for _ in range(5):
                assert store.read(CART, "t", 2000, KEEP, "").status in (c.CLAIMED, c.FILLING)
    finally:
        del pool.get_connection
    assert trips.count == 5 and not checkouts
    assert len(runner.idle) == 1


def test_a_command_interrupted_before_its_reply_never_answers_the_next(store, monkeypatch):
    """A signal or a time limit between the request and its reply leaves the reply unread:
    the connection is dropped, so the next command reads its own answer."""
    runner = scripts(store)
    (conn,) = runner.idle
    send = conn.send_packed_command

    class Interrupted(BaseException):
        pass

    def sent_then_interrupted(*args, **kwargs):
        send(*args, **kwargs)
        raise Interrupted

    monkeypatch.setattr(conn, "send_packed_command", sent_then_interrupted)
    with pytest.raises(Interrupted):
        store.read(CART, "t", 2000, KEEP, "")
    monkeypatch.undo()
    assert not conn.is_connected  # the request went out, its reply was left: dropped
    # The reply left behind was a lease holder's; with the lease gone, the answer is NO_LEASE.
    store.client.delete(store.lease_key)
    assert store.read(CART, "t", 2000, KEEP, "") == c.Read(c.NO_LEASE)


def test_a_connection_the_server_closed_is_reconnected_before_the_command(store):
    """After a restart or a kill, the command is sent on a fresh connection: no error, no
    miss, as the pool's own checkout gives."""
    runner = scripts(store)
    (conn,) = runner.idle
    conn.send_command("CLIENT", "ID")
    client_id = conn.read_response()
    assert store.client.client_kill_filter(_id=client_id) == 1
    status = store.read(CART, "t", 2000, KEEP, "").status  # no CacheUnavailable
    assert status in (c.CLAIMED, c.FILLING)
    assert conn.is_connected


def test_a_forked_child_never_uses_its_parents_connections(store):
    runner = scripts(store)
    (parent,) = runner.idle
    runner.pid = os.getpid() + 1  # as the child sees the list its parent left
    assert store.read(CART, "t", 2000, KEEP, "").status in (c.CLAIMED, c.FILLING)
    assert runner.idle and parent not in runner.idle and runner.pid == os.getpid()


def test_the_scripts_follow_a_new_client(store):
    """Given another client (a test's swap, a reconnect factory), the scripts go to it."""
    first = scripts(store)
    store._client = store.client.__class__(connection_pool=store.client.connection_pool)
    store.read(CART, "t", 2000, KEEP, "")
    assert store._scripts_run is not first


def client_id(conn) -> int:
    conn.send_command("CLIENT", "ID")
    return conn.read_response()


def test_a_connection_follows_the_pool_to_a_new_primary(store, monkeypatch):
    """Sentinel's pool learns of a new primary (its master_address): a connection still on
    the old one is closed and made again, through the pool's class, before the command."""
    runner = scripts(store)
    (conn,) = runner.idle
    before = client_id(conn)
    pool = store.client.connection_pool
    monkeypatch.setattr(pool, "master_address", ("127.0.0.1", 1), raising=False)
    store.read(CART, "t", 2000, KEEP, "")
    monkeypatch.undo()
    assert client_id(conn) != before  # reconnected (to where the pool's class points)
    before = client_id(conn)
    store.read(CART, "t", 2000, KEEP, "")
    assert client_id(conn) == before  # no new primary: the connection stays


def test_stores_dropped_give_their_connections_back_to_the_pool(store):
    """The pool counts the scripts' connections (its max_connections holds), and a store
    that is dropped returns them: many stores built and dropped on one client never use the
    pool up."""
    pool = store.client.connection_pool
    in_use = len(pool._in_use_connections)
    for number in range(pool.max_connections + 6):
        other = RedisStore(store.client, f"{store.prefix}-{number}")
        other.read(CART, "t", 2000, KEEP, "")
        assert len(pool._in_use_connections) == in_use + 1
        del other
    assert len(pool._in_use_connections) == in_use
    assert store.client.ping()


@pytest.mark.parametrize(
    "args",
    [
        ("EVALSHA", "a" * 40, 2, "k:{0}:c:x", "k:{0}:d:x", "tok", 2000, -1, ""),
        ("EVAL", "return 1", 1, "k", '{"n": "Ü\r\n"}'.encode(), "Ünïcode"),
    ],
    ids=["a script call", "bytes, CRLF and unicode"],
)
def test_the_scripts_send_exactly_what_redis_py_would(store, args):
    from cartsvc.backends import redis as backend

    if backend._hiredis_pack is None:
        pytest.skip("hiredis is not installed: redis-py packs the commands itself")
    conn = store.client.connection_pool.get_connection()
    try:
        assert [backend._hiredis_pack(args)] == [b"".join(conn._command_packer.pack(*args))]
    finally:
        store.client.connection_pool.release(conn)
