"""The host's own product model and voucher codes."""

from django.db import models


class Book(models.Model):
    isbn = models.CharField(max_length=13, primary_key=True)
    title = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    stock = models.PositiveIntegerField(default=0)
    active = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.title


class Voucher(models.Model):
    code = models.CharField(max_length=32, primary_key=True)
    kind = models.CharField(max_length=8, choices=[("percent", "percent"), ("fixed", "fixed")])
    value = models.DecimalField(max_digits=10, decimal_places=2)
    min_subtotal = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    active = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.code
