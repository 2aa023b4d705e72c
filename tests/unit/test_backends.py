"""The backends package: statuses defined once and shared with the Lua scripts, loaded lazily."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cartsvc.backends import base
from cartsvc.backends.redis import SCRIPTS, script_source

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ROOT / "cartsvc" / "backends"
LUA = BACKENDS / "lua"


def lua_files() -> list[Path]:
    return sorted(LUA.glob("*.lua"))


def test_every_lua_file_is_a_script_or_a_part_one_uses():
    used = set(SCRIPTS) | {part for parts in SCRIPTS.values() for part in parts}
    assert {p.stem for p in lua_files()} == used


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_each_script_loads_with_every_status_substituted(name):
    source = script_source(name)  # an unknown @NAME raises KeyError
    assert "@" not in source, name
    assert "redis.call" in source


@pytest.mark.parametrize("path", lua_files(), ids=lambda p: p.name)
def test_no_script_writes_a_status_as_a_number(path):
    """A status in a script's answer is always `{@NAME, ...}`, never a literal that could
    drift from the Python constant."""
    code = "\n".join(line.split("--")[0] for line in path.read_text().splitlines())
    assert not re.findall(r"\{\s*-?\d", code), path.name


def test_the_scripts_use_every_status_and_no_other_name():
    used = set()
    for path in lua_files():
        used |= set(re.findall(r"@([A-Z_]+)", path.read_text()))
    assert used == set(base.CONSTANTS)
    for name, value in base.CONSTANTS.items():
        assert getattr(base, name) == value, name


def test_the_statuses_are_assigned_in_base_alone():
    """Defined once: no other module of the app assigns a status name."""
    names = set(base.CONSTANTS)
    for path in (ROOT / "cartsvc").rglob("*.py"):
        if path == BACKENDS / "base.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    found = {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
                    assert not found & names, (path, found & names)


def test_importing_the_redis_backend_reads_no_script():
    """The scripts are read when the first store is built, not at import time."""
    probe = (
        "import cartsvc.backends.redis as r; "
        "assert r.script_source.cache_info().currsize == 0; "
        "r.script_source('read'); "
        "assert r.script_source.cache_info().currsize == 1"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, cwd=ROOT, timeout=60)
