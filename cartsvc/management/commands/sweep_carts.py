"""sweep_carts: one passivation + abandonment pass, the same code the Celery tasks run."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from cartsvc import lifecycle


class Command(BaseCommand):
    help = (
        "Passivate idle carts, expire abandoned ones and purge old idempotency keys, once "
        "(what the Celery beat schedule runs periodically). Safe to run at any time, also "
        "next to a running worker."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        result = lifecycle.sweep()
        self.stdout.write(str(result))
