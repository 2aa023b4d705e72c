"""Check rows against the event log and memory; print each mismatch; optionally repair."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cartsvc import operations, service
from cartsvc.progress import Progress, counted


class Command(BaseCommand):
    help = (
        "Verify that rows = fold of events = snapshot + replay = memory for carts; "
        "with --repair, rebuild rows from the event log and evict memory that disagrees."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--all", action="store_true", help="every cart")
        which.add_argument("--ids", nargs="+", metavar="ID", help="these carts")
        parser.add_argument(
            "--repair",
            action="store_true",
            help="repair each cart with a mismatch from its event log (the truth): rewrite "
            "rows that disagree, evict a memory entry that disagrees; then verify it again",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        ids = None if options["all"] else options["ids"]
        total = operations.count_active(None) if ids is None else len(ids)
        progress = Progress.on(self.stdout, total, "verifying")
        checked = mismatches = 0

        def one_checked(n: int) -> None:
            nonlocal checked
            checked += n
            progress.advance(n)

        carts: dict[str, None] = {}  # the carts with a mismatch, in the order found
        for mismatch in operations.verify_carts(ids, progress=one_checked):
            mismatches += 1
            carts[mismatch.cart_id] = None
            progress.clear()
            self.stdout.write(f"MISMATCH {mismatch}")
        progress.close()
        summary = f"checked {counted(checked, 'cart')}: "
        if not mismatches:
            self.stdout.write(summary + "all carts consistent")
            return
        found = f"{counted(mismatches, 'mismatch', 'mismatches')} in {counted(len(carts), 'cart')}"
        if not options["repair"]:
            self.stdout.write(summary + found)
            raise CommandError(found, returncode=1)
        still = self.repair(list(carts))
        repaired = len(carts) - still
        self.stdout.write(
            f"{summary}{found}; repaired {counted(repaired, 'cart')}, "
            f"{counted(still, 'cart')} still {'mismatches' if still == 1 else 'mismatch'}"
        )
        if still:
            raise CommandError(f"{counted(still, 'cart')} not repaired", returncode=1)

    def repair(self, cart_ids: list[str]) -> int:
        """Repair each cart through the service, print what was done; the carts left."""
        progress = Progress.on(self.stdout, len(cart_ids), "repairing")
        still = 0
        for cart_id in cart_ids:
            try:
                repair = operations.repair_cart(cart_id)
            except service.NotFound:
                repair = None
            progress.clear()
            if repair is None:
                still += 1
                self.stdout.write(f"NOT REPAIRED {cart_id}: no such cart")
            elif repair.repaired:
                done = ", ".join(repair.done) or "consistent on a second look"
                self.stdout.write(f"REPAIRED {cart_id}: {done}")
            else:
                still += 1
                done = ", ".join(repair.done) or "nothing could be done"
                self.stdout.write(f"NOT REPAIRED {cart_id}: {done}")
                for mismatch in repair.remaining:
                    self.stdout.write(f"STILL MISMATCH {mismatch}")
            progress.advance()
        progress.close()
        return still
