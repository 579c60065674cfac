"""API: the pull protocol of loudspeakers and screens (docs/endpoint-protocol.md)."""

from __future__ import annotations

from aiohttp import web

from gateway.api.common import json_response, read_body
from gateway.api.params import seconds_param
from gateway.endpoints.http import answer
from gateway.endpoints.signing import HEADER
from gateway.errors import NotFound
from gateway.keys import CONFIG, HUB, STORE
from gateway.store import now_ms

__all__ = ["routes"]

routes = web.RouteTableDef()
DEVICE_BODY_LIMIT = 64 * 1024
# What a device may ask for as `wait` (seconds); more than `endpoints.max_wait_s` is
# waited as that much, so devices need not know the setting.
WAIT_RANGE_S = (0.0, 3600.0)


@routes.get("/api/v1/endpoints/{id}/messages")
async def messages(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    endpoint = hub.authenticate(request.match_info["id"], request.headers.get("Authorization"))
    low, high = WAIT_RANGE_S
    wait = seconds_param(request, "wait", default=0.0, low=low, high=high)
    wait = min(wait, request.app[CONFIG].settings.endpoints.max_wait_s)
    since = request.query.get("since") or None
    hub.seen(endpoint.id)
    hub.connected += 1  # the gauge warngate_endpoints_connected reads it
    try:
        cursor, changes = await hub.wait_changes(endpoint, since, wait)
    finally:
        hub.connected -= 1
    body, signature = answer(endpoint, cursor, changes, now_ms(), hub.signer)
    return web.Response(body=body, content_type="application/json", headers={HEADER: signature})


@routes.get("/api/v1/endpoints/{id}/stream")
async def stream(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    endpoint = hub.authenticate(request.match_info["id"], request.headers.get("Authorization"))
    since = request.headers.get("Last-Event-ID") or request.query.get("since") or None
    hub.seen(endpoint.id)
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await resp.prepare(request)
    hub.connected += 1  # the gauge warngate_endpoints_connected reads it
    try:
        await resp.write(b"retry: 5000\n\n")
        async for frame in hub.stream(endpoint, since):
            await resp.write(frame)
    except (ConnectionResetError, RuntimeError):
        pass  # the device went away
    finally:
        hub.connected -= 1
    return resp


@routes.post("/api/v1/endpoints/{id}/receipts")
async def receipts(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    endpoint = hub.authenticate(request.match_info["id"], request.headers.get("Authorization"))
    body = await read_body(request, DEVICE_BODY_LIMIT)
    return json_response(await hub.receipts(endpoint, body))


@routes.get("/api/v1/endpoints/{id}")
async def endpoint_status(request: web.Request) -> web.Response:
    """For duty operators: what the device is, and whether it is healthy."""
    config = request.app[CONFIG]
    principal = config.registry.authenticate(request.headers.get("Authorization"))
    endpoint = config.directory.endpoints.get(request.match_info["id"])
    if endpoint is None or not principal.covers(endpoint.unit):
        raise NotFound(f"no endpoint {request.match_info['id']!r}", code="endpoint-not-found")
    health = await request.app[STORE].endpoint_health(endpoint.id)
    window = config.settings.endpoints.healthy_within_s * 1000
    last = health["last_seen"]
    return json_response(
        {
            "id": endpoint.id,
            "kind": endpoint.kind.value,
            "unit": endpoint.unit,
            "languages": endpoint.languages,
            "covers_population": endpoint.covers_population,
            "exercise": endpoint.exercise,
            "online": last is not None and now_ms() - last <= window,
            **health,
        }
    )


@routes.post("/api/v1/endpoints/{id}/heartbeat")
async def heartbeat(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    endpoint = hub.authenticate(request.match_info["id"], request.headers.get("Authorization"))
    body = await read_body(request, DEVICE_BODY_LIMIT)
    return json_response(await hub.heartbeat(endpoint, body))
