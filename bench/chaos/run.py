"""`make chaos`: load on several gunicorn workers under a seeded fault schedule, then the check.

It starts everything it uses and removes it after: a fresh PostgreSQL database on the
machine's server, its own redis-server(s) on free ports (--topology), gunicorn with the
deployed configuration. Clients open carts, add lines, change quantities, remove lines and
read carts over the JSON API, with an Idempotency-Key on every mutation, retried with the
same key on a documented 503 or no answer. Every attempt is recorded (bench/chaos/history.py's
format); at the end `manage.py verify_carts --all` runs, the event log and the applied keys
are read, and the checker prints a table per fault. Exit status: 0 clean, 1 a violation,
3 the run proves nothing (a fault did not fire, a client crashed).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

if __package__ in (None, ""):  # run as a script: python bench/chaos/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.chaos.faults import COMMON_FAULTS, Fault, FaultDidNotFire, Slot, schedule
from bench.chaos.history import Final, Report, check, dump_finals, dump_jsonl
from bench.chaos.load import Load
from bench.chaos.servers import ROOT, Database, Gunicorn
from bench.chaos.topology import TOPOLOGIES, Topology, topology

CALM = "calm"
SETUP = "setup"
FINAL_READS = "final reads"


def log(message: str) -> None:
    print(message, flush=True)


@dataclass
class Fired:
    """What each fault of the schedule did (its evidence), or why it did not fire."""

    evidence: dict[str, str] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


@dataclass
class Outcome:
    report: Report
    fired: Fired
    crashed_clients: list[str]
    out: Path

    @property
    def status(self) -> int:
        if self.fired.failures or self.crashed_clients:
            return 3
        return 0 if self.report.ok else 1


class Run:
    """The servers of one run, the load on them and the phase (fault) running now."""

    def __init__(self, args: argparse.Namespace, out: Path) -> None:
        self.args = args
        self.out = out
        self.topology: Topology = topology(args.topology)
        name = f"cartimage_chaos_{os.getpid()}"
        self.database = Database(args.pg_url, name)
        self.phase = SETUP
        self.gunicorn: Gunicorn | None = None
        self.load: Load | None = None
        self.secret_key = os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50)

    # The faults' Target interface.
    def writes_in_flight(self) -> int:
        return self.load.writes_in_flight() if self.load else 0

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.database.url,
            "CART_KEY_PREFIX": "chaos",
            "DJANGO_HTTPS": "0",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": self.secret_key,
            **self.topology.env(),
        }

    def manage(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            check=check,
        )

    def start(self) -> None:
        self.topology.start()
        self.database.create()
        self.manage("migrate", "--noinput", "-v0")
        self.manage("seed_demo", "--products", "24", "--stock", "1000")
        gunicorn = Gunicorn(self.out, self.args.workers, self.env())
        self.gunicorn = gunicorn
        gunicorn.start()

    def stop(self) -> None:
        if self.load is not None:
            self.load.halt()  # after an error in the driver: its clients must not go on
        if self.gunicorn is not None:
            self.gunicorn.stop()
        self.topology.stop()
        if not self.args.keep_db:
            self.database.drop()

    # ------------------------------------------------------------ the load and the faults

    def drive(self, slots: list[Slot]) -> tuple[Fired, list[str]]:
        assert self.gunicorn is not None
        load = self.load = Load(self.gunicorn.port, self.args.seed, lambda: self.phase)
        for _ in range(self.args.carts):
            if load.open_cart("setup") is None:
                raise RuntimeError("a cart could not be opened before any fault")
        self.phase = CALM
        fired = Fired()
        started = time.monotonic()
        load.start(self.args.clients)
        for slot in slots:
            time.sleep(max(0.0, started + slot.start - time.monotonic()))
            self.phase = slot.fault.name
            rng = random.Random(f"{self.args.seed}:{slot.fault.name}")
            log(f"  {time.monotonic() - started:6.1f} s  {slot.fault.name} ...")
            try:
                evidence = slot.fault.act(self, slot.length, rng)
            except FaultDidNotFire as exc:
                fired.failures[slot.fault.name] = str(exc)
                log(f"           DID NOT FIRE: {exc}")
            else:
                fired.evidence[slot.fault.name] = evidence
                log(f"           {evidence}")
            self.phase = CALM
        time.sleep(max(0.0, started + self.args.duration - time.monotonic()))
        crashed = load.stop()
        return fired, crashed

    # ------------------------------------------------------------ the truth afterwards

    def unclean_carts(self) -> tuple[set[str], bool, str]:
        """The carts verify_carts --all names, whether it failed without naming any, its output."""
        done = self.manage("verify_carts", "--all", check=False)
        named = set(re.findall(r"^MISMATCH ([0-9a-f-]+):", done.stdout, re.MULTILINE))
        failed_unnamed = done.returncode != 0 and not named
        return named, failed_unnamed, (done.stdout + done.stderr).strip()

    def finals(self, carts: set[str], unclean: set[str], all_unclean: bool) -> list[Final]:
        """Each cart's event log, and which Idempotency-Key applied each event (see applied)."""
        events: dict[str, list[tuple[int, str, Any]]] = defaultdict(list)
        keys: dict[str, dict[int, str]] = defaultdict(dict)
        ids = sorted(carts)
        with psycopg.connect(self.database.url) as conn:
            for cart, version, kind, data in conn.execute(
                "SELECT cart_id::text, version, type, data FROM cartsvc_cartevent"
                " WHERE cart_id::text = ANY(%s) ORDER BY cart_id, version",
                (ids,),
            ):
                events[cart].append((version, kind, data))
            for cart, key, version in conn.execute(
                "SELECT cart_id::text, key, version FROM cartsvc_idempotencykey"
                " WHERE cart_id::text = ANY(%s)",
                (ids,),
            ):
                keys[cart][version] = key
        return [
            Final(
                cart_id=cart,
                versions=[version for version, _, _ in events[cart]],
                applied=applied(events[cart], keys[cart]),
                verify_clean=not all_unclean and cart not in unclean,
            )
            for cart in ids
        ]


