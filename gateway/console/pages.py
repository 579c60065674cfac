"""Console: the pages — log in, overview, compose and preview, an alert's page (approve,
reject, release, update, cancel, watch live), scheduled tests.

Server-rendered HTML (templates/console/), a little vanilla JavaScript for the map and
the live parts (gateway/console/static/), server-sent events for what changes. Every
action here is one of the API's person routes (gateway/console/api.py) or its read
routes, called in-process: the console can do nothing the API cannot.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import orjson
from aiohttp import web

from gateway import codes
from gateway.codes import Tier
from gateway.config import Config
from gateway.console import api
from gateway.console.accounts import Role
from gateway.console.compose import (
    LANGUAGES as MESSAGE_LANGUAGES,
)
from gateway.console.compose import (
    Draft,
    draft_from_form,
    draft_from_record,
    to_cap,
)
from gateway.console.geo import coverage_colour, svg_map
from gateway.console.sessions import Session, same_token
from gateway.console.ui import LANG_COOKIE, language_of
from gateway.console.watch import broadcast, snapshot, visible
from gateway.console.web import (
    clear_session_cookie,
    current_session,
    secure,
    session_of,
    set_session_cookie,
)
from gateway.errors import ProblemError
from gateway.keys import CONFIG, CONSOLE, DEADLINE, RENDERER, STORE
from gateway.models import AlertRecord, AlertState, Level, Status

__all__ = ["routes"]

routes = web.RouteTableDef()
LOGIN_COOKIE = "wglogin"
FORM_LIMIT = 256 * 1024


# -- helpers ------------------------------------------------------------------------


def _html(request: web.Request, name: str, status: int = 200, **context: Any) -> web.Response:
    console = request.app[CONSOLE]
    context.setdefault("session", None)
    session: Session | None = context["session"]
    lang = language_of(request, session.account.language if session else None)
    roles = {r.value for r in session.account.roles} if session else set()
    body = console.pages.render(
        name,
        lang,
        roles=roles,
        config=request.app[CONFIG],
        path=request.path_qs,
        now=datetime.now(UTC),
        **context,
    )
    response = web.Response(text=body, status=status, content_type="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self';"
        " frame-ancestors 'none'; form-action 'self'"
    )
    if "lang" in request.query and request.query["lang"] in ("zh", "en"):
        response.set_cookie(LANG_COOKIE, request.query["lang"], samesite="Strict", path="/console")
    return response


async def _page_session(request: web.Request) -> Session:
    """The person, or a redirect to the login page (and back afterwards)."""
    session = await current_session(request)
    if session is None:
        raise web.HTTPSeeOther(f"/console/login?next={quote(request.path_qs)}")
    return session


async def _form(request: web.Request) -> Any:
    if request.content_length is not None and request.content_length > FORM_LIMIT:
        raise web.HTTPRequestEntityTooLarge(FORM_LIMIT, request.content_length)
    return await request.post()


def _units_tree(config: Config, session: Session) -> list[dict[str, Any]]:
    """The jurisdiction as prefecture → county → township → village, for the picker."""
    d = config.directory

    def node(code: str) -> dict[str, Any]:
        div = d.divisions[code]
        kids = sorted(d.children.get(code, []))
        return {
            "code": code,
            "name": div.name,
            "tier": div.tier.name.lower(),
            "unit": div.tier is Tier.VILLAGE,
            "children": [node(c) for c in kids if c in d.divisions],
        }

    return [node(c) for c in session.account.jurisdiction if c in d.divisions]


def _jurisdiction_units(config: Config, session: Session) -> list[str]:
    return sorted(
        {u for code in session.account.jurisdiction for u in config.directory.units_under(code)}
    )


def _departments(request: web.Request) -> list[str]:
    found: list[str] = []
    for levels in request.app[RENDERER].guidance.get("zh", {}).values():
        for blocks in levels.values():
            for block in blocks or []:
                dept = str(block.get("department", ""))
                if dept and dept not in found:
                    found.append(dept)
    return found


def _agency(config: Config, session: Session) -> Any:
    return config.registry.agencies.get(session.account.agency or "")


def _hazards(config: Config, session: Session) -> list[Any]:
    agency = _agency(config, session)
    return [h for h in config.hazards.by_id.values() if agency is None or agency.may_warn(h.id)]


# -- login ----------------------------------------------------------------------------


@routes.get("/console")
async def console_root(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/console/")


@routes.get("/console/login")
async def login_page(request: web.Request) -> web.Response:
    token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
    response = _html(
        request,
        "login.html",
        login_token=token,
        error=None,
        next=request.query.get("next", "/console/"),
    )
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        httponly=True,
        samesite="Strict",
        secure=secure(request),
        path="/console",
    )
    return response


@routes.post("/console/login")
async def login_form(request: web.Request) -> web.Response:
    form = await _form(request)
    token = request.cookies.get(LOGIN_COOKIE, "")
    target = str(form.get("next") or "/console/")
    if not target.startswith("/console/") or target.startswith("//"):
        target = "/console/"
    if not token or not same_token(str(form.get("login_token", "")), token):
        return _html(
            request,
            "login.html",
            403,
            login_token=token or secrets.token_urlsafe(24),
            error="csrf-mismatch",
            next=target,
        )
    console = request.app[CONSOLE]
    try:
        cookie, _ = await console.sessions.login(
            str(form.get("account", "")), str(form.get("password", "")), request.remote or ""
        )
    except ProblemError as exc:
        return _html(
            request, "login.html", exc.status, login_token=token, error=exc.code, next=target
        )
    response = web.HTTPSeeOther(target)
    set_session_cookie(request, response, cookie)
    response.del_cookie(LOGIN_COOKIE, path="/console")
    raise response


@routes.post("/console/logout")
async def logout_form(request: web.Request) -> web.Response:
    form = await _form(request)
    session = await current_session(request)
    if session is not None:
        await session_of(request, str(form.get("csrf", "")))
        await request.app[CONSOLE].sessions.logout(session, request.remote or "")
    response = web.HTTPSeeOther("/console/login")
    clear_session_cookie(request, response)
    raise response


# -- overview -------------------------------------------------------------------------


@routes.get("/console/")
async def overview(request: web.Request) -> web.Response:
    session = await _page_session(request)
    config, store = request.app[CONFIG], request.app[STORE]
    desk = request.app[CONSOLE].desk
    person = session.person
    recent = await store.list_alerts(limit=200)
    mine = [r for r in recent if visible(config, r, person)]
    live = [r for r in mine if r.state is AlertState.ACTIVE]
    figures = {}
    for record in live:
        report = await snapshot(config, store, record)
        figures[record.id] = report
    rejected = [
        r
        for r in mine
        if r.state is AlertState.REJECTED and (r.approval or {}).get("drafted_by") == person.id
    ]
    return _html(
        request,
        "overview.html",
        session=session,
        live=[r for r in live if not r.exercise],
        drills=[r for r in live if r.exercise],
        figures=figures,
        pending=await desk.waiting(person),
        review_due=await desk.due_review(person),
        rejected=rejected[:20],
        recent=mine[:30],
        broadcast=await broadcast(config, store, person),
        quick=request.app[CONSOLE].quick,
    )


# -- compose --------------------------------------------------------------------------


def _compose_context(
    request: web.Request, session: Session, draft: Draft, **more: Any
) -> dict[str, Any]:
    config = request.app[CONFIG]
    units = _jurisdiction_units(config, session)
    fill = {}
    preview = more.get("preview")
    if preview:
        for row in preview["coverage"]["units"]:
            fill[row["unit"]] = coverage_colour(row["predicted"], row["target"])
    return {
        "session": session,
        "draft": draft,
        "units_tree": _units_tree(config, session),
        "hazards": _hazards(config, session),
        "levels": [lv.value for lv in Level],
        "statuses": [s.value for s in (Status.ACTUAL, Status.EXERCISE, Status.TEST)],
        "message_languages": list(MESSAGE_LANGUAGES),
        "departments": _departments(request),
        "map": svg_map(
            config.directory, units, fill=fill, selected=draft.units, css_class="map pick"
        ),
        "quick": request.app[CONSOLE].quick,
        "errors": more.pop("errors", None),
        "preview": None,
        "notice": None,
        **more,
    }


@routes.get("/console/compose")
async def compose_page(request: web.Request) -> web.Response:
    session = await _page_session(request)
    console = request.app[CONSOLE]
    draft = Draft(hazard=next(iter(h.id for h in _hazards(request.app[CONFIG], session)), ""))
    for verb in ("update", "cancel", "edit"):
        alert = request.query.get(verb)
        if alert:
            record = await request.app[STORE].get_alert(alert)
            if record is not None and visible(request.app[CONFIG], record, session.person):
                msg = {"update": "Update", "cancel": "Cancel", "edit": "Alert"}[verb]
                draft = draft_from_record(record, msg)
                if verb == "update" and "level" in request.query:
                    draft.level = request.query["level"]
    chosen = request.query.get("template")
    for template in console.quick:
        if template.id == chosen:
            draft = template.draft()
    return _html(request, "compose.html", **_compose_context(request, session, draft))


@routes.post("/console/compose")
async def compose_post(request: web.Request) -> web.Response:
    session = await _page_session(request)
    form = await _form(request)
    await session_of(request, str(form.get("csrf", "")))
    units = [u for u in form.getall("unit", []) if codes.is_division_code(u)]
    draft = draft_from_form(form, units)
    return await _preview_or_submit(
        request,
        session,
        draft,
        str(form.get("action", "preview")),
        str(form.get("show_unit", "")) or None,
    )


async def _preview_or_submit(
    request: web.Request, session: Session, draft: Draft, action: str, show_unit: str | None
) -> web.Response:
    config = request.app[CONFIG]
    console = request.app[CONSOLE]
    agency = _agency(config, session)
    if agency is None or not session.account.has(Role.DRAFTER):
        context = _compose_context(
            request, session, draft, errors=[{"loc": "", "msg": "role-required"}]
        )
        return _html(request, "compose.html", 403, **context)
    now = datetime.now(UTC).replace(microsecond=0)
    data = to_cap(draft, config, agency, session.account.id, now)
    draft.identifier, draft.sent = data["identifier"], data["sent"]
    draft.expires_at = data["info"][0]["expires"]
    body = orjson.dumps(data)
    try:
        preview = await console.previewer.preview(
            agency, body, "application/json", unit=show_unit, drafted_by=session.account.id
        )
    except ProblemError as exc:
        problem = exc.as_problem()
        context = _compose_context(
            request,
            session,
            draft,
            errors=problem.get("errors") or [{"loc": "", "msg": exc.detail}],
        )
        return _html(request, "compose.html", 422 if exc.status >= 400 else 200, **context)
    if action == "submit":
        if preview["duplicates"] and not draft.confirm_duplicate:
            context = _compose_context(
                request, session, draft, preview=preview, notice="confirm-duplicate"
            )
            return _html(request, "compose.html", 409, **context)
        try:
            answer = await api.submit(request, session, body, "application/json")
        except ProblemError as exc:
            problem = exc.as_problem()
            errors = problem.get("errors") or [{"loc": "", "msg": exc.detail}]
            context = _compose_context(request, session, draft, preview=preview, errors=errors)
            return _html(request, "compose.html", exc.status, **context)
        raise web.HTTPSeeOther(f"/console/alerts/{answer['id']}")
    return _html(
        request, "compose.html", **_compose_context(request, session, draft, preview=preview)
    )


@routes.post("/console/quick/{template}")
async def quick_launch(request: web.Request) -> web.Response:
    """ "Launch": a quick template submitted as it is (it still waits for approval
    where the policy asks for it)."""
    session = await _page_session(request)
    form = await _form(request)
    await session_of(request, str(form.get("csrf", "")))
    for template in request.app[CONSOLE].quick:
        if template.id == request.match_info["template"]:
            draft = template.draft()
            draft.confirm_duplicate = form.get("confirm_duplicate") == "yes"
            return await _preview_or_submit(request, session, draft, "submit", None)
    raise web.HTTPNotFound()


# -- one alert --------------------------------------------------------------------------


async def _visible_alert(request: web.Request, session: Session) -> AlertRecord | None:
    record = await request.app[STORE].get_alert(request.match_info["id"])
    if record is None or not visible(request.app[CONFIG], record, session.person):
        return None
    return record


async def _alert_page(
    request: web.Request,
    session: Session,
    record: AlertRecord,
    status: int = 200,
    error: dict[str, Any] | None = None,
) -> web.Response:
    config, store = request.app[CONFIG], request.app[STORE]
    console = request.app[CONSOLE]
    live = await snapshot(config, store, record)
    units = [u["unit"] for u in live["units"]] or _targets(config, record)
    shown = request.query.get("unit") or (units[0] if units else None)
    if shown is not None and not codes.is_division_code(shown):
        shown = None
    messages = []
    for key, raw in sorted((await store.rendered(record.id, unit=shown)).items()):
        ch, unit, lang, kind = key.split("|")
        row = {"channel": ch, "unit": unit, "requested": lang, "kind": kind}
        messages.append({**row, **orjson.loads(raw)})
    preview = None
    if record.state is AlertState.PENDING:
        agency = config.registry.agencies.get(record.agency)
        if agency is not None:
            try:
                preview = await console.previewer.preview(
                    agency,
                    orjson.dumps(record.alert.to_cap_dict()),
                    "application/json",
                    unit=shown,
                    drafted_by=(record.approval or {}).get("drafted_by"),
                    now=record.received,
                )
            except ProblemError:
                preview = None
    approval = record.approval or {}
    person = session.person
    windows = [
        config.policy.for_unit(u).approval.emergency_release_minutes
        for u in _targets(config, record)
    ]
    return _html(
        request,
        "alert.html",
        status,
        session=session,
        record=record,
        approval=approval,
        live=live,
        live_json=orjson.dumps(live).decode().replace("</", "<\\/"),
        messages=messages,
        preview=preview,
        error=error,
        may_approve="approver" in person.roles and approval.get("drafted_by") != person.id,
        may_draft=session.account.has(Role.DRAFTER),
        emergency_minutes=min(windows, default=0),
        map=svg_map(config.directory, units, fill=live["fill"], css_class="map watch"),
    )


def _targets(config: Config, record: AlertRecord) -> list[str]:
    from gateway.console.approval import units_of

    return [u for u in units_of(config, record) if codes.tier(u) is Tier.VILLAGE]


@routes.get("/console/alerts/{id}")
async def alert_page(request: web.Request) -> web.Response:
    session = await _page_session(request)
    record = await _visible_alert(request, session)
    if record is None:
        return _html(request, "missing.html", 404, session=session)
    return await _alert_page(request, session, record)


@routes.post("/console/alerts/{id}/{verb:approve|reject|emergency-release|review}")
async def alert_move(request: web.Request) -> web.Response:
    session = await _page_session(request)
    form = await _form(request)
    record = await _visible_alert(request, session)
    if record is None:
        return _html(request, "missing.html", 404, session=session)
    desk = request.app[CONSOLE].desk
    verb = request.match_info["verb"]
    reason = str(form.get("reason", "")).strip()
    try:
        await session_of(request, str(form.get("csrf", "")))
        if verb == "approve":
            await desk.approve(record.id, session.person)
        elif verb == "reject":
            api.Reason(reason=reason)
            await desk.reject(record.id, session.person, reason)
        elif verb == "emergency-release":
            api.Reason(reason=reason)
            await desk.emergency_release(record.id, session.person, reason)
        else:
            await desk.review(record.id, session.person, reason)
    except ProblemError as exc:
        fresh = await request.app[STORE].get_alert(record.id) or record
        return await _alert_page(request, session, fresh, exc.status, exc.as_problem())
    except ValueError:
        error = {"code": "invalid-body", "detail": "reason"}
        return await _alert_page(request, session, record, 422, error)
    raise web.HTTPSeeOther(f"/console/alerts/{record.id}")


@routes.get("/console/alerts/{id}/events")
async def alert_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: a snapshot of the alert whenever it changed, at most every
    `console.watch_every_s`; a comment to keep the connection open otherwise. The
    stream ends after an hour (the browser reconnects) and when the gateway stops."""
    session = await _page_session(request)
    record = await _visible_alert(request, session)
    if record is None:
        raise web.HTTPNotFound()
    config, store = request.app[CONFIG], request.app[STORE]
    every = config.settings.console.watch_every_s
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    last = ""
    quiet = 0.0
    ends = time.monotonic() + 3600
    deadline = request.app[DEADLINE]
    while time.monotonic() < ends and not deadline.started:
        fresh = await store.get_alert(record.id) or record
        data = orjson.dumps(await snapshot(config, store, fresh)).decode()
        digest = hashlib.sha256(data.encode()).hexdigest()
        if digest != last:
            last = digest
            await response.write(f"event: snapshot\ndata: {data}\n\n".encode())
            quiet = 0.0
        elif quiet >= 15:
            await response.write(b": keepalive\n\n")
            quiet = 0.0
        await asyncio.sleep(every)
        quiet += every
    await response.write(b"retry: 3000\n\n")
    return response


