"""The demand read model's tables (cartsvc.demand): per SKU sums and per cart contributions."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("cartsvc", "0005_event_position")]

    operations = [
        migrations.CreateModel(
            name="DemandCart",
            fields=[
                ("cart_id", models.UUIDField(primary_key=True, serialize=False)),
                ("version", models.PositiveIntegerField()),
                ("open", models.BooleanField()),
                ("lines", models.JSONField(default=dict)),
            ],
        ),
        migrations.CreateModel(
            name="DemandItem",
            fields=[
                ("sku", models.CharField(max_length=64, primary_key=True, serialize=False)),
                ("units", models.PositiveIntegerField()),
                ("carts", models.PositiveIntegerField()),
            ],
            options={
                "indexes": [models.Index(fields=["-units", "sku"], name="demanditem_units")],
            },
        ),
    ]
