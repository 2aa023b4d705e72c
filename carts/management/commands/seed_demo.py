"""Create what the demo shop lacks: catalog, discount codes, a demo customer; carts if asked."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from carts.models import DiscountCode, Product
from cartsvc import service
from cartsvc.progress import Progress, counted

ADJECTIVES = ["Classic", "Organic", "Vintage", "Compact", "Deluxe", "Everyday", "Travel", "Studio"]
NOUNS = ["Mug", "Notebook", "Backpack", "Lamp", "Scarf", "Teapot", "Headphones", "Candle", "Poster"]

DEMO_USER, DEMO_PASSWORD = "demo", "demo-shopper-2026"


class Command(BaseCommand):
    help = (
        "Seed the demo shop: catalog, discount codes, a demo customer and, if asked, carts. "
        "Safe to run on a running shop (make run does, every time): only what is missing is "
        "created; existing products keep their stock and price, carts and orders are untouched."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--products",
            type=int,
            default=24,
            metavar="N",
            help="demo products SKU-0001..SKU-N; the missing ones are created (default: 24)",
        )
        parser.add_argument(
            "--carts",
            type=int,
            default=0,
            metavar="N",
            help="also open N carts with 1 to 4 lines each, through the service (default: 0)",
        )
        parser.add_argument(
            "--stock",
            type=int,
            default=100,
            metavar="N",
            help="units in stock of each product created; existing products keep theirs "
            "(default: 100)",
        )
        parser.add_argument(
            "--restock",
            action="store_true",
            help="also set the stock of the existing demo products to --stock",
        )
        parser.add_argument(
            "--seed",
            type=int,
            default=7,
            metavar="N",
            help="random seed for prices and cart contents, for the same shop every time "
            "(default: 7)",
        )

    def seed_carts(self, rng: random.Random, skus: list[str], count: int) -> None:
        """`count` open carts of one to four of the `skus` each, through the service."""
        progress = Progress.on(self.stdout, count, "carts")
        for _ in range(count):
            cart = service.open_cart()
            for sku in rng.sample(skus, min(len(skus), rng.randint(1, 4))):
                service.add_line(cart.id, sku, 1)
            progress.advance()
        progress.close()

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
            products.append(
                Product(sku=f"SKU-{n:04d}", name=name, price=price, stock=options["stock"])
            )
        skus = [p.sku for p in products]
        # A running shop's products keep their stock and price (make run seeds every time):
        # only the missing skus are created, and a concurrent seed's rows win (no conflict).
        existing = set(Product.objects.filter(sku__in=skus).values_list("sku", flat=True))
        Product.objects.bulk_create(
            [p for p in products if p.sku not in existing], ignore_conflicts=True
        )
        if options["restock"]:
            Product.objects.filter(sku__in=skus).update(stock=options["stock"])
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
        created = len(products) - len(existing)
        kept = f"restocked to {options['stock']}" if options["restock"] else "kept as they are"
        self.stdout.write(
            f"catalog: {counted(len(products), 'product')}, {created} created with "
            f"{options['stock']} in stock each, {len(existing)} already there ({kept}); "
            f"discount codes WELCOME10, FIVEOFF; customer {DEMO_USER} / {DEMO_PASSWORD}"
        )
        # A running shop may have sold a product out or taken it off sale meanwhile.
        skus = list(
            Product.objects.filter(sku__in=skus, active=True, stock__gt=0)
            .order_by("sku")
            .values_list("sku", flat=True)
        )
        if options["carts"] and skus:
            self.seed_carts(rng, skus, options["carts"])
            self.stdout.write(f"carts: {options['carts']} created")
        elif options["carts"]:
            self.stdout.write("carts: none created, no demo product is on sale with stock")
