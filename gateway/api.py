"""API: thin aiohttp handlers for agencies and operators, and the problem+json middleware.

Handlers read the request, call one stage, and write JSON. Every error leaves as
`application/problem+json` (RFC 9457) with a stable `code` and, for field problems, an
`errors` list of `{loc, msg}`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from gateway.auth import Agency, Principal
from gateway.errors import BadRequest, NotFound, PayloadTooLarge, ProblemError
from gateway.ingest import links
from gateway.keys import CONFIG, INGESTOR, METRICS, STORE
from gateway.metrics import CONTENT_TYPE_LATEST
from gateway.models import AlertRecord, AlertState

__all__ = ["json_response", "problem_middleware", "read_body", "routes"]

log = logging.getLogger("warngate.api")
routes = web.RouteTableDef()
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


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, refusing more than `limit` bytes without reading them all."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(
            f"body of {request.content_length} bytes is over the limit of {limit} bytes",
            extra={"limit": limit},
        )
    chunks = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"body is over the limit of {limit} bytes", extra={"limit": limit}
            )
        chunks.append(chunk)
    return b"".join(chunks)


def principal_of(request: web.Request) -> Principal:
    return request.app[CONFIG].registry.authenticate(request.headers.get("Authorization"))


def may_read(principal: Principal, record: AlertRecord) -> bool:
    """Agencies read their own alerts; duty operators read every alert."""
    return not isinstance(principal, Agency) or record.agency == principal.id


def summary(record: AlertRecord) -> dict[str, Any]:
    first = record.alert.info[0]
    return {
        "id": record.id,
        "state": record.state.value,
        "agency": record.agency,
        "sender": record.alert.sender,
        "identifier": record.alert.identifier,
        "sent": record.alert.model_dump(mode="json")["sent"],
        "received": record.received.isoformat(),
        "expires": record.expires.isoformat(),
        "msgType": record.alert.msgType.value,
        "status": record.alert.status.value,
        "exercise": record.exercise,
        "level": record.level.value,
        "hazards": record.hazards,
        "headline": first.headline or first.event,
        "links": links(record.id),
    }


# -- alerts ----------------------------------------------------------------------------


@routes.post("/api/v1/alerts")
async def post_alert(request: web.Request) -> web.Response:
    started = time.perf_counter()
    ingestor = request.app[INGESTOR]
    metrics = request.app[METRICS]
    agency = "unknown"
    try:
        principal = ingestor.authenticate(request.headers.get("Authorization"))
        agency = principal.id
        metrics.alerts_received.labels(agency).inc()
        limit = request.app[CONFIG].settings.ingest.max_body_bytes
        body = await read_body(request, limit)
        result = await ingestor.ingest(
            principal, body, request.headers.get("Content-Type"), remote=request.remote or ""
        )
    except ProblemError as exc:
        if agency == "unknown":
            metrics.alerts_received.labels(agency).inc()
        metrics.alerts_rejected.labels(agency, exc.code).inc()
        metrics.ingest_seconds.labels("rejected").observe(time.perf_counter() - started)
        raise
    if result.status == 202 and result.record is not None:
        record = result.record
        metrics.alerts_accepted.labels(agency, record.level.value, record.alert.msgType.value).inc()
        metrics.ingest_seconds.labels("accepted").observe(time.perf_counter() - started)
    else:
        metrics.alerts_duplicate.labels(agency).inc()
        metrics.ingest_seconds.labels("duplicate").observe(time.perf_counter() - started)
    return json_response(result.body, result.status, {"Location": result.body["links"]["self"]})


@routes.get("/api/v1/alerts")
async def list_alerts(request: web.Request) -> web.Response:
    principal = principal_of(request)
    state_s = request.query.get("state")
    state = None
    if state_s:
        try:
            state = AlertState(state_s)
        except ValueError:
            raise BadRequest(
                f"state must be one of {', '.join(s.value for s in AlertState)}",
                code="bad-query",
            ) from None
    try:
        limit = max(1, min(int(request.query.get("limit", "100")), 1000))
    except ValueError:
        raise BadRequest("limit must be a whole number", code="bad-query") from None
    agency = principal.id if isinstance(principal, Agency) else request.query.get("agency")
    records = await request.app[STORE].list_alerts(state=state, agency=agency, limit=limit)
    return json_response({"alerts": [summary(r) for r in records]})


@routes.get("/api/v1/alerts/{id}")
async def get_alert(request: web.Request) -> web.Response:
    principal = principal_of(request)
    record = await request.app[STORE].get_alert(request.match_info["id"])
    if record is None or not may_read(principal, record):
        raise NotFound(f"no alert {request.match_info['id']!r}", code="alert-not-found")
    body = summary(record)
    body.update(
        {
            "supersedes": record.supersedes,
            "superseded_by": record.superseded_by,
            "cancelled_by": record.cancelled_by,
            "unknown_references": record.unknown_references,
            "alert": record.alert.to_cap_dict(),
        }
    )
    return json_response(body)


# -- health ----------------------------------------------------------------------------


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    try:
        await request.app[STORE].ping()
    except Exception as exc:  # any failure to reach Redis means not ready
        err = ProblemError(
            f"Redis is not reachable: {type(exc).__name__}",
            code="not-ready",
            status=503,
            title="Not ready",
        )
        return problem_response(err, request.path)
    return json_response({"status": "ready"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    resp = web.Response(body=request.app[METRICS].render())
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp
