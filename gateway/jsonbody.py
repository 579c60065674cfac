"""Receipts: the JSON bodies of devices and providers, read with bounded nesting.

orjson reads up to 1,024 levels of nesting but writes at most 254, so a heartbeat
nested 255 deep (its extra keys are kept as sent) was read, then failed to be stored:
a 500. Bodies here are nested a few levels at most; anything deeper than `MAX_DEPTH`
is refused before it reaches a model or Redis. NaN and Infinity literals, numbers
beyond a double and invalid UTF-8 are refused by orjson itself.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError

from gateway.cap import field_errors
from gateway.errors import BadRequest, FieldError, Unprocessable

__all__ = ["MAX_DEPTH", "fields_of", "read_json"]

MAX_DEPTH = 16  # objects and arrays inside one another


def read_json(body: bytes, *, invalid_code: str) -> Any:
    """The decoded body: 400 `malformed-json` when it is not JSON, 422 `invalid_code`
    when it is nested deeper than `MAX_DEPTH`."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not JSON: {exc}", code="malformed-json") from None
    if _deeper_than(data, MAX_DEPTH):
        raise Unprocessable(f"body is nested deeper than {MAX_DEPTH} levels", code=invalid_code)
    return data


def _deeper_than(value: Any, limit: int) -> bool:
    stack = [(value, 1)]  # no recursion: the input decides how deep this goes
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def fields_of(exc: ValidationError) -> list[FieldError]:
    """Located validation errors; a key the model does not know is an 'unknown field'
    (`field_errors` words it for CAP documents)."""
    return [
        FieldError(e.loc, "unknown field") if e.msg == "not a CAP 1.2 element" else e
        for e in field_errors(exc)
    ]