# -- scheduled tests -------------------------------------------------------------------


@routes.get("/console/tests")
async def tests_page(request: web.Request) -> web.Response:
    session = await _page_session(request)
    canaries = request.app[CONSOLE].canaries
    runs = await canaries.overview(session.person) if canaries is not None else []
    return _html(request, "tests.html", session=session, schedules=runs)


@routes.post("/console/tests/{schedule}/run")
async def run_test(request: web.Request) -> web.Response:
    session = await _page_session(request)
    form = await _form(request)
    await session_of(request, str(form.get("csrf", "")))
    canaries = request.app[CONSOLE].canaries
    if canaries is None:
        raise web.HTTPNotFound()
    try:
        await canaries.run_now(request.match_info["schedule"], session.person)
    except ProblemError as exc:
        runs = await canaries.overview(session.person)
        return _html(
            request,
            "tests.html",
            exc.status,
            session=session,
            schedules=runs,
            error=exc.as_problem(),
        )
    raise web.HTTPSeeOther("/console/tests")


# -- accounts (admins) -----------------------------------------------------------------


@routes.get("/console/accounts")
async def accounts_page(request: web.Request) -> web.Response:
    session = await _page_session(request)
    if not session.account.has(Role.ADMIN):
        return _html(request, "missing.html", 403, session=session)
    rows = await api.account_rows(request, session)
    return _html(request, "accounts.html", session=session, accounts=rows)


@routes.post("/console/accounts/{account}/unlock")
async def unlock_form(request: web.Request) -> web.Response:
    session = await _page_session(request)
    form = await _form(request)
    await session_of(request, str(form.get("csrf", "")))
    try:
        api.admin_of(session)
        await api.unlock_account(request, session, request.match_info["account"])
    except ProblemError:
        return _html(request, "missing.html", 403, session=session)
    raise web.HTTPSeeOther("/console/accounts")
