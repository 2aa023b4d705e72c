"""A short chaos run on one redis-server: every fault of its schedule fires, no violation."""

from __future__ import annotations

import os

from bench.chaos import run

STANDALONE_FAULTS = {
    "redis_sigstop",
    "redis_sigkill",
    "flushall",
    "maxmemory_lru",
    "pg_terminate",
    "worker_sigkill",
}


def test_a_short_chaos_run_has_every_fault_fire_and_no_violation(tmp_path):
    server = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    short = ["--seed", "8", "--duration", "20", "--clients", "6", "--carts", "10", "--workers", "3"]
    args = run.parse([*short, "--pg-url", server, "--out", str(tmp_path)])
    outcome = run.execute(args)

    assert outcome.fired.failures == {}
    assert set(outcome.fired.evidence) == STANDALONE_FAULTS
    assert outcome.crashed_clients == []
    rows = {row.fault: row for row in outcome.report.rows}
    for fault in STANDALONE_FAULTS:  # the load ran through every fault
        assert rows[fault].requests > 0, outcome.report.table()
    assert rows["all"].acknowledged > 100, outcome.report.table()
    assert outcome.report.ok, "\n".join(map(str, outcome.report.violations[:20]))
    assert outcome.status == 0
    assert (tmp_path / "history.jsonl").exists() and (tmp_path / "finals.json").exists()
