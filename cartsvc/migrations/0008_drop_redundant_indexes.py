"""Drop indexes that every command wrote and no query needs.

`Cart.status` is served by the (status, last_activity_at) index; a cart's lines, events and
snapshots by their unique (cart, line_id) and (cart, version) constraints; nothing looks lines
up by sku. Django's AlterField would drop the foreign keys' indexes by dropping and adding the
foreign key constraints again, which checks every row of the event log under a lock: so the
state changes alone, and the database only loses the indexes (on PostgreSQL concurrently, so
that a running shop's commands are not held up).

Only the indexes `db_index=True` made are dropped: on PostgreSQL a plain btree on exactly the
column, with no predicate and the column's default operator class or `varchar_pattern_ops`
(Django's `_like` twin). An index a shop added of its own (partial, on an expression, another
access method) stays. The database side reads the catalog when it runs, so `sqlmigrate` shows
what it would drop from the database it is pointed at.
"""

from contextlib import contextmanager

import django.db.models.deletion
from django.db import migrations, models

# (model, field) whose own index goes.
REDUNDANT = (
    ("cart", "status"),
    ("cartline", "cart"),
    ("cartline", "sku"),
    ("cartevent", "cart"),
    ("cartsnapshot", "cart"),
)

# The indexes db_index=True builds on PostgreSQL, and nothing else on the column.
POSTGRESQL_OWN_INDEXES = """
SELECT i.relname
  FROM pg_index x
  JOIN pg_class i ON i.oid = x.indexrelid
  JOIN pg_class t ON t.oid = x.indrelid
  JOIN pg_am am ON am.oid = i.relam
  JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = x.indkey[0]
  JOIN pg_opclass oc ON oc.oid = x.indclass[0]
 WHERE t.relname = %s AND pg_catalog.pg_table_is_visible(t.oid) AND a.attname = %s
   AND am.amname = 'btree' AND x.indnatts = 1 AND x.indpred IS NULL AND x.indexprs IS NULL
   AND NOT x.indisunique AND NOT x.indisprimary
   AND (oc.opcdefault OR oc.opcname = 'varchar_pattern_ops')
 ORDER BY 1
"""
INVALID = """
SELECT NOT x.indisvalid FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
 WHERE i.relname = %s AND pg_catalog.pg_table_is_visible(i.oid)
"""


def _targets(apps):
    """(table, column, field) of each redundant index, from the migration's own state."""
    for model_name, field_name in REDUNDANT:
        model = apps.get_model("cartsvc", model_name)
        field = model._meta.get_field(field_name)
        yield model._meta.db_table, field.column, field


@contextmanager
def _concurrently(schema_editor):
    """Yield " CONCURRENTLY" on PostgreSQL (writes go on meanwhile), unless the caller runs
    the migration inside a transaction, where PostgreSQL refuses it: then "", plain ones."""
    connection = schema_editor.connection
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        yield ""
        return
    # A concurrent build or drop waits for running transactions: the app's own statement
    # and lock timeouts would cancel it on a busy shop.
    schema_editor.execute("SET statement_timeout = 0")
    schema_editor.execute("SET lock_timeout = 0")
    try:
        yield " CONCURRENTLY"
    finally:
        schema_editor.execute("RESET statement_timeout")
        schema_editor.execute("RESET lock_timeout")


def _redundant_indexes(schema_editor, table: str, column: str) -> list[str]:
    """The names of the indexes db_index=True built on the column, and of nothing else."""
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(POSTGRESQL_OWN_INDEXES, [table, column])
            return [name for (name,) in cursor.fetchall()]
        # SQLite: every index is a btree, and a partial one is not reported apart: the name
        # Django gave it tells.
        ours = schema_editor._create_index_name(table, [column], suffix="")
        found = connection.introspection.get_constraints(cursor, table)
        return [
            name
            for name, info in found.items()
            if name == ours and info["index"] and not info["unique"]
        ]


def drop_indexes(apps, schema_editor):
    quote = schema_editor.quote_name
    with _concurrently(schema_editor) as concurrently:
        for table, column, _field in _targets(apps):
            for name in _redundant_indexes(schema_editor, table, column):
                schema_editor.execute(f"DROP INDEX{concurrently} IF EXISTS {quote(name)}")


def _invalid(schema_editor, index: str) -> bool:
    """Whether an interrupted concurrent build left an invalid index of that name (which
    CREATE INDEX IF NOT EXISTS would keep for good)."""
    if schema_editor.connection.vendor != "postgresql":
        return False
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(INVALID, [index])
        found = cursor.fetchone()
    return bool(found and found[0])


def create_indexes(apps, schema_editor):
    # `apps` is 0007's state here (db_index=True): the names and operator classes it built.
    connection = schema_editor.connection
    quote = schema_editor.quote_name
    with _concurrently(schema_editor) as concurrently:
        for table, column, field in _targets(apps):
            name = schema_editor._create_index_name(table, [column], suffix="")
            wanted = [(name, quote(column))]
            if connection.vendor == "postgresql" and field.db_type(connection).startswith(
                "varchar"
            ):
                like = schema_editor._create_index_name(table, [column], suffix="_like")
                wanted.append((like, f"{quote(column)} varchar_pattern_ops"))
            for index, columns in wanted:
                if _invalid(schema_editor, index):
                    schema_editor.execute(f"DROP INDEX{concurrently} IF EXISTS {quote(index)}")
                schema_editor.execute(
                    f"CREATE INDEX{concurrently} IF NOT EXISTS {quote(index)}"
                    f" ON {quote(table)} ({columns})"
                )


class Migration(migrations.Migration):
    atomic = False  # DROP INDEX CONCURRENTLY runs outside a transaction

    dependencies = [
        ("cartsvc", "0007_webhooks"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="cart",
                    name="status",
                    field=models.CharField(max_length=16),
                ),
                migrations.AlterField(
                    model_name="cartevent",
                    name="cart",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="events",
                        to="cartsvc.cart",
                    ),
                ),
                migrations.AlterField(
                    model_name="cartline",
                    name="cart",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="line_rows",
                        to="cartsvc.cart",
                    ),
                ),
                migrations.AlterField(
                    model_name="cartline",
                    name="sku",
                    field=models.CharField(max_length=64),
                ),
                migrations.AlterField(
                    model_name="cartsnapshot",
                    name="cart",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="snapshots",
                        to="cartsvc.cart",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(drop_indexes, create_indexes)],
        ),
    ]
