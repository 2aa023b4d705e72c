"""django-oscar's basket, used the way oscar's own views and middleware use it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Sum
from django.http import HttpRequest
from oscar.apps.basket.signals import basket_addition
from oscar.core.loading import get_class, get_model

Basket = get_model("basket", "Basket")
Product = get_model("catalogue", "Product")
ProductClass = get_model("catalogue", "ProductClass")
Partner = get_model("partner", "Partner")
StockRecord = get_model("partner", "StockRecord")
Selector = get_class("partner.strategy", "Selector")
Applicator = get_class("offer.applicator", "Applicator")


class NotPermitted(Exception):
    """What oscar's add-to-basket form refuses (not available, too many)."""


def make_products(skus: list[str], prices: list[Decimal], stock: int) -> None:
    """A standalone product with one stock record per sku (the upc holds the sku)."""
    kind, _ = ProductClass.objects.get_or_create(name="Bench", defaults={"track_stock": True})
    partner, _ = Partner.objects.get_or_create(name="Bench partner")
    for sku, price in zip(skus, prices, strict=True):
        product, _ = Product.objects.update_or_create(
            upc=sku,
            defaults={"title": f"Bench product {sku[-1]}", "product_class": kind},
        )
        StockRecord.objects.update_or_create(
            partner=partner,
            partner_sku=sku,
            defaults={"product": product, "price": price, "num_in_stock": stock},
        )


def open_basket() -> int:
    return Basket.objects.create().pk


def _loaded(basket_id: int, request: HttpRequest | None) -> Any:
    """What oscar's BasketMiddleware does for a basket it finds: the open basket, its
    pricing strategy, the offers applied."""
    basket = Basket.open.get(pk=basket_id)
    user = getattr(request, "user", None)
    basket.strategy = Selector().strategy(request=request, user=user)
    Applicator().apply(basket, user, request)
    return basket


def _body(basket: Any) -> dict[str, Any]:
    lines = [
        {
            "id": line.id,
            "sku": line.product.upc,
            "name": line.product.title,
            "quantity": line.quantity,
            "price": line.unit_price_incl_tax,
        }
        for line in basket.all_lines()
    ]
    return {"id": basket.id, "lines": lines, "total": basket.total_incl_tax}


def get_basket(basket_id: int, request: HttpRequest | None = None) -> dict[str, Any]:
    return _body(_loaded(basket_id, request))


def add_line(
    basket_id: int, sku: str, quantity: int, request: HttpRequest | None = None
) -> dict[str, Any]:
    """What oscar's BasketAddView does: the purchase checked against availability (its
    form), the product added, the basket_addition signal sent, the offers applied again."""
    with transaction.atomic():
        basket = _loaded(basket_id, request)
        product = Product.objects.get(upc=sku)
        info = basket.strategy.fetch_for_product(product)
        wanted = basket.product_quantity(product) + quantity
        permitted, reason = info.availability.is_purchase_permitted(wanted)
        if not permitted:
            raise NotPermitted(reason)
        basket.add_product(product, quantity)
        basket_addition.send(
            sender=None, product=product, user=getattr(request, "user", None), request=request
        )
        basket.reset_offer_applications()
        Applicator().apply(basket, getattr(request, "user", None), request)
        return _body(basket)


def units(basket_ids: list[int]) -> int:
    """The units in these baskets' lines, summed."""
    Line = get_model("basket", "Line")
    found = Line.objects.filter(basket_id__in=basket_ids).aggregate(total=Sum("quantity"))
    return found["total"] or 0
