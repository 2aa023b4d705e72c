"""The make targets install the tools they need, or stop at once naming the missing one; `make run`
stops at once on a busy port and ends cleanly on Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import pty
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

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


def test_test_installs_its_tools_before_the_suite():
    lines = dry_run("test")
    suite = next(i for i, line in enumerate(lines) if "bin/pytest" in line)
    for package in ("chromium", "nginx-light", "redis-sentinel", "redis-tools"):
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


# ---------------------------------------------------------------- make lint


def test_lint_type_checks_the_app_and_the_shop_before_the_suite():
    lines = dry_run("test")
    mypy = next(i for i, line in enumerate(lines) if "bin/mypy" in line)
    suite = next(i for i, line in enumerate(lines) if "bin/pytest" in line)
    assert mypy < suite
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert config["tool"]["mypy"]["files"] == ["cartsvc", "carts"]


def test_lints_mypy_fails_on_a_type_error_with_no_environment(tmp_path):
    # The recipe's own mypy line, run as on a fresh machine (no DJANGO_* or database
    # variables), on a planted module: the project's configuration finds its error.
    line = next(line for line in dry_run("lint") if "bin/mypy" in line)
    planted = tmp_path / "planted.py"
    planted.write_text(
        "from cartsvc.domain import Cart\n\n\ndef version(cart: Cart) -> str:\n"
        "    return cart.version\n"
    )
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    done = subprocess.run(
        [*shlex.split(line), str(planted)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "planted.py:5: error: Incompatible return value type" in done.stdout
    assert "[return-value]" in done.stdout


# ---------------------------------------------------------------- make run


def run_env(tmp_path: Path) -> dict[str, str]:
    """`make run` on embedded defaults inside tmp_path: nothing lands in the repository."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "REDIS_", "MAKE", "MFLAGS", "PROMETHEUS_"))
    }
    env.update(DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite3", CART_VAR_DIR=str(tmp_path))
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def started_by(tmp_path: Path) -> list[int]:
    """Live processes whose environment is this test's `make run` (celery, runserver...)."""
    marker = f"CART_VAR_DIR={tmp_path}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if marker in environ.split(b"\0") and state != "Z":
            found.append(int(entry.name))
    return found


def kill_leftovers(tmp_path: Path) -> None:
    for pid in started_by(tmp_path):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_make_run_on_a_busy_port_stops_at_once_naming_another_port(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.monotonic()
        try:
            done = subprocess.run(
                ["make", "run", f"PORT={port}"],
                cwd=ROOT,
                env=run_env(tmp_path),
                capture_output=True,
                text=True,
                timeout=60,
            )
            elapsed = time.monotonic() - started
            leftovers = started_by(tmp_path)
        finally:
            kill_leftovers(tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert f"port {port} on 127.0.0.1 is in use: run 'make run PORT=" in done.stderr, output
    other = int(done.stderr.split("make run PORT=", 1)[1].split("'", 1)[0])
    assert other != port
    assert elapsed < 15, f"took {elapsed:.1f} s"
    assert not (tmp_path / "db.sqlite3").exists(), "stopped only after migrating"
    assert not (tmp_path / "celery.log").exists(), "a celery worker was started"
    assert not leftovers, leftovers


def test_make_run_refuses_a_port_that_is_not_a_number(tmp_path):
    done = subprocess.run(
        ["make", "run", "PORT=80x"],
        cwd=ROOT,
        env=run_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "PORT=80x is not a port number" in done.stderr, done.stdout + done.stderr
    assert not (tmp_path / "db.sqlite3").exists()


class Terminal:
    """`make run` in a pseudo-terminal of its own (the child is a session leader with the pty
    as its controlling terminal), read continuously so that its output never blocks it."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: exec at once (nothing else runs after a fork here)
            os.chdir(ROOT)
            os.execvpe(argv[0], argv, env)
        self.pid, self.fd = pid, fd
        self.status: int | None = None
        self.output = bytearray()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:  # EIO: every process holding the terminal is gone
                return
            if not chunk:
                return
            self.output += chunk

    def text(self) -> str:
        return self.output.decode(errors="replace")

    def ctrl_c(self) -> None:
        # What a terminal does on Ctrl-C: SIGINT to its foreground process group.
        os.write(self.fd, b"\x03")

    def wait(self, timeout: float) -> int | None:
        """The exit status, once `make` has ended (None while it runs past the timeout)."""
        deadline = time.monotonic() + timeout
        while self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                self.reader.join(5)
                os.close(self.fd)
            elif time.monotonic() >= deadline:
                break
            else:
                time.sleep(0.05)
        return self.status


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def ctrl_c_make_run(tmp_path: Path, *make_args: str) -> tuple[int | None, str, float]:
    """`make run` in a terminal of its own until the server answers and the worker is up,
    then Ctrl-C: make's exit status (None: still running 30 s later), its output, and the
    seconds it took to end. Asserts nothing it started is left running."""
    port = free_port()
    term = Terminal(["make", "run", f"PORT={port}", *make_args], run_env(tmp_path))
    try:
        deadline = time.monotonic() + 90
        while not answers(f"http://127.0.0.1:{port}/"):
            assert time.monotonic() < deadline, term.text()
            assert term.wait(0) is None, term.text()
            time.sleep(0.2)
        while "celery@" not in term.text():  # the worker is up beside the server
            assert time.monotonic() < deadline, term.text()
            time.sleep(0.2)
        assert started_by(tmp_path)
        term.ctrl_c()
        started = time.monotonic()
        status = term.wait(30)
        elapsed = time.monotonic() - started
        leftovers = started_by(tmp_path)
    finally:
        if term.wait(0) is None:
            os.kill(term.pid, signal.SIGKILL)
            term.wait(10)
        kill_leftovers(tmp_path)
    output = term.text()
    assert not leftovers, f"left running: {leftovers}\n{output}"
    assert not answers(f"http://127.0.0.1:{port}/")
    return status, output, elapsed


def test_ctrl_c_ends_make_run_with_status_0_and_stops_its_processes(tmp_path):
    status, output, _ = ctrl_c_make_run(tmp_path)
    assert status == 0, output
    assert "Error 130" not in output and "Interrupt" not in output, output
    assert "make: ***" not in output, output


STUBBORN_WORKER = """#!{python}
# A worker that ignores TERM (a task that never ends), and {on_quit} on QUIT.
import os, signal, sys, time
log = open(os.path.join(os.environ["CART_VAR_DIR"], "worker-signals.log"), "a")
def note(number, frame):
    log.write(signal.Signals(number).name + "\\n")
    log.flush()
    if number == signal.SIGQUIT and {exits_on_quit}:
        sys.exit(0)
signal.signal(signal.SIGTERM, note)
signal.signal(signal.SIGQUIT, note)
print("celery@stubborn ready", flush=True)
while True:
    time.sleep(0.1)
"""


@pytest.mark.parametrize("on_quit", ["stops", "ignores it too"])
def test_ctrl_c_ends_make_run_even_when_the_worker_ignores_term(tmp_path, on_quit):
    """A warm shutdown has 10 s, a cold one (QUIT) 5 s more, then the worker is killed."""
    worker = tmp_path / "stubborn-worker"
    worker.write_text(
        STUBBORN_WORKER.format(
            python=sys.executable, on_quit=on_quit, exits_on_quit=on_quit == "stops"
        )
    )
    worker.chmod(0o755)
    status, output, elapsed = ctrl_c_make_run(tmp_path, f"CELERY={worker}")
    assert status == 0, output
    assert (tmp_path / "worker-signals.log").read_text().split() == ["SIGTERM", "SIGQUIT"]
    assert 10 <= elapsed < (13 if on_quit == "stops" else 18), output
