"""Storefront mix: shoppers' visits over 10,000 carts, the memory image against the naive ORM.

Called from http_bench.run() against its gunicorn. SHOPPERS concurrent shoppers (asyncio,
stdlib only) each repeat a *visit* to one of SLOTS cart slots per engine, each slot pre-opened
empty. A visit picks its slot with a Zipf skew (weight 1/rank, s=1.0: the first slot gets
about 10% of the visits, half of them go to the first 100 or so), drawing again while another
shopper is in the drawn slot; a slot whose cart was checked out first opens a new cart (POST
/carts) and keeps its id. Then: GET the cart; twice (POST add 1 of a random one of the three
SKUs, then GET); PATCH a random line of the last body to a quantity of 1 to 3, then GET; with
probability 0.2 POST the discount code BENCH10 (10% off, re-applying it changes nothing), then
GET; with probability 0.1 POST checkout. About 7.6 requests a visit.

Every request opens its own connection (gunicorn's sync workers answer `Connection: close`,
as wrk finds too) and sends a prebuilt HTTP/1.1 request. Each shopper draws from its own
random.Random(SEED + shopper), and each engine's shoppers start from the same seeds, so runs
are repeatable. The engines run in interleaved rounds after a warm-up each; latency is per
request, from connecting to the answer's last byte. Every non-2xx answer or failed exchange
is an error (the visit stops there and its slot gets a new cart).
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

import orjson

from bench.naivecart.models import NaiveCart
from carts.models import DiscountCode
from cartsvc import service

HOST = "127.0.0.1"
SLOTS = 10_000
SHOPPERS = 16
SEED = 20_261_205
ZIPF_S = 1.0
ADD_AGAIN = 2
DISCOUNT_P = 0.2
CHECKOUT_P = 0.1
CODE = "BENCH10"
WARMUP = 2.0
ROUNDS = 3
TIMEOUT = 10.0
MAX_ERRORS_SHOWN = 5

# Cumulative Zipf weights over the slots, for a draw by bisect.
CUMULATIVE = list(itertools.accumulate(1 / rank**ZIPF_S for rank in range(1, SLOTS + 1)))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Engine:
    key: str
    name: str
    prefix: str  # the API's root: both answer the same paths below it


ENGINES = (
    Engine("ours", "memory image (/api/v1)", "/api/v1"),
    Engine("naive", "naive ORM (/bench/naive)", "/bench/naive"),
)


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()


def _send(method: str, path: str, body: object) -> bytes:
    data = orjson.dumps(body)
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


class Slot:
    """One shopper's cart, as the storefront remembers it: the id and its requests."""

    def __init__(self, prefix: str, skus: tuple[str, ...], cart_id: str) -> None:
        self.prefix, self.skus = prefix, skus
        self.open(cart_id)

    def open(self, cart_id: str | None) -> None:
        self.cart_id = cart_id
        if cart_id is None:
            return
        cart = f"{self.prefix}/carts/{cart_id}"
        self.get = _get(cart)
        self.adds = [_send("POST", f"{cart}/lines", {"sku": s, "quantity": 1}) for s in self.skus]
        self.discount = _send("POST", f"{cart}/discount", {"code": CODE})
        self.checkout = _send("POST", f"{cart}/checkout", {})

    def set_quantity(self, line_id: int, quantity: int) -> bytes:
        path = f"{self.prefix}/carts/{self.cart_id}/lines/{line_id}"
        return _send("PATCH", path, {"quantity": quantity})


@dataclass
class Tally:
    visits: int = 0
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    worker_cpu: float = 0.0
    latencies: list[float] = field(default_factory=list)  # ms, every answered request
    shown: list[str] = field(default_factory=list)


@dataclass
class MixResult:
    name: str
    visits: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    worker_cpu: float
    errors: int
    warmup_errors: int
    shown: list[str]

    @property
    def visits_per_s(self) -> float:
        return self.visits / self.seconds

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_us(self) -> float:
        return self.worker_cpu / max(self.requests, 1) * 1e6


class Failed(Exception):
    """One request of a visit failed (non-2xx, or the exchange itself)."""


def _field(body: bytes, name: str) -> object:
    """A field of a cart body; a body that is not one fails the visit."""
    try:
        return orjson.loads(body)[name]
    except (ValueError, KeyError, TypeError) as exc:
        raise Failed(f"not a cart body: {body[:200]!r}") from exc


# ---------------------------------------------------------------- the data


def make_data(skus: tuple[str, ...]) -> dict[str, list[Slot]]:
    """The discount code, and SLOTS empty open carts per engine."""
    DiscountCode.objects.update_or_create(
        code=CODE,
        defaults={
            "kind": DiscountCode.PERCENT,
            "value": Decimal(10),
            "min_subtotal": Decimal(0),
            "active": True,
        },
    )
    began = time.perf_counter()
    ours = [Slot("/api/v1", skus, service.open_cart().id) for _ in range(SLOTS)]
    made = NaiveCart.objects.bulk_create([NaiveCart() for _ in range(SLOTS)], batch_size=2000)
    log(f"  storefront mix: {SLOTS:,} carts per engine in {time.perf_counter() - began:.0f} s")
    return {"ours": ours, "naive": [Slot("/bench/naive", skus, str(c.id)) for c in made]}


# ---------------------------------------------------------------- the load


