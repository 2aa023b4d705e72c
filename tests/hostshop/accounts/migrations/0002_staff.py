from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="Staff",
            fields=[],
            options={"proxy": True, "indexes": [], "constraints": []},
            bases=("accounts.user",),
        ),
    ]
