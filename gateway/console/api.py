"""API: the person routes — log in, submit as a drafter, approve, reject, release alone,
review. Everything the console's buttons do, for programs too (docs/api.md).

A person is known by the session cookie of `POST /api/v1/session`; every unsafe
request also carries the session's CSRF token in `X-CSRF-Token`.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gateway.api.alerts import summary
from gateway.api.answers import AlertSummary
from gateway.api.common import authorization, json_response, read_body
from gateway.api.params import code_param
from gateway.auth import Agency
from gateway.console.accounts import Role
from gateway.console.approval import units_of
from gateway.console.sessions import Session
from gateway.console.web import (
    clear_session_cookie,
    session_of,
    set_session_cookie,
)
from gateway.errors import Forbidden, NotFound, ProblemError, Unprocessable
from gateway.ingest import links
from gateway.jsonbody import fields_of, read_json
from gateway.keys import CONFIG, CONSOLE, INGESTOR, METRICS, STORE
from gateway.models import AlertRecord, AlertState
from gateway.store import now_ms

__all__ = [
    "AccountsAnswer",
    "Approvals",
    "CanaryAnswer",
    "Decided",
    "Login",
    "Note",
    "PreviewAnswer",
    "Reason",
    "SessionAnswer",
    "routes",
    "session_answer",
]

routes = web.RouteTableDef()
BODY_LIMIT = 64 * 1024
SUBMISSION_LIMIT = 1024 * 1024


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Login(_Body):
    account: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class Reason(_Body):
    """Why: the drafter sees a rejection's reason; an emergency release's is audited."""

    reason: str = Field(min_length=1, max_length=2000)

    @field_validator("reason")
    @classmethod
    def _said(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must say why")
        return value


class Note(_Body):
    note: str = Field(default="", max_length=2000)


class SessionAnswer(BaseModel):
    """Who is logged in; `csrf_token` goes in `X-CSRF-Token` of every unsafe request."""

    model_config = ConfigDict(extra="allow")

    account: str
    name: str
    roles: list[Role]
    jurisdiction: list[str]
    agency: str | None
    language: str
    csrf_token: str
    idle_timeout_s: int


class Decided(AlertSummary):
    """An alert after a move of the approval flow, with its approval record."""

    approval: dict[str, Any] = Field(
        description="drafted_by, required, decision (approve, reject, emergency-release,"
        " auto-release), decided_by, decided_at, reason, review, reviewed_by …"
    )


class PreviewAnswer(BaseModel):
    """Every channel × language of an alert as it would go out, before it is posted."""

    model_config = ConfigDict(extra="allow")

    id: str
    on_submit: AlertState = Field(description="`pending-approval` where it would wait")
    approval: dict[str, Any]
    unit: str | None = Field(description="the unit whose messages are shown (`?unit=`)")
    units: list[str]
    messages: list[dict[str, Any]] = Field(
        description="channel, requested and used language, kind, text, title, direction,"
        " variant, SMS encoding and segments, speech seconds, screens page by page"
    )
    failures: list[dict[str, Any]] = Field(description="per unit: what is over a channel limit")
    deliveries: dict[str, int]
    coverage: dict[str, Any] = Field(description="predicted, per unit and in total")
    duplicates: list[dict[str, Any]] = Field(
        description="the same hazard over an overlapping area within 24 hours"
    )
    warnings: list[dict[str, str]]


class Approvals(BaseModel):
    model_config = ConfigDict(extra="allow")

    pending: list[Decided] = Field(description="waiting for a second person, soonest expiry first")
    review_due: list[Decided] = Field(description="released by one person, not yet reviewed")


async def _read(request: web.Request, model: type[BaseModel], *, optional: bool = False) -> Any:
    body = await read_body(request, BODY_LIMIT)
    if optional and not body.strip():
        body = b"{}"
    data = read_json(body, invalid_code="invalid-body")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Unprocessable(
            "the body is not what this route takes", code="invalid-body", errors=fields_of(exc)
        ) from None


def session_answer(session: Session) -> dict[str, Any]:
    a = session.account
    return {
        "account": a.id,
        "name": a.name,
        "roles": [r.value for r in a.roles],
        "jurisdiction": a.jurisdiction,
        "agency": a.agency,
        "language": a.language,
        "csrf_token": session.csrf,
    }


# -- the session ----------------------------------------------------------------------


@routes.post("/api/v1/session")
async def login(request: web.Request) -> web.Response:
    data: Login = await _read(request, Login)
    console = request.app[CONSOLE]
    token, session = await console.sessions.login(data.account, data.password, request.remote or "")
    body = session_answer(session)
    body["idle_timeout_s"] = int(request.app[CONFIG].settings.console.idle_s)
    response = json_response(body)
    set_session_cookie(request, response, token)
    return response


@routes.get("/api/v1/session")
async def whoami(request: web.Request) -> web.Response:
    session = await session_of(request)
    body = session_answer(session)
    body["idle_timeout_s"] = int(request.app[CONFIG].settings.console.idle_s)
    return json_response(body)


@routes.delete("/api/v1/session")
async def logout(request: web.Request) -> web.Response:
    session = await session_of(request)
    await request.app[CONSOLE].sessions.logout(session, request.remote or "")
    response = json_response({"status": "logged out"})
    clear_session_cookie(request, response)
    return response


# -- drafting ---------------------------------------------------------------------------


def drafter_check(request: web.Request, session: Session) -> Any:
    """What a drafter may post: only inside their own jurisdiction."""
    config = request.app[CONFIG]
    account = session.account

    def check(record: AlertRecord) -> None:
        outside = [u for u in units_of(config, record) if not account.covers(u)]
        if outside:
            raise Forbidden(
                "the alert reaches units outside your jurisdiction: " + ", ".join(outside[:10]),
                code="outside-jurisdiction",
                extra={"units": outside[:100], "jurisdiction": account.jurisdiction},
            )

    return check


async def submit(
    request: web.Request, session: Session, body: bytes, content_type: str | None
) -> dict[str, Any]:
    """A drafter's alert through the same ingest path as an agency's post, as the
    account's agency; it waits for approval where the policy asks."""
    if not session.account.has(Role.DRAFTER):
        raise Forbidden(
            "this needs the drafter role", code="role-required", extra={"role": "drafter"}
        )
    config = request.app[CONFIG]
    agency = config.registry.agencies.get(session.account.agency or "")
    if agency is None:
        raise Forbidden(
            "your account names no agency to write for (accounts.yaml `agency`)",
            code="role-required",
            extra={"role": "drafter"},
        )
    metrics = request.app[METRICS]
    started = time.perf_counter()
    metrics.alerts_received.labels(agency.id).inc()
    try:
        result = await request.app[INGESTOR].ingest(
            agency,
            body,
            content_type,
            remote=request.remote or "",
            drafted_by=session.account.id,
            check=drafter_check(request, session),
        )
    except ProblemError as exc:
        metrics.alerts_rejected.labels(agency.id, exc.code).inc()
        raise
    if result.status == 202 and result.record is not None:
        r = result.record
        metrics.alerts_accepted.labels(agency.id, r.level.value, r.alert.msgType.value).inc()
        metrics.ingest_seconds.labels("accepted").observe(time.perf_counter() - started)
    out: dict[str, Any] = dict(result.body)
    out["_status"] = result.status
    return out


