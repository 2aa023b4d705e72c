"""The make targets install the tools they need, or stop at once naming the missing one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def dry_run(target: str) -> list[str]:
    done = subprocess.run(
        ["make", "-n", target], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return done.stdout.splitlines()


def test_bench_installs_wrk_before_it_benchmarks():
    lines = dry_run("bench")
    wrk = next(i for i, line in enumerate(lines) if "apt-get install" in line and "wrk" in line)
    bench = next(i for i, line in enumerate(lines) if "bench/run.py" in line)
    assert wrk < bench


def test_test_installs_chromium_and_nginx_before_the_suite():
    lines = dry_run("test")
    suite = next(i for i, line in enumerate(lines) if "bin/pytest" in line)
    for package in ("chromium", "nginx-light"):
        install = f"apt-get install -y -qq {package}"
        found = next(i for i, line in enumerate(lines) if install in line)
        assert found < suite, package


def test_the_bench_stops_at_its_start_naming_a_missing_wrk(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env.update(WRK=str(tmp_path / "no-wrk-here"), CART_VAR_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "bench/run.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "no-wrk-here not found" in done.stderr
    assert "fresh schema" not in done.stdout + done.stderr  # stopped before any work
