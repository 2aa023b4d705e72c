"""The tables a typical Django shop would give its cart: a header and one row per line."""

import uuid

from django.db import models


class NaiveCart(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    status = models.CharField(max_length=16, default="open")
    # The applied code of carts.models.DiscountCode, looked up again whenever totals are shown.
    discount_code = models.CharField(max_length=64, blank=True, default="")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"naive cart {self.id} {self.status}"


class NaiveLine(models.Model):
    cart = models.ForeignKey(NaiveCart, on_delete=models.CASCADE, related_name="lines")
    sku = models.CharField(max_length=64)
    name = models.CharField(max_length=200)
    options = models.JSONField(default=dict, blank=True)
    quantity = models.PositiveIntegerField(default=0)
    unit_price = models.DecimalField(max_digits=12, decimal_places=2)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["cart", "sku"], name="naiveline_unique_sku")]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.sku}"
