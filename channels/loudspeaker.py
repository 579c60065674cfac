"""Channels: village loudspeakers (应急广播 / 大喇叭), which pull their messages.

Nothing is pushed: the dispatcher publishes each unit's active state and the device
fetches it (long-poll or server-sent events, docs/endpoint-protocol.md). This adapter
shapes one state entry into what a loudspeaker needs: the speech script per language
with its estimated speaking time, in the device's language order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from gateway.models import Channel

__all__ = ["LoudspeakerAdapter"]


class LoudspeakerAdapter:
    channel: ClassVar[Channel] = Channel.LOUDSPEAKER
    # One entry is played in full, every language in turn; the renderer keeps each
    # script under the configured speaking time (render.loudspeaker_max_seconds).
    plays_all_languages: ClassVar[bool] = True

    def present(
        self, messages: Mapping[str, Mapping[str, Any]], languages: Sequence[str]
    ) -> list[dict[str, Any]]:
        """Scripts in the device's languages (those that were rendered), in its order."""
        out = []
        for lang in languages:
            msg = messages.get(lang)
            if msg is not None:
                out.append(
                    {
                        "language": lang,
                        "text": msg["text"],
                        "seconds": msg.get("seconds"),
                        "direction": msg.get("direction", "ltr"),
                    }
                )
        return out
