"""Storefront forms: what a shopper may post, checked before the service sees it."""

from __future__ import annotations

from typing import Any

from django import forms

from cartsvc.conf import conf


def _quantity_field(minimum: int) -> forms.IntegerField:
    limit = conf.MAX_LINE_QUANTITY
    message = f"Please choose a quantity between {minimum} and {limit}."
    return forms.IntegerField(
        min_value=minimum,
        max_value=limit,
        error_messages={
            "required": message,
            "invalid": message,
            "min_value": message,
            "max_value": message,
        },
    )


class AddToCartForm(forms.Form):
    sku = forms.CharField(max_length=64)
    quantity = forms.IntegerField()
    # One per rendered form: a double-clicked submit is applied once.
    token = forms.CharField(max_length=128, required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["quantity"] = _quantity_field(1)


class QuantityForm(forms.Form):
    quantity = forms.IntegerField()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["quantity"] = _quantity_field(0)


class DiscountForm(forms.Form):
    code = forms.CharField(
        max_length=64, error_messages={"required": "Please enter a discount code."}
    )


class CheckoutForm(forms.Form):
    # The cart version the shopper saw: checking out a cart changed since (in another tab,
    # say) is refused, so people buy exactly what they reviewed.
    version = forms.IntegerField(min_value=1, required=False)


def first_error(form: forms.Form) -> str:
    """The form's first error, for a message."""
    for errors in form.errors.values():
        for error in errors:
            return str(error)
    return "Please check your input."
