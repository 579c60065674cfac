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

import math
from collections.abc import Sequence
from typing import ClassVar

from channels.base import Message, PushAdapter, Recipient, SendResult
from gateway.models import Channel

__all__ = ["SmsAdapter", "is_gsm7", "sms_segments"]

_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")


# Characters in one SMS, and per part of a concatenated one (the rest is the UDH).
GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


def is_gsm7(text: str) -> bool:
    """True when every character is in the GSM 03.38 alphabet (with its extension)."""
    return all(c in _GSM7_BASIC or c in _GSM7_EXTENDED for c in text)


def sms_segments(text: str) -> tuple[str, int, int]:
    """(encoding, length in encoding units, segments) of an SMS.

    GSM-7 when every character is in the GSM 03.38 alphabet (extension characters count
    twice): 160 in one segment, 153 per segment when concatenated. Otherwise UCS-2
    counted in UTF-16 units: 70 in one segment, 67 per segment when concatenated.
    """
    if is_gsm7(text):
        units = len(text) + sum(1 for c in text if c in _GSM7_EXTENDED)
        return "gsm7", units, _segments(units, GSM7_SINGLE, GSM7_PART)
    units = len(text.encode("utf-16-le")) // 2
    return "ucs2", units, _segments(units, UCS2_SINGLE, UCS2_PART)


def _segments(units: int, single: int, part: int) -> int:
    return 1 if units <= single else math.ceil(units / part)


class SmsAdapter(PushAdapter):
    channel: ClassVar[Channel] = Channel.SMS
    # Numbers per request most bulk-SMS gateways accept.
    max_batch: ClassVar[int] = 1000
    # Segments (sms_segments): 160 GSM-7 / 70 UCS-2 characters, 153 / 67 per part when
    # concatenated; the renderer checks the configured maximum before sending.

    async def send(self, message: Message, recipients: Sequence[Recipient]) -> SendResult:
        body = {
            "text": message.text,
            "encoding": "gsm7" if is_gsm7(message.text) else "ucs2",
            "recipients": [{"id": r.delivery_id, "to": r.address} for r in recipients],
        }
        answer = await self.post(body)
        return self.results(answer, recipients)
