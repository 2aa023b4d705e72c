"""Entry points of the topology tests' spawned writers; Django is imported only after bootstrap."""

from __future__ import annotations

from tests.procs import bootstrap


def add_and_read(config, plan, sku, go, results, pause_at=None, resume=None) -> None:
    """One add of `sku` to each cart of `plan` in turn, each followed by a read of the same
    cart; before call `pause_at`, waits for `resume` (set by the parent once its fault has
    begun). Puts (observations, errors): per call (cart id, version the add returned,
    version the read after it returned)."""
    bootstrap(config)
    from cartsvc import service

    observations, errors = [], []
    go.wait(60)
    for call, cart_id in enumerate(plan):
        if call == pause_at:
            resume.wait(60)
        try:
            written = service.add_line(cart_id, sku, 1).version
        except Exception as exc:  # the parent reports every failure, of any kind
            errors.append(f"add {cart_id}: {exc!r}")
            continue
        try:
            read = service.get_cart(cart_id).version
        except Exception as exc:  # as above
            errors.append(f"read {cart_id}: {exc!r}")
            continue
        observations.append((cart_id, written, read))
    results.put((observations, errors))


def read_versions(config, cart_ids, go, results) -> None:
    """One read of each cart, from a process that never saw them before."""
    bootstrap(config)
    from cartsvc import service

    go.wait(60)
    results.put({cart_id: service.get_cart(cart_id).version for cart_id in cart_ids})
