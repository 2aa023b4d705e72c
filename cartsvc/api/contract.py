"""The API's bodies as typed models, each defined once: requests checked, all documented."""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)
from pydantic.json_schema import GenerateJsonSchema, models_json_schema
from pydantic_core import PydanticCustomError
from typing_extensions import TypeAliasType

from cartsvc.api.errors import STATUS_BY_CODE, ApiError, invalid

# What the document promises to accept; anything outside is refused before any rule of the
# cart (so a schema-invalid request is 400 whatever the cart's state).
MAX_QUANTITY = 2**31 - 1
MAX_TEXT = 64
MAX_OPTIONS = 10
NO_NUL = "^[^\\u0000]*$"


@dataclass(frozen=True)
class Says:
    """What a refusal of the field says: `by_type` by pydantic's error type, first listed
    first; `otherwise` for any other error. Where the field holds several values (options),
    the first value refused is the one described, as the checks read them in order."""

    by_type: tuple[tuple[str, str], ...]
    otherwise: str


def _integral(value: Any) -> Any:
    """A number with no fractional part (2.0) is an integer, as in JSON Schema."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


def _count_first(limit: int) -> BeforeValidator:
    """Refuse an object of over `limit` members before its members are read (pydantic counts
    after); the Field's max_length documents the same limit."""

    def check(value: Any) -> Any:
        if isinstance(value, dict) and len(value) > limit:
            raise PydanticCustomError("too_long", "too many members")
        return value

    return BeforeValidator(check)


# Not blank: a character Python's str.isspace() does not count as space (the rule of
# `value.strip()`); pydantic's Rust regex "\S" would take \x1c-\x1f for letters.
# tests/api/test_contract.py checks the rule on every code point.
NOT_BLANK = "[^\\s\\x1c-\\x1f]"
Text = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_TEXT, pattern=NOT_BLANK),
    Says(
        (("string_type", "{field} must be a string"),),
        f"{{field}} must be a non-blank string of at most {MAX_TEXT}",
    ),
]

# A JSON integer from the minimum to MAX_QUANTITY: not a bool, a string or a fraction. The
# cart's own limit (CART_MAX_LINE_QUANTITY) is the service's rule: 422 quantity_limit.
Quantity = Annotated[
    int,
    Field(ge=1, le=MAX_QUANTITY),
    BeforeValidator(_integral),
    Says(
        (("int_type", "quantity must be an integer"),), f"quantity must be from 1 to {MAX_QUANTITY}"
    ),
]
NewQuantity = Annotated[  # 0 removes the line
    int,
    Field(ge=0, le=MAX_QUANTITY),
    BeforeValidator(_integral),
    Says(
        (("int_type", "quantity must be an integer"),), f"quantity must be from 0 to {MAX_QUANTITY}"
    ),
]


_LENGTHS = f"option names and values are at most {MAX_TEXT} characters"
# Up to MAX_OPTIONS names (1 to MAX_TEXT characters) to strings (up to MAX_TEXT), with no NUL
# character anywhere (PostgreSQL's jsonb can not store one).
Options = Annotated[
    dict[
        Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT, pattern=NO_NUL)],
        Annotated[str, StringConstraints(max_length=MAX_TEXT, pattern=NO_NUL)],
    ],
    Field(
        max_length=MAX_OPTIONS,
        description='Variant choices, e.g. {"size": "M"}; key order does not matter.',
    ),
    _count_first(MAX_OPTIONS),
    Says(
        (
            ("dict_type", "options must be an object (leave it out for none)"),
            ("too_long", f"at most {MAX_OPTIONS} options"),
            ("string_type", "options must map names to strings"),
            ("string_too_short", _LENGTHS),
            ("string_too_long", _LENGTHS),
        ),
        "options can not contain NUL characters",
    ),
]


class Request(BaseModel):
    """A request body: exactly its fields (a client can not send `unit_price`), of exactly
    their JSON types (no "2" for 2, no true for 1)."""

    model_config = ConfigDict(extra="forbid", strict=True)


M = TypeVar("M", bound=Request)


class NoFields(Request):
    """No fields: `{}` (or an empty body, which json_body reads as `{}`)."""


class AddLine(Request):
    sku: Text
    quantity: Quantity
    # Absent is none; null is refused (the type says an object).
    # The default is not of the field's type on purpose: pydantic does not validate defaults,
    # so an absent field is None while a sent null is refused by `Options`.
    options: Options = None  # type: ignore[assignment]


class SetQuantity(Request):
    quantity: NewQuantity


class ApplyDiscount(Request):
    code: Text


