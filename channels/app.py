"""Channels: app push through an HTTP push service (FCM-like), title + body + data.

Request  POST {url}   {"notification": {"title", "body"}, "data": {alert fields},
                       "priority": "high", "tokens": [{"id", "token"}]}
Answer   200          {"results": [{"id", "status": ok|error, "error"?}]}
                      error NotRegistered/InvalidToken: final; Unavailable: retry
Receipts POST /api/v1/callbacks/app/{provider}  {"receipts": [{"id", "status":
                      delivered|opened|failed}]}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from channels.base import Message, PushAdapter, Recipient, SendResult
from gateway.errors import PermanentError
from gateway.models import Channel

__all__ = ["AppPushAdapter"]

_RETRY_ERRORS = frozenset({"unavailable", "internal", "quotaexceeded", "retry"})


class AppPushAdapter(PushAdapter):
    channel: ClassVar[Channel] = Channel.APP
    # Tokens per request (FCM's multicast limit).
    max_batch: ClassVar[int] = 500
    # Notification title and body lengths most push services show in full.
    max_title: ClassVar[int] = 120
    max_body: ClassVar[int] = 4000

    async def send(self, message: Message, recipients: Sequence[Recipient]) -> SendResult:
        title = message.title or ""
        if len(title) > self.max_title or len(message.text) > self.max_body:
            raise PermanentError(
                f"notification over the push limits ({len(title)}/{self.max_title} title,"
                f" {len(message.text)}/{self.max_body} body characters)",
                code="too-long",
            )
        body = {
            "notification": {"title": title, "body": message.text},
            "data": dict(message.data),
            "priority": "high",
            "tokens": [{"id": r.delivery_id, "token": r.address} for r in recipients],
        }
        answer = await self.post(body)
        return self.results(_normalize(answer), recipients)


def _normalize(answer: Any) -> Any:
    """Push services say ok/error; map their error words onto accepted/retry/rejected."""
    if not isinstance(answer, dict) or not isinstance(answer.get("results"), list):
        return answer
    rows = []
    for row in answer["results"]:
        if not isinstance(row, dict):
            continue
        status = str(row.get("status", "")).lower()
        error = str(row.get("error", "")).lower()
        if status == "ok":
            rows.append({**row, "status": "accepted"})
        elif error in _RETRY_ERRORS:
            rows.append({**row, "status": "retry"})
        else:
            rows.append({**row, "status": "rejected"})
    return {**answer, "results": rows}
