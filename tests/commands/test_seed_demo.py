"""seed_demo: an idempotent catalog, demo codes and customer, and carts through the service."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from carts.management.commands.seed_demo import Command as SeedDemo
from carts.models import DiscountCode, Product
from cartsvc import service
from cartsvc.models import Cart
from tests.factories import make_cart

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def test_seeding_twice_does_not_duplicate_the_catalog():
    run("--products", "6", "--stock", "7")
    output = run("--products", "6", "--stock", "9")
    assert Product.objects.count() == 6
    # The second run keeps the stock the first gave (make run seeds a running shop each time).
    assert set(Product.objects.values_list("stock", flat=True)) == {7}
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


def test_a_running_shop_keeps_its_stock_prices_and_carts_when_seeded_again():
    """make run seeds every time: what the shop changed meanwhile stays as it is."""
    run("--products", "4")
    Product.objects.filter(sku="SKU-0001").update(stock=3)
    Product.objects.filter(sku="SKU-0002").update(price=Decimal("1.25"), stock=0)
    cart = make_cart({"SKU-0003": 2})
    before = {p.sku: (p.stock, p.price, p.name) for p in Product.objects.all()}
    output = run()  # make run's seed: the defaults (24 products)
    after = {p.sku: (p.stock, p.price, p.name) for p in Product.objects.all()}
    assert {sku: after[sku] for sku in before} == before
    assert len(after) == 24
    assert {after[sku][0] for sku in set(after) - set(before)} == {100}
    assert "20 created with 100 in stock each, 4 already there (kept as they are)" in output
    assert [str(i) for i in Cart.objects.values_list("id", flat=True)] == [cart.id]
    assert service.get_cart(cart.id) == cart


def test_restock_sets_the_stock_of_existing_products_when_asked():
    run("--products", "3")
    Product.objects.filter(sku="SKU-0001").update(stock=3, price=Decimal("1.25"))
    output = run("--products", "3", "--stock", "50", "--restock")
    assert "restocked to 50" in output
    assert set(Product.objects.values_list("stock", flat=True)) == {50}
    assert Product.objects.get(sku="SKU-0001").price == Decimal("1.25")


def test_carts_skip_products_sold_out_meanwhile():
    run("--products", "3")
    Product.objects.exclude(sku="SKU-0002").update(stock=0)
    run("--products", "3", "--carts", "4")
    skus = {
        line.sku
        for cart_id in Cart.objects.values_list("id", flat=True)
        for line in service.get_cart(cart_id).lines
    }
    assert skus == {"SKU-0002"}


def test_every_option_has_a_help_text():
    command = SeedDemo()
    parser = command.create_parser("manage.py", "seed_demo")
    own = [
        a for a in parser._actions if a.dest in {"products", "carts", "stock", "seed", "restock"}
    ]
    assert len(own) == 5
    for action in own:
        assert action.help and action.help.strip(), action.dest
    text = " ".join(parser.format_help().split())
    for option in ("--products", "--carts", "--stock", "--restock", "--seed"):
        assert option in text
    assert "existing products keep theirs" in text