def parse(model: type[M], body: dict[str, Any]) -> M:
    """`body` as `model`, or 400 `invalid` naming one field, as the checks read them: an
    unknown field first, then a missing one, then the first field (in the model's order)
    whose value is refused."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise _refusal(model, exc) from None


def _refusal(model: type[Request], exc: ValidationError) -> ApiError:
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    for error in errors:
        if error["type"] == "extra_forbidden":
            name = str(error["loc"][0])
            return invalid(name, f"unknown field {name!r}")
    for error in errors:
        if error["type"] == "missing":
            name = str(error["loc"][0])
            return invalid(name, f"{name} is required")
    name = str(errors[0]["loc"][0])
    says = next(m for m in model.model_fields[name].metadata if isinstance(m, Says))
    # The errors of the first value refused (the field itself, or its first refused member).
    place = errors[0]["loc"][1:2]
    types = {error["type"] for error in errors if error["loc"][:2] == (name, *place)}
    for error_type, message in says.by_type:
        if error_type in types:
            return invalid(name, message.format(field=name))
    return invalid(name, says.otherwise.format(field=name))


# ---------------------------------------------------------------- responses (documented)
#
# The served bodies are written by serialization.py (orjson, cached bytes on the hot GET);
# these models declare them for the document, and the schemathesis run checks every served
# body against it.

Money = TypeAliasType(
    "Money",
    Annotated[
        str,
        Field(
            pattern="^-?[0-9]+\\.[0-9]{2}$",
            description='A decimal amount with two places, e.g. "12.50"; never a float.',
            examples=["12.50"],
        ),
    ],
)


class Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Line(Response):
    id: int = Field(ge=1)
    sku: str
    name: str
    options: dict[str, str]
    quantity: int = Field(ge=1)
    unit_price: Money
    line_total: Money


class Discount(Response):
    code: str
    amount: Money


class Cart(Response):
    id: uuid.UUID
    version: int = Field(ge=1)
    status: Literal["open", "checked_out", "expired", "merged"]
    currency: str = Field(pattern="^[A-Z]{3}$")
    lines: list[Line]
    saved_for_later: list[Line] = Field(
        description="Lines set aside: kept with the cart, not counted in its totals."
    )
    discount: Discount | None
    subtotal: Money
    total: Money
    item_count: int = Field(ge=0)
    updated_at: datetime.datetime


class Product(Response):
    sku: str
    name: str
    price: Money
    stock: int = Field(ge=0)


class DemandItem(Response):
    """A SKU in open carts now (the demand read model; saved-for-later items aside)."""

    sku: str
    name: str = Field(description='The catalog\'s name of the SKU; "" if it no longer knows it.')
    units: int = Field(ge=1, description="Units in open carts.")
    carts: int = Field(ge=1, description="Open carts holding it.")


class Event(Response):
    version: int = Field(ge=1)
    type: str
    schema_: int = Field(
        alias="schema", description="The version of the event's data layout, as recorded."
    )
    data: dict[str, Any]
    at: datetime.datetime


class EventPage(Response):
    events: list[Event]
    next_after: int | None = Field(
        description="Pass as `after` for the next page; null on the last page."
    )


class PriceChange(Response):
    """A line whose price moved."""

    line_id: int
    sku: str
    old_price: str
    new_price: str


class DiscountDropped(Response):
    """A discount that no longer holds (taken off)."""

    discount: str
    reason: str


class ErrorDetail(Response):
    code: str = Field(json_schema_extra={"enum": list(STATUS_BY_CODE)})
    message: str
    field: str = ""  # absent when no one field is at fault
    changes: list[PriceChange | DiscountDropped] = Field(
        default_factory=list, description="prices_changed only: the lines whose price moved."
    )


class Error(Response):
    error: ErrorDetail


class _Document(GenerateJsonSchema):
    """JSON Schema as the document writes it: no generated titles, no defaults (an absent
    field is simply absent), and an object's key rules as `propertyNames`."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def model_schema(self, schema: Any) -> dict[str, Any]:
        json_schema = super().model_schema(schema)
        json_schema.pop("title", None)
        return json_schema

    def default_schema(self, schema: Any) -> dict[str, Any]:
        return self.generate_inner(schema["schema"])

    def dict_schema(self, schema: Any) -> dict[str, Any]:
        json_schema = super().dict_schema(schema)
        # pydantic writes a key pattern as patternProperties, which leaves other keys free.
        patterns = json_schema.pop("patternProperties", None)
        if patterns:
            ((pattern, values),) = patterns.items()
            json_schema["propertyNames"] = {
                **json_schema.get("propertyNames", {}),
                "pattern": pattern,
            }
            json_schema["additionalProperties"] = values
        return json_schema


MODELS: tuple[type[BaseModel], ...] = (
    Line,
    Discount,
    Cart,
    Product,
    DemandItem,
    Event,
    EventPage,
    Error,
    NoFields,
    AddLine,
    SetQuantity,
    ApplyDiscount,
)


def schemas() -> dict[str, Any]:
    """The document's `components.schemas`, generated from the models above."""
    _, top = models_json_schema(
        [(model, "validation") for model in MODELS],
        ref_template="#/components/schemas/{model}",
        schema_generator=_Document,
    )
    return dict(top["$defs"])
