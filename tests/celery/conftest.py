"""Real Celery workers and beats as OS processes, on a redis-server broker of the test's own."""

from __future__ import annotations

import ast
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

from tests.faults.conftest import OwnRedis

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))

# A worker's log line for a finished task: "Task <name>[<id>] succeeded in 0.01s: {...}".
SUCCEEDED = re.compile(
    r"Task (?P<name>[\w.]+)\[(?P<id>[\w-]+)\] succeeded in (?P<s>[\d.e-]+)s: (?P<r>.*)"
)


def wait_for(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    """Poll until `condition()` is truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def database_url() -> str:
    """This test run's database (pytest-django's test database) as a DATABASE_URL."""
    db = connection.settings_dict
    assert connection.vendor == "postgresql"
    user = quote(db["USER"] or "", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else ""
    host = db["HOST"] or "127.0.0.1"
    port = f":{db['PORT']}" if db["PORT"] else ""
    return f"postgres://{user}{password}@{host}{port}/{quote(db['NAME'], safe='')}"


class Proc:
    """One celery process and its log file."""

    def __init__(self, name: str, popen: subprocess.Popen, log: Path) -> None:
        self.name = name
        self.popen = popen
        self.log = log

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def succeeded(self, task: str) -> list[dict[str, Any]]:
        """The results this worker logged for `task` (short name), oldest first."""
        return [
            ast.literal_eval(m["r"])
            for m in SUCCEEDED.finditer(self.text())
            if m["name"] == f"cartsvc.tasks.{task}"
        ]

    def durations(self, task: str) -> list[float]:
        """How long each logged run of `task` took, in seconds."""
        return [
            float(m["s"])
            for m in SUCCEEDED.finditer(self.text())
            if m["name"] == f"cartsvc.tasks.{task}"
        ]

    def sent(self, entry: str) -> int:
        """How many times this beat sent the schedule entry `entry`."""
        return self.text().count(f"Sending due task {entry} ")

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            raise AssertionError(
                f"{self.name} exited with {self.popen.returncode}:\n{self.text()[-3000:]}"
            )


class CeleryProcs:
    """Starts `celery -A config worker|beat` against this test's database, cache and broker;
    stops every process it started (SIGTERM, then SIGKILL of its process group)."""

    def __init__(self, tmp: Path, broker_url: str) -> None:
        self.tmp = tmp
        self.broker_url = broker_url
        self.procs: list[Proc] = []

    def env(self, **overrides: Any) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "config.settings",
                "DATABASE_URL": database_url(),
                "REDIS_URL": settings.REDIS_URL,
                "CACHE_KEY_PREFIX": settings.CACHES["default"].get("KEY_PREFIX", "cartimage"),
                "CART_KEY_PREFIX": settings.CARTIMAGE["KEY_PREFIX"],
                "CELERY_BROKER_URL": self.broker_url,
                "CART_VAR_DIR": str(self.tmp),
                "DB_CONN_MAX_AGE": "0",
                "PYTHONUNBUFFERED": "1",
                "CART_IDLE_TIMEOUT": "2",
                "CART_ABANDON_AFTER": "3600",
                "CART_SWEEP_EVERY": "1",
                "CART_ABANDON_SWEEP_EVERY": "1",
                "CART_FULL_SWEEP_EVERY": "3600",
            }
        )
        for key, value in overrides.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = str(value)
        return env

    def _start(self, name: str, args: list[str], env: dict[str, str]) -> Proc:
        log = self.tmp / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [CELERY, "-A", "config", *args, "--loglevel=INFO"],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: pool children die with it
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def worker(
        self, name: str = "worker", concurrency: int = 1, beat: bool = False, **env: Any
    ) -> Proc:
        """A worker (`beat`: with an embedded beat, as `make run` starts it); `env` overrides
        the environment, None removing a variable."""
        pool = ["--pool=solo"] if concurrency == 1 else ["--pool=prefork", f"-c{concurrency}"]
        args = ["worker", *pool, "--without-gossip", "--without-mingle", "--without-heartbeat"]
        if beat:
            args += ["--beat", f"--schedule={self.tmp / f'{name}-schedule'}"]
        return self._start(name, [*args, f"--hostname={name}@%h"], self.env(**env))

    def beat(self, name: str = "beat", **env: Any) -> Proc:
        schedule = self.tmp / f"{name}-schedule"
        return self._start(name, ["beat", f"--schedule={schedule}"], self.env(**env))

    def ready(self, *procs: Proc, timeout: float = 30) -> None:
        """Wait until every worker is consuming and every beat is ticking."""

        def up() -> bool:
            for proc in procs:
                proc.check_alive()
            return all(
                (" ready." if p.name.startswith("worker") else "beat: Starting...") in p.text()
                for p in procs
            )

        wait_for(up, timeout, f"{[p.name for p in procs]} to start")

    def stop(self, *procs: Proc, grace: float = 1.5) -> None:
        """SIGTERM (a warm shutdown), then SIGKILL whatever is left of each process group."""
        for proc in procs:
            if proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in procs:
            try:
                proc.popen.wait(max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                print(f"{proc.name} did not stop within {grace} s of SIGTERM")
            try:
                os.killpg(proc.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.popen.wait(5)

    def stop_all(self) -> None:
        self.stop(*self.procs)


@pytest.fixture
def celery_ready(needs_redis) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the worker subprocesses need the PostgreSQL test database")
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed")


@pytest.fixture
def broker(celery_ready) -> Iterator[OwnRedis]:
    """A redis-server of this test's own as the broker (separate from the cache's Redis)."""
    server = OwnRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def celery_procs(transactional_db, broker, tmp_path) -> Iterator[CeleryProcs]:
    procs = CeleryProcs(tmp_path, f"redis://127.0.0.1:{broker.port}/0")
    try:
        yield procs
    finally:
        procs.stop_all()
