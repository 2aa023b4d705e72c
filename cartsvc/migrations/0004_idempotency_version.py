"""An idempotency key records the version it answered with, not the whole cart state."""

from django.db import migrations, models


def versions_from_states(apps, schema_editor):
    keys = apps.get_model("cartsvc", "IdempotencyKey")
    for row in keys.objects.only("pk", "state").iterator():
        keys.objects.filter(pk=row.pk).update(version=row.state["v"])


class Migration(migrations.Migration):
    dependencies = [("cartsvc", "0003_owner_deleted_closes_carts")]

    operations = [
        migrations.AddField(
            model_name="idempotencykey",
            name="version",
            field=models.PositiveIntegerField(null=True),
        ),
        migrations.RunPython(versions_from_states, migrations.RunPython.noop, elidable=True),
        migrations.RemoveField(model_name="idempotencykey", name="state"),
        migrations.AlterField(
            model_name="idempotencykey",
            name="version",
            field=models.PositiveIntegerField(),
        ),
    ]
