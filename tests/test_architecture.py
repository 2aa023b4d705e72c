"""One door to cart state: who may import what (guarantee 1 and the layout rules)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def python_files(package: str) -> list[Path]:
    return [p for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts]


INTERNALS = ("cartsvc.cache", "cartsvc.image", "cartsvc.store", "cartsvc.models")


@pytest.mark.parametrize("path", python_files("carts"), ids=str)
def test_the_shop_reaches_cart_state_only_through_the_service(path):
    touched = {name for name in imports_of(path) if name.startswith(INTERNALS)}
    assert not touched, f"{path} bypasses cartsvc.service: {touched}"


@pytest.mark.parametrize("path", python_files("cartsvc"), ids=str)
def test_only_the_image_talks_to_the_cache(path):
    if path.name in ("image.py", "cache.py"):
        return
    assert not {n for n in imports_of(path) if n.startswith("cartsvc.cache")}, path
    assert "django_redis" not in {n.split(".")[0] for n in imports_of(path)}, path


@pytest.mark.parametrize("path", python_files("cartsvc"), ids=str)
def test_nothing_imports_the_shop(path):
    assert not {n for n in imports_of(path) if n.split(".")[0] == "carts"}, path


def test_only_the_store_writes_cart_tables():
    writers = []
    for path in python_files("cartsvc"):
        text = path.read_text()
        if path.name in ("store.py", "models.py"):
            continue
        for needle in (".objects.create(", ".update(", ".bulk_create(", ".delete("):
            if needle in text and "objects" in text:
                writers.append((path.name, needle))
    assert writers == []


def test_no_pickle_anywhere():
    for package in ("cartsvc", "carts", "config"):
        for path in python_files(package):
            assert "pickle" not in {n.split(".")[0] for n in imports_of(path)}, path
