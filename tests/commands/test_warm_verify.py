"""warm_carts, verify_carts and the repair functions the admin uses."""

from __future__ import annotations

import io
import re
from dataclasses import replace
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from cartsvc import image, service
from cartsvc.events import dump_state
from cartsvc.models import Cart, CartLine
from tests.factories import make_cart

pytestmark = [pytest.mark.contract, pytest.mark.django_db]

SUMMARY = re.compile(
    r"^warmed (\d+), already warm (\d+), failed (\d+) in [\d.]+ s \([\d,]+ carts/s\)$"
)


def run(name: str, *args: str) -> str:
    out = io.StringIO()
    call_command(name, *args, stdout=out)
    return out.getvalue()


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
                result = service.warm_carts(batch_size=100)
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
        result = service.warm_carts()
        assert (result.warmed, result.already, result.failed) == (1, 2, 0)
        cached = image.peek([warm.id, cold.id, raced.id])
        assert cached == {warm.id: warm, cold.id: cold, raced.id: newer["cart"]}

    def test_dry_run_changes_nothing(self, products):
        make_cart({"SKU-1": 1})
        image.clear()
        assert run("warm_carts", "--dry-run").strip() == "dry run: 1 carts would be warmed"
        assert image.in_memory_count() == 0

    def test_limit(self, products):
        for _ in range(4):
            make_cart({"SKU-1": 1})
        image.clear()
        assert summary(run("warm_carts", "--limit", "3", "--batch-size", "2"))[0] == 3

    @pytest.mark.parametrize("bad", [["--limit", "0"], ["--batch-size", "-1"], ["--limit", "x"]])
    def test_bad_arguments_are_refused(self, bad):
        with pytest.raises(CommandError):
            run("warm_carts", *bad)


class TestVerify:
    def test_a_consistent_database_exits_0(self, products, settings):
        settings.CARTIMAGE = {**settings.CARTIMAGE, "SNAPSHOT_EVERY": 2}
        for _ in range(3):
            make_cart({"SKU-1": 2, "SKU-2": 1})
        assert run("verify_carts", "--all").strip().endswith("all carts consistent")

    def test_a_row_altered_behind_the_services_back_exits_1_naming_the_cart(self, products):
        good = make_cart({"SKU-1": 2})
        bad = make_cart({"SKU-1": 2})
        CartLine.objects.filter(cart_id=bad.id).update(quantity=7)
        out = io.StringIO()
        with pytest.raises(CommandError) as err:
            call_command("verify_carts", "--all", stdout=out)
        assert err.value.returncode == 1
        assert f"MISMATCH {bad.id}: rows" in out.getvalue()
        assert good.id not in out.getvalue()

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

    def test_unknown_ids_are_reported(self):
        out = io.StringIO()
        with pytest.raises(CommandError):
            call_command("verify_carts", "--ids", "nope", stdout=out)
        assert "not a cart id" in out.getvalue()

    def test_needs_all_or_ids(self):
        with pytest.raises(CommandError):
            run("verify_carts")


class TestRepair:
    def test_rebuild_rows_restores_them_from_the_log(self, products):
        cart = make_cart({"SKU-1": 2, "SKU-2": 1})
        CartLine.objects.filter(cart_id=cart.id, sku="SKU-2").delete()
        Cart.objects.filter(id=cart.id).update(discount_code="BOGUS", discount_kind="fixed")
        assert list(service.verify_carts([cart.id]))
        assert service.rebuild_rows(cart.id) == cart
        assert list(service.verify_carts([cart.id])) == []
        assert service.get_cart(cart.id) == cart

    def test_evict_and_rehydrate(self, products):
        cart = make_cart({"SKU-1": 2})
        assert service.in_memory([cart.id]) == {cart.id}
        assert service.evict_cart(cart.id) is True
        assert service.memory_image(cart.id) is None
        assert service.rehydrate_cart(cart.id) == cart
        assert service.memory_image(cart.id) == cart


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
