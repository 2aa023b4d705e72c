"""The schema the migrations build: every model change has its migration, the tables every
command writes carry no index that only costs writes, and migration 0008 drops only the
indexes Django built for them and gives them back, as they were, when it is reversed."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction

from cartsvc import service

pytestmark = pytest.mark.django_db

TABLES = ("cartsvc_cart", "cartsvc_cartline", "cartsvc_cartevent", "cartsvc_cartsnapshot")
# (table, column) of each index 0008 drops; on PostgreSQL the varchar ones have a _like twin.
DROPPED = (
    ("cartsvc_cart", "status"),
    ("cartsvc_cartline", "cart_id"),
    ("cartsvc_cartline", "sku"),
    ("cartsvc_cartevent", "cart_id"),
    ("cartsvc_cartsnapshot", "cart_id"),
)
LIKE = {("cartsvc_cart", "status"), ("cartsvc_cartline", "sku")}


def test_every_model_change_has_its_migration():
    out = io.StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)  # SystemExit(1) if not
    assert "No changes detected" in out.getvalue()


def _indexes(table: str) -> dict[str, dict]:
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, table)
    return {name: info for name, info in found.items() if info["index"] or info["unique"]}


@pytest.mark.parametrize(
    ("table", "column", "served_by"),
    [
        ("cartsvc_cart", "status", ["status", "last_activity_at"]),
        ("cartsvc_cartline", "cart_id", ["cart_id", "line_id"]),
        ("cartsvc_cartline", "sku", None),  # nothing looks lines up by sku
        ("cartsvc_cartevent", "cart_id", ["cart_id", "version"]),
        ("cartsvc_cartsnapshot", "cart_id", ["cart_id", "version"]),
    ],
)
def test_no_index_of_one_column_that_another_index_serves(table, column, served_by):
    found = _indexes(table)
    alone = [
        name
        for name, info in found.items()
        if info["index"] and not info["unique"] and info["columns"] == [column]
    ]
    assert alone == []
    if served_by is not None:
        assert any(info["columns"] == served_by for info in found.values())


def test_the_tables_keep_every_other_index_and_their_foreign_keys():
    kept = {
        table: sorted(
            (info["columns"], bool(info["unique"] or info["primary_key"]))
            for info in _indexes(table).values()
        )
        for table in TABLES
    }
    assert kept == {
        "cartsvc_cart": sorted(
            [
                (["id"], True),
                (["last_activity_at"], False),
                (["owner_id"], False),
                (["status", "last_activity_at"], False),
            ]
        ),
        "cartsvc_cartline": sorted([(["id"], True), (["cart_id", "line_id"], True)]),
        "cartsvc_cartevent": sorted(
            [
                (["id"], True),
                (["cart_id", "command_id"], False),
                (["cart_id", "version"], True),
                (["position", "id"], False),
            ]
        ),
        "cartsvc_cartsnapshot": sorted([(["id"], True), (["cart_id", "version"], True)]),
    }
    for table in TABLES[1:]:
        with connection.cursor() as cursor:
            found = connection.introspection.get_constraints(cursor, table)
        assert [
            info["foreign_key"]
            for info in found.values()
            if info["columns"] == ["cart_id"] and info["foreign_key"]
        ] == [("cartsvc_cart", "id")]


# ---------------------------------------------------------------- 0008 both ways


def _definitions() -> set[str]:
    """Every index of the four tables as the database would build it again."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema()"
                " AND tablename = ANY(%s)",
                [list(TABLES)],
            )
        else:
            cursor.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
                f" AND tbl_name IN ({', '.join(['%s'] * len(TABLES))})",
                list(TABLES),
            )
        return {definition for (definition,) in cursor.fetchall()}


def _built_by_0007() -> dict[str, str]:
    """{name: indexed column(s)} of what 0007's db_index=True built on the dropped columns."""
    # Only the editor's naming: not entered, so it runs nothing (and SQLite's would refuse
    # to open inside the caller's transaction of the atomic test).
    editor = connection.schema_editor()
    built = {}
    for table, column in DROPPED:
        built[editor._create_index_name(table, [column], suffix="")] = column
        if connection.vendor == "postgresql" and (table, column) in LIKE:
            like = editor._create_index_name(table, [column], suffix="_like")
            built[like] = f"{column} varchar_pattern_ops"
    return built


