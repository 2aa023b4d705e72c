"""The OpenAPI document: valid OpenAPI 3, and exactly the routes and methods the API serves."""

from __future__ import annotations

import re

import jsonschema_rs
import orjson
import pytest
import schemathesis
from django.urls import URLPattern

from cartsvc.api import urls
from cartsvc.api.openapi import DOCUMENT

METHODS = {"get", "post", "put", "patch", "delete", "head", "options", "trace"}


def served_routes() -> dict[str, set[str]]:
    """Every route of carts/api/urls.py as an OpenAPI path, with the methods its view takes."""
    routes = {}
    for pattern in urls.urlpatterns:
        assert isinstance(pattern, URLPattern)
        if pattern.name == "not_found":
            continue
        route = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", str(pattern.pattern))
        routes[f"/{route}"] = {method.lower() for method in pattern.callback.handlers}
    return routes


def documented_routes() -> dict[str, set[str]]:
    return {path: set(item) & METHODS for path, item in DOCUMENT["paths"].items()}


def test_the_document_is_valid_openapi_3():
    assert DOCUMENT["openapi"].startswith("3.")
    schema = schemathesis.openapi.from_dict(DOCUMENT)
    schema.validate()  # against the official OpenAPI meta-schema; raises when invalid
    assert len(list(schema.get_all_operations())) == sum(map(len, served_routes().values()))


def test_an_invalid_document_would_be_caught():
    broken = {**DOCUMENT, "paths": {"/x": {"get": {"responses": {"200": {"schema": 1}}}}}}
    with pytest.raises(jsonschema_rs.ValidationError):
        schemathesis.openapi.from_dict(broken).validate()


def test_every_route_and_method_is_documented_and_nothing_else():
    assert documented_routes() == served_routes()


def test_the_last_route_catches_everything_else():
    assert urls.urlpatterns[-1].name == "not_found"


def test_every_operation_documents_its_errors_and_path_parameters():
    for path, item in DOCUMENT["paths"].items():
        names = set(re.findall(r"{(\w+)}", path))
        declared = {p["$ref"].rsplit("/", 1)[-1] for p in item.get("parameters", [])}
        assert {"cart_id": "CartId", "line_id": "LineId"}.keys() >= names
        assert {{"cart_id": "CartId", "line_id": "LineId"}[n] for n in names} <= declared, path
        for method in set(item) & METHODS:
            responses = item[method]["responses"]
            if names:
                assert "404" in responses, (path, method)
            if method in ("post", "patch", "delete"):
                assert {"400", "413", "415", "422"} <= set(responses), (path, method)


def test_the_served_document_is_the_one_in_the_repo(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert orjson.loads(response.content) == DOCUMENT
