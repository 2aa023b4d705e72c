"""Commit batching under load: synchronous_commit and commit_delay for add_line, P processes.

A command's floor is one PostgreSQL commit (a WAL flush). P forked processes, each with its
own database connection, call service.add_line on random carts of 1,000 for a fixed time, per
configuration of the session settings (set through the connection's OPTIONS, on the bench's
own connections only: nothing here changes the app's defaults). Runs on the bench database;
BENCH_COMMIT_SECONDS is the time per configuration (default 3.5, in two interleaved rounds).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import statistics
import sys
import time
from array import array
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from django.conf import settings
from django.db import connection

from bench.run import HUGE, SKUS, ensure_database, fresh_schema, log, make_products
from cartsvc import domain as d
from cartsvc import image, service, verify

CARTS = 1000
PROCESSES = (1, 4, 16)
ROUNDS = 2  # each configuration's time in two rounds, interleaved with the others (drift)
SECONDS = float(os.environ.get("BENCH_COMMIT_SECONDS", "3.5"))
PROBE_ROUNDS, PROBE_INSERTS = 5, 40
PROBE_TABLE = "commitbench_fsync_probe"


@dataclass(frozen=True)
class Setting:
    """One configuration of the session: synchronous_commit, commit_delay, commit_siblings."""

    sync: str
    delay_us: int
    siblings: int

    @property
    def options(self) -> str:
        return (
            f"-c synchronous_commit={self.sync} -c commit_delay={self.delay_us}"
            f" -c commit_siblings={self.siblings}"
        )

    @property
    def shown(self) -> tuple[str, str, str]:
        return (self.sync, str(self.delay_us), str(self.siblings))


BASELINE = Setting("on", 0, 5)  # PostgreSQL's defaults, and the app's
GRID = (
    BASELINE,
    Setting("off", 0, 5),
    Setting("local", 0, 5),
    Setting("on", 200, 5),
    Setting("on", 200, 1),
    Setting("on", 1000, 1),
)


@dataclass
class Result:
    latencies: array = field(default_factory=lambda: array("d"))
    adds: int = 0
    seconds: float = 0.0
    wal_syncs: int = 0
    other_commits: int = 0
    round_rates: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.adds / self.seconds if self.seconds else 0.0

    def percentile_us(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * share))] * 1e6


# ---------------------------------------------------------------- one process of the load


def worker(
    send: Connection, setting: Setting, seed: int, go: Event, seconds: float, carts: list[str]
) -> None:
    """Forked: the Django set up in the parent, a connection of its own with `setting`."""
    options = connection.settings_dict["OPTIONS"]
    options["options"] = f"{options.get('options', '')} {setting.options}".strip()
    with connection.cursor() as cursor:
        # What the server says the session runs with, checked by the parent.
        cursor.execute(
            "SELECT current_setting('synchronous_commit'), current_setting('commit_delay'),"
            " current_setting('commit_siblings')"
        )
        send.send_bytes(",".join(cursor.fetchone()).encode())
    rng = random.Random(seed)
    service.add_line(rng.choice(carts), SKUS[0], 1)  # warm: the cart lock's scripts loaded
    go.wait()
    found = array("d")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        service.add_line(rng.choice(carts), SKUS[0], 1)
        found.append(time.perf_counter() - started)
    connection.close()  # the backend exits now and reports its WAL statistics
    send.send_bytes(found.tobytes())


def wal_syncs(admin: psycopg.Connection) -> tuple[int, int]:
    """WAL flushes so far, cluster-wide (pg_stat_wal, PostgreSQL 14+), and the commits of the
    other databases (their flushes are in the count: how much the count is not ours)."""
    row = admin.execute(
        "SELECT (SELECT wal_sync FROM pg_stat_wal), (SELECT coalesce(sum(xact_commit), 0)"
        " FROM pg_stat_database WHERE datname IS DISTINCT FROM current_database())"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def run_load(
    admin: psycopg.Connection,
    setting: Setting,
    processes: int,
    seconds: float,
    carts: list[str],
    round_number: int,
) -> tuple[array, float, int, int]:
    """P processes adding lines for `seconds`: every latency, the wall time, WAL flushes and
    the other databases' commits meanwhile."""
    context = multiprocessing.get_context("fork")
    connection.close()  # a child must open its own, never share the parent's socket
    go = context.Event()
    pipes, children = [], []
    for number in range(processes):
        receive, send = context.Pipe(duplex=False)
        # Seeded: the same carts in the same order on every run of the bench.
        seed = ((round_number * 100 + GRID.index(setting)) * 100 + processes) * 100 + number
        child = context.Process(
            target=worker, args=(send, setting, seed, go, seconds, carts), daemon=True
        )
        child.start()
        send.close()
        pipes.append(receive)
        children.append(child)
    for receive in pipes:
        said = receive.recv_bytes().decode().split(",")
        if tuple(said) != setting.shown:
            sys.exit(f"FATAL: the session runs with {said}, not {setting.shown}")
    before = wal_syncs(admin)
    started = time.perf_counter()
    go.set()
    latencies = array("d")
    for receive in pipes:
        latencies.frombytes(receive.recv_bytes())
    elapsed = time.perf_counter() - started
    for child in children:
        child.join()
    time.sleep(0.05)  # the exited backends' statistics reach pg_stat_wal
    after = wal_syncs(admin)
    return latencies, elapsed, after[0] - before[0], after[1] - before[1]


