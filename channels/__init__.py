"""Channels: one adapter module per delivery channel, registered in an explicit dict."""

from channels.app import AppPushAdapter
from channels.base import Message, PushAdapter, Recipient, SendResult
from channels.display import DisplayAdapter
from channels.loudspeaker import LoudspeakerAdapter
from channels.messenger import MessengerAdapter
from channels.sms import SmsAdapter
from gateway.models import Channel

__all__ = [
    "PUSH_ADAPTERS",
    "AppPushAdapter",
    "DisplayAdapter",
    "LoudspeakerAdapter",
    "Message",
    "MessengerAdapter",
    "PushAdapter",
    "Recipient",
    "SendResult",
    "SmsAdapter",
    "adapter_class",
]

# (channel, provider kind) → adapter class.
PUSH_ADAPTERS: dict[tuple[Channel, str], type[PushAdapter]] = {
    (Channel.SMS, "sms_http"): SmsAdapter,
    (Channel.MESSENGER, "sms_http"): MessengerAdapter,
    (Channel.APP, "app_http"): AppPushAdapter,
}


def adapter_class(channel: Channel, kind: str) -> type[PushAdapter]:
    return PUSH_ADAPTERS[(channel, kind)]
