"""Console: logins and sessions — lockout after repeated failures, idle timeout, CSRF.

A session is a random token in an HttpOnly, SameSite=Strict cookie (Secure behind TLS),
kept in Redis by its hash (gateway/store/console.py). Each session has its own CSRF
token: every form carries it in a hidden field and every other unsafe request of the
person routes in `X-CSRF-Token` (the synchronizer-token pattern), compared in constant
time. Before a session exists, the login form is tied to a cookie of its own (double
submit), so another site cannot log a browser into its account.

A wrong password and an unknown account cost the same scrypt check and get the same
answer; `console.lockout_failures` failures of one account within the window lock it
for `console.lockout_s` (`warngate account unlock` ends it early). Every login, failed
login, lockout and logout is in the audit stream.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass

from gateway.console.accounts import Account, AccountBook, hash_password, verify_password
from gateway.console.approval import Person
from gateway.errors import ProblemError, Unauthorized
from gateway.settings import ConsoleSettings
from gateway.store import Store, now_ms

__all__ = ["Session", "Sessions", "same_token", "token_hash"]

log = logging.getLogger("warngate.console")


@functools.cache
def _dummy() -> str:
    """Checked for an unknown account, so that it costs what a known one does."""
    return hash_password(secrets.token_urlsafe(16))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same_token(given: str | None, wanted: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), wanted.encode())


@dataclass(frozen=True)
class Session:
    account: Account
    csrf: str
    token_hash: str
    created_ms: int

    @property
    def person(self) -> Person:
        a = self.account
        return Person(a.id, frozenset(r.value for r in a.roles), tuple(a.jurisdiction))


class Sessions:
    def __init__(self, book: AccountBook, store: Store, settings: ConsoleSettings) -> None:
        self.book = book
        self.store = store
        self.settings = settings
        # Two password checks at a time (16 MiB each): a flood of logins waits here
        # instead of taking every core and the memory with it.
        self._checks = asyncio.Semaphore(2)

    @property
    def idle_ms(self) -> int:
        return int(self.settings.idle_s * 1000)

    async def _audit(self, event: str, account: str, remote: str, **more: str) -> None:
        fields = {"event": event, "by": account, "remote": remote, "at": str(now_ms()), **more}
        await self.store.audit_event(fields)

    async def login(self, account_id: str, password: str, remote: str = "") -> tuple[str, Session]:
        """A new session (its cookie token and the session), or a problem: 401
        `bad-login`, 429 `account-locked` with Retry-After."""
        account_id = account_id.strip().lower()[:64]
        account = self.book.get(account_id)
        locked = await self.store.locked_ms(account_id) if account else 0
        if locked:
            await self._audit("login-refused-locked", account_id, remote)
            raise _locked(locked)
        async with self._checks:
            stored = account.password if account else _dummy()
            ok = await asyncio.to_thread(verify_password, password[:1024], stored)
        if account is None or not ok or account.disabled:
            if account is not None:
                s = self.settings
                locks = await self.store.login_failed(
                    account_id,
                    int(s.lockout_window_s * 1000),
                    s.lockout_failures,
                    int(s.lockout_s * 1000),
                )
                await self._audit("login-failed", account_id, remote)
                if locks:
                    await self._audit("locked-out", account_id, remote)
                    log.warning("account %s locked out after failed logins", account_id)
            raise Unauthorized("the account or the password is wrong", code="bad-login")
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(24)
        now = now_ms()
        await self.store.create_session(token_hash(token), account.id, csrf, now, self.idle_ms)
        await self.store.login_succeeded(account.id)
        await self._audit("login", account.id, remote)
        return token, Session(account, csrf, token_hash(token), now)

    async def resolve(self, token: str | None) -> Session | None:
        """The live session of a cookie token, renewed; None when there is none, it
        timed out, or its account is gone or disabled."""
        if not token or len(token) > 128:
            return None
        digest = token_hash(token)
        row = await self.store.touch_session(
            digest, now_ms(), self.idle_ms, int(self.settings.max_s * 1000)
        )
        if row is None:
            return None
        account = self.book.get(row.account)
        if account is None or account.disabled:
            await self.store.end_session(digest)
            return None
        return Session(account, row.csrf, digest, row.created_ms)

    async def logout(self, session: Session, remote: str = "") -> None:
        await self.store.end_session(session.token_hash)
        await self._audit("logout", session.account.id, remote)


def _locked(ms: int) -> ProblemError:
    seconds = max(1, ms // 1000)
    return ProblemError(
        f"too many failed logins: the account is locked for {seconds} s more",
        code="account-locked",
        status=429,
        title="Account locked",
        headers={"Retry-After": str(seconds)},
        extra={"retry_after": seconds},
    )
