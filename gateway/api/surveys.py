"""API: post-alert surveys of households, from duty desks and from messengers."""

from __future__ import annotations

from aiohttp import web

from gateway.api.alerts import principal_of, readable
from gateway.api.common import json_response, read_body
from gateway.auth import Agency
from gateway.errors import Forbidden
from gateway.keys import CONFIG, DESK, STORE
from gateway.surveys import SurveyDesk

__all__ = ["routes"]

routes = web.RouteTableDef()
SURVEY_BODY_LIMIT = 1024 * 1024


@routes.post("/api/v1/alerts/{id}/surveys")
async def post_survey(request: web.Request) -> web.Response:
    """A duty desk's survey answers for households of its own jurisdiction."""
    record = await readable(request)
    principal = principal_of(request)
    if isinstance(principal, Agency):
        raise Forbidden("surveys are reported by duty desks and messengers", code="not-a-desk")
    summary = await request.app[STORE].plan_summary(record.id) or {}
    units = {u for u in summary.get("units", {}) if principal.covers(u)}
    body = await read_body(request, SURVEY_BODY_LIMIT)
    desk = SurveyDesk(request.app[CONFIG], request.app[STORE])
    return json_response(await desk.from_desk(record, body, units, principal.id))


@routes.get("/api/v1/alerts/{id}/surveys")
async def get_surveys(request: web.Request) -> web.Response:
    record = await readable(request)
    answers = await request.app[STORE].surveys(record.id)
    return json_response({"alert": record.id, "households": answers})


@routes.post("/api/v1/relay/{code}/survey")
async def messenger_survey(request: web.Request) -> web.Response:
    body = await read_body(request, SURVEY_BODY_LIMIT)
    return json_response(await request.app[DESK].relay_survey(request.match_info["code"], body))
