"""Check rows against the event log and memory; print each mismatch; exit 1 if any."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cartsvc import service


class Command(BaseCommand):
    help = "Verify that rows = fold of events = snapshot + replay = memory for carts."

    def add_arguments(self, parser: CommandParser) -> None:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--all", action="store_true", help="every cart")
        which.add_argument("--ids", nargs="+", metavar="ID", help="these carts")

    def handle(self, *args: Any, **options: Any) -> None:
        mismatches = 0
        carts: set[str] = set()
        for mismatch in service.verify_carts(None if options["all"] else options["ids"]):
            mismatches += 1
            carts.add(mismatch.cart_id)
            self.stdout.write(f"MISMATCH {mismatch}")
        if mismatches:
            raise CommandError(f"{mismatches} mismatches in {len(carts)} carts", returncode=1)
        self.stdout.write("all carts consistent")
