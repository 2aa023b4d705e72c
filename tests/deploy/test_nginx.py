"""deploy/nginx.conf in front of gunicorn's sync workers: slow clients stop nginx, not the
service, and cart creation is rate limited."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

from cartsvc.models import Cart
from tests import servers
from tests.faults.conftest import free_port

ROOT = servers.ROOT
WORKERS = 2

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def gunicorn(tmp_path) -> Iterator[int]:
    if connection.vendor != "postgresql":
        pytest.skip("gunicorn shares the test database: needs PostgreSQL")
    with servers.gunicorn(tmp_path, workers=WORKERS) as port:
        yield port


def site_config(upstream: int, listen: int, static: Path) -> str:
    """deploy/nginx.conf as a shop would edit it: plain HTTP on loopback for the test."""
    text = (ROOT / "deploy" / "nginx.conf").read_text()
    text = re.sub(r"server \{\s*listen 80;.*?\n\}\n", "", text, count=1, flags=re.S)
    text = text.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{listen};")
    text = re.sub(r"\s*ssl_certificate(_key)? [^;]+;", "", text)
    text = text.replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream};")
    text = text.replace("/srv/cartimage/static/", f"{static}/")
    assert f"127.0.0.1:{listen}" in text and "ssl_certificate" not in text
    return text


@pytest.fixture
def nginx(gunicorn, tmp_path) -> Iterator[int]:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    assert os.access(binary, os.X_OK), "nginx is needed (Debian package nginx-light; make test)"
    port, home = free_port(), tmp_path / "nginx"
    for folder in ("static", "temp"):
        (home / folder).mkdir(parents=True)
    (home / "site.conf").write_text(site_config(gunicorn, port, home / "static"))
    temp = home / "temp"
    (home / "nginx.conf").write_text(
        f"worker_processes 1;\npid {home}/nginx.pid;\nerror_log {home}/error.log;\n"
        "daemon off;\nevents { worker_connections 512; }\nhttp {\n  access_log off;\n"
        + "".join(f"  {kind}_temp_path {temp}/{kind};\n" for kind in TEMP_PATHS)
        + f"  include {home}/site.conf;\n}}\n"
    )
    command = [binary, "-p", str(home), "-c", str(home / "nginx.conf")]
    check = subprocess.run([*command, "-t"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    log = home / "error.log"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        servers.wait_for(port, process, log)
        yield port
    finally:
        servers.stop(process)


TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def half_open(port: int, count: int) -> list[socket.socket]:
    """Connections that send the start of a request and then nothing (a slow or hostile
    client, a phone that lost its network)."""
    held = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(
            b"POST /api/v1/carts HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        held.append(sock)
    time.sleep(0.5)  # let the server hand them to its workers
    return held


def answers(port: int, timeout: float) -> bool:
    try:
        url = f"http://127.0.0.1:{port}/api/v1/products"
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except (TimeoutError, urllib.error.URLError):
        return False


def test_two_slow_clients_stop_bare_sync_workers(gunicorn):
    """Why the proxy is required: measured, this is what it prevents."""
    held = half_open(gunicorn, WORKERS)
    try:
        assert not answers(gunicorn, timeout=3)
    finally:
        for sock in held:
            sock.close()
    assert answers(gunicorn, timeout=10)


def test_behind_nginx_slow_clients_do_not_stop_the_service(nginx):
    held = half_open(nginx, 50)
    try:
        # Well under nginx's client_body_timeout (10 s), which would free a stuck worker too.
        assert all(answers(nginx, timeout=3) for _ in range(20))
    finally:
        for sock in held:
            sock.close()


def test_opening_carts_in_a_loop_is_refused_beyond_the_burst(nginx):
    before = Cart.objects.count()
    statuses = []
    for _ in range(30):
        request = urllib.request.Request(
            f"http://127.0.0.1:{nginx}/api/v1/carts",
            data=b"",
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                statuses.append(response.status)
        except urllib.error.HTTPError as refused:
            statuses.append(refused.code)
    opened = statuses.count(201)
    assert set(statuses) == {201, 429}
    assert 21 <= opened <= 22  # one, then the burst of 20 (and one more if a slot came due)
    assert Cart.objects.count() == before + opened
