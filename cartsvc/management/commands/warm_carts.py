"""Load recently active carts back into memory in bulk (after a deploy or a Redis restart)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cartsvc import operations
from cartsvc.progress import Progress, counted


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
        parser.add_argument(
            "--limit", type=positive, default=None, metavar="N", help="at most N carts"
        )
        parser.add_argument(
            "--batch-size",
            type=positive,
            default=1000,
            metavar="N",
            help="carts per query and cache call (default: 1000)",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="count the carts that would be warmed and those already warm; load nothing",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        total = operations.count_active(options["active_within"])
        if options["limit"] is not None:
            total = min(total, options["limit"])
        label = "checking" if options["dry_run"] else "warming"
        progress = Progress.on(self.stdout, total, label)
        result = operations.warm_carts(
            active_within=options["active_within"],
            limit=options["limit"],
            batch_size=options["batch_size"],
            dry_run=options["dry_run"],
            progress=progress.advance,
        )
        progress.close()
        self.stdout.write(str(result))
        if result.failed:
            could_not = "could not be checked" if options["dry_run"] else "could not be warmed"
            raise CommandError(f"{counted(result.failed, 'cart')} {could_not}", returncode=1)
