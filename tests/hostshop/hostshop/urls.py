"""The host's URLs: its own pages, and the cart API under a prefix of its choosing."""

from bookshop import views
from django.contrib import admin
from django.urls import include, path

from cartsvc import ops

urlpatterns = [
    path("backoffice/", admin.site.urls),
    path("shop/cart-api/", include("cartsvc.api.urls")),
    path("shop/basket/", views.basket, name="basket"),
    path("shop/basket/add/", views.add_to_basket, name="add_to_basket"),
    path("accounts/login/", views.login_view, name="login"),
    path("ops/healthz", ops.healthz),
]