def _option_key(data: Any) -> str | None:
    """The `k` option of a line_added payload (options as an object or as pairs)."""
    options = data.get("options") if isinstance(data, dict) else None
    if isinstance(options, dict):
        return options.get("k")
    for pair in options or ():
        if isinstance(pair, list | tuple) and len(pair) == 2 and pair[0] == "k":
            return pair[1]
    return None


def applied(events: list[tuple[int, str, Any]], keys: dict[int, str]) -> dict[str, int]:
    """How many events each Idempotency-Key applied. An event is the key's whose stored row
    names its version; an event no row names is the add's whose line it made or changed (an
    add carries its key as the line's option `k`, so an add applied twice without its key
    row, which would merge into its own line, is seen as two events of one key)."""
    counts: Counter[str] = Counter()
    line_keys: dict[Any, str] = {}
    for version, kind, data in events:
        tag = None
        if kind == "line_added":
            tag = _option_key(data)
            if tag is not None:
                line_keys[data.get("line_id")] = tag
        elif kind == "quantity_changed" and isinstance(data, dict):
            tag = line_keys.get(data.get("line_id"))
        owner = keys.get(version, tag)
        if owner is not None:
            counts[owner] += 1
    return dict(counts)


# ---------------------------------------------------------------- main


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topology", choices=TOPOLOGIES, default="standalone")
    parser.add_argument("--seed", type=int, default=None, help="the fault schedule's seed")
    parser.add_argument("--duration", type=float, default=150.0, help="seconds of load")
    parser.add_argument("--clients", type=int, default=16, help="client threads")
    parser.add_argument("--carts", type=int, default=40, help="carts opened before the load")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument(
        "--faults", nargs="+", metavar="NAME", help="only these faults (default: all)"
    )
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("CHAOS_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="the PostgreSQL server on which the run creates (and drops) its database",
    )
    parser.add_argument("--out", type=Path, help="where the history goes (default: a new temp dir)")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database after")
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 1_000_000)
    return args


def chosen_faults(run: Run, names: list[str] | None) -> list[Fault]:
    faults = [*run.topology.faults(), *COMMON_FAULTS]
    if names is None:
        return faults
    known = {fault.name: fault for fault in faults}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(f"unknown faults {unknown}: {', '.join(known)}")
    return [known[name] for name in names]


def execute(args: argparse.Namespace) -> Outcome:
    out = args.out or Path(tempfile.mkdtemp(prefix=f"cartimage-chaos-{args.seed}-"))
    out.mkdir(parents=True, exist_ok=True)
    run = Run(args, out)
    slots = schedule(chosen_faults(run, args.faults), args.seed, args.duration)
    log(f"chaos run: topology {args.topology}, seed {args.seed}, {args.duration:.0f} s,")
    log(f"  {args.clients} clients, {args.carts} carts, {args.workers} gunicorn workers")
    log("schedule (seconds from the start of the load):")
    for slot in slots:
        log(f"  {slot}")
    try:
        run.start()
        log(f"servers up (gunicorn on {run.gunicorn.port if run.gunicorn else '?'}); load ...")
        fired, crashed = run.drive(slots)
        assert run.load is not None
        unclean, all_unclean, said = run.unclean_carts()
        log(f"verify_carts --all: {said.splitlines()[-1] if said else '(nothing)'}")
        if unclean or all_unclean:
            log(said)
        # Then every cart read once more, after every acknowledgement: an entry a fault left
        # stale in memory is a stale read here even if no client happened to read it.
        run.phase = FINAL_READS
        run.load.read_all("final")
        carts = set(run.load.carts) | {r.cart_id for r in run.load.history if r.acknowledged}
        finals = run.finals(carts, unclean, all_unclean)
        history = list(run.load.history)
    finally:
        run.stop()
    dump_jsonl(out / "history.jsonl", history)
    dump_finals(out / "finals.json", finals)
    report = check(history, finals)
    return Outcome(report, fired, crashed, out)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    outcome = execute(args)
    report = outcome.report
    log("")
    log(report.table())
    log("")
    for violation in report.violations[:50]:
        log(f"VIOLATION {violation}")
    if len(report.violations) > 50:
        log(f"... and {len(report.violations) - 50} more")
    for name, why in outcome.fired.failures.items():
        log(f"FAULT DID NOT FIRE {name}: {why}")
    if outcome.crashed_clients:
        log(f"CLIENTS DID NOT END WELL: {', '.join(outcome.crashed_clients)}")
    history, finals = outcome.out / "history.jsonl", outcome.out / "finals.json"
    log(f"seed {args.seed}; history written to {history}, finals to {finals}")
    log(f"re-check: python -m bench.chaos.history {history} {finals}")
    verdict = {0: "ok: no violations", 1: f"{len(report.violations)} violations", 3: "void run"}
    log(verdict[outcome.status])
    return outcome.status


if __name__ == "__main__":
    sys.exit(main())
