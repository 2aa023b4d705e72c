"""warm_carts, verify_carts and the repair functions the admin uses."""

from __future__ import annotations

import io
import re
import uuid
from dataclasses import replace
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from cartsvc import image, operations, service
from cartsvc.events import dump_state, state_to_dict
from cartsvc.models import Cart, CartLine, CartSnapshot
from cartsvc.progress import counted
from tests.factories import make_cart

pytestmark = [pytest.mark.contract, pytest.mark.django_db]

SUMMARY = re.compile(
    r"^warmed (\d+), already warm (\d+), failed (\d+) in [\d.]+ s \([\d,]+ carts/s\)$"
)

DRY_RUN = re.compile(
    r"^would warm (\d+), already warm (\d+), failed (\d+) in [\d.]+ s \([\d,]+ carts/s\) "
    r"\(dry run\)$"
)


def run(name: str, *args: str) -> str:
    out = io.StringIO()
    call_command(name, *args, stdout=out)
    return out.getvalue()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def plant_memory(cart, state) -> None:
    """Put `state` in memory as the cart's entry, behind the service's back."""
    store = image.image_store()
    if not hasattr(store, "client"):
        pytest.skip("plants a Redis entry")
    store.client.hset(store.key(cart.id), "v", state.version)
    store.client.set(store.data_key(cart.id), dump_state(state))


def summary(output: str) -> tuple[int, int, int]:
    match = SUMMARY.match(output.strip().splitlines()[-1])
    assert match, output
    return tuple(int(n) for n in match.groups())


class TestWarm:
    def test_after_a_flush_every_cart_active_in_the_window_is_warmed(self, products):
        recent = [make_cart({"SKU-1": 1, "SKU-2": 2}) for _ in range(5)]
        old = make_cart({"SKU-3": 1})
        Cart.objects.filter(id=old.id).update(last_activity_at=timezone.now() - timedelta(days=2))
        image.clear()
        output = run("warm_carts", "--active-within", "3600", "--batch-size", "2")
        assert summary(output) == (5, 0, 0)
        cached = image.peek([c.id for c in [*recent, old]])
        assert {cart_id: cart for cart_id, cart in cached.items()} == {c.id: c for c in recent}

    def test_query_count_does_not_grow_with_the_carts_per_batch(self, products):
        counts = []
        for n in (3, 30):
            image.clear()
            carts = [make_cart({"SKU-1": 1}) for _ in range(n)]
            image.clear()
            service.get_cart(carts[0].id)  # the lease is granted outside the measurement
            image.evict(carts[0].id)
            with CaptureQueriesContext(connection) as queries:
                result = operations.warm_carts(batch_size=100)
            assert result.warmed >= n
            counts.append(len(queries))
        assert counts[0] == counts[1] <= 3

    def test_already_warm_carts_are_skipped_and_a_newer_entry_is_never_overwritten(self, products):
        warm, cold, raced = (make_cart({"SKU-1": 1}) for _ in range(3))
        image.clear()
        service.get_cart(warm.id)
        newer = {}

        def writer_publishes_first(payloads):
            image.HOOKS.pop("before_warm_fill")
            newer["cart"] = service.add_line(raced.id, "SKU-1", 1)

        image.HOOKS["before_warm_fill"] = writer_publishes_first
        result = operations.warm_carts()
        assert (result.warmed, result.already, result.failed) == (1, 2, 0)
        cached = image.peek([warm.id, cold.id, raced.id])
        assert cached == {warm.id: warm, cold.id: cold, raced.id: newer["cart"]}

    def test_dry_run_changes_nothing(self, products):
        make_cart({"SKU-1": 1})
        image.clear()
        assert DRY_RUN.match(run("warm_carts", "--dry-run").strip()).groups() == ("1", "0", "0")
        assert image.in_memory_count() == 0

    def test_dry_run_counts_the_cold_and_the_warm_carts_exactly_and_loads_nothing(self, products):
        carts = [make_cart({"SKU-1": 1}) for _ in range(7)]
        image.clear()
        warm = {c.id for c in carts[:3]}
        for cart_id in warm:
            service.get_cart(cart_id)
        output = run("warm_carts", "--dry-run", "--batch-size", "2")
        assert DRY_RUN.match(output.strip().splitlines()[-1]).groups() == ("4", "3", "0"), output
        assert operations.in_memory([c.id for c in carts]) == warm
        result = operations.warm_carts(dry_run=True)
        assert (result.warmed, result.already, result.failed, result.seen) == (4, 3, 0, 7)
        assert operations.in_memory([c.id for c in carts]) == warm
        # The real run then does what the dry run said.
        assert summary(run("warm_carts")) == (4, 3, 0)

    def test_limit(self, products):
        for _ in range(4):
            make_cart({"SKU-1": 1})
        image.clear()
        assert summary(run("warm_carts", "--limit", "3", "--batch-size", "2"))[0] == 3

    @pytest.mark.parametrize("bad", [["--limit", "0"], ["--batch-size", "-1"], ["--limit", "x"]])
    def test_bad_arguments_are_refused(self, bad):
        with pytest.raises(CommandError):
            run("warm_carts", *bad)


