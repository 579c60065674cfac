"""Channels: the adapter contract — one small base class, one async verb, declared limits.

A push adapter hands one message to one provider for a batch of recipients, in exactly
one attempt, and either returns what the provider said about each recipient or raises
a `SendError` (`retryable`, `code`, `retry_after`). Retrying, rate limiting and
failover happen in `gateway.dispatch`, never here. Adapters import only `models` and
`errors`.
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
    error_from_http,
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


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    body: Mapping[str, Any],
    *,
    headers: Mapping[str, str],
    timeout_s: float,
) -> Any:
    """POST JSON and return the decoded answer; every failure becomes a SendError."""
    try:
        async with session.post(
            url,
            data=orjson.dumps(body),
            headers={"Content-Type": "application/json", **headers},
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as resp:
            text = await resp.text()
            if resp.status >= 300:
                raise error_from_http(resp.status, resp.headers, text)
            try:
                return orjson.loads(text) if text else {}
            except orjson.JSONDecodeError:
                raise RetryableError(
                    f"provider answered {resp.status} with no JSON: {text[:100]}",
                    code="bad-answer",
                ) from None
    except SendError:
        raise
    except TimeoutError:
        raise RetryableError(f"no answer within {timeout_s}s", code="timeout") from None
    except aiohttp.ClientError as exc:
        raise error_from_http(None, None, f"{type(exc).__name__}: {exc}") from None


def raise_embedded_error(answer: Any) -> None:
    """Providers that answer 200 with an error object inside: raise it as a SendError."""
    if not isinstance(answer, dict) or "error" not in answer:
        return
    err = answer["error"] or {}
    if not isinstance(err, dict):
        err = {"message": str(err)}
    code = str(err.get("code") or "provider-error")
    message = str(err.get("message") or code)
    retry_after = err.get("retry_after")
    if code in ("throttled", "rate_limited", "too_many_requests"):
        raise ThrottledError(message, retry_after=float(retry_after) if retry_after else None)
    if err.get("retryable", False):
        raise RetryableError(message, code=code)
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

    @abstractmethod
    async def send(self, message: Message, recipients: Sequence[Recipient]) -> SendResult:
        """Hand the message to the provider for these recipients: one attempt."""

    def results(self, answer: Any, recipients: Sequence[Recipient]) -> SendResult:
        """Read a `{"results": [{"id", "status", …}]}` answer; ids it leaves out retry."""
        raise_embedded_error(answer)
        rows = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(rows, list):
            raise RetryableError("provider answer has no results list", code="bad-answer")
        out = SendResult()
        wanted = {r.delivery_id for r in recipients}
        for row in rows:
            if not isinstance(row, dict) or row.get("id") not in wanted:
                continue
            rid = str(row["id"])
            status = str(row.get("status", "")).lower()
            if status in ("accepted", "ok", "queued", "sent"):
                out.accepted[rid] = str(row.get("message_id") or rid)
            elif status in ("retry", "unavailable", "throttled"):
                out.retry[rid] = str(row.get("error") or status)
            else:
                out.rejected[rid] = str(row.get("error") or status or "rejected")
        for rid in wanted - out.accepted.keys() - out.rejected.keys() - out.retry.keys():
            out.retry[rid] = "missing-from-answer"
        return out