@routes.post("/api/v1/submissions")
async def post_submission(request: web.Request) -> web.Response:
    session = await session_of(request)
    body = await read_body(request, SUBMISSION_LIMIT)
    answer = await submit(request, session, body, request.headers.get("Content-Type"))
    status = answer.pop("_status")
    return json_response(answer, status, {"Location": answer["links"]["self"]})


@routes.post("/api/v1/previews")
async def post_preview(request: web.Request) -> web.Response:
    """An alert as it would go out — by an agency's key, or a drafter's session — and
    nothing stored, queued or sent."""
    config = request.app[CONFIG]
    unit = code_param(request, "unit")
    drafted_by = None
    given = authorization(request)
    if given is not None:
        principal = config.registry.authenticate(given)
        if not isinstance(principal, Agency):
            raise Forbidden("duty operators may read but not post alerts", code="not-an-agency")
        agency = principal
    else:
        session = await session_of(request)
        found = config.registry.agencies.get(session.account.agency or "")
        if found is None or not session.account.has(Role.DRAFTER):
            raise Forbidden(
                "this needs the drafter role", code="role-required", extra={"role": "drafter"}
            )
        agency, drafted_by = found, session.account.id
    body = await read_body(request, SUBMISSION_LIMIT)
    preview = await request.app[CONSOLE].previewer.preview(
        agency, body, request.headers.get("Content-Type"), unit=unit, drafted_by=drafted_by
    )
    return json_response(preview)


# -- approval ---------------------------------------------------------------------------


async def decided(request: web.Request, alert: str) -> dict[str, Any]:
    record = await request.app[STORE].get_alert(alert)
    if record is None:
        raise NotFound(f"no alert {alert!r}", code="alert-not-found")
    return {**summary(record), "approval": record.approval or {}}


@routes.post("/api/v1/alerts/{id}/approve")
async def approve(request: web.Request) -> web.Response:
    session = await session_of(request)
    await _read(request, Note, optional=True)
    alert = request.match_info["id"]
    await request.app[CONSOLE].desk.approve(alert, session.person)
    return json_response(await decided(request, alert))


