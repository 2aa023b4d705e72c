"""Storefront routes (the JSON API is the app's own, cartsvc.api.urls)."""

from django.urls import path

from carts import views

app_name = "shop"

urlpatterns = [
    path("", views.product_list, name="product_list"),
    path("cart/", views.cart_page, name="cart"),
    path("cart/add/", views.add_to_cart, name="add"),
    path("cart/lines/<int:line_id>/quantity/", views.update_quantity, name="update_quantity"),
    path("cart/lines/<int:line_id>/remove/", views.remove_line, name="remove_line"),
    path("cart/lines/<int:line_id>/save/", views.save_for_later, name="save_for_later"),
    path("cart/saved/<int:line_id>/move/", views.move_to_cart, name="move_to_cart"),
    path("cart/saved/<int:line_id>/remove/", views.remove_saved, name="remove_saved"),
    path("cart/discount/", views.apply_discount, name="apply_discount"),
    path("cart/discount/remove/", views.remove_discount, name="remove_discount"),
    path("cart/checkout/", views.checkout, name="checkout"),
    path("carts/<uuid:cart_id>/", views.cart_detail, name="cart_detail"),
    path("orders/<uuid:cart_id>/", views.order_confirmation, name="order"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
]