# ---------------------------------------------------------------- the machine's commit cost


def fsync_probe(admin: psycopg.Connection) -> dict[str, float]:
    """Median µs of one autocommit INSERT with synchronous_commit on and off, interleaved."""
    admin.execute(f"CREATE TABLE IF NOT EXISTS {PROBE_TABLE} (id bigserial PRIMARY KEY, n int)")
    found: dict[str, list[float]] = {"on": [], "off": []}
    try:
        for _round in range(PROBE_ROUNDS):
            for mode in found:
                admin.execute(f"SET synchronous_commit = {mode}")
                for n in range(PROBE_INSERTS):
                    started = time.perf_counter()
                    admin.execute(f"INSERT INTO {PROBE_TABLE} (n) VALUES (%s)", [n])
                    found[mode].append(time.perf_counter() - started)
    finally:
        admin.execute("RESET synchronous_commit")
        admin.execute(f"DROP TABLE IF EXISTS {PROBE_TABLE}")
    return {mode: statistics.median(values) * 1e6 for mode, values in found.items()}


# ---------------------------------------------------------------- the report


def make_carts() -> list[str]:
    carts = []
    for _number in range(CARTS):
        cart = service.open_cart()
        service.add_line(cart.id, SKUS[0], 1)
        carts.append(cart.id)
    return carts


def measure(admin: psycopg.Connection, carts: list[str]) -> dict[tuple[Setting, int], Result]:
    results = {(s, p): Result() for p in PROCESSES for s in GRID}
    for round_number in range(1, ROUNDS + 1):
        for processes in PROCESSES:
            for setting in GRID:
                log(f"round {round_number}: P={processes} {setting.options}")
                latencies, elapsed, syncs, others = run_load(
                    admin, setting, processes, SECONDS / ROUNDS, carts, round_number
                )
                result = results[(setting, processes)]
                result.latencies.extend(latencies)
                result.adds += len(latencies)
                result.seconds += elapsed
                result.wal_syncs += syncs
                result.other_commits += others
                result.round_rates.append(len(latencies) / elapsed)
    return results