def a_good_and_a_tampered_cart() -> tuple[service.Cart, service.Cart]:
    """Two carts of the same lines, the second's line row changed behind the service."""
    good, bad = make_cart({"SKU-1": 2}), make_cart({"SKU-1": 2})
    CartLine.objects.filter(cart_id=bad.id).update(quantity=7)
    return good, bad


def verify_failing(*args: str) -> tuple[CommandError, str]:
    """Run verify_carts, which must fail: (its error, what it printed)."""
    out = io.StringIO()
    with pytest.raises(CommandError) as err:
        call_command("verify_carts", *args, stdout=out)
    return err.value, out.getvalue()


class TestVerify:
    def test_a_consistent_database_exits_0(self, products, settings):
        settings.CARTIMAGE = {**settings.CARTIMAGE, "SNAPSHOT_EVERY": 2}
        for _ in range(3):
            make_cart({"SKU-1": 2, "SKU-2": 1})
        assert run("verify_carts", "--all").strip().endswith("all carts consistent")

    def test_a_row_altered_behind_the_services_back_exits_1_naming_the_cart(self, products):
        good, bad = a_good_and_a_tampered_cart()
        err, printed = verify_failing("--all")
        assert err.returncode == 1
        assert f"MISMATCH {bad.id}: rows" in printed
        assert good.id not in printed

    def test_a_stale_memory_entry_is_a_mismatch(self, products):
        cart = make_cart({"SKU-1": 2})
        store = image.image_store()
        if not hasattr(store, "client"):
            pytest.skip("plants a Redis entry")
        ahead = replace(cart, version=cart.version + 5)
        store.client.hset(store.key(cart.id), "v", ahead.version)
        store.client.set(store.data_key(cart.id), dump_state(ahead))
        out = io.StringIO()
        with pytest.raises(CommandError):
            call_command("verify_carts", "--ids", cart.id, stdout=out)
        assert "memory holds version 7 but the event log ends at version 2: evict it" in (
            out.getvalue()
        )
        store.client.hset(store.key(cart.id), "v", cart.version)  # payload says v7
        out = io.StringIO()
        with pytest.raises(CommandError):
            call_command("verify_carts", "--ids", cart.id, stdout=out)
        assert "the memory entry can not be read (corrupt): evict it" in out.getvalue()

    def test_the_summary_counts_mismatches_and_carts_in_singular_and_plural(self, products):
        good, bad = a_good_and_a_tampered_cart()
        err, printed = verify_failing("--all")
        assert str(err) == "1 mismatch in 1 cart"
        assert printed.splitlines()[-1] == "checked 2 carts: 1 mismatch in 1 cart"
        worse = make_cart({"SKU-1": 1, "SKU-2": 1})
        CartLine.objects.filter(cart_id=worse.id).update(quantity=5)
        plant_memory(worse, replace(worse, version=worse.version + 1))
        err, printed = verify_failing("--ids", good.id, bad.id, worse.id)
        assert str(err) == "3 mismatches in 2 carts"
        assert printed.splitlines()[-1] == "checked 3 carts: 3 mismatches in 2 carts"

    def test_a_progress_bar_on_a_terminal_only(self, products):
        # The carts are checked in id order: the bad one last, so the bar is drawn before it.
        carts = sorted((make_cart({"SKU-1": 1}) for _ in range(3)), key=lambda c: c.id)
        CartLine.objects.filter(cart_id=carts[2].id).update(quantity=4)
        terminal = Terminal()
        with pytest.raises(CommandError):
            call_command("verify_carts", "--all", stdout=terminal)
        drawn = terminal.getvalue()
        assert "\rverifying [" in drawn and "3/3" in drawn
        # The mismatch is printed on a line of its own, not after a half-drawn bar.
        before = drawn[: drawn.index(f"MISMATCH {carts[2].id}: rows")]
        assert before.startswith("\rverifying [") and before.endswith("\r\x1b[2K"), repr(before)
        plain = io.StringIO()
        with pytest.raises(CommandError):
            call_command("verify_carts", "--all", stdout=plain)
        assert "\r" not in plain.getvalue() and "verifying" not in plain.getvalue()
        assert plain.getvalue().startswith(f"MISMATCH {carts[2].id}: rows")

    def test_unknown_ids_are_reported(self):
        out = io.StringIO()
        with pytest.raises(CommandError):
            call_command("verify_carts", "--ids", "nope", stdout=out)
        assert "not a cart id" in out.getvalue()

    def test_needs_all_or_ids(self):
        with pytest.raises(CommandError):
            run("verify_carts")


