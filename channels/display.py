"""Channels: electronic display screens in villages, which pull their messages.

Like loudspeakers, screens fetch their unit's active state. This adapter lays the
rendered text out for the screen's geometry (characters per line × lines) with the
same wrapping rules as the renderer's limit check; the text stays in logical order
and `direction` tells the device how to draw it (rtl for Uyghur and Kazakh, ttb for
traditional Mongolian).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from gateway.errors import LimitExceeded
from gateway.models import Channel

__all__ = ["DisplayAdapter"]

Layout = Callable[[str, int, int], list[str]]


class DisplayAdapter:
    channel: ClassVar[Channel] = Channel.DISPLAY

    def __init__(self, layout: Layout, max_pages: int = 4) -> None:
        # Screens page through messages longer than one screenful, up to max_pages;
        # the renderer has already refused texts that need more.
        self.layout = layout
        self.max_pages = max_pages

    def present(
        self,
        messages: Mapping[str, Mapping[str, Any]],
        languages: Sequence[str],
        chars_per_line: int,
        lines: int,
    ) -> list[dict[str, Any]]:
        out = []
        for lang in languages:
            msg = messages.get(lang)
            if msg is None:
                continue
            try:
                laid = self.layout(msg["text"], chars_per_line, lines * self.max_pages)
            except LimitExceeded:
                laid = self.layout(msg["text"], chars_per_line, 10_000)[: lines * self.max_pages]
            pages = [laid[i : i + lines] for i in range(0, len(laid), lines)]
            out.append(
                {
                    "language": lang,
                    "text": msg["text"],
                    "pages": pages,
                    "direction": msg.get("direction", "ltr"),
                }
            )
        return out
