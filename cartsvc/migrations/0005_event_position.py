"""Every event gets a gap-safe position for subscribers, and subscriptions their checkpoints.

On PostgreSQL a trigger sets an event's position to the inserting transaction's id (xid8), or
to the cart's previous event's position if that is higher: readers take only positions below
the oldest transaction still running (`pg_snapshot_xmin`), so an event committed late by a
slow transaction is never skipped, and a cart's events come in version order even when a
transaction that started earlier wrote the later version. Existing events keep position 0 and
come first, in id order. SQLite commits one writer at a time: there the id order is the
commit order, and positions stay 0.
"""

from django.db import migrations, models

POSITION_TRIGGER = """
CREATE FUNCTION cartsvc_event_position() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.position := GREATEST(
    pg_current_xact_id()::text::bigint,
    COALESCE(
      (SELECT e.position FROM cartsvc_cartevent e
        WHERE e.cart_id = NEW.cart_id AND e.version = NEW.version - 1),
      0));
  RETURN NEW;
END $$;
CREATE TRIGGER cartsvc_event_position BEFORE INSERT ON cartsvc_cartevent
  FOR EACH ROW EXECUTE FUNCTION cartsvc_event_position();
"""

DROP_TRIGGER = """
DROP TRIGGER IF EXISTS cartsvc_event_position ON cartsvc_cartevent;
DROP FUNCTION IF EXISTS cartsvc_event_position();
"""


def create_position_index(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        # CONCURRENTLY: carts go on being written while a big event table is indexed (a
        # plain CREATE INDEX would block them for the whole build); no statement timeout,
        # the app's own would cancel it on a large log. Not inside a caller's transaction,
        # where PostgreSQL refuses it: there, the plain statement below.
        schema_editor.execute("SET statement_timeout = 0")
        schema_editor.execute(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS cartevent_position"
            " ON cartsvc_cartevent (position, id)"
        )
        schema_editor.execute("RESET statement_timeout")
    else:
        schema_editor.execute(
            "CREATE INDEX IF NOT EXISTS cartevent_position ON cartsvc_cartevent (position, id)"
        )


def drop_position_index(apps, schema_editor):
    schema_editor.execute("DROP INDEX IF EXISTS cartevent_position")


def create_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSITION_TRIGGER)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_TRIGGER)


class Migration(migrations.Migration):
    # Each step commits on its own: the column (a default of 0 is a change to the catalog
    # only, no table rewrite) and the trigger take their locks for a moment, the index is
    # built without blocking writes.
    atomic = False

    dependencies = [("cartsvc", "0004_idempotency_version")]

    operations = [
        migrations.AddField(
            model_name="cartevent",
            name="position",
            field=models.BigIntegerField(default=0),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddIndex(
                    model_name="cartevent",
                    index=models.Index(fields=["position", "id"], name="cartevent_position"),
                ),
            ],
            database_operations=[
                migrations.RunPython(create_position_index, drop_position_index),
            ],
        ),
        migrations.RunPython(create_trigger, drop_trigger),
        migrations.CreateModel(
            name="Subscription",
            fields=[
                ("name", models.CharField(max_length=100, primary_key=True, serialize=False)),
                ("position", models.BigIntegerField()),
                ("last_id", models.BigIntegerField()),
                ("stopped", models.BooleanField(default=False)),
                ("failures", models.PositiveIntegerField(default=0)),
                ("failing_event_id", models.BigIntegerField(blank=True, null=True)),
                ("last_error", models.TextField(blank=True, default="")),
                ("retry_at", models.DateTimeField(blank=True, null=True)),
                ("delivered", models.BigIntegerField(default=0)),
                ("delivered_at", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField()),
            ],
        ),
    ]
