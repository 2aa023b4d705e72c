"""The cart's SQL with Django's default binding and with the settings' own, interleaved.

Django binds parameters in the client and prepares nothing by default; config/settings.py
lets PostgreSQL bind them (`server_side_binding`) and prepare what a connection runs
DB_PREPARE_THRESHOLD times (5). Each round reconnects with one of the three and times, one
call at a time: add_line on an existing line (a catalog lookup, then the commit statement)
and a cold read (the entry evicted, untimed, then get_cart: one query loads the rows).
On the bench database only (its name must contain "bench").
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from django.db import connection

from bench.run import SKUS, ensure_database, fresh_schema, make_products, three_line_cart
from cartsvc import image, service

ROUNDS, CALLS = 8, 250
CHOICES = {
    "client-side binding, nothing prepared (Django's default)": {
        "server_side_binding": False,
        "prepare_threshold": None,
    },
    "server-side binding, nothing prepared": {
        "server_side_binding": True,
        "prepare_threshold": None,
    },
    "server-side binding, prepared after 5 runs (the settings)": {
        "server_side_binding": True,
        "prepare_threshold": 5,
    },
}


def use(options: dict[str, object]) -> None:
    connection.close()  # the next query connects with these options
    connection.settings_dict["OPTIONS"] = {**connection.settings_dict["OPTIONS"], **options}


def main() -> int:
    ensure_database()
    fresh_schema()
    make_products()
    cart_id = three_line_cart()
    adds: dict[str, list[float]] = {name: [] for name in CHOICES}
    reads: dict[str, list[float]] = {name: [] for name in CHOICES}
    for _round in range(ROUNDS):
        for name, options in CHOICES.items():
            use(options)
            for _call in range(CALLS):
                started = time.perf_counter()
                cart = service.add_line(cart_id, SKUS[0], 1)
                adds[name].append(time.perf_counter() - started)
                service.set_quantity(cart_id, cart.lines[0].id, 1)  # untimed: room again
                image.evict(cart_id)
                started = time.perf_counter()
                service.get_cart(cart_id)
                reads[name].append(time.perf_counter() - started)
    first = next(iter(CHOICES))
    base_add, base_read = statistics.median(adds[first]), statistics.median(reads[first])
    print(
        f"| {ROUNDS * CALLS} calls each, interleaved | add_line median µs | vs default"
        " | cold read median µs | vs default |"
    )
    print("|---|---:|---:|---:|---:|")
    for name in CHOICES:
        add, read = statistics.median(adds[name]), statistics.median(reads[name])
        print(
            f"| {name} | {add * 1e6:,.0f} | {add / base_add - 1:+.1%} | {read * 1e6:,.0f}"
            f" | {read / base_read - 1:+.1%} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
