"""Channels: SMS through a generic HTTP JSON gateway (batches of one text, many numbers).

Request  POST {url}   {"text", "encoding", "callback_token"?, "recipients": [{"id", "to"}]}
Answer   200          {"results": [{"id", "status": accepted|rejected|retry,
                                    "message_id"?, "error"?}]}
         200          {"error": {"code", "message", "retryable"?}}  (error inside 200)
         429 / 5xx    retried by the dispatcher (Retry-After honoured)
Receipts POST /api/v1/callbacks/sms/{provider}  {"receipts": [{"id", "status", "at"?}]}

`id` is warngate's delivery id (`{alert}:{channel}:{recipient}`); the provider returns
it with each delivery receipt, which is how receipts find their delivery.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from channels.base import Message, PushAdapter, Recipient, SendResult, post_json
from gateway.models import Channel

__all__ = ["SmsAdapter"]


class SmsAdapter(PushAdapter):
    channel: ClassVar[Channel] = Channel.SMS
    # Numbers per request most bulk-SMS gateways accept.
    max_batch: ClassVar[int] = 1000
    # Segments: 70 UCS-2 / 160 GSM-7 characters, 67 / 153 when concatenated; the
    # renderer checks the configured maximum before anything reaches an adapter.
    ucs2_segment: ClassVar[int] = 67
    gsm7_segment: ClassVar[int] = 153

    async def send(self, message: Message, recipients: Sequence[Recipient]) -> SendResult:
        body = {
            "text": message.text,
            "encoding": "gsm7" if message.text.isascii() else "ucs2",
            "recipients": [{"id": r.delivery_id, "to": r.address} for r in recipients],
        }
        answer = await post_json(
            self.session,
            self.config.url,
            body,
            headers=self.headers(),
            timeout_s=self.config.timeout_s,
        )
        return self.results(answer, recipients)
