"""API: coverage of an alert over time, and broadcast coverage without any alert."""

from __future__ import annotations

from aiohttp import web

from gateway import codes
from gateway.api.alerts import readable
from gateway.api.common import json_response
from gateway.api.params import int_param
from gateway.errors import BadRequest, Forbidden
from gateway.keys import CONFIG, STORE
from gateway.reports import alert_report, broadcast_report

__all__ = ["routes"]

routes = web.RouteTableDef()
AT_MAX_MINUTES = 366 * 24 * 60  # `?at=`: minutes after acceptance, up to a year


@routes.get("/api/v1/alerts/{id}/coverage")
async def alert_coverage(request: web.Request) -> web.Response:
    record = await readable(request)
    at = None
    if "at" in request.query:
        at = int_param(request, "at", default=0, low=0, high=AT_MAX_MINUTES)
    report = await alert_report(request.app[CONFIG], request.app[STORE], record, at=at)
    return json_response(report)


@routes.get("/api/v1/coverage/broadcast")
async def broadcast(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    principal = config.registry.authenticate(request.headers.get("Authorization"))
    unit = request.query.get("unit") or principal.jurisdiction[0]
    try:
        unit = codes.normalize(unit)
    except ValueError as exc:
        raise BadRequest(str(exc), code="bad-query") from None
    if not principal.covers(unit):
        raise Forbidden(f"{unit} is outside your jurisdiction", code="area-not-allowed")
    return json_response(await broadcast_report(config, request.app[STORE], unit))
