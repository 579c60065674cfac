"""API: thin aiohttp handlers; the only place besides `app` that touches aiohttp.web."""

from aiohttp import web

from gateway.api import alerts as alerts
from gateway.api import callbacks as callbacks
from gateway.api import coverage as coverage
from gateway.api import devices as devices
from gateway.api import health as health
from gateway.api import openapi as openapi
from gateway.api import surveys as surveys
from gateway.api.common import json_response, problem_middleware, read_body

__all__ = ["all_routes", "json_response", "problem_middleware", "read_body"]


def all_routes() -> list[web.AbstractRouteDef]:
    return [
        *alerts.routes,
        *coverage.routes,
        *devices.routes,
        *callbacks.routes,
        *health.routes,
        *openapi.routes(),
        *surveys.routes,
    ]
