"""App config."""

from django.apps import AppConfig


class NaiveCartConfig(AppConfig):
    name = "bench.naivecart"
    label = "naivecart"
    verbose_name = "Naive ORM cart (benchmark baseline)"
    default_auto_field = "django.db.models.BigAutoField"
