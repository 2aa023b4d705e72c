"""Load recently active carts back into memory in bulk (after a deploy or a Redis restart)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cartsvc import service
from cartsvc.progress import Progress


def positive(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = "Warm carts into memory: claim, load and fill in batches, never over a newer entry."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--active-within",
            type=positive,
            default=None,
            metavar="SECONDS",
            help="only carts active in the last SECONDS (default: all)",
        )
        parser.add_argument("--limit", type=positive, default=None, metavar="N")
        parser.add_argument("--batch-size", type=positive, default=1000, metavar="N")
        parser.add_argument(
            "--dry-run", action="store_true", help="count what would be warmed; change nothing"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        total = service.count_active(options["active_within"])
        if options["limit"] is not None:
            total = min(total, options["limit"])
        progress = Progress(self.stdout._out, total, "warming")
        result = service.warm_carts(
            active_within=options["active_within"],
            limit=options["limit"],
            batch_size=options["batch_size"],
            dry_run=options["dry_run"],
            progress=progress.advance,
        )
        progress.close()
        if options["dry_run"]:
            self.stdout.write(f"dry run: {result.seen} carts would be warmed")
            return
        self.stdout.write(str(result))
        if result.failed:
            raise CommandError(f"{result.failed} carts could not be warmed", returncode=1)
