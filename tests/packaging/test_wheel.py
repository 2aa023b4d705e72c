"""The wheel is the app alone, and a host project runs on it from a fresh virtualenv.

Builds `cartsvc-*.whl` from this checkout, installs it (with the pinned versions of its
dependencies) into an empty virtualenv, then runs the integration project under
tests/hostshop there: `manage.py migrate`, `manage.py check` and its own tests, against real
PostgreSQL (a database of its own) and Redis (a db number and key prefix of its own).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import psycopg
import pytest
import redis
from django.conf import settings
from django.db import connection

from cartsvc.conf import BACKEND_ALIASES, backend_module

ROOT = Path(__file__).resolve().parents[2]
HOSTSHOP = ROOT / "tests" / "hostshop"
HOST_REDIS_DB = 13
NOT_IN_THE_WHEEL = ("carts", "config", "tests", "bench")

pytestmark = pytest.mark.packaging


def run(*args: str | Path, **kwargs) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=600, **kwargs
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # setuptools reuses build/lib: a module deleted since the last build would ride along.
    shutil.rmtree(ROOT / "build", ignore_errors=True)
    # An earlier build's egg-info lists the files it shipped, and setuptools ships them again:
    # that would hide a missing package-data pattern (the Lua scripts, the templates).
    shutil.rmtree(ROOT / "cartsvc.egg-info", ignore_errors=True)
    run(sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", out, ROOT)
    (found,) = out.glob("cartsvc-*.whl")
    return found


def test_the_wheel_holds_the_app_and_nothing_else(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert not tops & set(NOT_IN_THE_WHEEL), tops
    assert {t for t in tops if not t.endswith(".dist-info")} == {"cartsvc"}
    for needed in (
        "cartsvc/py.typed",
        "cartsvc/migrations/0001_initial.py",
        "cartsvc/api/urls.py",
        "cartsvc/admin.py",
        "cartsvc/templates/admin/cartsvc/cart/detail.html",
        "cartsvc/static/cartsvc/admin.css",
        "cartsvc/templatetags/cartimage.py",
        "cartsvc/management/commands/warm_carts.py",
        "cartsvc/backends/redis.py",
        "cartsvc/backends/sqlite.py",
    ):
        assert needed in names, needed
    # The Redis backend reads its scripts from the package: every one must ship.
    scripts = sorted(p.name for p in (ROOT / "cartsvc" / "backends" / "lua").glob("*.lua"))
    assert scripts, "no Lua scripts in cartsvc/backends/lua"
    for script in scripts:
        assert f"cartsvc/backends/lua/{script}" in names, script
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "Requires-Dist: Django<6.0,>=5.2" in text
    assert "License-Expression: MIT" in text


def constraints(tmp: Path) -> Path:
    """The pinned versions this repository tests with, as a pip constraints file."""
    pins = []
    for name in ("requirements.txt", "requirements-dev.txt"):
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and not line.startswith("-"):
                pins.append(re.sub(r"\[.*?\]", "", line))  # constraints take no extras
    path = tmp / "constraints.txt"
    path.write_text("\n".join(pins) + "\n")
    return path


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("venv")
    home = tmp / "venv"
    run(sys.executable, "-m", "venv", home)
    python = home / "bin" / "python"
    run(
        python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
        "-c", constraints(tmp), f"{wheel}[postgres]", "pytest", "pytest-django",
    )  # fmt: skip
    return python


@pytest.fixture(scope="module")
def host_env() -> dict[str, str]:
    if connection.vendor != "postgresql":
        pytest.skip("the integration project runs on PostgreSQL")
    if backend_module(settings.CARTIMAGE["BACKEND"]) != BACKEND_ALIASES["redis"]:
        pytest.skip("the integration project runs on Redis")
    db = settings.DATABASES["default"]
    name = f"hostshop_{uuid.uuid4().hex[:8]}"
    prefix = f"hs{uuid.uuid4().hex[:6]}"
    admin = dict(host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], dbname="postgres")
    with psycopg.connect(**admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "PYTHON", "VIRTUAL_ENV", "DATABASE_", "REDIS_", "CART"))
    }
    env.update(
        HOSTSHOP_DB_NAME=name,
        HOSTSHOP_DB_HOST=str(db["HOST"]),
        HOSTSHOP_DB_PORT=str(db["PORT"] or 5432),
        HOSTSHOP_DB_USER=str(db["USER"]),
        HOSTSHOP_REDIS_URL=f"redis://127.0.0.1:6379/{HOST_REDIS_DB}",
        HOSTSHOP_KEY_PREFIX=prefix,
    )
    yield env
    with psycopg.connect(**admin, autocommit=True) as conn:
        for database in (name, f"test_{name}"):
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    client = redis.Redis(db=HOST_REDIS_DB)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)


def test_the_host_project_migrates_checks_and_passes_its_tests_on_the_wheel(venv, host_env):
    manage = (venv, "manage.py")
    migrated = run(*manage, "migrate", "--noinput", cwd=HOSTSHOP, env=host_env)
    assert "Applying cartsvc.0001_initial... OK" in migrated.stdout
    assert "Applying accounts.0001_initial... OK" in migrated.stdout
    checked = run(*manage, "check", "--fail-level", "WARNING", cwd=HOSTSHOP, env=host_env)
    assert "no issues" in checked.stdout
    where = run(venv, "-c", "import cartsvc; print(cartsvc.__file__)", cwd=HOSTSHOP, env=host_env)
    assert "site-packages" in where.stdout, where.stdout
    tested = run(venv, "-m", "pytest", "-p", "no:cacheprovider", "-q", cwd=HOSTSHOP, env=host_env)
    summary = tested.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary


def test_the_host_project_check_names_a_broken_catalog(venv, host_env):
    env = {**host_env, "HOSTSHOP_CATALOG": "bookshop.catalog.Missing"}
    done = subprocess.run(
        [str(venv), "manage.py", "check"],
        cwd=HOSTSHOP,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "cartimage.E003" in done.stderr
