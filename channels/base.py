"""Channels: the adapter contract — one small base class, one async verb, declared limits.

A push adapter hands one message to one provider for a batch of recipients, in exactly
one attempt, and either returns what the provider said about each recipient or raises
a `SendError` (`retryable`, `code`, `retry_after`). Retrying, rate limiting and
failover happen in `gateway.dispatch`, never here. Adapters import only `models` and
`errors`.

What an adapter raises says whether the provider may have taken the batch: a refused
connection or a connect timeout is `RetryableError` (nothing went out); a timeout or a
dropped connection after the request was written, or an answer that cannot be read, is
`UncertainError` (it may have gone out, and is not resent blindly); any answer the
provider gives that does not fit its protocol is a typed error, never an exception of
another kind.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import aiohttp
import orjson

from gateway.errors import (
    PermanentError,
    RetryableError,
    SendError,
    ThrottledError,
    UncertainError,
    error_from_http,
    parse_retry_after,
)
from gateway.models import Channel, ProviderConfig

__all__ = ["Message", "PushAdapter", "Recipient", "SendResult", "post_json"]


@dataclass(frozen=True)
class Message:
    """What every recipient of a batch receives (rendered once for the batch)."""

    text: str
    language: str
    title: str | None = None
    # Structured alert for apps: id, level, hazard, kind, expires …
    data: Mapping[str, Any] = field(default_factory=dict)


class Recipient(NamedTuple):
    delivery_id: str  # travels to the provider so its receipts can be matched
    address: str  # phone number, device token or topic


@dataclass
class SendResult:
    """The provider's answer per delivery id."""

    accepted: dict[str, str] = field(default_factory=dict)  # id → provider message id
    rejected: dict[str, str] = field(default_factory=dict)  # id → error code (final)
    retry: dict[str, str] = field(default_factory=dict)  # id → error code (try again)
    # id → why: the provider may have taken it (left out of an answer); never resent
    # unless the provider de-duplicates by delivery id.
    uncertain: dict[str, str] = field(default_factory=dict)


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    body: Mapping[str, Any],
    *,
    headers: Mapping[str, str],
    timeout_s: float,
    connect_timeout_s: float | None = None,
) -> Any:
    """POST JSON and return the decoded answer; every failure becomes a SendError, and
    which kind says whether the request may have reached the provider."""
    connect = min(timeout_s, connect_timeout_s or timeout_s)
    try:
        async with session.post(
            url,
            data=orjson.dumps(body),
            headers={"Content-Type": "application/json", **headers},
            timeout=aiohttp.ClientTimeout(total=timeout_s, connect=connect),
        ) as resp:
            text = await resp.text(errors="replace")
            if resp.status >= 300:
                raise error_from_http(resp.status, resp.headers, text)
            try:
                return orjson.loads(text) if text else {}
            except orjson.JSONDecodeError:
                raise UncertainError(
                    f"provider answered {resp.status} with no JSON: {text[:100]}",
                    code="bad-answer",
                    status=resp.status,
                ) from None
    except SendError:
        raise
    except (aiohttp.ConnectionTimeoutError, aiohttp.ClientConnectorError) as exc:
        # Never connected: nothing went out.
        raise error_from_http(None, None, f"{type(exc).__name__}: {exc}") from None
    except TimeoutError:
        raise UncertainError(f"no answer within {timeout_s}s", code="timeout") from None
    except (aiohttp.ClientError, ValueError) as exc:
        # The connection broke after the request was written, or the answer was not
        # HTTP we can read: it may have been taken.
        raise UncertainError(f"{type(exc).__name__}: {exc}", code="transport") from None


def raise_embedded_error(answer: Any) -> None:
    """Providers that answer 200 with an error object inside: raise it as a SendError.
    Whatever the object holds, the result is a typed error (a `retry_after` that is
    not a number of seconds is ignored)."""
    if not isinstance(answer, dict) or "error" not in answer:
        return
    err = answer["error"] or {}
    if not isinstance(err, dict):
        err = {"message": str(err)}
    code = str(err.get("code") or "provider-error")[:80]
    message = str(err.get("message") or code)[:300]
    retry_after = parse_retry_after(str(err.get("retry_after") or ""))
    if code in ("throttled", "rate_limited", "too_many_requests"):
        raise ThrottledError(message, retry_after=retry_after)
    if err.get("retryable", False) is True:
        raise RetryableError(message, code=code, retry_after=retry_after)
    raise PermanentError(message, code=code)


class PushAdapter(ABC):
    """A provider that takes batches of recipients for one message."""

    channel: ClassVar[Channel]
    # Limits (the provider's own; the configured batch size may only be smaller).
    max_batch: ClassVar[int] = 1000

    def __init__(self, name: str, config: ProviderConfig, session: aiohttp.ClientSession) -> None:
        self.name = name
        self.config = config
        self.session = session

    @property
    def batch_size(self) -> int:
        return min(self.config.batch_size, self.max_batch)

    def headers(self) -> dict[str, str]:
        if self.config.auth_value is None:
            return {}
        return {self.config.auth_header: self.config.auth_value.get_secret_value()}

    async def post(self, body: Mapping[str, Any]) -> Any:
        """One JSON request to the provider with its credentials and timeouts."""
        return await post_json(
            self.session,
            self.config.url,
            body,
            headers=self.headers(),
            timeout_s=self.config.timeout_s,
            connect_timeout_s=self.config.connect_timeout_s,
        )

    @abstractmethod
    async def send(self, message: Message, recipients: Sequence[Recipient]) -> SendResult:
        """Hand the message to the provider for these recipients: one attempt."""

    def results(self, answer: Any, recipients: Sequence[Recipient]) -> SendResult:
        """Read a `{"results": [{"id", "status", …}]}` answer.

        A 200 without a readable results list leaves every recipient uncertain (the
        provider may have sent); rows that are not objects or whose id is not one we
        sent are ignored; an id the answer leaves out is not known to be sent either,
        so it is uncertain too (`SendResult.uncertain`)."""
        raise_embedded_error(answer)
        rows = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(rows, list):
            raise UncertainError("provider answer has no results list", code="bad-answer")
        out = SendResult()
        wanted = {r.delivery_id for r in recipients}
        for row in rows:
            rid = row.get("id") if isinstance(row, dict) else None
            if not isinstance(rid, str) or rid not in wanted:
                continue
            status = str(row.get("status", "")).lower()
            if status in ("accepted", "ok", "queued", "sent"):
                out.accepted[rid] = str(row.get("message_id") or rid)[:200]
            elif status in ("retry", "unavailable", "throttled"):
                out.retry[rid] = str(row.get("error") or status)[:80]
            else:
                out.rejected[rid] = str(row.get("error") or status or "rejected")[:80]
        for rid in wanted - out.accepted.keys() - out.rejected.keys() - out.retry.keys():
            out.uncertain[rid] = "missing-from-answer"
        return out