class TestRepair:
    def test_repair_rebuilds_bad_rows_and_evicts_bad_memory_then_all_is_consistent(self, products):
        good = make_cart({"SKU-1": 2})
        rows = make_cart({"SKU-1": 2, "SKU-2": 1})
        memory = make_cart({"SKU-3": 1})
        both = make_cart({"SKU-1": 1, "SKU-2": 3})
        CartLine.objects.filter(cart_id=rows.id, sku="SKU-2").update(quantity=9)
        plant_memory(memory, replace(memory, version=memory.version + 5))
        CartLine.objects.filter(cart_id=both.id).delete()
        plant_memory(both, replace(both, lines=both.lines[:1]))  # same version, not the fold
        out = io.StringIO()
        call_command("verify_carts", "--all", "--repair", stdout=out)  # exit 0: no CommandError
        lines = out.getvalue().splitlines()
        for cart in (rows, memory, both):
            assert any(line.startswith(f"MISMATCH {cart.id}: ") for line in lines), lines
        assert f"REPAIRED {rows.id}: rows rebuilt from the event log" in lines
        assert f"REPAIRED {memory.id}: memory entry evicted" in lines
        assert f"REPAIRED {both.id}: memory entry evicted, rows rebuilt from the event log" in lines
        assert good.id not in out.getvalue()
        assert lines[-1] == (
            "checked 4 carts: 4 mismatches in 3 carts; repaired 3 carts, 0 carts still mismatch"
        )
        assert run("verify_carts", "--all").strip() == "checked 4 carts: all carts consistent"
        for cart in (good, rows, memory, both):
            assert operations.rows_state(cart.id) == cart
            assert service.get_cart(cart.id) == cart

    def test_what_the_log_can_not_repair_is_reported_and_exits_1(self, products, settings):
        settings.CARTIMAGE = {**settings.CARTIMAGE, "SNAPSHOT_EVERY": 2}
        fixable = make_cart({"SKU-1": 2})
        CartLine.objects.filter(cart_id=fixable.id).update(quantity=3)
        cart = make_cart({"SKU-1": 2, "SKU-2": 1, "SKU-3": 1})
        snapshot = CartSnapshot.objects.filter(cart_id=cart.id).order_by("version").last()
        wrong = replace(service.cart_at(cart.id, snapshot.version), discount=None, lines=())
        CartSnapshot.objects.filter(pk=snapshot.pk).update(state=state_to_dict(wrong))
        out = io.StringIO()
        with pytest.raises(CommandError) as err:
            call_command("verify_carts", "--all", "--repair", stdout=out)
        assert err.value.returncode == 1
        assert str(err.value) == "1 cart not repaired"
        lines = out.getvalue().splitlines()
        assert f"REPAIRED {fixable.id}: rows rebuilt from the event log" in lines
        # The memory entry is the fold: only the snapshot disagrees, so it stays.
        assert f"NOT REPAIRED {cart.id}: nothing could be done" in lines
        assert operations.memory_image(cart.id) == cart
        still = f"STILL MISMATCH {cart.id}: the latest snapshot and the events after it say"
        assert any(line.startswith(still) for line in lines)
        assert lines[-1] == (
            "checked 2 carts: 3 mismatches in 2 carts; repaired 1 cart, 1 cart still mismatches"
        )

    def test_repair_cart_says_what_it_found_and_did(self, products):
        cart = make_cart({"SKU-1": 2})
        assert operations.repair_cart(cart.id) == operations.Repair(cart.id, [], [], [])
        CartLine.objects.filter(cart_id=cart.id).update(quantity=5)
        repair = operations.repair_cart(cart.id)
        assert [m.what for m in repair.found] == ["rows"]
        assert repair.done == ["rows rebuilt from the event log"]
        assert repair.remaining == [] and repair.repaired
        with pytest.raises(service.NotFound):
            operations.repair_cart("not-a-cart")
        with pytest.raises(service.NotFound):
            operations.repair_cart(str(uuid.uuid4()))

    def test_unknown_ids_are_not_repaired(self, products):
        out = io.StringIO()
        with pytest.raises(CommandError):
            call_command("verify_carts", "--ids", "nope", "--repair", stdout=out)
        assert "NOT REPAIRED nope" in out.getvalue()

    def test_rebuild_rows_restores_them_from_the_log(self, products):
        cart = make_cart({"SKU-1": 2, "SKU-2": 1})
        CartLine.objects.filter(cart_id=cart.id, sku="SKU-2").delete()
        Cart.objects.filter(id=cart.id).update(discount_code="BOGUS", discount_kind="fixed")
        assert list(operations.verify_carts([cart.id]))
        assert operations.rebuild_rows(cart.id) == cart
        assert list(operations.verify_carts([cart.id])) == []
        assert service.get_cart(cart.id) == cart

    def test_evict_and_rehydrate(self, products):
        cart = make_cart({"SKU-1": 2})
        assert operations.in_memory([cart.id]) == {cart.id}
        assert operations.evict_cart(cart.id) is True
        assert operations.memory_image(cart.id) is None
        assert operations.rehydrate_cart(cart.id) == cart
        assert operations.memory_image(cart.id) == cart


def test_counted_nouns():
    assert counted(1, "mismatch", "mismatches") == "1 mismatch"
    assert counted(2, "mismatch", "mismatches") == "2 mismatches"
    assert counted(0, "cart") == "0 carts"
    assert counted(1, "cart") == "1 cart"
    assert f"{counted(2, 'mismatch', 'mismatches')} in {counted(3, 'cart')}" == (
        "2 mismatches in 3 carts"
    )


def test_warm_payloads_are_exactly_what_the_codec_writes(products):
    from cartsvc import store
    from cartsvc.events import dump_state

    make_discount = __import__("tests.factories", fromlist=["make_discount"]).make_discount
    make_discount("TEN", "percent", "10")
    plain = make_cart({"SKU-1": 1})
    rich = make_cart({"SKU-1": 2, "SKU-2": 1, "SKU-3": 4})
    service.add_line(rich.id, "SKU-2", 1, {"size": "M", "color": "red"})
    service.save_for_later(rich.id, rich.lines[1].id)
    service.apply_discount(rich.id, "TEN")
    empty = service.open_cart()
    for cart in (plain, rich, empty):
        state = store.load_from_rows(cart.id)
        assert store.payloads_from_rows([cart.id]) == {cart.id: (state.version, dump_state(state))}
