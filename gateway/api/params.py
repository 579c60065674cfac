"""API: query parameters, read strictly or refused with 400 `bad-query`.

`float()` and `int()` take far more than a client means to send: `nan`, `inf`, `1e309`,
`1_000`, Arabic-Indic digits, signs and spaces. A NaN that reaches `asyncio.timeout` is
a timer the event loop can no longer order, which once froze every parked device. So a
numeric parameter is plain ASCII decimal digits (seconds may have a fraction), given at
most once, and inside the range the route documents; anything else is a 400 problem
that names the parameter.
"""

from __future__ import annotations

import re

from aiohttp import web

from gateway.errors import BadRequest, FieldError

__all__ = ["choice_param", "code_param", "int_param", "seconds_param"]

_WHOLE = re.compile(r"[0-9]{1,20}")
_DIVISION = re.compile(r"[0-9]{2,12}")  # a division code (gateway.codes): digits only
_DECIMAL = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,20})?")  # str(0.1 + 0.2) has 17 decimals


def _one(request: web.Request, name: str) -> str | None:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise _bad(name, f"{name} is given {len(values)} times; give it once")
    return values[0] if values else None


def _bad(name: str, message: str) -> BadRequest:
    return BadRequest(
        message,
        code="bad-query",
        errors=[FieldError(f"query.{name}", message)],
        extra={"parameter": name},
    )


def int_param(request: web.Request, name: str, *, default: int, low: int, high: int) -> int:
    """A whole number from `low` to `high` (`default` when the parameter is absent)."""
    raw = _one(request, name)
    if raw is None:
        return default
    if _WHOLE.fullmatch(raw) is None or not low <= int(raw) <= high:
        raise _bad(name, f"{name} must be a whole number from {low} to {high}")
    return int(raw)


def seconds_param(
    request: web.Request, name: str, *, default: float, low: float, high: float
) -> float:
    """A number of seconds from `low` to `high`, digits with an optional fraction."""
    raw = _one(request, name)
    if raw is None:
        return default
    if _DECIMAL.fullmatch(raw) is None or not low <= float(raw) <= high:
        raise _bad(name, f"{name} must be a number of seconds from {low:g} to {high:g}")
    return float(raw)


def code_param(request: web.Request, name: str) -> str | None:
    """A division code (2–12 ASCII digits), or None when absent: nothing else reaches a
    Redis pattern (`*`, `?`, `[` would widen what is matched)."""
    raw = _one(request, name)
    if raw is None or raw == "":
        return None
    if _DIVISION.fullmatch(raw) is None:
        raise _bad(name, f"{name} must be a division code (2 to 12 digits)")
    return raw


def choice_param(request: web.Request, name: str, choices: tuple[str, ...]) -> str | None:
    """One of `choices`, or None when absent."""
    raw = _one(request, name)
    if raw is None or raw == "":
        return None
    if raw not in choices:
        raise _bad(name, f"{name} must be one of: {', '.join(choices)}")
    return raw
