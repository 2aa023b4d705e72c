"""List the event subscriptions with their position and lag; replay, resume, rebuild, drain."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cartsvc import subscriptions
from cartsvc.domain import InvalidInput
from cartsvc.progress import Progress, counted


class Command(BaseCommand):
    help = (
        "List every event subscription with its position and lag (events and seconds behind); "
        "--reset NAME replays it from the beginning (or --to now), --resume NAME restarts one "
        "stopped at a failing event, --rebuild NAME rebuilds its read model from the log, "
        "--drain delivers what is pending now."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--reset", metavar="NAME", help="move NAME's checkpoint (replay)")
        action.add_argument("--resume", metavar="NAME", help="restart NAME where it stopped")
        action.add_argument("--rebuild", metavar="NAME", help="rebuild NAME's read model")
        parser.add_argument(
            "--to",
            choices=("beginning", "now"),
            default="beginning",
            help="with --reset: replay from the beginning of the log (default) or skip to now",
        )
        parser.add_argument(
            "--drain",
            action="store_true",
            help="then deliver every pending event (a progress bar on a terminal)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["reset"]:
                subscriptions.reset(options["reset"], options["to"])
                self.stdout.write(f"{options['reset']}: checkpoint moved to {options['to']}")
            elif options["resume"]:
                subscriptions.resume(options["resume"])
                self.stdout.write(f"{options['resume']}: resumed")
            elif options["rebuild"]:
                subscriptions.rebuild(options["rebuild"])
                self.stdout.write(f"{options['rebuild']}: read model rebuilt from the log")
            if options["drain"]:
                self.drain(options["reset"] or options["resume"])
        except InvalidInput as exc:
            raise CommandError(str(exc)) from exc
        self.table()

    def drain(self, name: str | None) -> None:
        pending = sum(s.behind for s in subscriptions.status() if name in (None, s.name))
        progress = Progress.on(self.stdout, pending, "delivering")
        delivered: dict[str, int] = {}
        while True:  # until caught up: each call stops after its time budget
            found = subscriptions.drain(name, progress=progress.advance)
            for each, count in found.items():
                delivered[each] = delivered.get(each, 0) + count
            if not any(found.values()):
                break
        progress.close()
        for each, count in delivered.items():
            self.stdout.write(f"{each}: delivered {counted(count, 'event')}")

    def table(self) -> None:
        rows = subscriptions.status()
        self.stdout.write(
            f"{'subscription':<28} {'position':>22} {'delivered':>10} {'behind':>8} "
            f"{'lag (s)':>9}  state"
        )
        for row in rows:
            state = "running"
            if row.stopped:
                first_line = (row.last_error.strip().splitlines() or [""])[-1]
                state = f"STOPPED at event {row.failing_event_id}: {first_line}"
            elif row.failures:
                state = f"retrying event {row.failing_event_id} ({row.failures} failures)"
            self.stdout.write(
                f"{row.name:<28} {f'{row.position}/{row.last_id}':>22} {row.delivered:>10} "
                f"{row.behind:>8} {row.behind_seconds:>9.1f}  {state}"
            )
        if any(row.stopped for row in rows):
            raise CommandError("a subscription is stopped", returncode=2)
