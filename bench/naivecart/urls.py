"""Bench-only routes, mounted at /bench/ when CARTIMAGE_BENCH=1 installs bench.naivecart."""

from django.urls import path

from bench.naivecart import views

urlpatterns = [
    path("constant", views.constant),
    path("naive/carts", views.naive_open),
    path("naive/carts/<uuid:cart_id>", views.naive_cart),
    path("naive/carts/<uuid:cart_id>/lines", views.naive_add),
    path("naive/carts/<uuid:cart_id>/lines/<int:line_id>", views.naive_set_quantity),
    path("naive/carts/<uuid:cart_id>/discount", views.naive_discount),
    path("naive/carts/<uuid:cart_id>/checkout", views.naive_checkout),
]
