"""API: delivery receipts from providers, and messengers' relay acknowledgements."""

from __future__ import annotations

from aiohttp import web

from gateway.api.common import json_response, read_body
from gateway.keys import DESK

__all__ = ["routes"]

routes = web.RouteTableDef()
CALLBACK_BODY_LIMIT = 4 * 1024 * 1024


async def _provider(request: web.Request, family: str) -> web.Response:
    desk = request.app[DESK]
    name = request.match_info["provider"]
    desk.provider(name, request.headers.get("X-Callback-Token"))
    body = await read_body(request, CALLBACK_BODY_LIMIT)
    return json_response(await desk.provider_receipts(name, family, body))


@routes.post("/api/v1/callbacks/sms/{provider}")
async def sms_receipts(request: web.Request) -> web.Response:
    return await _provider(request, "sms")


@routes.post("/api/v1/callbacks/app/{provider}")
async def app_receipts(request: web.Request) -> web.Response:
    return await _provider(request, "app")


@routes.post("/api/v1/callbacks/sms/{provider}/inbound")
async def sms_inbound(request: web.Request) -> web.Response:
    desk = request.app[DESK]
    desk.provider(request.match_info["provider"], request.headers.get("X-Callback-Token"))
    body = await read_body(request, 64 * 1024)
    return json_response(await desk.inbound_sms(body))


@routes.post("/api/v1/relay/{code}")
async def relay(request: web.Request) -> web.Response:
    body = await read_body(request, 64 * 1024)
    return json_response(await request.app[DESK].relay(request.match_info["code"], body))
