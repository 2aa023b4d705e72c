"""Create the demo catalog, discount codes, a demo customer and, optionally, carts."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from carts.models import DiscountCode, Product
from cartsvc import service
from cartsvc.progress import Progress

ADJECTIVES = ["Classic", "Organic", "Vintage", "Compact", "Deluxe", "Everyday", "Travel", "Studio"]
NOUNS = ["Mug", "Notebook", "Backpack", "Lamp", "Scarf", "Teapot", "Headphones", "Candle", "Poster"]

DEMO_USER, DEMO_PASSWORD = "demo", "demo-shopper-2026"


class Command(BaseCommand):
    help = "Seed the demo catalog (idempotent), discount codes, a demo customer and carts."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--products", type=int, default=24)
        parser.add_argument("--carts", type=int, default=0)
        parser.add_argument("--stock", type=int, default=100)
        parser.add_argument("--seed", type=int, default=7)

    def handle(self, *args: Any, **options: Any) -> None:
        for name in ("products", "carts", "stock"):
            if options[name] < 0:
                self.stderr.write(f"--{name} must not be negative")
                raise SystemExit(2)
        rng = random.Random(options["seed"])
        products = []
        for n in range(1, options["products"] + 1):
            name = f"{ADJECTIVES[n % len(ADJECTIVES)]} {NOUNS[n % len(NOUNS)]}"
            price = Decimal(rng.randrange(300, 9000)) / 100
            products.append(Product(sku=f"SKU-{n:04d}", name=name, price=price, stock=0))
        # Running twice does not duplicate: existing skus keep their row and get the stock.
        Product.objects.bulk_create(products, ignore_conflicts=True)
        Product.objects.filter(sku__in=[p.sku for p in products]).update(stock=options["stock"])
        for code, kind, value, minimum in [
            ("WELCOME10", DiscountCode.PERCENT, "10", "0"),
            ("FIVEOFF", DiscountCode.FIXED, "5", "20"),
        ]:
            DiscountCode.objects.get_or_create(
                code=code,
                defaults={"kind": kind, "value": Decimal(value), "min_subtotal": Decimal(minimum)},
            )
        user_model = get_user_model()
        if not user_model.objects.filter(username=DEMO_USER).exists():
            user_model.objects.create_user(
                DEMO_USER, email="demo@example.com", password=DEMO_PASSWORD
            )
        self.stdout.write(
            f"catalog: {len(products)} products with {options['stock']} in stock each; "
            f"discount codes WELCOME10, FIVEOFF; customer {DEMO_USER} / {DEMO_PASSWORD}"
        )
        skus = [p.sku for p in products]
        if options["carts"] and skus:
            progress = Progress(self.stdout._out, options["carts"], "carts")
            for _ in range(options["carts"]):
                cart = service.open_cart()
                for sku in rng.sample(skus, min(len(skus), rng.randint(1, 4))):
                    service.add_line(cart.id, sku, 1)
                progress.advance()
            progress.close()
            self.stdout.write(f"carts: {options['carts']} created")
