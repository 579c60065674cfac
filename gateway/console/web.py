"""Console: wiring into the app — the console's resources, cookies, who is asking.

`setup(app)` (called by `create_app` when `console.enabled`) adds the person routes of
the API (gateway/console/api.py), the pages (gateway/console/pages.py) and the static
assets, and one cleanup context that opens the console's resources on the app's store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from aiohttp import web

from gateway.aio import stop_tasks
from gateway.config import Config
from gateway.console.accounts import AccountBook, accounts_path, load_accounts
from gateway.console.approval import ApprovalDesk
from gateway.console.canary import CANARIES_FILE, Canaries, Schedule, load_schedules
from gateway.console.compose import QUICK_FILE, QuickTemplate, load_quick
from gateway.console.preview import Previewer
from gateway.console.sessions import Session, Sessions, same_token
from gateway.console.ui import Pages
from gateway.errors import ConfigError, Forbidden, Unauthorized
from gateway.keys import CONFIG, CONSOLE, DEADLINE, INGESTOR, LOOPS, METRICS, RENDERER, STORE
from gateway.metrics import Metrics
from gateway.planner import Planner

__all__ = [
    "COOKIE",
    "CSRF_HEADER",
    "STATIC",
    "Console",
    "check_files",
    "session_of",
    "set_session_cookie",
    "setup",
]

T = TypeVar("T")
log = logging.getLogger("warngate.console")
COOKIE = "wgsession"
CSRF_HEADER = "X-CSRF-Token"
STATIC = Path(__file__).resolve().parent / "static"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The request's session, looked up once per request (None: no live session).
SESSION: web.RequestKey[Session | None] = web.RequestKey("wg-session")


@dataclass
class Console:
    """What the console's handlers share (one per app)."""

    book: AccountBook
    sessions: Sessions
    desk: ApprovalDesk
    previewer: Previewer
    pages: Pages
    quick: list[QuickTemplate] = field(default_factory=list)
    canaries: Canaries | None = None  # when canaries.yaml has schedules


def secure(request: web.Request) -> bool:
    mode = request.app[CONFIG].settings.console.secure_cookies
    if mode != "auto":
        return mode == "always"
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def set_session_cookie(request: web.Request, response: web.StreamResponse, token: str) -> None:
    """The session cookie: HttpOnly, SameSite=Strict, Secure behind TLS; it lives as
    long as the browser (the server ends the session on idle and at its maximum)."""
    response.set_cookie(
        COOKIE, token, httponly=True, samesite="Strict", secure=secure(request), path="/"
    )


def clear_session_cookie(request: web.Request, response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path="/", samesite="Strict", secure=secure(request))


async def current_session(request: web.Request) -> Session | None:
    """The person's session, if the request carries a live one (looked up once)."""
    if SESSION not in request:
        console = request.app[CONSOLE]
        request[SESSION] = await console.sessions.resolve(request.cookies.get(COOKIE))
    return request[SESSION]


async def session_of(request: web.Request, form_csrf: str | None = None) -> Session:
    """The session of a person route: 401 `not-logged-in` without one; an unsafe
    method also needs the session's CSRF token (in `X-CSRF-Token`, or a form's field),
    else 403 `csrf-mismatch`."""
    session = await current_session(request)
    if session is None:
        raise Unauthorized(
            "log in first (POST /api/v1/session); the session cookie is missing, or the"
            " session ended (idle timeout, log out, account disabled)",
            code="not-logged-in",
        )
    if request.method not in SAFE_METHODS:
        given = form_csrf if form_csrf is not None else request.headers.get(CSRF_HEADER)
        if not same_token(given, session.csrf):
            raise Forbidden(
                f"send the session's CSRF token in {CSRF_HEADER} (the `csrf_token` of the"
                " login's answer, or of GET /api/v1/session)",
                code="csrf-mismatch",
            )
    return session


def check_files(config: Config) -> tuple[int, int, int]:
    """Read the console's files of a configuration (accounts, quick-launch templates,
    scheduled tests); raise ConfigError listing every problem. `warngate serve` and
    `check-config` call it, so a bad file stops a start."""
    issues = []
    counts = []
    s = config.settings
    for load in (
        lambda: load_accounts(accounts_path(s), config.registry, config.directory),
        lambda: load_quick(s.config_dir / QUICK_FILE),
        lambda: load_schedules(s.config_dir / CANARIES_FILE, config),
    ):
        try:
            counts.append(len(load()))
        except ConfigError as exc:
            issues += exc.issues
            counts.append(0)
    if issues:
        raise ConfigError(issues)
    return counts[0], counts[1], counts[2]


def _lenient(what: str, load: Callable[[], T], empty: T) -> T:
    """A console file for an app built without `warngate serve`'s checks (a program or a
    test with a configuration of its own): a problem disables that part, logged."""
    try:
        return load()
    except ConfigError as exc:
        log.error("console: %s disabled: %s", what, exc)
        return empty


async def _console_ctx(app: web.Application) -> AsyncIterator[None]:
    config, store = app[CONFIG], app[STORE]
    s = config.settings
    book = AccountBook(accounts_path(s), config.registry, config.directory, strict=False)
    # A planner of its own, with metrics nobody serves: a preview plans nothing and must
    # count nothing in the live figures.
    planner = Planner(config, store, app[RENDERER], Metrics(), {})
    no_quick: list[QuickTemplate] = []
    quick = _lenient(
        "quick-launch templates", lambda: load_quick(s.config_dir / QUICK_FILE), no_quick
    )
    app[CONSOLE] = Console(
        book=book,
        sessions=Sessions(book, store, s.console),
        desk=ApprovalDesk(config, store),
        previewer=Previewer(config, store, app[RENDERER], app[INGESTOR], planner),
        pages=Pages(s.templates_dir),
        quick=quick,
    )
    empty: list[Schedule] = []
    schedules = _lenient(
        "scheduled tests", lambda: load_schedules(s.config_dir / CANARIES_FILE, config), empty
    )
    if schedules:
        app[CONSOLE].canaries = Canaries(config, store, app[INGESTOR], app[METRICS], schedules)
    yield


async def _canary_ctx(app: web.Application) -> AsyncIterator[None]:
    """Scheduled tests run in every serving process; each slot is claimed once."""
    canaries = app[CONSOLE].canaries
    if canaries is None:
        yield
        return
    stop = asyncio.Event()
    health = app[LOOPS].add("canaries")
    every = app[CONFIG].settings.console.canary_check_s
    task = asyncio.create_task(canaries.run(stop, every, health), name="canaries")
    yield
    stop.set()
    await stop_tasks([task], min(1.0, app[DEADLINE].left(reserve=1.0)))
    app[LOOPS].remove(health)


def setup(app: web.Application, *, background: bool) -> None:
    from gateway.console import api, pages

    app.cleanup_ctx.append(_console_ctx)
    if background:
        app.cleanup_ctx.append(_canary_ctx)
    app.add_routes(api.routes)
    app.add_routes(pages.routes)
    app.router.add_static("/console/static/", STATIC, name="console-static")
