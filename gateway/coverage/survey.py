"""Coverage: where surveys and receipts disagree — the registry or a device is suspect.

Receipts cannot show a loudspeaker that says it played and did not, nor a footprint
that holds the wrong households; surveys can. Three checks per unit, each a tail
probability under the model fitted to the county's surveys (so what it flags is what
the unit does differently from the county):

- `informed`: the surveyed households of the unit knew of the warning far less (or
  more) often than the model expects of them (|z| > 3 of the posterior predictive,
  at least 5 households);
- `silent-device`: no surveyed household in a loudspeaker's confirmed footprint names
  the loudspeaker, where the model gives that less than a 1-in-1000 chance — it may
  not have played;
- `outside-footprint`: two or more surveyed households heard a loudspeaker though no
  confirmed footprint holds them — the registered footprints miss households.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from gateway.coverage.delivery import Delivered, Prepared
from gateway.coverage.informed import AWAY, HEAR, moments
from gateway.models import Channel

__all__ = ["Flag", "Surveyed", "disagreements"]

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
Z_LIMIT = 3.0
SILENT_LIMIT = 1e-3
MIN_HOUSEHOLDS = 5


@dataclass(frozen=True)
class Surveyed:
    """Survey answers mapped onto an alert's targeted households."""

    positions: I64  # among the targeted households
    informed: I64
    channels: list[list[str]]


@dataclass(frozen=True)
class Flag:
    unit: str
    kind: str  # informed | silent-device | outside-footprint
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"unit": self.unit, "kind": self.kind, "detail": self.detail}


def disagreements(
    prepared: Prepared, final: Delivered, theta: F64, surveyed: Surveyed
) -> list[Flag]:
    """The flags of one county's units (θ: its posterior draws × 6)."""
    t = prepared.targets
    out: list[Flag] = []
    if not len(surveyed.positions):
        return out
    x = final.exposure.take(surveyed.positions)
    ex, var = moments(x, theta)
    units = t.unit_of[surveyed.positions]
    for u in np.unique(units).tolist():
        mine = units == u
        if mine.sum() < MIN_HOUSEHOLDS:
            continue
        totals = ex[mine].sum(0)
        expected = float(totals.mean())
        spread = float(np.sqrt(var[mine].sum(0).mean() + totals.var()))
        observed = int(surveyed.informed[mine].sum())
        if spread > 0 and abs(observed - expected) > Z_LIMIT * spread:
            out.append(Flag(t.units[u], "informed",
                            f"surveyed households knew {observed} persons, the receipts"
                            f" and the model expect {expected:.0f} ± {spread:.0f}"))  # fmt: skip
    heard = np.array(["loudspeaker" in c for c in surveyed.channels])
    outside = heard & (x.plays == 0) & (x.plays_unconfirmed == 0)
    for u in np.unique(units[outside]).tolist():
        n = int((outside & (units == u)).sum())
        if n >= 2:
            out.append(Flag(t.units[u], "outside-footprint",
                            f"{n} surveyed households heard a loudspeaker that no"
                            " confirmed footprint holds them in"))  # fmt: skip
    # Per loudspeaker: P(no surveyed household in its footprint heard any play).
    devices = prepared.devices[Channel.LOUDSPEAKER]
    where = {int(p): k for k, p in enumerate(surveyed.positions.tolist())}
    away, hear = theta[:, AWAY], theta[:, HEAR]
    for i in range(len(devices.sent)):
        if not devices.confirmed[i] < final.minute:
            continue
        members = devices.members[devices.ptr[i] : devices.ptr[i + 1]].tolist()
        asked = [where[m] for m in members if m in where]
        if len(asked) < 3 or any(heard[k] for k in asked):
            continue
        # Each resident at home misses all L plays: (1 − hear)^L; none of n heard.
        p_none = np.ones(len(theta))
        for k in asked:
            size = float(x.residents[k])
            plays = float(x.plays[k])
            p_none *= (1 - (1 - away) * (1 - (1 - hear) ** plays)) ** size
        p = float(p_none.mean())
        if p < SILENT_LIMIT:
            unit = t.units[int(t.unit_of[members[0]])]
            detail = (
                f"loudspeaker {devices.ids[i]} reported a play none of {len(asked)}"
                f" surveyed households in its footprint heard (p = {p:.1e})"
            )
            out.append(Flag(unit, "silent-device", detail))
    return out
