"""API: what every handler shares — JSON and problem+json answers, body limits.

Redis failures that reach the middleware (a read while Redis is down or frozen) are
answered 503 with Retry-After, not 500: the request was fine, the store was not.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.errors import (
    BadRequest,
    PayloadTooLarge,
    ProblemError,
    StoreUnavailable,
    Unauthorized,
)

__all__ = [
    "PROBLEM_TYPE",
    "authorization",
    "json_response",
    "problem_middleware",
    "problem_response",
    "read_body",
]

log = logging.getLogger("warngate.api")
PROBLEM_TYPE = "application/problem+json"


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )


def problem_response(exc: ProblemError, instance: str) -> web.Response:
    return web.Response(
        body=orjson.dumps(exc.as_problem(instance)),
        status=exc.status,
        content_type=PROBLEM_TYPE,
        headers=exc.headers,
    )


_HTTP_CODES = {404: "not-found", 405: "method-not-allowed", 413: "too-large"}


@web.middleware
async def problem_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except ProblemError as exc:
        return problem_response(exc, request.path)
    except (RedisConnectionError, RedisTimeoutError) as exc:
        log.warning("redis unavailable on %s %s: %s", request.method, request.path, exc)
        return problem_response(
            StoreUnavailable(f"the store did not answer ({type(exc).__name__}); retry later"),
            request.path,
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        err = ProblemError(
            exc.reason,
            code=_HTTP_CODES.get(exc.status, f"http-{exc.status}"),
            status=exc.status,
            title=exc.reason,
        )
        resp = problem_response(err, request.path)
        for name in ("Allow",):
            if name in exc.headers:
                resp.headers[name] = exc.headers[name]
        return resp
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        err = ProblemError(
            "internal error; it has been logged",
            code="internal",
            status=500,
            title="Internal error",
        )
        return problem_response(err, request.path)


def authorization(request: web.Request) -> str | None:
    """The one Authorization header of a request; two of them are refused (which would
    count?)."""
    values = request.headers.getall("Authorization", [])
    if len(values) > 1:
        raise Unauthorized("send one Authorization header, not several", code="bad-key")
    return values[0] if values else None


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, refusing more than `limit` bytes without reading them all."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(
            f"body of {request.content_length} bytes is over the limit of {limit} bytes",
            extra={"limit": limit},
        )
    chunks = []
    size = 0
    try:
        async for chunk in request.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(
                    f"body is over the limit of {limit} bytes", extra={"limit": limit}
                )
            chunks.append(chunk)
    except (BadHttpMessage, web.RequestPayloadError) as exc:
        # e.g. `Content-Encoding: gzip` on bytes that are not gzip (it was a 500)
        cause = exc.__cause__ if isinstance(exc.__cause__, BadHttpMessage) else exc
        reason = cause.message if isinstance(cause, BadHttpMessage) else str(cause)
        raise BadRequest(f"body could not be read: {reason}", code="malformed-body") from None
    return b"".join(chunks)