@routes.post("/api/v1/alerts/{id}/reject")
async def reject(request: web.Request) -> web.Response:
    session = await session_of(request)
    data: Reason = await _read(request, Reason)
    alert = request.match_info["id"]
    await request.app[CONSOLE].desk.reject(alert, session.person, data.reason)
    return json_response(await decided(request, alert))


@routes.post("/api/v1/alerts/{id}/emergency-release")
async def emergency_release(request: web.Request) -> web.Response:
    session = await session_of(request)
    data: Reason = await _read(request, Reason)
    alert = request.match_info["id"]
    await request.app[CONSOLE].desk.emergency_release(alert, session.person, data.reason)
    return json_response(await decided(request, alert))


@routes.post("/api/v1/alerts/{id}/review")
async def review(request: web.Request) -> web.Response:
    session = await session_of(request)
    data: Note = await _read(request, Note, optional=True)
    alert = request.match_info["id"]
    await request.app[CONSOLE].desk.review(alert, session.person, data.note)
    return json_response(await decided(request, alert))


@routes.get("/api/v1/approvals")
async def approvals(request: web.Request) -> web.Response:
    """What waits for a second person in the person's jurisdiction: alerts pending
    approval, and emergency releases not yet reviewed."""
    session = await session_of(request)
    desk = request.app[CONSOLE].desk
    waiting = await desk.waiting(session.person)
    reviews = await desk.due_review(session.person)
    return json_response(
        {
            "pending": [{**summary(r), "approval": r.approval or {}} for r in waiting],
            "review_due": [{**summary(r), "approval": r.approval or {}} for r in reviews],
        }
    )


# -- scheduled tests ----------------------------------------------------------------------


class CanaryAnswer(BaseModel):
    model_config = ConfigDict(extra="allow")

    schedules: list[dict[str, Any]] = Field(
        description="each with its area, receivers, next run and recent runs (result, and"
        " per channel receivers, confirmed, end-to-end latency in seconds)"
    )


@routes.get("/api/v1/canaries")
async def canaries(request: web.Request) -> web.Response:
    session = await session_of(request)
    found = request.app[CONSOLE].canaries
    runs = await found.overview(session.person) if found is not None else []
    return json_response({"schedules": runs})


@routes.post("/api/v1/canaries/{schedule}/run")
async def run_canary(request: web.Request) -> web.Response:
    session = await session_of(request)
    found = request.app[CONSOLE].canaries
    if found is None:
        raise NotFound("no scheduled test is configured", code="schedule-not-found")
    alert = await found.run_now(request.match_info["schedule"], session.person)
    return json_response({"alert": alert, "links": links(alert)}, 202)


# -- accounts (admins) --------------------------------------------------------------------


class AccountsAnswer(BaseModel):
    model_config = ConfigDict(extra="allow")

    accounts: list[dict[str, Any]] = Field(
        description="id, name, roles, jurisdiction, agency, disabled, locked_s (never a hash)"
    )


def admin_of(session: Session) -> Session:
    if not session.account.has(Role.ADMIN):
        raise Forbidden("this needs the admin role", code="role-required", extra={"role": "admin"})
    return session


async def account_rows(request: web.Request, session: Session) -> list[dict[str, Any]]:
    """The accounts whose jurisdiction overlaps the admin's, with their lockout."""
    store = request.app[STORE]
    out = []
    for a in request.app[CONSOLE].book.all():
        if not a.overlaps(session.account.jurisdiction):
            continue
        out.append(
            {
                "id": a.id,
                "name": a.name,
                "roles": [r.value for r in a.roles],
                "jurisdiction": a.jurisdiction,
                "agency": a.agency,
                "disabled": a.disabled,
                "locked_s": (await store.locked_ms(a.id)) // 1000,
            }
        )
    return out


@routes.get("/api/v1/accounts")
async def accounts(request: web.Request) -> web.Response:
    session = admin_of(await session_of(request))
    return json_response({"accounts": await account_rows(request, session)})


async def unlock_account(request: web.Request, session: Session, account: str) -> None:
    """End a lockout (audited). Passwords, roles and disabling stay with the CLI."""
    found = request.app[CONSOLE].book.get(account)
    if found is None or not found.overlaps(session.account.jurisdiction):
        raise NotFound(f"no account {account!r}", code="account-not-found")
    await request.app[STORE].unlock(account)
    await request.app[STORE].audit_event(
        {"event": "unlock", "account": account, "by": session.account.id, "at": str(now_ms())}
    )


@routes.post("/api/v1/accounts/{account}/unlock")
async def unlock(request: web.Request) -> web.Response:
    session = admin_of(await session_of(request))
    await unlock_account(request, session, request.match_info["account"])
    return json_response({"account": request.match_info["account"], "locked_s": 0})