def table(results: dict[tuple[Setting, int], Result]) -> list[str]:
    out = [
        "| synchronous_commit | commit_delay µs | commit_siblings | P | adds/s | vs baseline "
        "| p50 µs | p99 µs | WAL flushes | flushes per 100 adds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for processes in PROCESSES:
        base = results[(BASELINE, processes)].rate
        for setting in GRID:
            r = results[(setting, processes)]
            per = 100 * r.wal_syncs / r.adds if r.adds else 0.0
            out.append(
                f"| {setting.sync} | {setting.delay_us} | {setting.siblings} | {processes} "
                f"| {r.rate:,.0f} | {r.rate / base - 1:+.0%} | {r.percentile_us(0.5):,.0f} "
                f"| {r.percentile_us(0.99):,.0f} | {r.wal_syncs:,} | {per:.0f} |"
            )
    return out


def noise(results: dict[tuple[Setting, int], Result]) -> float:
    """The largest spread between the two rounds of one configuration (a noise yardstick)."""
    spreads = [
        abs(r.round_rates[0] - r.round_rates[-1]) / max(r.round_rates)
        for r in results.values()
        if len(r.round_rates) > 1 and max(r.round_rates)
    ]
    return statistics.median(spreads) if spreads else 0.0


def meaning(
    results: dict[tuple[Setting, int], Result], probe: dict[str, float], standbys: str
) -> list[str]:
    """The paragraph: computed from this run's numbers, so it says what this host showed."""
    low, high = PROCESSES[0], PROCESSES[-1]
    rate = {key: r.rate for key, r in results.items()}
    off = {p: rate[(GRID[1], p)] / rate[(BASELINE, p)] - 1 for p in (low, high)}
    local = {p: rate[(GRID[2], p)] / rate[(BASELINE, p)] - 1 for p in (low, high)}
    delays = [s for s in GRID if s.delay_us]
    best = max(delays, key=lambda s: rate[(s, high)])
    gain = rate[(best, high)] / rate[(BASELINE, high)] - 1
    base_p50 = results[(BASELINE, low)].percentile_us(0.5)
    delay_p1 = {s: results[(s, low)].percentile_us(0.5) - base_p50 for s in delays}
    spread = noise(results)
    flush_cost = probe["on"] - probe["off"]
    per = {
        p: 100 * results[(BASELINE, p)].wal_syncs / max(1, results[(BASELINE, p)].adds)
        for p in (low, high)
    }
    helps = gain > max(0.05, 2 * spread)
    verdict = (
        f"**helps** here: the best of them (commit_delay {best.delay_us} µs, commit_siblings "
        f"{best.siblings}) gives {gain:+.0%} adds/s at P={high}, more than twice the rounds' "
        f"noise ({spread:.0%})"
        if helps
        else f"**shows no gain beyond the noise** here: the best of them (commit_delay "
        f"{best.delay_us} µs, commit_siblings {best.siblings}) gives {gain:+.0%} adds/s at "
        f"P={high}, not more than twice the rounds' noise ({spread:.0%}); PostgreSQL's own "
        "group commit (above) is there without it"
    )
    return [
        f"One autocommit INSERT costs {probe['on']:,.0f} µs with synchronous_commit on and "
        f"{probe['off']:,.0f} µs with it off (median of {PROBE_ROUNDS * PROBE_INSERTS} each, "
        f"interleaved): the WAL flush on this host is ~{flush_cost:,.0f} µs of a commit.",
        "",
        f"synchronous_commit=off gives {off[low]:+.0%} adds/s at P={low} and {off[high]:+.0%} "
        f"at P={high}. `local` gives {local[low]:+.0%} and {local[high]:+.0%}: "
        + (
            "with no synchronous standby (synchronous_standby_names empty) it does what `on` "
            "does, so this difference is noise; it only matters with synchronous standbys. "
            if not standbys
            else f"synchronous_standby_names is {standbys!r} here, and `local` does not wait "
            "for them. "
        )
        + "With the defaults, the WAL was flushed "
        f"{per[low]:.0f} times per 100 adds at P={low} and {per[high]:.0f} at P={high} "
        "(below 100: commits that arrived during a flush shared the next one, PostgreSQL's "
        "own group commit; the counts are cluster-wide: other databases committed "
        f"{sum(r.other_commits for r in results.values()):,} transactions during the runs, "
        "and the flushes some of them needed are in the counts). "
        f"commit_delay {verdict}. At P={low} a delay costs "
        + ", ".join(f"{delay_p1[s]:+,.0f} µs p50 ({s.delay_us} µs/{s.siblings})" for s in delays)
        + " (with commit_siblings above the active transactions it never sleeps). "
        f"The rounds of one configuration differ by {spread:.0%} (median): smaller "
        "differences than that are not findings. From P="
        f"{low} to P={high} the baseline goes from {rate[(BASELINE, low)]:,.0f} to "
        f"{rate[(BASELINE, high)]:,.0f} adds/s while its p50 goes from {base_p50:,.0f} to "
        f"{results[(BASELINE, high)].percentile_us(0.5):,.0f} µs, of which one flush is "
        f"~{flush_cost:,.0f} µs: the rest is waiting, on {os.cpu_count()} CPUs shared by the "
        "app processes, PostgreSQL and Redis.",
    ]


CAVEAT = """\
**Durability stays on.** The app sets no synchronous_commit and no commit_delay (PostgreSQL's
defaults: on, 0); this bench sets them per session on its own connections. Choosing
`synchronous_commit=off` for the cart database (in postgresql.conf, or per role) trades this:
a PostgreSQL crash (or the machine's; not an app crash, and not a clean shutdown) can lose the
last ~3 x wal_writer_delay (600 ms at the default 200 ms) of commits that were already
acknowledged; it never corrupts the database (the lost commits are lost whole, in commit order).

With the memory image the loss is not only the database's. A command publishes its new state
to Redis after its commit returns (image._conclude -> _publish -> settle "set"), so after
such a crash Redis can hold a cart at version N+1 while the database, restarted, is at N:
- Reads serve N+1 from Redis (HIT) for as long as the entry lives: nothing invalidates it.
  The lease (reconcile) only drops carts in the dirty list, and a lost commit had its lock;
  the epoch is Redis's replication id, which a PostgreSQL restart does not change.
- The next write to the cart takes the lock with the cached N+1, decides from it and commits
  `UPDATE ... WHERE version = N+1`, which matches no row: store.Conflict, the entry is
  dropped (settle "drop") and the command is retried from the rows (version N). It commits a
  new, different version N+1 and publishes it. The acknowledged lost command stays lost.
- Then "(cart id, version) names one committed state forever" (image._states) no longer
  holds: another process that still keeps the lost N+1 decoded in its local state cache gets
  HIT_SAME for the new N+1 and serves the lost state; if it writes, acquire answers
  ACQUIRED_SAME, it decides from the lost state, and the version check (N+1 = N+1) lets it
  commit events and row changes computed from a state the database never had.
`manage.py verify_carts --all` (there is no verify_image command) reports an entry ahead of
the log ("memory holds version N+1 but the event log ends at version N: evict it") and, by
comparing memory with the log replayed to the entry's version, a same-version entry that
differs; `--repair` evicts it. It can not find an entry that was already dropped and rewritten
(the lost command leaves no trace), nor a process's local decoded copy (not in Redis), nor
what such a copy wrote afterwards (events carry absolute quantities, so rows, log and memory
agree again). So after a PostgreSQL crash with synchronous_commit=off, empty the image (every
key under the CART_KEY_PREFIX; image.clear() does it, no management command does today) and
restart the app's processes (their decoded copies) before serving again."""


def quantity(cart: d.Cart) -> int:
    return cart.lines[0].quantity


def lost_commit() -> list[str]:
    """The crash simulated on one cart: its last acknowledged commit taken out of the tables
    by hand (what a PostgreSQL crash with synchronous_commit=off does), then what the image
    and verify_carts do. Process A keeps its decoded copy; process B, with none, is played
    by this process with that copy put aside."""
    cart_id = service.open_cart().id
    service.add_line(cart_id, SKUS[0], 1)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT version, updated_at, last_activity_at FROM cartsvc_cart WHERE id = %s",
            [cart_id],
        )
        header = cursor.fetchone()
    lost = service.add_line(cart_id, SKUS[0], 5)
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM cartsvc_cartevent WHERE cart_id = %s AND version = %s",
            [cart_id, lost.version],
        )
        cursor.execute(
            "UPDATE cartsvc_cart SET version = %s, updated_at = %s, last_activity_at = %s"
            " WHERE id = %s",
            [*header, cart_id],
        )
        cursor.execute("UPDATE cartsvc_cartline SET quantity = 1 WHERE cart_id = %s", [cart_id])
    read = service.get_cart(cart_id)
    found_then = [m.detail for m in verify.verify_cart(cart_id)]
    copy_of_a = image._states.pop(cart_id)
    by_b = service.add_line(cart_id, SKUS[0], 1)
    found_after_b = [m.detail for m in verify.verify_cart(cart_id)]
    image._states[cart_id] = copy_of_a
    read_by_a = service.get_cart(cart_id)
    by_a = service.add_line(cart_id, SKUS[0], 1)
    found_after_a = [m.detail for m in verify.verify_cart(cart_id)]
    found = [f"“{detail}”" for detail in found_then] or ["nothing"]
    return [
        "Simulated (the lost commit's rows restored by hand, not a real crash), one line at "
        f"quantity 1, an acknowledged add of 5 lost: a read then answers version {read.version}"
        f" quantity {quantity(read)} from Redis; verify_carts finds {'; '.join(found)}. "
        f"Process B adds 1: version {by_b.version}, quantity {quantity(by_b)}; verify_carts "
        f"finds {len(found_after_b)} mismatch(es). Process A (its copy of the lost state) reads "
        f"version {read_by_a.version} quantity {quantity(read_by_a)}, then adds 1: version "
        f"{by_a.version}, quantity {quantity(by_a)} (the lost 5 are back, recorded as the "
        f"result of an add of 1); verify_carts finds {len(found_after_a)} mismatch(es)."
    ]


