"""One door to cart state: who may import what (guarantee 1 and the layout rules)."""

from __future__ import annotations

import ast
import re
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


INTERNALS = ("cartsvc.backends", "cartsvc.image", "cartsvc.store", "cartsvc.models")
# The app's public API (docs/use-in-your-shop.md): what a host project, the demo shop
# included, may import. Everything else in cartsvc is internal and may change.
PUBLIC_API = (
    "cartsvc.service",
    "cartsvc.operations",
    "cartsvc.health",
    "cartsvc.catalog",
    "cartsvc.conf",
    "cartsvc.shop",
    "cartsvc.progress",
    "cartsvc.signals",
    "cartsvc.ops",
    "cartsvc.schedule",
    "cartsvc.serializers",
    "cartsvc.templatetags.cartimage",
)
# Modules named in settings or URLconfs as strings, never imported: the API's URLconf, the
# context processor, the admin (autodiscovered), the Celery tasks (autodiscovered).
PUBLIC_BY_NAME = (
    "cartsvc.api.urls",
    "cartsvc.context_processors.mini_cart",
    "cartsvc.serializers.OrjsonSerializer",
    "cartsvc.tasks",
    # The bundled backends' module paths, the long form of CARTIMAGE["BACKEND"].
    "cartsvc.backends.redis",
    "cartsvc.backends.sqlite",
    # The optional PostgreSQL engine (DATABASES ENGINE).
    "cartsvc.db.postgresql",
)


def cartsvc_names(path: Path) -> set[str]:
    """Every cartsvc module the file names: imported, or in a dotted-path string."""
    names = {n for n in imports_of(path) if n.split(".")[0] == "cartsvc"}
    for node in ast.walk(ast.parse(path.read_text())):
        is_text = isinstance(node, ast.Constant) and isinstance(node.value, str)
        if is_text and node.value.startswith("cartsvc."):
            names.add(node.value)
    return names


def outside_public_api(names: set[str]) -> set[str]:
    public = PUBLIC_API + PUBLIC_BY_NAME
    return {
        n
        for n in names
        if n != "cartsvc" and not any(n == p or n.startswith(p + ".") for p in public)
    }


@pytest.mark.parametrize(
    "path",
    [*python_files("carts"), *python_files("config"), *python_files("tests/hostshop")],
    ids=str,
)
def test_the_shop_uses_the_app_only_through_its_public_api(path):
    """The demo shop, the project wiring and the integration project are the app's customers:
    they import (or name) nothing of cartsvc beyond its documented public API."""
    assert not outside_public_api(cartsvc_names(path)), path


def test_the_public_api_check_catches_internals():
    assert outside_public_api({"cartsvc.domain", "cartsvc.image.cart_key", "cartsvc.admin"}) == {
        "cartsvc.domain",
        "cartsvc.image.cart_key",
        "cartsvc.admin",
    }
    assert not outside_public_api({"cartsvc.service.OPEN", "cartsvc.shop", "cartsvc"})


# A dotted path into the demo shop: "carts.catalog.DemoCatalog", "carts.models", ...
SHOP_PATH = re.compile(r"carts(\.\w+)+")


def shop_paths(source: str) -> set[str]:
    """The demo shop's modules a source names as strings (a setting's default, an
    import_string argument): it parses the code, so prose in a docstring does not count."""
    return {
        node.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and SHOP_PATH.fullmatch(node.value)
    }


def test_the_app_names_no_demo_catalog_as_a_default():
    from cartsvc.conf import DEFAULTS

    assert DEFAULTS["CATALOG"] is None
    for path in python_files("cartsvc"):
        assert not shop_paths(path.read_text()), path


@pytest.mark.parametrize(
    "planted",
    [
        'DEFAULTS = {"CATALOG": "carts.catalog.DemoCatalog"}',
        'path = getattr(settings, "CARTIMAGE", {}).get("CATALOG", "carts.catalog.DemoCatalog")',
        'def catalog(path="carts.catalog.DemoCatalog"):\n    return import_string(path)()',
        'Product = apps.get_model("x") if x else import_string("carts.models.Product")',
    ],
)
def test_the_demo_catalog_check_catches_a_string_default(planted):
    assert shop_paths(planted)
    assert not shop_paths('"""Prose naming carts.catalog.DemoCatalog is no default."""')


