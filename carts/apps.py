"""App config."""

from django.apps import AppConfig


class CartsConfig(AppConfig):
    name = "carts"
    verbose_name = "Shop"
    default_auto_field = "django.db.models.BigAutoField"
