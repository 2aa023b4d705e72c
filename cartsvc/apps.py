"""App config."""

from django.apps import AppConfig


class CartsvcConfig(AppConfig):
    name = "cartsvc"
    verbose_name = "Cart memory image"
    default_auto_field = "django.db.models.BigAutoField"
