"""The host's basket page and login, on cartsvc's public storefront helpers."""

from __future__ import annotations

from django.contrib.auth import authenticate, login
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from cartsvc import service, shop


def basket(request: HttpRequest) -> HttpResponse:
    return render(request, "bookshop/basket.html", {"cart": shop.current_cart(request)})


@require_POST
def add_to_basket(request: HttpRequest) -> HttpResponse:
    cart = shop.current_cart(request, create=True)
    try:
        cart = service.add_line(
            cart.id, request.POST.get("isbn", ""), 1, as_user=shop.as_user(request)
        )
    except service.DomainError as error:
        return HttpResponseBadRequest(error.code)
    shop.bind(request, cart)
    return redirect("basket")


@require_POST
def login_view(request: HttpRequest) -> HttpResponse:
    visitor_cart_id = shop.session_cart_id(request)  # before login() cycles the session
    user = authenticate(
        request, username=request.POST.get("username"), password=request.POST.get("password")
    )
    if user is None:
        return HttpResponseBadRequest("bad credentials")
    login(request, user)
    shop.login_merge(request, visitor_cart_id, user.pk)
    return redirect("basket")