def test_the_admin_grants_no_add_change_or_delete_on_cart_tables(rf):
    """What the admin may import cartsvc.models for: reading. Even a superuser gets no add,
    change or delete on any cartsvc model; state moves only through cartsvc.service."""
    from django.contrib import admin
    from django.contrib.auth import get_user_model

    import cartsvc.admin  # noqa: F401 (registers the models)

    request = rf.get("/admin/")
    request.user = get_user_model()(is_superuser=True, is_staff=True, is_active=True)
    registered = {m: a for m, a in admin.site._registry.items() if m._meta.app_label == "cartsvc"}
    assert registered, "the admin registers no cartsvc model"
    # Webhook endpoints are the shop's configuration, not cart state: added and changed in
    # the admin (through cartsvc.webhooks), never deleted (deactivated: their deliveries stay).
    configuration = {m for m in registered if m.__name__ == "WebhookEndpoint"}
    for model in configuration:
        assert registered[model].has_add_permission(request), model
        assert not registered[model].has_delete_permission(request, model()), model
    for model, model_admin in registered.items():
        if model in configuration:
            continue
        assert not model_admin.has_add_permission(request), model
        assert not model_admin.has_change_permission(request), model
        assert not model_admin.has_delete_permission(request), model
        assert not model_admin.has_change_permission(request, model()), model
        assert not model_admin.has_delete_permission(request, model()), model
        assert "delete_selected" not in model_admin.get_actions(request), model
        assert not getattr(model_admin, "list_editable", ()), model


def test_the_admin_imports_no_cache_image_or_store():
    names = imports_of(ROOT / "cartsvc" / "admin.py")
    assert not {n for n in names if n.startswith(INTERNALS[:3])}


@pytest.mark.parametrize("path", python_files("cartsvc"), ids=str)
def test_only_the_image_talks_to_the_cache(path):
    if path.name in ("image.py", "serializers.py") or "backends" in path.parts:
        return
    assert not {n for n in imports_of(path) if n.startswith("cartsvc.backends")}, path
    assert "django_redis" not in {n.split(".")[0] for n in imports_of(path)}, path


@pytest.mark.parametrize("path", python_files("cartsvc"), ids=str)
def test_nothing_imports_the_shop(path):
    assert not {n for n in imports_of(path) if n.split(".")[0] == "carts"}, path


# Methods that write a table, on a manager, a queryset or an instance.
WRITES = {
    "create",
    "bulk_create",
    "get_or_create",
    "update_or_create",
    "update",
    "bulk_update",
    "delete",
    "save",
}


def table_writes(source: str) -> list[str]:
    """Calls in `source` that write a cartsvc table: a write method called on a chain rooted
    at a model imported from cartsvc.models (`Cart.objects.filter(...).update(...)`,
    `CartLine(...).save()`), or a cartsvc model looked up by name (`apps.get_model`)."""
    tree = ast.parse(source)
    models = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "cartsvc.models"
        for alias in node.names
    }
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "get_model":
            if any(isinstance(a, ast.Constant) and a.value == "cartsvc" for a in node.args):
                found.append(f"get_model at line {node.lineno}")
            continue
        if not (isinstance(func, ast.Attribute) and func.attr in WRITES):
            continue
        root = func.value
        while isinstance(root, ast.Attribute | ast.Call | ast.Subscript):
            root = root.func if isinstance(root, ast.Call) else root.value
        if isinstance(root, ast.Name) and root.id in models:
            found.append(f"{root.id}...{func.attr}() at line {node.lineno}")
    return found


# Tables that are not the cart's state, each with the one module that alone writes them (a
# read model's projection of the log; the webhooks' endpoints and deliveries): it may import
# cartsvc.models (reading any of them), and writes no other.
OWN_TABLES = {
    "demand.py": {"DemandCart", "DemandItem"},
    "webhooks.py": {"WebhookEndpoint", "WebhookDelivery"},
}


def test_only_the_store_writes_cart_tables():
    """Outside the store (and the models), only the admin and the owners of tables of their
    own (OWN_TABLES) import cartsvc.models; the admin writes through none of them, an owner
    its own tables only."""
    importers = {
        path.name
        for path in python_files("cartsvc")
        if any(n.startswith("cartsvc.models") for n in imports_of(path))
    }
    assert importers - {"store.py", "models.py"} <= {"admin.py", *OWN_TABLES}, importers
    writers = {
        path.name: [
            call
            for call in table_writes(path.read_text())
            if call.partition("...")[0] not in OWN_TABLES.get(path.name, ())
        ]
        for path in python_files("cartsvc")
        if path.name not in ("store.py", "models.py")
    }
    assert {name: calls for name, calls in writers.items() if calls} == {}


