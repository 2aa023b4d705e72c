"""App config."""

from django.apps import AppConfig


class OscarBasketBenchConfig(AppConfig):
    name = "bench.oscarbasket"
    label = "oscarbasket"
    verbose_name = "django-oscar's basket (benchmark comparison)"
