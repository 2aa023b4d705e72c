"""add_line with and without the event-position trigger (issue 7), interleaved in one run.

Drops the trigger for the "without" rounds and puts it back after; on the bench database
only (its name must contain "bench").
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from django.db import connection

from bench.run import SKUS, ensure_database, fresh_schema, make_products, three_line_cart
from cartsvc import service

ROUNDS, CALLS = 10, 200
TRIGGER = "cartsvc_event_position"


def main() -> int:
    ensure_database()
    fresh_schema()
    make_products()
    cart_id = three_line_cart()
    found: dict[bool, list[float]] = {True: [], False: []}
    try:
        for _round in range(ROUNDS):
            for with_trigger in (True, False):
                with connection.cursor() as cursor:
                    # Without the trigger the column takes a plain default, as before it.
                    state = "ENABLE" if with_trigger else "DISABLE"
                    cursor.execute(f"ALTER TABLE cartsvc_cartevent {state} TRIGGER {TRIGGER}")
                    cursor.execute("ALTER TABLE cartsvc_cartevent ALTER position SET DEFAULT 0")
                for _call in range(CALLS):
                    started = time.perf_counter()
                    cart = service.add_line(cart_id, SKUS[0], 1)
                    found[with_trigger].append(time.perf_counter() - started)
                    service.set_quantity(cart_id, cart.lines[0].id, 1)  # untimed: room again
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE cartsvc_cartevent ENABLE TRIGGER {TRIGGER}")
            cursor.execute("ALTER TABLE cartsvc_cartevent ALTER position DROP DEFAULT")
    on, off = (statistics.median(found[key]) * 1e6 for key in (True, False))
    print(
        f"add_line on an existing line, median of {ROUNDS * CALLS} calls each, interleaved: "
        f"without the position trigger {off:,.0f} µs, with it {on:,.0f} µs ({on / off - 1:+.1%})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
