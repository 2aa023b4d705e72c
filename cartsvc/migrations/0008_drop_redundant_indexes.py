"""Drop indexes that every command wrote and no query needs.

`Cart.status` is served by the (status, last_activity_at) index; a cart's lines, events and
snapshots by their unique (cart, line_id) and (cart, version) constraints; nothing looks lines
up by sku. Django's AlterField would drop the foreign keys' indexes by dropping and adding the
foreign key constraints again, which checks every row of the event log under a lock: so the
state changes alone, and the database only loses the indexes (on PostgreSQL concurrently, so
that a running shop's commands are not held up).
"""

import django.db.models.deletion
from django.db import migrations, models

# (table, column): a non-unique index on exactly this column is dropped.
REDUNDANT = (
    ("cartsvc_cart", "status"),
    ("cartsvc_cartline", "cart_id"),
    ("cartsvc_cartline", "sku"),
    ("cartsvc_cartevent", "cart_id"),
    ("cartsvc_cartsnapshot", "cart_id"),
)


def drop_indexes(apps, schema_editor):
    connection = schema_editor.connection
    concurrently = " CONCURRENTLY" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        for table, column in REDUNDANT:
            found = connection.introspection.get_constraints(cursor, table)
            for name, info in sorted(found.items()):
                if info["index"] and not info["unique"] and info["columns"] == [column]:
                    schema_editor.execute(
                        f"DROP INDEX{concurrently} IF EXISTS {schema_editor.quote_name(name)}"
                    )


def create_indexes(apps, schema_editor):
    for table, column in REDUNDANT:
        name = schema_editor.quote_name(f"{table}_{column}_0008")
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON {schema_editor.quote_name(table)}"
            f" ({schema_editor.quote_name(column)})"
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