@pytest.mark.parametrize(
    "planted",
    [
        "from cartsvc.models import Cart\nCart.objects.filter(id=1).update(status='x')",
        "from cartsvc.models import CartLine as L\nL.objects.bulk_create([])",
        "from cartsvc.models import Cart\nCart(id=1).save()",
        "from cartsvc.models import CartEvent\nCartEvent.objects.all()[:5].delete()",
        "from django.apps import apps\napps.get_model('cartsvc', 'Cart').objects.all().delete()",
    ],
)
def test_the_table_write_check_catches_a_planted_write(planted):
    assert table_writes(planted)
    reading = "from cartsvc.models import Cart\nCart.objects.filter(id=1).values_list('id')"
    assert not table_writes(reading)
    # A write on something that is not a cartsvc model is not the check's business.
    assert not table_writes("from carts.models import Product\nProduct.objects.update(stock=1)")


def test_no_pickle_anywhere():
    for package in ("cartsvc", "carts", "config"):
        for path in python_files(package):
            assert "pickle" not in {n.split(".")[0] for n in imports_of(path)}, path


EDGES = (
    "api",
    "admin.py",
    "shop.py",
    "context_processors.py",
    "ops.py",
    "templatetags",
    "management",
)


@pytest.mark.parametrize(
    "path",
    [p for p in python_files("cartsvc") if p.relative_to(ROOT / "cartsvc").parts[0] in EDGES],
    ids=str,
)
def test_the_apps_own_edges_go_through_the_service(path):
    """The API views, the admin, the storefront helpers and the commands are edges too: only
    the admin reads the tables (read-only), and nothing at the edge touches cache or store."""
    allowed = ("cartsvc.models",) if path.name == "admin.py" else ()
    touched = {n for n in imports_of(path) if n.startswith(INTERNALS) and not n.startswith(allowed)}
    assert not touched, f"{path} bypasses cartsvc.service: {touched}"


OPERATOR_FUNCTIONS = (
    "memory_image",
    "in_memory",
    "rows_state",
    "evict_cart",
    "rehydrate_cart",
    "rebuild_rows",
    "verify_carts",
    "Repair",
    "repair_cart",
    "WarmResult",
    "warm_carts",
    "count_active",
)


def test_the_service_keeps_commands_and_queries_and_each_operator_function_has_one_home():
    """Health probes and operator functions live in their own modules, once: the service
    re-exports none of them."""
    from cartsvc import health, operations, service

    assert callable(health.health)
    assert not hasattr(service, "health")
    for name in OPERATOR_FUNCTIONS:
        assert hasattr(operations, name), name
        assert not hasattr(service, name), f"cartsvc.service.{name} is still there"


def test_the_warming_pipeline_is_run_in_one_place():
    """`operations.warm_carts` orders the pipeline (claim, load, fill); the image keeps only
    its cache steps, with no second, unused pipeline of its own."""
    from cartsvc import image, operations

    assert callable(operations.warm_carts)
    assert callable(image.warm_claim) and callable(image.warm_fill)
    assert not hasattr(image, "warm"), "image.warm: a second warming pipeline, never called"
    assert not hasattr(image, "warm_load"), "the load step belongs to the pipeline"


def test_no_dead_helpers_are_left():
    """Functions nothing called (issue 11): the store's line and money helpers, verify's
    batch wrapper (operations.verify_carts is the one that runs)."""
    from cartsvc import store, verify

    assert not hasattr(store, "lines_of")
    assert not hasattr(store, "money_str")
    assert not hasattr(verify, "verify")


# ---------------------------------------------------------------- no import cycles


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported_modules(path: Path) -> set[str]:
    """The cartsvc modules a file imports, at the top or inside a function: `from cartsvc
    import image` names the module cartsvc.image, `from cartsvc.image import cart_key` too."""
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the file's package
                parent = package[: len(package) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            if name.split(".")[0] != "cartsvc":
                continue
            while name and not is_module(name):  # cartsvc.image.cart_key -> cartsvc.image
                name = name.rpartition(".")[0]
            if name and name != "cartsvc":
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for path in python_files("cartsvc"):
        graph[module_name(path)] = imported_modules(path) - {module_name(path)}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_the_cycle_finder_finds_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"f"}, "f": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_sees_function_level_imports():
    assert "cartsvc.service" in import_graph()["cartsvc.apps"]  # imported inside a function
    assert "cartsvc.image" in import_graph()["cartsvc.service"]  # from cartsvc import image


def test_the_apps_modules_import_each_other_without_cycles():
    """Imports flow one way inside cartsvc too: no module imports itself back through
    others (a cycle hidden in a function-level import included)."""
    assert cycles(import_graph()) == []
