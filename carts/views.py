"""Storefront pages."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from carts.models import Product


def product_list(request: HttpRequest) -> HttpResponse:
    products = Product.objects.filter(active=True)
    return render(request, "carts/product_list.html", {"products": products})