def main() -> int:
    began = time.perf_counter()
    ensure_database()
    fresh_schema()
    settings.CARTIMAGE["MAX_LINE_QUANTITY"] = HUGE
    make_products()
    log(f"building {CARTS} carts")
    carts = make_carts()
    with psycopg.connect(settings.DATABASE_URL, autocommit=True) as admin:
        lost = lost_commit()
        probe = fsync_probe(admin)
        results = measure(admin, carts)
        server = admin.execute(
            "SELECT current_setting('wal_sync_method'), current_setting('wal_writer_delay'),"
            " current_setting('synchronous_standby_names'), current_setting('server_version')"
        ).fetchone()
    assert server is not None
    method, writer_delay, standbys, version = server
    print(
        f"service.add_line on random carts of {CARTS:,} (one line each), P forked processes "
        f"with a database connection each, {SECONDS:g} s per configuration in {ROUNDS} "
        f"interleaved rounds; PostgreSQL {version}, wal_sync_method {method}, "
        f"wal_writer_delay {writer_delay}, synchronous_standby_names "
        f"{standbys or '(none)'}; {os.cpu_count()} CPUs, load average at the end "
        f"{os.getloadavg()[0]:.2f}."
    )
    print()
    print("\n".join(table(results)))
    print()
    print("\n".join(meaning(results, probe, standbys)))
    print()
    print(CAVEAT)
    print()
    print("\n".join(lost))
    print()
    print(f"Total bench time {time.perf_counter() - began:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
