"""The contract's models: each body defined once, its refusals worded as the error table says,
and the document's schemas generated from them."""

from __future__ import annotations

from decimal import Decimal

import jsonschema_rs
import orjson
import pytest

from carts.models import Product
from cartsvc.api import contract
from cartsvc.api.errors import ApiError
from cartsvc.api.openapi import DOCUMENT
from tests.api.conftest import API, call

OK = {"sku": "SKU-1", "quantity": 1}
MAX = 2**31 - 1
LENGTHS = "option names and values are at most 64 characters"

# body -> (field, message): the first refusal as the checks read them (unknown fields, missing
# ones, then each field in order; within options, the first member refused).
REFUSALS = [
    (contract.AddLine, {**OK, "b": 1, "a": 2}, ("b", "unknown field 'b'")),
    (contract.AddLine, {"quantity": "x", "zz": 1}, ("zz", "unknown field 'zz'")),
    (contract.AddLine, {"quantity": "x"}, ("sku", "sku is required")),
    (contract.AddLine, {"sku": 1}, ("quantity", "quantity is required")),
    (contract.AddLine, {"sku": 1, "quantity": "2"}, ("sku", "sku must be a string")),
    (
        contract.AddLine,
        {"sku": " \x1c", "quantity": 1},
        ("sku", "sku must be a non-blank string of at most 64"),
    ),
    (
        contract.AddLine,
        {"sku": "S" * 65, "quantity": 1},
        ("sku", "sku must be a non-blank string of at most 64"),
    ),
    (
        contract.AddLine,
        {"sku": "", "quantity": 1},
        ("sku", "sku must be a non-blank string of at most 64"),
    ),
    *[
        (
            contract.AddLine,
            {"sku": "SKU-1", "quantity": value},
            ("quantity", "quantity must be an integer"),
        )
        for value in ("2", True, False, None, 2.5, 1e-30, float("inf"), [1], {"n": 1})
    ],
    *[
        (
            contract.AddLine,
            {"sku": "SKU-1", "quantity": value},
            ("quantity", f"quantity must be from 1 to {MAX}"),
        )
        for value in (0, -0.0, -1, 2**31, 1e30, 2**63)
    ],
    (contract.SetQuantity, {"quantity": -1}, ("quantity", f"quantity must be from 0 to {MAX}")),
    (contract.SetQuantity, {"quantity": "0"}, ("quantity", "quantity must be an integer")),
    (
        contract.SetQuantity,
        {"quantity": 0, "line_total": "0"},
        ("line_total", "unknown field 'line_total'"),
    ),
    (contract.ApplyDiscount, {"code": 10}, ("code", "code must be a string")),
    (
        contract.ApplyDiscount,
        {"code": "\t"},
        ("code", "code must be a non-blank string of at most 64"),
    ),
    (contract.ApplyDiscount, {}, ("code", "code is required")),
    (contract.NoFields, {"total": "0.00"}, ("total", "unknown field 'total'")),
    (
        contract.AddLine,
        {**OK, "options": None},
        ("options", "options must be an object (leave it out for none)"),
    ),
    (
        contract.AddLine,
        {**OK, "options": ["M"]},
        ("options", "options must be an object (leave it out for none)"),
    ),
    (
        contract.AddLine,
        {**OK, "options": {**{str(i): "x" for i in range(10)}, "z": 4}},
        ("options", "at most 10 options"),
    ),
    (
        contract.AddLine,
        {**OK, "options": {"a": "x\x00", "b": 4}},
        ("options", "options can not contain NUL characters"),
    ),
    (
        contract.AddLine,
        {**OK, "options": {"a": "x", "b": 4}},
        ("options", "options must map names to strings"),
    ),
    (contract.AddLine, {**OK, "options": {"a" * 65: "x\x00"}}, ("options", LENGTHS)),
    (contract.AddLine, {**OK, "options": {"": "x"}}, ("options", LENGTHS)),
    (contract.AddLine, {**OK, "options": {"a": "x" * 65}}, ("options", LENGTHS)),
    (
        contract.AddLine,
        {**OK, "options": {"a\x00": "x"}},
        ("options", "options can not contain NUL characters"),
    ),
]


