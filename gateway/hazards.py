"""Ingest: the hazard catalogue, and which hazard a CAP <info> block warns about.

An info block names its hazard, in this order of trust:
1. an `eventCode` whose valueName is `hazard` (or `warngate:hazard`) and whose value is
   a catalogue id such as `rainstorm`;
2. an `eventCode` (any valueName) whose value is one of a hazard's national event-type
   codes (`event_codes` in hazards.yaml);
3. the `event` text, once level words (红色, orange …) and suffixes (预警, 预警信号,
   warning, alert) are stripped, matched against the hazard's names and aliases.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

from gateway.models import Info

__all__ = ["Hazard", "HazardCatalogue"]

HAZARD_CODE_NAMES = frozenset({"hazard", "warngate:hazard"})

_STRIP = re.compile(
    r"(红色|橙色|黄色|蓝色|red|orange|yellow|blue|预警信号|预警|警报|warning|alert|signal|[\s\-_:：])",
    re.IGNORECASE,
)


def _norm(text: str) -> str:
    return _STRIP.sub("", text).casefold()


class Hazard(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{1,40}$")
    category: str = "Met"
    # The hazard's name per language (zh, ug, kk, mn, en …); used in messages.
    names: dict[str, str]
    # National event-type codes carried as CAP eventCode values.
    event_codes: list[str] = []
    # Other spellings of the CAP `event` text that mean this hazard.
    aliases: list[str] = []

    def name(self, lang: str) -> str:
        return self.names.get(lang) or self.names.get("zh") or self.id


class HazardCatalogue:
    """Hazards by id, with indexes for resolving CAP info blocks."""

    def __init__(self, hazards: Iterable[Hazard]) -> None:
        self.by_id: dict[str, Hazard] = {}
        self._by_code: dict[str, str] = {}
        self._by_text: dict[str, str] = {}
        for hazard in hazards:
            self.by_id[hazard.id] = hazard
            for code in hazard.event_codes:
                self._by_code[code.strip().upper()] = hazard.id
            for text in [hazard.id, *hazard.names.values(), *hazard.aliases]:
                key = _norm(text)
                if key:
                    self._by_text.setdefault(key, hazard.id)

    def __contains__(self, hazard_id: object) -> bool:
        return hazard_id in self.by_id

    def __getitem__(self, hazard_id: str) -> Hazard:
        return self.by_id[hazard_id]

    def get(self, hazard_id: str) -> Hazard | None:
        return self.by_id.get(hazard_id)

    def resolve(self, info: Info) -> str | None:
        """The catalogue id of the hazard an info block warns about, or None."""
        for code in info.eventCode:
            if code.valueName.casefold() in HAZARD_CODE_NAMES and code.value in self.by_id:
                return code.value
        for code in info.eventCode:
            found = self._by_code.get(code.value.strip().upper())
            if found:
                return found
        return self._by_text.get(_norm(info.event))