class Shopper:
    def __init__(self, number: int, port: int, slots: list[Slot], busy: set[int], tally: Tally):
        self.rng = random.Random(SEED + number)
        self.port, self.slots, self.busy, self.tally = port, slots, busy, tally

    async def call(self, request: bytes) -> bytes:
        """Send one request on a new connection; the answer's body (2xx) or Failed."""
        began = time.perf_counter()
        try:
            data = await asyncio.wait_for(self._exchange(request), TIMEOUT)
        except (OSError, TimeoutError) as exc:
            self.tally.requests += 1
            raise Failed(f"{request.split(b' ', 2)[:2]}: {exc!r}") from exc
        self.tally.requests += 1
        self.tally.latencies.append((time.perf_counter() - began) * 1000)
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head[9:12]) if head.startswith(b"HTTP/1.") and len(head) >= 12 else 0
        if not 200 <= status < 300:
            raise Failed(f"{request.split(b' ', 2)[:2]}: {head[:12]!r} {body[:200]!r}")
        return body

    async def _exchange(self, request: bytes) -> bytes:
        reader, writer = await asyncio.open_connection(HOST, self.port)
        try:
            writer.write(request)
            return await reader.read()  # to EOF: the server closes after its answer
        finally:
            writer.close()

    def pick(self) -> int:
        total = CUMULATIVE[-1]
        while True:
            index = bisect.bisect_left(CUMULATIVE, self.rng.random() * total)
            if index not in self.busy:
                return index

    async def visit(self, slot: Slot, prefix: str) -> None:
        rng = self.rng
        if slot.cart_id is None:
            body = await self.call(_send("POST", f"{prefix}/carts", {}))
            slot.open(str(_field(body, "id")))
        await self.call(slot.get)
        for _ in range(ADD_AGAIN):
            await self.call(slot.adds[rng.randrange(len(slot.adds))])
            body = await self.call(slot.get)
        lines = _field(body, "lines")
        if not isinstance(lines, list) or not lines:
            raise Failed(f"no lines after two adds: {body[:200]!r}")
        line = lines[rng.randrange(len(lines))]["id"]
        await self.call(slot.set_quantity(line, rng.randint(1, 3)))
        await self.call(slot.get)
        # Both draws are made on every visit, so the random sequence does not depend on them.
        discount, checkout = rng.random() < DISCOUNT_P, rng.random() < CHECKOUT_P
        if discount:
            await self.call(slot.discount)
            await self.call(slot.get)
        if checkout:
            await self.call(slot.checkout)
            slot.open(None)

    async def run(self, prefix: str, deadline: float) -> None:
        while time.perf_counter() < deadline:
            index = self.pick()
            self.busy.add(index)
            slot = self.slots[index]
            try:
                await self.visit(slot, prefix)
                self.tally.visits += 1
            except Failed as exc:
                self.tally.errors += 1
                if len(self.tally.shown) < MAX_ERRORS_SHOWN:
                    self.tally.shown.append(str(exc))
                slot.open(None)  # its state is unknown now: start again with a new cart
            finally:
                self.busy.discard(index)


async def _round(
    engine: Engine, shoppers: list[Shopper], seconds: float, cpu: Callable[[], float]
) -> None:
    tally = shoppers[0].tally
    before, began = cpu(), time.perf_counter()
    deadline = began + seconds
    await asyncio.gather(*(s.run(engine.prefix, deadline) for s in shoppers))
    # The round lasts until the last visit begun before the deadline is done.
    tally.seconds += time.perf_counter() - began
    tally.worker_cpu += cpu() - before


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def measure(
    port: int, slots: dict[str, list[Slot]], seconds: float, cpu: Callable[[], float]
) -> dict[str, MixResult]:
    """A warm-up per engine, then ROUNDS interleaved rounds of seconds / ROUNDS each."""
    busy: dict[str, set[int]] = {e.key: set() for e in ENGINES}
    warm = {e.key: Tally() for e in ENGINES}
    tallies = {e.key: Tally() for e in ENGINES}

    def crowd(engine: Engine, tally: Tally) -> list[Shopper]:
        # Each engine's shoppers start from the same seeds; each round carries them on.
        return [
            Shopper(n, port, slots[engine.key], busy[engine.key], tally) for n in range(SHOPPERS)
        ]

    shoppers = {}
    for engine in ENGINES:
        shoppers[engine.key] = crowd(engine, warm[engine.key])
        asyncio.run(_round(engine, shoppers[engine.key], WARMUP, cpu))
        for shopper in shoppers[engine.key]:
            shopper.tally = tallies[engine.key]
    for _ in range(ROUNDS):
        for engine in ENGINES:
            asyncio.run(_round(engine, shoppers[engine.key], seconds / ROUNDS, cpu))
    results = {}
    for engine in ENGINES:
        tally, warmed = tallies[engine.key], warm[engine.key]
        result = MixResult(
            f"storefront mix ({engine.name})",
            tally.visits,
            tally.requests,
            tally.seconds,
            _percentile(tally.latencies, 0.50),
            _percentile(tally.latencies, 0.99),
            tally.worker_cpu,
            tally.errors + warmed.errors,
            warmed.errors,
            warmed.shown + tally.shown,
        )
        log(
            f"  {result.name}: {result.visits_per_s:,.1f} visits/s, {result.rps:,.0f} req/s,"
            f" p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms,"
            f" worker CPU {result.cpu_us:,.0f} us/request, {result.errors} errors"
        )
        for shown in result.shown:
            log(f"    error: {shown}")
        results[engine.key] = result
    return results
