"""App config: system checks, a deleted user's carts closed, built-in subscriptions made."""

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate, pre_delete


def _close_carts_of_deleted_user(sender: Any, instance: Any, **kwargs: Any) -> None:
    # The cart's owner is a foreign key that the database enforces (on_delete=DO_NOTHING):
    # a user goes only once the service has recorded, in the deletion's own transaction,
    # that their carts are closed, so the log, the rows and the memory image agree and no
    # cart becomes anyone's. A deletion that bypasses the ORM fails on the key instead.
    from cartsvc import service

    service.close_user_carts(instance.pk)


class CartsvcConfig(AppConfig):
    name = "cartsvc"
    verbose_name = "Cart memory image"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model

        from cartsvc import checks  # noqa: F401 (registers them)
        from cartsvc.subscriptions import create_builtin

        post_migrate.connect(create_builtin, sender=self, dispatch_uid="cartsvc.subscriptions")

        user_model = get_user_model()
        # Django sends pre_delete with the class the deletion was asked of: a proxy of the
        # user model (a staff-only admin, say) is a sender of its own.
        registry = self.apps
        assert registry is not None  # the registry sets it before calling ready()
        for model in registry.get_models():
            if model is user_model or (model._meta.proxy and issubclass(model, user_model)):
                pre_delete.connect(
                    _close_carts_of_deleted_user,
                    sender=model,
                    dispatch_uid=f"cartsvc.close_carts_of_deleted_user.{model._meta.label}",
                )
