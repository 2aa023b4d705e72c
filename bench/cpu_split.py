"""Where the host's CPU goes per request: gunicorn's workers, PostgreSQL, Redis, wrk, the rest.

Part of `make bench` (bench/cpu_split.md). One gunicorn, as bench/http_bench.py starts it;
for each endpoint wrk drives 16 connections for a few seconds, in interleaved rounds, while
the CPU time of every process on the host is read from /proc before and after: the workers
(the gunicorn master's children), PostgreSQL's processes, redis-server, wrk (a finished child
of this process: its rusage), and whatever else the host ran (the kernel's softirq work, other
processes). On a host whose cores are all busy, requests/s is the host's CPU divided by
the CPU one request costs all of them, which is what the HTTP targets' ratios come down to.
"""

from __future__ import annotations

import os
import resource
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import http_bench  # noqa: E402  (sets Django up)

SECONDS = int(os.environ.get("BENCH_SPLIT_SECONDS", "8"))
ROUNDS = 2
TICK = http_bench.TICK
GROUPS = ("gunicorn workers", "PostgreSQL", "Redis", "wrk", "the rest of the host")


def processes_cpu(master: int) -> Counter[str]:
    """CPU seconds used so far, by group, of the processes alive now."""
    used: Counter[str] = Counter()
    for name, parent, seconds in http_bench.processes():
        if parent == master:
            used["gunicorn workers"] += seconds
        elif name.startswith("postgres"):
            used["PostgreSQL"] += seconds
        elif name.startswith("redis-server"):
            used["Redis"] += seconds
    return used


def host_cpu() -> tuple[float, float]:
    """(busy, idle) CPU seconds of the whole host so far (idle counts iowait)."""
    values = [int(v) / TICK for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, idle


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(url: str, script: Path, master: int) -> tuple[int, float, Counter[str], float]:
    """(requests, seconds, CPU seconds by group, idle seconds) of one wrk run."""
    before, host_before, wrk_before = processes_cpu(master), host_cpu(), children_cpu()
    requests, seconds, *_ = http_bench.wrk(url, SECONDS, script)
    after, host_after, wrk_after = processes_cpu(master), host_cpu(), children_cpu()
    used = Counter({group: after[group] - before[group] for group in after})
    used["wrk"] = wrk_after - wrk_before
    busy = host_after[0] - host_before[0]
    used["the rest of the host"] = max(0.0, busy - sum(used.values()))
    return requests, seconds, used, host_after[1] - host_before[1]


def main() -> int:
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    ids = http_bench.make_data()
    workdir = Path(tempfile.mkdtemp(prefix="cartimage-split-"))
    get_lua = workdir / "get.lua"
    get_lua.write_text(http_bench.REPORT_LUA)
    scripts = {}
    for key, prefix in (("spread", "/api/v1/carts"), ("naive_spread", "/bench/naive/carts")):
        scripts[key] = workdir / f"{key}.lua"
        paths = [f"{prefix}/{cart_id}/lines" for cart_id in ids[key]]
        scripts[key].write_text(http_bench.spread_lua(paths) + http_bench.REPORT_LUA)
    port = http_bench.free_port()
    base = f"http://127.0.0.1:{port}"
    runs = [
        ("GET constant JSON (ceiling)", f"{base}/bench/constant", get_lua),
        ("GET cart (memory image)", f"{base}/api/v1/carts/{ids['read']}", get_lua),
        ("GET cart (naive ORM)", f"{base}/bench/naive/carts/{ids['naive_read']}", get_lua),
        ("POST add over 1,000 carts (memory image)", base, scripts["spread"]),
        ("POST add over 1,000 carts (naive ORM)", base, scripts["naive_spread"]),
    ]
    totals = {name: [0, 0.0, Counter(), 0.0] for name, _, _ in runs}
    server = http_bench.start_server(port, workdir / "gunicorn.log")
    try:
        for _name, url, script in runs:
            http_bench.wrk(url, 2, script)  # warm
        for _ in range(ROUNDS):
            for name, url, script in runs:
                http_bench.log(f"measuring {name}")
                requests, seconds, used, idle = measure(url, script, server.pid)
                total = totals[name]
                total[0] += requests
                total[1] += seconds
                total[2].update(used)
                total[3] += idle
    finally:
        http_bench.stop_server(server)
        shutil.rmtree(workdir, ignore_errors=True)
    lines = [
        "## Where the host's CPU goes, per request",
        "",
        f"One gunicorn ({http_bench.WORKERS} sync workers), wrk {http_bench.CONNECTIONS}"
        f" connections, {ROUNDS} interleaved rounds of {SECONDS} s per endpoint; CPU time"
        " (user + system) read from /proc before and after each run, divided by the requests"
        f" answered; {os.cpu_count()} CPUs. The rest of the host: the host's busy time less the"
        " processes above (the kernel's network work in softirq, other processes); idle: the"
        " host's idle time (iowait included) per request.",
        "",
        "| endpoint | requests/s | "
        + " | ".join(f"{group} µs" for group in GROUPS)
        + " | all µs | idle µs |",
        "|---|" + "---:|" * (len(GROUPS) + 3),
    ]
    for name, (requests, seconds, used, idle) in totals.items():
        per = {group: used[group] / requests * 1e6 for group in GROUPS}
        cells = " | ".join(f"{per[group]:,.0f}" for group in GROUPS)
        lines.append(
            f"| {name} | {requests / seconds:,.0f} | {cells} | {sum(per.values()):,.0f}"
            f" | {idle / requests * 1e6:,.0f} |"
        )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
