"""The project served by a real gunicorn (the deployed configuration) on the test database."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from django.db import connection

from bench.chaos.servers import gunicorn_command, stop_process, wait_for_http
from tests.faults.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]


def database_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


# One way to wait for and stop a server, shared with the chaos run (bench/chaos/servers.py).
wait_for = wait_for_http
stop = stop_process


@contextlib.contextmanager
def gunicorn(tmp_path: Path, workers: int = 2, **env: str) -> Iterator[int]:
    """gunicorn -c gunicorn.conf.py on a free port, against this test run's database and
    cache; yields the port. Needs PostgreSQL (the test database is shared with it)."""
    port, log = free_port(), tmp_path / f"gunicorn-{os.getpid()}-{time.monotonic_ns()}.log"
    environment = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        **env,
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            gunicorn_command(port, workers), cwd=ROOT, env=environment, stdout=out, stderr=out
        )
    try:
        wait_for(port, process, log)
        yield port
    finally:
        stop(process)
