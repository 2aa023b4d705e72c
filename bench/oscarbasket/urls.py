"""Bench-only routes, mounted at /bench/oscar/ when CARTIMAGE_BENCH=1 installs django-oscar."""

from django.urls import path

from bench.oscarbasket import views

urlpatterns = [
    path("baskets/<int:basket_id>", views.basket),
    path("baskets/<int:basket_id>/lines", views.add),
]
