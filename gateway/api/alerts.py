"""API: alerts for agencies and operators (post, read, list) and dead letters.

Handlers read the request, call one stage, and write JSON. Every error leaves as
`application/problem+json` (RFC 9457) with a stable `code` and, for field problems, an
`errors` list of `{loc, msg}`.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from gateway import codes
from gateway.api.common import authorization, json_response, read_body
from gateway.api.params import choice_param, code_param, int_param
from gateway.auth import Agency, Principal, Registry
from gateway.errors import BadRequest, NotFound, ProblemError
from gateway.ingest import links
from gateway.keys import CONFIG, INGESTOR, METRICS, STORE
from gateway.models import AlertRecord, AlertState, Channel

__all__ = ["routes"]

log = logging.getLogger("warngate.api")
routes = web.RouteTableDef()


def principal_of(request: web.Request) -> Principal:
    return request.app[CONFIG].registry.authenticate(authorization(request))


def may_read(principal: Principal, record: AlertRecord, registry: Registry) -> bool:
    """Agencies read their own alerts; a duty desk reads the alerts of agencies whose
    jurisdiction overlaps its own (a prefecture desk sees its counties' bureaus, and a
    county desk its prefecture's)."""
    if isinstance(principal, Agency):
        return record.agency == principal.id
    agency = registry.agencies.get(record.agency)
    if agency is None:
        return False
    return any(
        codes.covers(o, a) or codes.covers(a, o)
        for o in principal.jurisdiction
        for a in agency.jurisdiction
    )


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
        principal = ingestor.authenticate(authorization(request))
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
    limit = int_param(request, "limit", default=100, low=1, high=1000)
    agency = principal.id if isinstance(principal, Agency) else request.query.get("agency")
    registry = request.app[CONFIG].registry
    records = await request.app[STORE].list_alerts(state=state, agency=agency, limit=limit)
    records = [r for r in records if may_read(principal, r, registry)]
    return json_response({"alerts": [summary(r) for r in records]})


@routes.get("/api/v1/alerts/{id}")
async def get_alert(request: web.Request) -> web.Response:
    record = await readable(request)
    body = summary(record)
    body.update(
        {
            "supersedes": record.supersedes,
            "superseded_by": record.superseded_by,
            "cancelled_by": record.cancelled_by,
            "unknown_references": record.unknown_references,
            "approval": record.approval or {},
            "alert": record.alert.to_cap_dict(),
        }
    )
    return json_response(body)


@routes.get("/api/v1/alerts/{id}/deliveries")
async def deliveries(request: web.Request) -> web.Response:
    """Counts per channel and state, and a page of individual deliveries."""
    record = await readable(request)
    store = request.app[STORE]
    counts: dict[str, dict[str, int]] = {}
    for key, n in (await store.aggregates(record.id)).items():
        kind, _, rest = key.partition("|")
        if kind == "n" and n:
            ch, _, state = rest.partition("|")
            counts.setdefault(ch, {})[state] = n
    summary = await store.plan_summary(record.id) or {}
    channel: str | None = request.query.get("channel") or next(iter(sorted(counts)), None)
    if channel is not None and channel not in {c.value for c in Channel}:
        raise BadRequest(f"unknown channel {channel!r}", code="bad-query")
    # A Redis HSCAN cursor: 2^63 and above made Redis answer "invalid cursor" (a 500).
    cursor = int_param(request, "cursor", default=0, low=0, high=2**63 - 1)
    count = int_param(request, "count", default=100, low=1, high=1000)
    page: list[dict[str, Any]] = []
    next_cursor = 0
    if channel is not None:
        next_cursor, rows = await store.receipts_page(record.id, channel, cursor, count)
        for rid, value in rows:
            parts = (value.split("|") + [""] * 8)[:8]
            page.append(
                {
                    "id": f"{record.id}:{channel}:{rid}",
                    "recipient": rid,
                    "channel": channel,
                    "state": parts[0],
                    "at": datetime.fromtimestamp(int(parts[1]) / 1000, UTC).isoformat(),
                    "unit": parts[2] or None,
                    "attempts": int(parts[6]) if parts[6] else None,
                    "note": parts[7] or None,
                }
            )
    return json_response(
        {
            "id": record.id,
            "state": record.state.value,
            "planned": summary.get("counts", {}),
            # False while the planner is still publishing and enqueuing this version.
            "planning_done": await store.plan_done(record.id),
            "counts": counts,
            "outside": summary.get("outside", []),
            "unresolved": summary.get("unresolved", []),
            "render_failures": summary.get("render_failures", []),
            "channel": channel,
            "deliveries": page,
            "next_cursor": next_cursor or None,
            "dead_letters": await store.dead_letters(alert=record.id, count=50),
        }
    )


@routes.get("/api/v1/alerts/{id}/messages")
async def rendered_messages(request: web.Request) -> web.Response:
    """The texts as rendered, per channel × unit × language × kind (what was sent)."""
    record = await readable(request)
    unit = code_param(request, "unit")
    channel = choice_param(request, "channel", tuple(c.value for c in Channel))
    rows = await request.app[STORE].rendered(record.id, unit=unit)
    out = []
    for key, raw in rows.items():
        ch, u, lang, kind = key.split("|")
        if channel and ch != channel:
            continue
        m = orjson.loads(raw)
        out.append({"channel": ch, "unit": u, "requested": lang, "kind": kind, **m})
    return json_response({"id": record.id, "messages": out})


@routes.get("/api/v1/dead-letters")
async def dead_letters(request: web.Request) -> web.Response:
    """Dead letters of the reader's jurisdiction: a desk sees the batches of its own
    villages only (every desk saw every province's), of one alert it may read with
    `?alert=`; an agency names one of its alerts."""
    principal = principal_of(request)
    alert = request.query.get("alert")
    if alert is None and isinstance(principal, Agency):
        raise BadRequest("agencies ask for one of their alerts: ?alert=<id>", code="bad-query")
    if alert is not None:
        record = await request.app[STORE].get_alert(alert)
        if record is None or not may_read(principal, record, request.app[CONFIG].registry):
            raise NotFound(f"no alert {alert!r}", code="alert-not-found")

    def mine(unit: str) -> bool:
        return codes.is_division_code(unit) and principal.covers(unit)

    found = await request.app[STORE].dead_letters(alert=alert, units=mine)
    return json_response({"dead_letters": found})


async def readable(request: web.Request) -> AlertRecord:
    principal = principal_of(request)
    record = await request.app[STORE].get_alert(request.match_info["id"])
    if record is None or not may_read(principal, record, request.app[CONFIG].registry):
        raise NotFound(f"no alert {request.match_info['id']!r}", code="alert-not-found")
    return record
