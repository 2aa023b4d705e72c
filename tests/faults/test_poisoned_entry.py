"""A cache must not be a code-execution channel: a planted pickle is never executed."""

from __future__ import annotations

import logging
import os
import pickle

import pytest

from cartsvc import image, service
from tests.factories import make_cart

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("needs_redis")]


class Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_a_pickle_planted_under_a_cart_key_is_not_executed(products, tmp_path, caplog):
    cart = make_cart({"SKU-1": 2})
    marker = str(tmp_path / "pwned")
    store = image.image_store()
    store.client.hset(store.key(cart.id), "v", cart.version)
    store.client.set(store.data_key(cart.id), pickle.dumps(Exploit(marker)))

    image._states.clear()  # as in another process, which holds no decoded copy
    with caplog.at_level(logging.ERROR, logger="cartsvc.image"):
        assert service.get_cart(cart.id) == cart
    assert not os.path.exists(marker)
    assert any("undecodable cache entry" in r.getMessage() for r in caplog.records)
    # The bad entry was dropped; the next read rehydrates a clean one.
    assert service.get_cart(cart.id) == cart
    assert image.peek([cart.id])[cart.id] == cart


def test_django_cache_serializer_is_json_not_pickle(needs_redis):
    from django.core.cache import cache

    cache.set("cartimage-serializer-probe", {"a": 1})
    raw = cache.client.get_client().get(cache.make_key("cartimage-serializer-probe"))
    assert raw == b'{"a":1}'
    cache.delete("cartimage-serializer-probe")


def test_this_process_never_decodes_a_planted_entry_at_a_version_it_holds(products, tmp_path):
    cart = make_cart({"SKU-1": 2})
    marker = str(tmp_path / "pwned")
    store = image.image_store()
    store.client.hset(store.key(cart.id), "v", cart.version)
    store.client.set(store.data_key(cart.id), pickle.dumps(Exploit(marker)))
    assert service.get_cart(cart.id) == cart
    assert not os.path.exists(marker)


POISONS = {
    "quantity as text": lambda p: p["l"][0].__setitem__(4, "abc"),
    "negative quantity": lambda p: p["l"][0].__setitem__(4, -3),
    "unknown status": lambda p: p.__setitem__("st", "checked_out_maybe"),
    "owner as text": lambda p: p.__setitem__("o", "7"),
    "owner as bool": lambda p: p.__setitem__("o", True),
    "price not a number": lambda p: p["l"][0].__setitem__(5, "free"),
    "negative price": lambda p: p["l"][0].__setitem__(5, "-1.00"),
    "duplicate line ids": lambda p: p["l"].append(list(p["l"][0])),
    "line id past next": lambda p: p.__setitem__("n", 1),
    "bad discount kind": lambda p: p.__setitem__("dc", ["X", "bogus", "5"]),
}


def plant(cart_id: str, poison) -> None:
    import orjson

    store = image.image_store()
    payload = orjson.loads(store.client.get(store.data_key(cart_id)))
    poison(payload)
    store.client.set(store.data_key(cart_id), orjson.dumps(payload))
    image._states.clear()  # as in another process, which holds no decoded copy


@pytest.mark.parametrize("poison", sorted(POISONS))
def test_an_entry_of_the_right_shape_with_wrong_values_is_dropped(products, poison, caplog):
    from cartsvc import metrics

    cart = make_cart({"SKU-1": 2})
    service.get_cart(cart.id)
    plant(cart.id, POISONS[poison])
    with caplog.at_level(logging.ERROR, logger="cartsvc.image"):
        assert service.get_cart(cart.id) == cart  # from the database, not a 500
    assert metrics.value("bad_entries") == 1
    assert any("undecodable cache entry" in r.getMessage() for r in caplog.records)
    assert image.peek([cart.id]).get(cart.id) in (None, cart)  # dropped, or rebuilt clean
    # A write on the poisoned entry works from the database too (no 409, no 500).
    assert service.get_cart(cart.id) == cart  # cached again, clean
    plant(cart.id, POISONS[poison])
    after = service.add_line(cart.id, "SKU-2", 1)
    assert after.version == cart.version + 1 and after.status == "open"
    assert service.get_cart(cart.id) == after
