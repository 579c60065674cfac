"""Errors: every failure warngate reports, as one tree.

    WarngateError
    ├── ProblemError              answered to a client as application/problem+json
    │   ├── BadRequest            400  body is not readable XML/JSON (or hostile XML)
    │   ├── Unauthorized          401  no key, or a key nobody holds
    │   ├── Forbidden             403  hazard, area, status or sender outside the rights
    │   ├── NotFound              404
    │   ├── Conflict              409  same sender+identifier, other content
    │   ├── PayloadTooLarge       413
    │   ├── UnsupportedMediaType  415
    │   ├── Unprocessable         422  readable but not a valid or acceptable alert
    │   └── StoreUnavailable      503  Redis unreachable or too slow; retry (Retry-After)
    ├── ConfigError               a configuration directory with problems (file, key, reason)
    ├── RenderError               a message could not be produced
    │   ├── TemplateMissing       no template in any language of the fallback order
    │   └── LimitExceeded         rendered text over a channel limit (never truncated)
    └── SendError                 one attempt to hand messages to a provider failed
        ├── RetryableError        not taken: connection refused, connect timeout, 5xx
        │   ├── ThrottledError    429 or a provider's own "slow down", with retry_after
        │   └── CredentialsError  401/403: this route refuses us; fail over (and alert)
        ├── UncertainError        maybe taken: no answer after the request went out, or
        │                         an answer that cannot be read; resent only where the
        │                         provider de-duplicates by delivery id (`idempotent`)
        └── PermanentError        other 4xx, or a provider's refusal that will not change

`SendError` carries `retryable`, a stable `code` and `retry_after` (seconds or None);
`error_from_http()` is the one mapping from an HTTP outcome to it. Failures are raised,
never returned as False.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "BadRequest",
    "ConfigError",
    "ConfigIssue",
    "Conflict",
    "CredentialsError",
    "FieldError",
    "Forbidden",
    "LimitExceeded",
    "NotFound",
    "PayloadTooLarge",
    "PermanentError",
    "ProblemError",
    "RenderError",
    "RetryableError",
    "SendError",
    "StoreUnavailable",
    "TemplateMissing",
    "ThrottledError",
    "Unauthorized",
    "UncertainError",
    "Unprocessable",
    "UnsupportedMediaType",
    "WarngateError",
    "error_from_http",
    "parse_retry_after",
]

PROBLEM_BASE = "https://warngate.org/problems/"


class WarngateError(Exception):
    """Base of every error warngate raises on purpose."""


@dataclass(frozen=True)
class FieldError:
    """One thing wrong with a request, located by a dotted path such as `info[0].area`."""

    loc: str
    msg: str

    def as_dict(self) -> dict[str, str]:
        return {"loc": self.loc, "msg": self.msg}


class ProblemError(WarngateError):
    """An error answered as RFC 9457 problem details."""

    status: int = 400
    default_code: ClassVar[str] = "bad-request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        errors: Sequence[FieldError] = (),
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        status: int | None = None,
        title: str | None = None,
    ) -> None:
        super().__init__(detail)
        if status is not None:
            self.status = status
        if title is not None:
            self.title = title
        self.detail = detail
        self.code = code or self.default_code
        self.errors = list(errors)
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})

    def as_problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance:
            body["instance"] = instance
        if self.errors:
            body["errors"] = [e.as_dict() for e in self.errors]
        body.update(self.extra)
        return body


class BadRequest(ProblemError):
    status = 400
    default_code = "malformed"
    title = "Malformed request"


class Unauthorized(ProblemError):
    status = 401
    default_code = "unauthorized"
    title = "Missing or unknown credentials"

    def __init__(self, detail: str, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="warngate"'})
        super().__init__(detail, **kwargs)


class Forbidden(ProblemError):
    status = 403
    default_code = "forbidden"
    title = "Outside the agency's rights"


class NotFound(ProblemError):
    status = 404
    default_code = "not-found"
    title = "Not found"


class Conflict(ProblemError):
    status = 409
    default_code = "conflict"
    title = "Conflicts with a stored alert"


class PayloadTooLarge(ProblemError):
    status = 413
    default_code = "too-large"
    title = "Request body too large"


class UnsupportedMediaType(ProblemError):
    status = 415
    default_code = "unsupported-media-type"
    title = "Unsupported content type"


class Unprocessable(ProblemError):
    status = 422
    default_code = "invalid"
    title = "Unprocessable content"


class StoreUnavailable(ProblemError):
    """Redis did not answer. Retrying is safe: a post that was stored after all is
    answered as the idempotent duplicate."""

    status = 503
    default_code = "store-unavailable"
    title = "Storage unavailable"
    retry_after_s = 2

    def __init__(self, detail: str, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"Retry-After": str(self.retry_after_s)})
        kwargs.setdefault("extra", {"retry_after": self.retry_after_s})
        super().__init__(detail, **kwargs)


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a configuration directory."""

    file: str
    key: str
    reason: str

    def __str__(self) -> str:
        return (
            f"{self.file}: {self.key}: {self.reason}" if self.key else f"{self.file}: {self.reason}"
        )


