"""Coverage: what the receipts said of each delivery of an alert — the input of v2.

The receipt script appends one line per change of a delivery's state to a log per
alert × channel (`p:log:{alert}:{channel}`, see gateway/store/keys.py), and the device
and relay handlers append what the state machine cannot hold: a loudspeaker's repeat
plays and the households a messenger names. A line is

    {minute}|{what}|{unit}|{delivery target id}|{extra}

`minute` counts from the alert's acceptance (bucket b holds [b, b+1) minutes, as the
reach counters); `what` is a receipt state (`sent`, `delivered`, `played`,
`failed` …), `played+{k}` / `displayed+{k}` for the k-th repeat, `households` (extra:
the household ids a messenger called on) or `count` (extra: how many, when it named
none). `extra` of a `sent` line is the provider. Lines of one delivery may come in
any order and more than once (a receipt may overtake the sender): the earliest minute
of each kind counts.

`ChannelReach` holds one channel's deliveries in columns: the first minute each was
sent, confirmed and failed, its provider, its repeat plays and named households.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from gateway.receipts import CONFIRMED, FINAL, DeliveryState

__all__ = ["ChannelReach", "Reach", "ReachParser", "parse_log", "record_line"]

INF = math.inf
_CONFIRMED = {s.value for s in CONFIRMED}
_FAILED = {s.value for s in FINAL if s is not DeliveryState.CANCELLED}
_SENTISH = {
    DeliveryState.SENT.value,
    *(s.value for s in CONFIRMED),
}


def record_line(minute: int, what: str, unit: str, target: str, extra: str = "") -> str:
    """One log line (what the handlers append; the receipt script writes the same)."""
    return f"{minute}|{what}|{unit}|{target}|{extra}\n"


@dataclass
class ChannelReach:
    """One channel's deliveries of an alert, as their receipts told it."""

    channel: str
    ids: list[str] = field(default_factory=list)
    units: list[str] = field(default_factory=list)
    sent: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    confirmed: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    failed: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    provider: list[str] = field(default_factory=list)
    # Repeat plays: (delivery index, minute), one per repeat.
    repeats: list[tuple[int, float]] = field(default_factory=list)
    # Messengers: (delivery index, minute, household ids) and (index, minute, count).
    named: list[tuple[int, float, list[str]]] = field(default_factory=list)
    counted: list[tuple[int, float, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def index(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.ids)}


@dataclass
class Reach:
    """Every channel's deliveries of one alert; `version` changes with every line read."""

    channels: dict[str, ChannelReach] = field(default_factory=dict)
    version: tuple[int, ...] = ()

    def get(self, channel: str) -> ChannelReach:
        return self.channels.get(channel) or ChannelReach(channel)


class ReachParser:
    """A channel's log read as it grows: `feed` new lines, `result` the columns.

    Lines may come in any order and more than once; malformed lines are skipped (the
    log is written only by the gateway, but a reader must never fail on it)."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.pos: dict[str, int] = {}
        self.units: list[str] = []
        self.sent: list[float] = []
        self.confirmed: list[float] = []
        self.failed: list[float] = []
        self.provider: list[str] = []
        self.repeats: dict[tuple[int, int], float] = {}
        self.named: list[tuple[int, float, list[str]]] = []
        self.counted: dict[int, tuple[float, int]] = {}
        self._result: ChannelReach | None = None
        self.lines = 0  # read so far

    def feed(self, lines: Iterable[str]) -> None:
        for line in lines:
            self._line(line)
            self.lines += 1
        self._result = None

    def _line(self, line: str) -> None:
        parts = line.rstrip("\n").split("|", 4)
        if len(parts) < 4 or not parts[0].isdigit():
            return
        minute = float(int(parts[0]))
        what, unit, target = parts[1], parts[2], parts[3]
        extra = parts[4] if len(parts) > 4 else ""
        i = self.pos.get(target)
        if i is None:
            i = self.pos[target] = len(self.units)
            self.units.append(unit)
            self.sent.append(INF)
            self.confirmed.append(INF)
            self.failed.append(INF)
            self.provider.append("")
        elif unit and not self.units[i]:
            self.units[i] = unit  # the sender's record came after a provider's receipt
        if what in _SENTISH:
            self.sent[i] = min(self.sent[i], minute)
        if what == DeliveryState.SENT.value and extra and not self.provider[i]:
            self.provider[i] = extra
        if what in _CONFIRMED:
            self.confirmed[i] = min(self.confirmed[i], minute)
        elif what in _FAILED:
            self.failed[i] = min(self.failed[i], minute)
        elif "+" in what:
            base, _, k = what.partition("+")
            if base in _CONFIRMED and k.isdigit() and int(k) >= 1:
                key = (i, int(k))
                self.repeats[key] = min(self.repeats.get(key, INF), minute)
        elif what == "households":
            self.named.append((i, minute, extra.split()))
        elif what == "count" and extra.isdigit():
            old = self.counted.get(i)
            if old is None or int(extra) > old[1]:  # a later, larger count replaces it
                self.counted[i] = (minute, int(extra))

    def result(self) -> ChannelReach:
        if self._result is None:
            self._result = ChannelReach(
                channel=self.channel,
                ids=list(self.pos),
                units=list(self.units),
                sent=np.array(self.sent, np.float64),
                confirmed=np.array(self.confirmed, np.float64),
                failed=np.array(self.failed, np.float64),
                provider=list(self.provider),
                repeats=sorted((i, m) for (i, _), m in self.repeats.items()),
                named=list(self.named),
                counted=[(i, m, n) for i, (m, n) in sorted(self.counted.items())],
            )
        return self._result


def parse_log(channel: str, lines: Iterable[str]) -> ChannelReach:
    """A channel's whole log as columns."""
    parser = ReachParser(channel)
    parser.feed(lines)
    return parser.result()
