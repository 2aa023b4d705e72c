"""Benchmark the memory image against its floors and a naive ORM cart; writes results.md."""

from __future__ import annotations

import gc
import math
import os
import platform
import shutil
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["CARTIMAGE_BENCH"] = "1"
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
# Production runs with DEBUG off; DEBUG on makes Django record every query (slower ORM).
os.environ.setdefault("DJANGO_DEBUG", "0")

import django  # noqa: E402

django.setup()

import orjson  # noqa: E402
import psycopg  # noqa: E402
import redis  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from psycopg.types.json import Jsonb  # noqa: E402

from bench.naivecart import service as naive  # noqa: E402
from carts.models import Product  # noqa: E402
from cartsvc import image, service  # noqa: E402

RESULTS = ROOT / "bench" / "results.md"
SCALE = float(os.environ.get("BENCH_SCALE", "1"))
HUGE = 2_000_000_000
SKUS = ("BENCH-A", "BENCH-B", "BENCH-C", "BENCH-D")
BIG_CART_EVENTS = 10_000
ROUNDS = 10


def log(message: str) -> None:
    """Progress on stderr, so stdout holds the report only."""
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- measuring


@dataclass
class Row:
    name: str
    samples: list[float]  # seconds
    compared: str = ""

    @property
    def median_us(self) -> float:
        return statistics.median(self.samples) * 1e6

    @property
    def p99_us(self) -> float:
        ordered = sorted(self.samples)
        return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)] * 1e6

    @property
    def ops(self) -> float:
        return len(self.samples) / sum(self.samples)


@dataclass
class Case:
    """One row to measure: `op` is timed; `setup` runs untimed before each call and
    `prepare` once before each round."""

    key: str
    name: str
    op: Callable[[], Any]
    iterations: int
    setup: Callable[[], Any] | None = None
    prepare: Callable[[], Any] | None = None


