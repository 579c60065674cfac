"""Channels: relay tasks for human messengers (grid workers, disaster information officers).

The task goes to the messenger's phone through an SMS gateway (same HTTP API as
`channels.sms`); the messenger's app shows the same text. The text carries a task code;
the messenger acknowledges in two steps, by SMS reply or by the app, both ending at
`POST /api/v1/relay/{code}`: `received`, then `relayed` with the number of households
told. Coverage counts the households relayed, not the messenger.
"""

from __future__ import annotations

from typing import ClassVar

from channels.sms import SmsAdapter
from gateway.models import Channel

__all__ = ["MessengerAdapter"]


class MessengerAdapter(SmsAdapter):
    channel: ClassVar[Channel] = Channel.MESSENGER
    # Messengers of one village are few; small batches keep tasks moving.
    max_batch: ClassVar[int] = 100