def _migrate(*target: str) -> None:
    call_command("migrate", "cartsvc", *target, verbosity=0)


@pytest.fixture
def back_to_0008() -> Iterator[None]:
    """Whatever a test does to the schema, the next one finds it migrated."""
    try:
        yield
    finally:
        _migrate()


def _shop_indexes() -> dict[str, str]:
    """Indexes a shop may add of its own on the same columns, which 0008 must leave."""
    if connection.vendor == "postgresql":
        return {
            "shop_open_carts": "CREATE INDEX shop_open_carts ON cartsvc_cart (status)"
            " WHERE status = 'open'",
            "shop_sku_hash": "CREATE INDEX shop_sku_hash ON cartsvc_cartline USING hash (sku)",
            "shop_sku_lower": "CREATE INDEX shop_sku_lower ON cartsvc_cartline (lower(sku))",
            "shop_events_brin": "CREATE INDEX shop_events_brin ON cartsvc_cartevent"
            " USING brin (cart_id)",
        }
    return {
        "shop_open_carts": "CREATE INDEX shop_open_carts ON cartsvc_cart (status)"
        " WHERE status = 'open'",
        "shop_sku_lower": "CREATE INDEX shop_sku_lower ON cartsvc_cartline (lower(sku))",
    }


@pytest.mark.contract
@pytest.mark.django_db(transaction=True)
def test_0008_reversed_gives_back_what_0007_built_and_keeps_a_shops_own_indexes(back_to_0008):
    at_0008 = _definitions()
    _migrate("0007")
    back = _definitions()
    assert back >= at_0008
    added = {d.replace('"', "") for d in back - at_0008}
    built = _built_by_0007()
    assert len(added) == len(built)  # each of them, and nothing else
    for name, columns in built.items():
        (definition,) = [d for d in added if f"INDEX {name} ON" in d]
        assert definition.endswith(f"({columns})")  # a plain index: not unique, no predicate
        assert definition.startswith("CREATE INDEX")

    for sql in _shop_indexes().values():
        with connection.cursor() as cursor:
            cursor.execute(sql)
    _migrate()
    left = _definitions()
    assert left - at_0008 == {d for d in left if any(name in d for name in _shop_indexes())}
    assert len(left - at_0008) == len(_shop_indexes())  # the shop's indexes, all of them
    assert left >= at_0008
    for name in _shop_indexes():
        with connection.cursor() as cursor:
            cursor.execute(f"DROP INDEX {name}")
    assert _definitions() == at_0008


@pytest.mark.django_db(transaction=True)
def test_0008_runs_both_ways_inside_a_callers_transaction(back_to_0008):
    at_0008 = _definitions()
    with transaction.atomic():  # PostgreSQL refuses CONCURRENTLY here: the plain statements
        _migrate("0007")
        assert len(_definitions() - at_0008) == len(_built_by_0007())
        _migrate()
    assert _definitions() == at_0008


@pytest.mark.django_db(transaction=True)
def test_0008_reversed_rebuilds_an_index_an_interrupted_build_left_invalid(back_to_0008):
    if connection.vendor != "postgresql":
        pytest.skip("concurrent index builds are PostgreSQL's")
    service.open_cart()
    service.open_cart()  # two carts with one status: a unique build on it fails midway
    name = next(n for n, column in _built_by_0007().items() if column == "status")
    with connection.cursor() as cursor:
        with pytest.raises(IntegrityError, match="could not create unique index"):
            cursor.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {name} ON cartsvc_cart (status)")
        cursor.execute(
            "SELECT x.indisvalid FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
            " WHERE i.relname = %s",
            [name],
        )
        assert cursor.fetchone() == (False,)  # what a build cut short leaves
    _migrate("0007")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT x.indisvalid, x.indisunique FROM pg_index x"
            " JOIN pg_class i ON i.oid = x.indexrelid WHERE i.relname = %s",
            [name],
        )
        assert cursor.fetchone() == (True, False)


@pytest.mark.django_db(transaction=True)
def test_0005s_concurrent_index_is_built_inside_a_callers_transaction_too(back_to_0008):
    at_0008 = _definitions()
    with transaction.atomic():
        _migrate("0004")
        assert not any("cartevent_position" in d for d in _definitions())
        _migrate()
    assert _definitions() == at_0008