class ConfigError(WarngateError):
    """A configuration directory that cannot be used; lists every problem found."""

    def __init__(self, issues: Sequence[ConfigIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


class RenderError(WarngateError):
    """A message could not be produced for a channel and language."""

    code: ClassVar[str] = "render-failed"


class TemplateMissing(RenderError):
    code = "template-missing"


class LimitExceeded(RenderError):
    """Rendered text over a channel limit; carries what was measured."""

    code = "limit-exceeded"

    def __init__(self, message: str, *, limit: str, measured: int, allowed: int) -> None:
        super().__init__(message)
        self.limit = limit
        self.measured = measured
        self.allowed = allowed


@dataclass
class SendError(WarngateError):
    """One failed attempt to hand messages to a provider."""

    message: str
    code: str = "send-failed"
    retryable: bool = True
    retry_after: float | None = None
    status: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class RetryableError(SendError):
    """A failure that may well pass on another attempt."""


class ThrottledError(RetryableError):
    """The provider asked us to slow down; `retry_after` says for how long, if it said."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        kw.setdefault("code", "throttled")
        super().__init__(message, retryable=True, retry_after=retry_after, **kw)


class CredentialsError(RetryableError):
    """The provider refuses our credentials (401/403): nothing will pass on this route
    until an operator mends it, but the other route may work."""

    def __init__(self, message: str, **kw: Any) -> None:
        kw.setdefault("code", "credentials")
        super().__init__(message, retryable=True, **kw)


class UncertainError(SendError):
    """The request went out and no readable answer came back: the provider may have
    taken the batch. Not retryable unless the provider de-duplicates by delivery id."""

    def __init__(self, message: str, **kw: Any) -> None:
        kw.setdefault("code", "maybe-sent")
        super().__init__(message, retryable=False, **kw)


class PermanentError(SendError):
    """A failure that another attempt will not mend."""

    def __init__(self, message: str, **kw: Any) -> None:
        kw.setdefault("code", "rejected")
        super().__init__(message, retryable=False, **kw)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_from_http(
    status: int | None, headers: Mapping[str, str] | None = None, body: str = ""
) -> SendError:
    """The one mapping from an HTTP outcome to a send error.

    `status=None` means no answer at all (connection refused, reset, timeout).
    """
    snippet = body[:200]
    if status is None:
        return RetryableError(snippet or "no answer from provider", code="transport")
    if status == 429:
        ra = parse_retry_after((headers or {}).get("Retry-After"))
        return ThrottledError(f"HTTP 429 {snippet}".strip(), retry_after=ra, status=status)
    if status >= 500:
        ra = parse_retry_after((headers or {}).get("Retry-After"))
        return RetryableError(
            f"HTTP {status} {snippet}".strip(), code="server-error", retry_after=ra, status=status
        )
    if status == 408:
        return RetryableError(f"HTTP 408 {snippet}".strip(), code="timeout", status=status)
    if status in (401, 403):
        return CredentialsError(
            f"HTTP {status} {snippet}".strip(), code=f"http-{status}", status=status
        )
    return PermanentError(f"HTTP {status} {snippet}".strip(), code=f"http-{status}", status=status)
