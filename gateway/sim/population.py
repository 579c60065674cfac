"""Simulator: the ground truth — a synthetic population in which everyone reached is known.

Each unit of the directory becomes `P_u` numbered persons; a person's number is their
distance rank from the village centre (0 = centre, P_u − 1 = the most remote house).

- A loudspeaker (or screen) is heard (seen) by a contiguous run of `covers_population`
  persons starting at a random place: runs of two loudspeakers may overlap.
- An SMS subscriber or app user stands for a household of `persons` persons at one
  place; with `correlation` > 0 households with phones cluster near the centre (where
  loudspeakers also are), which is exactly where the gateway's independence assumption
  goes wrong.
- A messenger who relays to N households tells the N × household-size most remote
  persons not yet claimed by another messenger of the unit.

The truth of an alert is the set of persons some channel *really* reached (a delivered
SMS whose receipt was lost still counts; a speaker that claims to have played but was
broken does not), so the gateway's figure can be compared with it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from gateway.directory import Directory
from gateway.models import Channel

__all__ = ["Population", "Truth"]


@dataclass(frozen=True)
class Span:
    unit: str
    start: int
    length: int


@dataclass
class Population:
    directory: Directory
    seed: int = 7
    correlation: float = 0.5
    household_size: float = 2.8
    spans: dict[tuple[Channel, str], Span] = field(default_factory=dict)
    _messenger_next: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        d = self.directory
        for unit in d.units:
            pop = d.divisions[unit].population
            if pop <= 0:
                continue
            for e in sorted(d.endpoints_by_unit.get(unit, []), key=lambda e: e.id):
                length = min(e.covers_population, pop)
                start = rng.randrange(0, pop - length + 1)
                self.spans[(Channel(e.kind.value), e.id)] = Span(unit, start, length)
            for channel in (Channel.SMS, Channel.APP):
                cols = d.recipients_of(unit, channel)
                if cols is None:
                    continue
                for rid, persons in zip(cols.ids, cols.persons, strict=True):
                    length = min(persons, pop)
                    # U**k with k > 1 draws more positions near 0 (the centre).
                    position = rng.random() ** (1.0 + 3.0 * self.correlation)
                    start = min(int(position * pop), pop - length)
                    self.spans[(channel, rid)] = Span(unit, start, length)
            self._messenger_next[unit] = pop  # messengers walk inwards from the edge

    def span(self, channel: Channel, target: str) -> Span | None:
        return self.spans.get((channel, target))

    def relay_span(self, unit: str, households: int) -> Span:
        """The persons a messenger's relay to `households` households reaches."""
        length = round(households * self.household_size)
        end = self._messenger_next.get(unit, 0)
        start = max(0, end - length)
        self._messenger_next[unit] = start
        return Span(unit, start, end - start)


@dataclass
class Truth:
    """Who was really reached, per alert and unit (one bit per person)."""

    directory: Directory
    reached: dict[str, dict[str, bytearray]] = field(default_factory=dict)

    def add(self, alert: str, span: Span) -> None:
        units = self.reached.setdefault(alert, {})
        bits = units.get(span.unit)
        if bits is None:
            bits = units[span.unit] = bytearray(self.directory.divisions[span.unit].population)
        bits[span.start : span.start + span.length] = b"\x01" * span.length

    def persons(self, alert: str, unit: str) -> int:
        bits = self.reached.get(alert, {}).get(unit)
        return bits.count(1) if bits is not None else 0

    def coverage(self, alert: str, units: list[str]) -> float:
        """Share of the population of `units` reached by at least one channel."""
        total = sum(self.directory.divisions[u].population for u in units)
        if total == 0:
            return 0.0
        return sum(self.persons(alert, u) for u in units) / total
