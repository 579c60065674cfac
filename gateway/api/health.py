"""API: health for load balancers and orchestrators, and metrics for Prometheus.

`/healthz` is liveness (the process runs); `/readyz` is readiness (it can do its work
now). Both, with `/metrics`, are also served by `warngate worker --metrics-port`.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway.api.common import json_response, problem_response
from gateway.errors import ProblemError
from gateway.keys import CONFIG, DEADLINE, LOOPS, METRICS, REDIS
from gateway.metrics import CONTENT_TYPE_LATEST
from gateway.redis_server import server_problem

__all__ = ["healthz", "metrics", "readyz", "routes"]

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready when this process can do its work: it is not stopping, Redis answers within
    `process.ready_timeout_s` and takes writes as one server, and no background loop
    has been failing for `process.loop_stale_s`. Otherwise 503, naming every reason."""
    app = request.app
    settings = app[CONFIG].settings.process
    problems: list[str] = []
    if app[DEADLINE].started:
        problems.append("the process is stopping")
    try:
        async with asyncio.timeout(settings.ready_timeout_s):
            found = await server_problem(app[REDIS])
        if found is not None:
            problems.append(found)
    except TimeoutError:
        problems.append(f"Redis did not answer within {settings.ready_timeout_s:g} s")
    except Exception as exc:  # any failure to reach Redis means not ready
        problems.append(f"Redis is not reachable: {type(exc).__name__}: {exc}"[:300])
    problems += app[LOOPS].problems(settings.loop_stale_s)
    if problems:
        err = ProblemError(
            "; ".join(problems),
            code="not-ready",
            status=503,
            title="Not ready",
            extra={"problems": problems},
            headers={"Retry-After": "5"},
        )
        return problem_response(err, request.path)
    return json_response({"status": "ready"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    resp = web.Response(body=request.app[METRICS].render())
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp
