"""Servers a chaos run (or a test) starts on loopback: a database, redis-servers, gunicorn."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(ready: object, what: str, timeout: float = 30.0) -> None:
    """Poll `ready()` (a callable returning a truth value) until it holds, or fail naming `what`."""
    assert callable(ready)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} within {timeout:.0f} s")


def stop_process(process: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM, then SIGKILL if it does not end in `timeout` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ---------------------------------------------------------------- PostgreSQL


class Database:
    """A fresh database on the PostgreSQL server of `server_url`, dropped by `drop()`."""

    def __init__(self, server_url: str, name: str) -> None:
        self.name = name
        parts = urlsplit(server_url)
        self.url = urlunsplit(parts._replace(path=f"/{name}"))
        self.admin_url = urlunsplit(parts._replace(path="/postgres"))

    def create(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def terminate_backends(self) -> int:
        """pg_terminate_backend on every session of this database but ours; how many."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.name,),
            ).fetchone()
        return int(rows[0]) if rows else 0


# ---------------------------------------------------------------- Redis


class RedisServer:
    """A redis-server on a free loopback port, with nothing on disk; it may be frozen,
    killed and started again on the same port."""

    def __init__(self, *extra: str) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed")
        self.extra = extra
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="cartimage-chaos-redis-")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", self.dir, *self.extra]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until(self._answers, f"redis-server on {self.port} did not start", 10)

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"redis-server on {self.port} exited ({self.process.returncode})")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.1):
            return True
        return False

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def freeze(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.thaw()
            self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def process_state(pid: int) -> str:
    """The state letter of /proc/<pid>/stat (T: stopped), or '' when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[0]


# ---------------------------------------------------------------- gunicorn


def gunicorn_command(port: int, workers: int) -> list[str]:
    """The deployed configuration (gunicorn.conf.py) on loopback `port`."""
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "config.wsgi"]
    return [*command, "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--timeout", "60"]


def wait_for_http(port: int, process: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    """Until /api/v1/products answers on `port`; fails with the log's tail if the server
    exits or nothing answers in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/products", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing answers on {port}: {log.read_text()[-3000:]}")


class Gunicorn:
    """gunicorn -c gunicorn.conf.py with `workers` workers on a free port, in `directory`."""

    def __init__(self, directory: Path, workers: int, env: dict[str, str]) -> None:
        self.port = free_port()
        self.workers = workers
        self.log = directory / "gunicorn.log"
        self.env = {
            **os.environ,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "PROMETHEUS_MULTIPROC_DIR": str(directory / "metrics"),
            **env,
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                gunicorn_command(self.port, self.workers),
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=out,
            )
        wait_for_http(self.port, self.process, self.log)
        wait_until(lambda: len(self.worker_pids()) == self.workers, "workers did not start")

    def worker_pids(self) -> list[int]:
        """The master's live children (its workers), from /proc."""
        assert self.process is not None
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid and fields[0] not in "ZX":
                children.append(int(stat.parent.name))
        return sorted(children)

    def busy_worker_pids(self) -> list[int]:
        """The workers holding a client's connection now: a sync worker serves one request at
        a time, so these are mid-request (the connection's socket is among the worker's fds)."""
        established = set()
        for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = row.split()
            local_port, state, inode = int(fields[1].rsplit(":", 1)[1], 16), fields[3], fields[9]
            if local_port == self.port and state == "01":  # 01: ESTABLISHED
                established.add(f"socket:[{inode}]")
        if not established:
            return []
        busy = []
        for pid in self.worker_pids():
            with contextlib.suppress(OSError):
                for fd in Path(f"/proc/{pid}/fd").iterdir():
                    with contextlib.suppress(OSError):
                        if os.readlink(fd) in established:
                            busy.append(pid)
                            break
        return busy

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