@pytest.mark.parametrize(("model", "body", "refusal"), REFUSALS)
def test_a_refused_body_names_its_field_in_the_contract_s_words(model, body, refusal):
    with pytest.raises(ApiError) as err:
        contract.parse(model, body)
    assert (err.value.status, err.value.code) == (400, "invalid")
    assert (err.value.field, err.value.message) == refusal


def test_accepted_bodies_come_back_typed():
    line = contract.parse(contract.AddLine, {"sku": " x ", "quantity": 2.0, "options": {"a": ""}})
    assert (line.sku, line.quantity, line.options) == (" x ", 2, {"a": ""})
    assert type(line.quantity) is int
    assert contract.parse(contract.AddLine, OK).options is None
    assert contract.parse(contract.SetQuantity, {"quantity": 0}).quantity == 0
    assert contract.parse(contract.ApplyDiscount, {"code": "TEN"}).code == "TEN"


def test_the_document_s_schemas_are_generated_from_the_models():
    schemas = DOCUMENT["components"]["schemas"]
    assert schemas == contract.schemas()
    for model in contract.MODELS:
        assert model.__name__ in schemas
    add_line = schemas["AddLine"]
    assert add_line["required"] == ["sku", "quantity"]
    assert add_line["additionalProperties"] is False
    assert add_line["properties"]["quantity"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": contract.MAX_QUANTITY,
    }
    # Key rules as propertyNames (pydantic's patternProperties would let other keys through).
    options = add_line["properties"]["options"]
    assert options["propertyNames"]["pattern"] == contract.NO_NUL
    assert "patternProperties" not in options and "default" not in options


def test_not_blank_is_python_s_strip_on_every_code_point():
    """The API's check is the rule it always was: `value.strip()` is not empty. (A reader of
    the document with ECMA-262's regex differs on U+0085 and U+FEFF, as with "\\S" before.)"""
    for point in range(0x110000):
        if 0xD800 <= point <= 0xDFFF:
            continue  # not in a JSON string
        char = chr(point)
        blank = not char.strip()
        try:
            contract.parse(contract.ApplyDiscount, {"code": char})
            refused = False
        except ApiError:
            refused = True
        assert refused == blank, hex(point)


def _validator(name: str) -> jsonschema_rs.Validator:
    schema = {"$ref": f"#/components/schemas/{name}", "components": DOCUMENT["components"]}
    return jsonschema_rs.validator_for(schema)


def test_request_schemas_refuse_what_the_models_refuse():
    for model, body, _ in REFUSALS:
        if body.get("quantity") == float("inf"):
            continue  # not JSON
        assert not _validator(model.__name__).is_valid(body), (model, body)


@pytest.mark.django_db
def test_served_bodies_validate_against_the_generated_schemas(client, cart):
    service_cart = call(client, "POST", f"carts/{cart.id}/discount", {"code": "TEN"})
    assert service_cart.status_code == 200
    bodies = {
        "Cart": client.get(f"{API}/carts/{cart.id}").content,
        "EventPage": client.get(f"{API}/carts/{cart.id}/events").content,
        "Error": call(client, "POST", f"carts/{cart.id}/lines", {"sku": 1}).content,
    }
    for name, raw in bodies.items():
        body = orjson.loads(raw)
        _validator(name).validate(body)
        getattr(contract, name).model_validate(body)
    for product in orjson.loads(client.get(f"{API}/products").content):
        _validator("Product").validate(product)
    # An error with `changes`: a checkout after a price moved.
    Product.objects.filter(sku="SKU-1").update(price=Decimal("381.70"))
    moved = call(client, "POST", f"carts/{cart.id}/checkout")
    assert moved.status_code == 409
    body = orjson.loads(moved.content)
    assert body["error"]["code"] == "prices_changed" and body["error"]["changes"]
    _validator("Error").validate(body)
    contract.Error.model_validate(body)
