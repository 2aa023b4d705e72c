"""Storefront and API routes."""

from django.urls import path

from carts import views

urlpatterns = [
    path("", views.product_list, name="product_list"),
]
