"""What failover safety costs per operation: the epoch check in every script, against WAIT.

Starts a primary and a replica of its own (redis-server on free loopback ports) and times,
through the production store (`cartsvc.backends.redis.RedisStore`):
  * a hot read with the epoch check (the primary's replication id, from INFO, compared with
    the entry's stamp) and with the check taken out of the scripts;
  * a write's publish (settle) alone, and followed in the same round trip by `WAIT 1 0`,
    the alternative that makes each publish reach the replica before the writer answers.
Prints a Markdown table (median of rounds, microseconds per operation, one client).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DJANGO_DEBUG", "1")

import django  # noqa: E402

django.setup()

import redis  # noqa: E402

from cartsvc.backends import base as c  # noqa: E402
from cartsvc.backends.redis import RedisStore  # noqa: E402

ROUNDS = 7
CALLS = int(3000 * float(os.environ.get("BENCH_SCALE", "1")))
KEEP = 600_000
NO_EPOCH = "local epoch = 'any'\n"  # every entry matches: the check costs nothing


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(folder: str, *extra: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen(
        [
            *("redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""),
            *("--appendonly", "no", "--dir", folder, "--repl-diskless-sync-delay", "0", *extra),
        ],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return process, port
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def without_epoch(store: RedisStore) -> RedisStore:
    """The same store with the epoch check taken out of every script."""
    epoch_lines = ("local info = redis.call('INFO'", "local at = string.find(info", "local epoch =")
    for script in store._scripts.values():
        lines = script.source.splitlines(keepends=True)
        kept = [line for line in lines if not line.startswith(epoch_lines[:2])]
        script.source = "".join(
            NO_EPOCH if line.startswith(epoch_lines[2]) else line for line in kept
        )
        script.sha = hashlib.sha1(script.source.encode()).hexdigest()
        assert "redis.call('INFO'" not in script.source
    return store


def leased(store: RedisStore) -> None:
    begun = store.reconcile_begin(0, "bench", 1000)
    store.reconcile_end(0, "bench", begun.now_ms + KEEP, [])


def per_call(client: redis.Redis, operation: Callable[[], object]) -> tuple[float, float]:
    """(wall µs per operation as the client sees it, Redis's own µs in scripts per operation):
    the second is not disturbed by other work on the machine."""
    rounds = []
    client.config_resetstat()
    for _round in range(ROUNDS):
        started = time.perf_counter()
        for _call in range(CALLS):
            operation()
        rounds.append((time.perf_counter() - started) / CALLS * 1e6)
    scripts = client.info("commandstats").get("cmdstat_evalsha", {"usec": 0})
    return statistics.median(rounds), scripts["usec"] / (ROUNDS * CALLS)


def hot_read(store: RedisStore) -> Callable[[], object]:
    cart_id = str(uuid.uuid4())
    claim = store.read(cart_id, "r", 2000, KEEP, "")
    assert claim.status == c.CLAIMED
    assert store.fill(cart_id, claim.gen, "r", 7, b'{"v": 7}', KEEP)
    assert store.read(cart_id, "r", 2000, KEEP, "7").status == c.HIT_SAME

    def read() -> object:
        return store.read(cart_id, "r", 2000, KEEP, "7")

    return read


def publish(store: RedisStore, wait: bool) -> Callable[[], object]:
    cart_id = str(uuid.uuid4())
    payload = b'{"lines": []}' * 20
    version = iter(range(1, 10**9))

    def write() -> object:
        assert store.acquire(cart_id, "w", 5000, KEEP, "").status != c.BUSY
        if not wait:
            return store.settle(cart_id, "w", "set", next(version), payload, KEEP)
        pipe = store.client.pipeline(transaction=False)
        keys = [
            store.key(cart_id),
            store.data_key(cart_id),
            store.seen_key,
            store.wake_key(cart_id),
        ]
        args = [cart_id, "w", "set", next(version), payload, KEEP]
        pipe.evalsha(store._scripts["settle"].sha, len(keys), *keys, *args)
        pipe.wait(1, 0)
        published, replicas = pipe.execute()
        assert replicas == 1
        return published

    return write


def main() -> int:
    if shutil.which("redis-server") is None:
        print("FATAL: redis-server is not installed", file=sys.stderr)
        return 1
    folder = tempfile.mkdtemp(prefix="cartimage-failover-bench-")
    servers = []
    try:
        for part in ("primary", "replica"):
            os.mkdir(f"{folder}/{part}")
        primary, port = start_server(f"{folder}/primary")
        servers.append(primary)
        replica, _ = start_server(f"{folder}/replica", "--replicaof", "127.0.0.1", str(port))
        servers.append(replica)
        client = redis.Redis(port=port)
        while client.wait(1, 100) != 1:
            pass
        with_check = RedisStore(client, "bench-epoch")
        no_check = without_epoch(RedisStore(client, "bench-noepoch"))
        for store in (with_check, no_check):
            store.client.script_flush()
            leased(store)
        rows = [
            (
                "hot read (HIT_SAME), the epoch check",
                per_call(client, hot_read(no_check)),
                per_call(client, hot_read(with_check)),
            ),
            (
                "write's two scripts (acquire + settle), WAIT 1 after settle",
                per_call(client, publish(with_check, wait=False)),
                per_call(client, publish(with_check, wait=True)),
            ),
            (
                "write's two scripts (acquire + settle), the epoch check",
                per_call(client, publish(no_check, wait=False)),
                per_call(client, publish(with_check, wait=False)),
            ),
        ]
        print("| µs per operation, one client, a primary + 1 replica | without | with |")
        print("|---|---:|---:|")
        for name, (wall, server), (wall_with, server_with) in rows:
            print(f"| {name}: client wall time | {wall:.1f} | {wall_with:.1f} |")
            print(f"| {name}: Redis time in scripts | {server:.1f} | {server_with:.1f} |")
        return 0
    finally:
        for server in servers:
            server.kill()
            server.wait()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
