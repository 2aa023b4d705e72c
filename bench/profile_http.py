"""Where the gunicorn workers' time goes on the cart endpoints: py-spy on the workers under wrk.

Part of `make bench` (bench/profile.md). One gunicorn, as bench/http_bench.py starts it (the
same sync workers, persistent database connections, DEBUG off); for each endpoint wrk drives
16 connections for a few seconds while `py-spy record --subprocesses --idle` samples every
worker (the processes are paused for each sample, so the request rate under the profiler is
lower than the HTTP bench's). Samples taken while a worker handles a request are kept, waits
included (--idle): the summary gives, per endpoint, their share by layer (the frame at the top
of each stack: whose code was running, or which socket call was waiting) and the functions with
the most samples of their own.
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import http_bench  # noqa: E402  (sets Django up)
from cartsvc import service  # noqa: E402

PY_SPY = str(Path(sys.executable).with_name("py-spy"))
SECONDS = int(os.environ.get("BENCH_PROFILE_SECONDS", "8"))
RATE = 200  # samples per second per process
TOP = 12
CARTS = 1000
# A stack's top frame names its layer by the package of its file (py-spy writes paths from
# the import root: "django/urls/resolvers.py:660").
LAYERS = (
    ("cartsvc/", "the cart engine (cartsvc)"),
    ("redis/", "redis-py (waits for Redis included)"),
    ("psycopg/", "psycopg (waits for PostgreSQL included)"),
    ("django/", "Django"),
    ("asgiref/", "Django"),
    ("gunicorn/", "gunicorn (writing the answer included)"),
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def layer(frame: str) -> str:
    path = short(frame).rpartition(" (")[2]
    for package, name in LAYERS:
        if path.startswith(package):
            return name
    return "Python's standard library and the rest"


def short(frame: str) -> str:
    """`name (path:line)` as py-spy writes it, to `name (package/module.py)`."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rpartition(":")[0]
    for cut in ("site-packages/", f"{ROOT}/", "lib/python3.11/"):
        if cut in path:
            path = path.split(cut, 1)[1]
    return f"{name} ({path})"


def summarize(raw: Path) -> tuple[int, collections.Counter[str], collections.Counter[str]]:
    """(samples, samples by layer, samples by top function) of py-spy's raw output."""
    layers: collections.Counter[str] = collections.Counter()
    tops: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames or not count.isdigit():
            continue
        # Only the workers' request handling: the master and idle loops are not requests.
        if not any("handle_request" in f for f in frames):
            continue
        samples = int(count)
        total += samples
        layers[layer(frames[-1])] += samples
        tops[short(frames[-1])] += samples
    return total, layers, tops


def profile(master: int, url: str, script: Path, out: Path) -> int:
    """Requests wrk got answered while py-spy sampled the workers into `out`."""
    spy = subprocess.Popen(
        [
            PY_SPY,
            "record",
            "--pid",
            str(master),
            "--subprocesses",
            "--idle",  # waits on Redis and PostgreSQL are where a request's time goes too
            "--rate",
            str(RATE),
            "--duration",
            str(SECONDS + 2),
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1)  # py-spy attached before the load starts
    requests, *_ = http_bench.wrk(url, SECONDS, script)
    _, errors = spy.communicate(timeout=60)
    if spy.returncode != 0 or not out.exists():
        sys.exit(f"py-spy failed: {errors.strip()}")
    return requests


def section(name: str, requests: int, raw: Path) -> list[str]:
    total, layers, tops = summarize(raw)
    lines = [
        f"### {name}",
        "",
        f"{requests:,} requests in {SECONDS} s under the profiler; {total:,} samples in"
        " request handling.",
        "",
        "| layer (top frame) | share of samples |",
        "|---|---:|",
    ]
    for found, samples in layers.most_common():
        lines.append(f"| {found} | {samples / total:.1%} |")
    lines += ["", "| function (top frame) | share of samples |", "|---|---:|"]
    for found, samples in tops.most_common(TOP):
        lines.append(f"| `{found}` | {samples / total:.1%} |")
    return [*lines, ""]


def main() -> int:
    if not Path(PY_SPY).exists():
        sys.exit(f"FATAL: {PY_SPY} not found: py-spy is pinned in requirements-dev.txt (make venv)")
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    ids = http_bench.make_data()
    carts = []
    for _ in range(CARTS):
        cart = service.open_cart()
        service.add_line(cart.id, http_bench.SKUS[0], 1)
        carts.append(cart.id)
    workdir = Path(tempfile.mkdtemp(prefix="cartimage-profile-"))
    get_lua = workdir / "get.lua"
    get_lua.write_text(http_bench.REPORT_LUA)
    add_lua = workdir / "add.lua"
    paths = ", ".join(f'"/api/v1/carts/{cart_id}/lines"' for cart_id in carts)
    add_lua.write_text(
        http_bench.POST_LUA.format(body=http_bench.ADD_BODY)
        + f"local paths = {{{paths}}}\n"
        + "math.randomseed(7)\n"
        + "request = function() return wrk.format(nil, paths[math.random(#paths)]) end\n"
        + http_bench.REPORT_LUA
    )
    port = http_bench.free_port()
    base = f"http://127.0.0.1:{port}"
    server = http_bench.start_server(port, workdir / "gunicorn.log")
    try:
        http_bench.wrk(f"{base}/api/v1/carts/{ids['read']}", 2, get_lua)  # warm
        runs = [
            ("GET constant JSON (the ceiling)", f"{base}/bench/constant", get_lua),
            ("GET cart (memory image)", f"{base}/api/v1/carts/{ids['read']}", get_lua),
            (f"POST add line over {CARTS:,} carts (memory image)", base, add_lua),
        ]
        out = [
            "## Where the workers' time goes (py-spy)",
            "",
            f"py-spy {RATE} samples/s on each of the {http_bench.WORKERS} gunicorn workers while"
            f" wrk drives {http_bench.CONNECTIONS} connections for {SECONDS} s per endpoint."
            " Every sample of a worker handling a request counts (gunicorn's handle_request;"
            " waits included, py-spy --idle), for the frame on top of its stack: the code"
            " running then, or the socket call waiting (Redis, PostgreSQL).",
            "",
        ]
        for number, (name, url, script) in enumerate(runs):
            raw = workdir / f"profile-{number}.txt"
            log(f"profiling {name}")
            out += section(name, profile(server.pid, url, script, raw), raw)
    finally:
        http_bench.stop_server(server)
        shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
