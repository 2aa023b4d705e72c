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
# The one exception: the admin registers the cart tables, read-only, to list and show carts.
READ_ONLY_MODELS = {ROOT / "carts" / "admin.py": ("cartsvc.models",)}


@pytest.mark.parametrize("path", python_files("carts"), ids=str)
def test_the_shop_reaches_cart_state_only_through_the_service(path):
    allowed = READ_ONLY_MODELS.get(path, ())
    touched = {
        name
        for name in imports_of(path)
        if name.startswith(INTERNALS) and not name.startswith(allowed)
    }
    assert not touched, f"{path} bypasses cartsvc.service: {touched}"


def test_the_admin_grants_no_add_change_or_delete_on_cart_tables(rf):
    """What the admin may import cartsvc.models for: reading. Even a superuser gets no add,
    change or delete on any cartsvc model; state moves only through cartsvc.service."""
    from django.contrib import admin
    from django.contrib.auth import get_user_model

    import carts.admin  # noqa: F401 (registers the models)

    request = rf.get("/admin/")
    request.user = get_user_model()(is_superuser=True, is_staff=True, is_active=True)
    registered = {m: a for m, a in admin.site._registry.items() if m._meta.app_label == "cartsvc"}
    assert registered, "the admin registers no cartsvc model"
    for model, model_admin in registered.items():
        assert not model_admin.has_add_permission(request), model
        assert not model_admin.has_change_permission(request), model
        assert not model_admin.has_delete_permission(request), model
        assert not model_admin.has_change_permission(request, model()), model
        assert not model_admin.has_delete_permission(request, model()), model
        assert "delete_selected" not in model_admin.get_actions(request), model
        assert not getattr(model_admin, "list_editable", ()), model


def test_the_admin_imports_no_cache_image_or_store():
    names = imports_of(ROOT / "carts" / "admin.py")
    assert not {n for n in names if n.startswith(INTERNALS[:3])}


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
