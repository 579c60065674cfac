"""Simulator: an alert's receipts through the gateway's own state machine, in process.

The receipt script in Redis (`gateway.store.scripts.ADVANCE`) and `gateway.receipts.
advance` apply the same rules; here `advance` walks each *pattern* of receipts (the
states a delivery receives, in order) once, and the result is applied to every delivery
with that pattern at its own times. That gives what the script would have counted —
persons first sent and first confirmed per unit × minute (`s|…`, `r|…`), and each
delivery's first sent and first confirmed minute — for hundreds of thousands of
deliveries per alert without a round trip each. `tests/test_world.py` checks it
against the script itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from gateway.receipts import CONFIRMED, FINAL, RANK, DeliveryState, advance

__all__ = ["Deliveries", "Replayed", "replay"]

S = DeliveryState


@dataclass
class Deliveries:
    """One channel's deliveries of an alert and the receipts each gets.

    `patterns` lists the distinct sequences of states; `pattern[i]` is delivery i's,
    and `times[i, k]` the minute its k-th state arrives."""

    channel: str
    ids: list[str]
    unit_codes: list[str]
    units: NDArray[np.int64]  # index into unit_codes, per delivery
    persons: NDArray[np.int64]  # what each stands for when confirmed (definition v1)
    patterns: list[tuple[DeliveryState, ...]]
    pattern: NDArray[np.int64]
    times: NDArray[np.float64]
    implicit: DeliveryState | None = S.QUEUED  # a delivery with no receipt yet
    reach_state: DeliveryState | None = None  # None: any confirmed state counts
    # What each stands for when first sent, if not `persons` (messengers: nobody until
    # they report the households they told).
    sent_persons: NDArray[np.int64] | None = None


@dataclass
class Replayed:
    first_sent: NDArray[np.float64]  # per delivery, minutes (inf: never)
    first_confirmed: NDArray[np.float64]
    final_failed: NDArray[np.float64]  # failed / expired: when (inf: never)
    aggregates: dict[str, int]


def _walk(
    pattern: Sequence[DeliveryState], implicit: DeliveryState | None,
    reach_state: DeliveryState | None,
) -> tuple[int, int, int]:  # fmt: skip
    """(index of the receipt that first counts as sent, … as reached, … as failed);
    -1 where none does. Mirrors `count_reach` of the receipt script."""
    current = implicit
    sent = reached = failed = -1

    def sentish(state: DeliveryState | None) -> bool:
        return state is not None and RANK[state] >= 2 and state not in FINAL

    def reach(state: DeliveryState | None) -> bool:
        if state is None:
            return False
        return state == reach_state if reach_state is not None else state in CONFIRMED

    for k, new in enumerate(pattern):
        after = advance(current, new)
        if after is None:
            continue
        if sentish(after) and not sentish(current) and sent < 0:
            sent = k
        if reach(after) and not reach(current) and reached < 0:
            reached = k
        if after in FINAL and after is not S.CANCELLED and failed < 0:
            failed = k
        current = after
    return sent, reached, failed


def replay(d: Deliveries) -> Replayed:
    n = len(d.ids)
    first_sent = np.full(n, np.inf)
    first_confirmed = np.full(n, np.inf)
    final_failed = np.full(n, np.inf)
    for p, states in enumerate(d.patterns):
        sel = np.flatnonzero(d.pattern == p)
        if not len(sel):
            continue
        sent, reached, failed = _walk(states, d.implicit, d.reach_state)
        if sent >= 0:
            first_sent[sel] = d.times[sel, sent]
        if reached >= 0:
            first_confirmed[sel] = d.times[sel, reached]
        if failed >= 0:
            final_failed[sel] = d.times[sel, failed]
    aggregates: dict[str, int] = {}
    for kind, when in (("s", first_sent), ("r", first_confirmed)):
        ok = np.isfinite(when)
        if not ok.any():
            continue
        minutes = np.maximum(0, np.floor(when[ok])).astype(np.int64)
        span = int(minutes.max()) + 1
        keys, inverse = np.unique(d.units[ok] * span + minutes, return_inverse=True)
        persons = d.persons if kind == "r" or d.sent_persons is None else d.sent_persons
        sums = np.bincount(inverse, weights=persons[ok]).astype(np.int64)
        for key, total in zip(keys.tolist(), sums.tolist(), strict=True):
            if total:  # the script writes no counter that stays at zero
                unit, minute = divmod(key, span)
                aggregates[f"{kind}|{d.channel}|{d.unit_codes[unit]}|{minute}"] = total
    return Replayed(first_sent, first_confirmed, final_failed, aggregates)
