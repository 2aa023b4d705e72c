"""The demo catalog: products and discount codes."""

from django.db import models


class Product(models.Model):
    sku = models.CharField(max_length=64, primary_key=True)
    name = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=12, decimal_places=2)
    stock = models.PositiveIntegerField(default=0)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["sku"]

    def __str__(self) -> str:
        return f"{self.sku} {self.name}"


class DiscountCode(models.Model):
    PERCENT, FIXED = "percent", "fixed"

    code = models.CharField(max_length=64, primary_key=True)
    kind = models.CharField(max_length=16, choices=[(PERCENT, "percent"), (FIXED, "fixed")])
    value = models.DecimalField(max_digits=12, decimal_places=2)
    min_subtotal = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    active = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.code
