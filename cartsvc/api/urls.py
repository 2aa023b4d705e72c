"""API routes, /api/v1/; anything else under the prefix is a JSON 404."""

from django.urls import path, re_path

from cartsvc.api import views

app_name = "cartimage_api"

urlpatterns = [
    path("openapi.json", views.openapi, name="openapi"),
    path("products", views.products, name="products"),
    path("carts", views.carts, name="carts"),
    path("stats/demand", views.demand_stats, name="demand_stats"),
    path("carts/<str:cart_id>", views.cart, name="cart"),
    path("carts/<str:cart_id>/lines", views.lines, name="lines"),
    path("carts/<str:cart_id>/lines/<str:line_id>", views.line, name="line"),
    path(
        "carts/<str:cart_id>/lines/<str:line_id>/save-for-later",
        views.save_for_later,
        name="save_for_later",
    ),
    path(
        "carts/<str:cart_id>/saved/<str:line_id>/move-to-cart",
        views.move_to_cart,
        name="move_to_cart",
    ),
    path("carts/<str:cart_id>/discount", views.discount, name="discount"),
    path("carts/<str:cart_id>/checkout", views.checkout, name="checkout"),
    path("carts/<str:cart_id>/events", views.events, name="events"),
    re_path(r"^(?P<rest>.*)$", views.not_found, name="not_found"),
]
