"""App config: registers the system checks (`manage.py check`, ids cartimage.*)."""

from django.apps import AppConfig


class CartsvcConfig(AppConfig):
    name = "cartsvc"
    verbose_name = "Cart memory image"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from cartsvc import checks  # noqa: F401 (registers them)
