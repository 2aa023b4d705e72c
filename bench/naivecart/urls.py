"""Bench-only routes, mounted at /bench/ when CARTIMAGE_BENCH=1 installs bench.naivecart."""

from django.urls import path

from bench.naivecart import views

urlpatterns = [
    path("constant", views.constant),
    path("naive/carts/<uuid:cart_id>", views.naive_cart),
    path("naive/carts/<uuid:cart_id>/lines", views.naive_add),
]
