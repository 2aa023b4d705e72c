"""seed_demo: an idempotent catalog, demo codes and customer, and carts through the service."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from carts.models import DiscountCode, Product
from cartsvc import service
from cartsvc.models import Cart

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def test_seeding_twice_does_not_duplicate_the_catalog():
    run("--products", "6", "--stock", "7")
    output = run("--products", "6", "--stock", "9")
    assert Product.objects.count() == 6
    assert set(Product.objects.values_list("stock", flat=True)) == {9}
    assert DiscountCode.objects.count() == 2
    assert get_user_model().objects.filter(username="demo").count() == 1
    assert "demo-shopper-2026" in output


def test_carts_are_created_through_the_service():
    output = run("--products", "5", "--carts", "3")
    assert "carts: 3 created" in output
    assert Cart.objects.count() == 3
    for cart_id in Cart.objects.values_list("id", flat=True):
        cart = service.get_cart(cart_id)
        assert 1 <= len(cart.lines) <= 4


def test_negative_counts_are_refused():
    err = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("seed_demo", "--carts", "-1", stderr=err)
    assert "--carts must not be negative" in err.getvalue()
    assert Product.objects.count() == 0