def measure(cases: list[Case], rounds: int = ROUNDS) -> dict[str, Row]:
    """Time the cases interleaved, round by round, so that load from anything else on the
    machine falls on every row of a comparison alike; a warm-up precedes each case."""
    clock = time.perf_counter
    samples: dict[str, list[float]] = {case.key: [] for case in cases}
    for case in cases:
        if case.prepare:
            case.prepare()
        for _ in range(max(20, int(case.iterations * SCALE) // 10)):
            if case.setup:
                case.setup()
            case.op()
    for _ in range(rounds):
        for case in cases:
            if case.prepare:
                case.prepare()
            op, setup, out = case.op, case.setup, samples[case.key]
            gc.collect()
            for _ in range(max(5, int(case.iterations * SCALE) // rounds)):
                if setup:
                    setup()
                start = clock()
                op()
                out.append(clock() - start)
    rows = {case.key: Row(case.name, samples[case.key]) for case in cases}
    for row in rows.values():
        log(f"  {row.name}: median {row.median_us:.1f} us, p99 {row.p99_us:.1f} us")
    return rows


def sql_count(
    op: Callable[[], Any], setup: Callable[[], Any] | None = None, calls: int = 21
) -> int:
    """SQL statements one call of `op` typically sends through Django (median of `calls`)."""
    counts = []
    for _ in range(calls):
        if setup:
            setup()
        with CaptureQueriesContext(connection) as captured:
            op()
        counts.append(len(captured.captured_queries))
    return int(statistics.median(counts))


# ---------------------------------------------------------------- setup


def ensure_database() -> str:
    """Create the bench database if it is missing; refuse anything not named for benchmarks."""
    url = settings.DATABASE_URL
    parts = urlsplit(url)
    name = settings.DATABASES["default"]["NAME"]
    if connection.vendor != "postgresql":
        sys.exit(f"bench needs DATABASE_URL=postgres://...; got {url!r}")
    if "bench" not in name:
        sys.exit(f"refusing to flush database {name!r}: its name must contain 'bench'")
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not found:
            log(f"creating database {name}")
            conn.execute(f'CREATE DATABASE "{name}"')
    return url


def fresh_schema() -> None:
    call_command("migrate", interactive=False, verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    image.clear()


def make_products() -> None:
    for index, sku in enumerate(SKUS):
        Product.objects.create(
            sku=sku, name=f"Bench product {sku[-1]}", price=Decimal(f"{index + 1}9.90"), stock=HUGE
        )


def three_line_cart() -> str:
    cart = service.open_cart()
    for sku in SKUS[:3]:
        service.add_line(cart.id, sku, 1)
    return cart.id


def three_line_naive_cart() -> uuid.UUID:
    cart_id = naive.open_cart()
    for sku in SKUS[:3]:
        naive.add_line(cart_id, sku, 1)
    return cart_id


def build_cart(events: int, label: str) -> str:
    """A cart with exactly `events` events: open, 3 lines, then add_line / set_quantity."""
    cart = service.open_cart()
    step = 0
    started = time.perf_counter()
    while cart.version < events:
        line = cart.lines[(step // 2) % len(cart.lines)] if cart.lines else None
        if len(cart.lines) < 3:
            cart = service.add_line(cart.id, SKUS[len(cart.lines)], 1)
        elif step % 2 == 0:
            cart = service.add_line(cart.id, line.sku, 1)
        else:
            cart = service.set_quantity(cart.id, line.id, 1 if line.quantity > 1 else 2)
        step += 1
        if events >= 1000 and cart.version % 1000 == 0:
            rate = cart.version / (time.perf_counter() - started)
            log(f"  {label}: {cart.version}/{events} events ({rate:.0f}/s)")
    assert cart.version == events, cart.version
    return cart.id


class WriteFloor:
    """One command's SQL as a plain psycopg transaction: header version, event, line row."""

    def __init__(self, url: str, cart_id: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.cart_id = cart_id
        header = service.get_cart(cart_id)
        self.version = header.version
        self.line_id = header.lines[0].id
        self.quantity = header.lines[0].quantity

    def __call__(self) -> None:
        self.version += 1
        self.quantity += 1
        now = datetime.now(UTC)
        with self.conn.transaction():
            cur = self.conn.cursor()
            cur.execute(
                "UPDATE cartsvc_cart SET version = %s, updated_at = %s, last_activity_at = %s"
                " WHERE id = %s AND version = %s",
                [self.version, now, now, self.cart_id, self.version - 1],
            )
            cur.execute(
                "INSERT INTO cartsvc_cartevent (cart_id, version, type, schema, data, command_id,"
                " recorded_at) VALUES (%s, %s, 'quantity_changed', 1, %s, NULL, %s)",
                [
                    self.cart_id,
                    self.version,
                    Jsonb({"line_id": self.line_id, "quantity": self.quantity}),
                    now,
                ],
            )
            cur.execute(
                "UPDATE cartsvc_cartline SET quantity = %s WHERE cart_id = %s AND line_id = %s",
                [self.quantity, self.cart_id, self.line_id],
            )

    def close(self) -> None:
        self.conn.close()
        image.evict(self.cart_id)  # the rows moved behind the image's back


# ---------------------------------------------------------------- machine


def machine(redis_client: redis.Redis, load_at_start: tuple[float, ...]) -> list[str]:
    """The host and server versions, as Markdown list items."""
    cpu = "unknown"
    memory = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        (pg_version,) = cursor.fetchone()
        cursor.execute("SHOW synchronous_commit")
        (sync_commit,) = cursor.fetchone()
    info = redis_client.info("server")
    return [
        f"- CPUs (nproc): {os.cpu_count()}; CPU: {cpu}; memory: {memory}",
        f"- Python {platform.python_version()}, Django {django.get_version()}, "
        f"PostgreSQL {pg_version} (synchronous_commit={sync_commit}), "
        f"Redis {info.get('redis_version')}; all on one host over TCP loopback",
        f"- {platform.platform()}",
        "- load average (1/5/15 min) at start "
        + " / ".join(f"{x:.2f}" for x in load_at_start)
        + ", at end "
        + " / ".join(f"{x:.2f}" for x in os.getloadavg())
        + " (other work on the host shares the CPUs, PostgreSQL and Redis)",
    ]


# ---------------------------------------------------------------- the run


def ratio(a: Row, b: Row) -> float:
    return a.median_us / b.median_us


def check(ok: bool, text: str) -> str:
    return f"- **{'PASS' if ok else 'MISS'}** {text}"


def main() -> int:
    began = time.perf_counter()
    load_at_start = os.getloadavg()
    url = ensure_database()
    log(f"fresh schema on {settings.DATABASES['default']['NAME']}")
    fresh_schema()
    settings.CARTIMAGE["MAX_LINE_QUANTITY"] = HUGE
    make_products()
    raw_redis = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))

    log("building carts")
    hot_id = three_line_cart()
    naive_read_id = three_line_naive_cart()
    write_id = three_line_cart()
    floor_id = three_line_cart()
    naive_write_id = three_line_naive_cart()
    small_id = build_cart(10, "10-event cart")
    big_id = build_cart(BIG_CART_EVENTS, "10,000-event cart")

    log("measuring reads")
    service.get_cart(hot_id)
    key = image.image_store().data_key(hot_id)  # the payload's own key (entry layout v3)
    assert raw_redis.get(key) is not None, "the hot cart is not in memory"
    sku = SKUS[0]
    sql = {
        "hot": sql_count(lambda: service.get_cart(hot_id)),
        "naive_read": sql_count(lambda: naive.get_cart(naive_read_id)),
        "add": sql_count(lambda: service.add_line(write_id, sku, 1)),
        "naive_add": sql_count(lambda: naive.add_line(naive_write_id, sku, 1)),
    }
    rows = measure(
        [
            Case(
                "hot",
                "1. hot read: service.get_cart (3 lines)",
                lambda: service.get_cart(hot_id),
                20_000,
            ),
            Case(
                "floor_read",
                "2. floor: redis-py GET of the payload + orjson.loads",
                lambda: orjson.loads(raw_redis.get(key)),
                20_000,
            ),
            Case(
                "naive_read",
                "3. naive ORM read: naivecart.get_cart (2 queries)",
                lambda: naive.get_cart(naive_read_id),
                5_000,
            ),
        ]
    )
    log("measuring writes")
    floor = WriteFloor(url, floor_id)
    try:
        rows |= measure(
            [
                Case(
                    "add",
                    "4. add_line on an existing line",
                    lambda: service.add_line(write_id, sku, 1),
                    3_000,
                ),
                Case(
                    "floor_write",
                    "5. floor: psycopg txn (UPDATE header, INSERT event, UPDATE line)",
                    floor,
                    3_000,
                ),
                Case(
                    "naive_add",
                    "6. naive ORM add: naivecart.add_line on an existing line",
                    lambda: naive.add_line(naive_write_id, sku, 1),
                    3_000,
                ),
            ]
        )
    finally:
        floor.close()
    log("measuring cold restores")
    restores = []
    for source in ("rows", "events"):
        for label, cart_id, events in (("small", small_id, 10), ("big", big_id, BIG_CART_EVENTS)):

            def use(source: str = source) -> None:
                settings.CARTIMAGE["REHYDRATE_FROM"] = source

            def evict(cart_id: str = cart_id) -> None:
                image.evict(cart_id)

            def read(cart_id: str = cart_id) -> None:
                service.get_cart(cart_id)

            use()
            sql[f"{label}_{source}"] = sql_count(read, setup=evict)
            number = 7 if label == "small" else 8
            restores.append(
                Case(
                    f"{label}_{source}",
                    f"{number}. cold restore, {events:,} events, from {source}",
                    read,
                    1_000,
                    setup=evict,
                    prepare=use,
                )
            )
    rows |= measure(restores)
    settings.CARTIMAGE["REHYDRATE_FROM"] = "rows"

    # ------------------------------------------------------------ report
    every = settings.CARTIMAGE["SNAPSHOT_EVERY"]
    tail = BIG_CART_EVENTS % every if every > 0 else BIG_CART_EVENTS
    hot, floor_read, naive_read = rows["hot"], rows["floor_read"], rows["naive_read"]
    add, floor_write, naive_add = rows["add"], rows["floor_write"], rows["naive_add"]
    hot.compared = (
        f"{ratio(hot, floor_read):.2f}x floor (2); {ratio(naive_read, hot):.1f}x faster than (3)"
    )
    floor_read.compared = "floor of (1)"
    naive_read.compared = f"{ratio(naive_read, hot):.1f}x (1)"
    add.compared = (
        f"{ratio(add, floor_write):.2f}x floor (5); {ratio(naive_add, add):.2f}x faster than (6)"
    )
    floor_write.compared = "floor of (4)"
    naive_add.compared = f"{ratio(naive_add, add):.2f}x (4)"
    for source in ("rows", "events"):
        small, big = rows[f"small_{source}"], rows[f"big_{source}"]
        small.compared = f"baseline of (8) from {source}"
        big.compared = f"{ratio(big, small):.2f}x (7) from {source}"

    out = [
        "# cartimage benchmark",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, one process, sequential calls;"
        f" DEBUG={settings.DEBUG}, BENCH_SCALE={SCALE:g}. The rows of each comparison"
        f" (1-3, 4-6, 7-8) are measured interleaved in {ROUNDS} rounds.",
        "",
        "| operation | median µs | p99 µs | ops/s | compared with |",
        "|---|---:|---:|---:|---|",
    ]
    order = [
        "hot",
        "floor_read",
        "naive_read",
        "add",
        "floor_write",
        "naive_add",
        "small_rows",
        "big_rows",
        "small_events",
        "big_events",
    ]
    for name in order:
        row = rows[name]
        out.append(
            f"| {row.name} | {row.median_us:,.1f} | {row.p99_us:,.1f} | {row.ops:,.0f} |"
            f" {row.compared} |"
        )
    out += [
        "",
        "ops/s = calls / total timed seconds (one thread). Cold restores: the entry is evicted"
        " (untimed) before each timed get_cart, which rehydrates and refills it.",
        f"SQL statements per call (median; BEGIN/COMMIT not counted): hot read {sql['hot']},"
        f" naive read {sql['naive_read']}, add_line {sql['add']}, naive add {sql['naive_add']},"
        f" cold restore from rows {sql['small_rows']} / {sql['big_rows']}, from events"
        f" {sql['small_events']} / {sql['big_events']} (10 / 10,000 events).",
        f"From events, the 10,000-event cart loads its latest snapshot (one every {every}"
        f" events) and replays the {tail} event(s) after it; the 10-event cart replays all 10"
        f" (a cart {every - 1} events past its last snapshot would replay those too).",
        "",
        "## Targets",
        "",
        check(
            ratio(hot, floor_read) <= 1.5,
            f"hot read within 1.5x of the floor: {ratio(hot, floor_read):.2f}x",
        ),
        check(
            ratio(naive_read, hot) >= 10,
            f"hot read at least 10x faster than the naive read: {ratio(naive_read, hot):.1f}x",
        ),
        check(
            ratio(naive_add, add) >= 3,
            f"add_line at least 3x faster than the naive add: {ratio(naive_add, add):.2f}x",
        ),
    ]
    for source in ("rows", "events"):
        r = ratio(rows[f"big_{source}"], rows[f"small_{source}"])
        out.append(
            check(
                r <= 1.5,
                f"10,000-event restore within 1.5x of the 10-event one ({source}): {r:.2f}x",
            )
        )
    # Issue 4's numbers: bulk warming throughput and memory per cached 3-line cart.
    from bench import warm

    out += ["", *warm.run(hot_id)]
    out += ["", "## Machine", "", *machine(raw_redis, load_at_start)]
    out += ["", f"Total bench time {time.perf_counter() - began:.0f} s.", ""]
    text = "\n".join(out)
    print(text)
    RESULTS.write_text(text)
    return 0


if __name__ == "__main__":
    # Every tool the whole run needs, checked before minutes of work (make bench installs
    # wrk from Debian's packages; run by hand, this names what is missing).
    from bench.http_bench import WRK

    if shutil.which(WRK) is None:
        sys.exit(f"FATAL: {WRK} not found: install Debian's wrk package (make bench does)")
    status = main()
    # The HTTP benchmark (gunicorn + wrk) appends its own section to results.md.
    from bench import http_bench

    sys.exit(status or http_bench.main())
