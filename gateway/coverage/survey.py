"""Coverage: where surveys and receipts disagree — the registry or a device is suspect.

Receipts cannot show a loudspeaker that says it played and did not, nor a footprint
that holds the wrong households; surveys can. The checks, each a tail probability
under the model fitted to the county's surveys (so what a unit check flags is what the
unit does differently from the county):

- `informed`: the surveyed households of the unit knew of the warning far less (or
  more) often than the model expects of them (|z| > 3 of the posterior predictive,
  at least 5 households);
- `silent-device`: no surveyed household in a loudspeaker's confirmed footprint names
  the loudspeaker, where the model gives that less than a 1-in-1000 chance — it may
  not have played;
- `outside-footprint`: two or more surveyed households of the county heard a
  loudspeaker though no footprint of a loudspeaker that played (or may have: no
  receipt yet) holds them — the registered footprints miss households (flagged for the
  county, and for a unit with two of them);
- `radius`: in footprints given as a position and a radius, surveyed households in the
  outer half of the area heard far less often than those in the inner half (z > 3.3,
  at least 10 of each) — the loudspeakers do not carry as far as registered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from gateway.coverage.delivery import Delivered, Prepared
from gateway.coverage.informed import AWAY, HEAR, moments
from gateway.directory import M_PER_DEGREE, Directory
from gateway.models import Channel

__all__ = ["Flag", "Surveyed", "disagreements"]

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
Z_LIMIT = 3.0
Z_RADIUS = 3.3  # one-sided p < 0.0005
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


def _county(unit: str) -> str:
    return unit[:6]


def _radius(
    prepared: Prepared,
    final: Delivered,
    surveyed: Surveyed,
    heard: NDArray[np.bool_],
    told: NDArray[np.bool_],
    directory: Directory,
) -> list[Flag]:
    """Heard in the inner vs the outer half (by area) of registered radii."""
    h = directory.households
    if h is None:
        return []
    t = prepared.targets
    devices = prepared.devices[Channel.LOUDSPEAKER]
    where = {int(p): k for k, p in enumerate(surveyed.positions.tolist())}
    rho = np.full(len(surveyed.positions), np.inf)
    for i, eid in enumerate(devices.ids):
        e = directory.endpoints.get(eid)
        if e is None or e.footprint or e.lat is None or e.lon is None or not e.radius_m:
            continue
        if not devices.confirmed[i] < final.minute:
            continue
        for m in devices.members[devices.ptr[i] : devices.ptr[i + 1]].tolist():
            k = where.get(m)
            if k is None or not told[k]:
                continue
            home = int(t.households[m])
            dy = (h.lat[home] - e.lat) * M_PER_DEGREE
            dx = (h.lon[home] - e.lon) * M_PER_DEGREE * math.cos(math.radians(e.lat))
            rho[k] = min(rho[k], math.hypot(dx, dy) / e.radius_m)
    inner, outer = rho < math.sqrt(0.5), (rho >= math.sqrt(0.5)) & np.isfinite(rho)
    n1, n2 = int(inner.sum()), int(outer.sum())
    if n1 < 10 or n2 < 10:
        return []
    p1, p2 = heard[inner].mean(), heard[outer].mean()
    pooled = (heard[inner].sum() + heard[outer].sum()) / (n1 + n2)
    se = math.sqrt(max(pooled * (1 - pooled) * (1 / n1 + 1 / n2), 1e-12))
    z = (p1 - p2) / se
    if z <= Z_RADIUS:
        return []
    county = _county(t.units[int(t.unit_of[int(surveyed.positions[0])])])
    return [Flag(county, "radius",
                 f"surveyed households heard the loudspeakers in {p1:.0%} of the inner half"
                 f" of their registered area, {p2:.0%} of the outer half (z = {z:.1f}):"
                 " they do not carry as far as registered")]  # fmt: skip


def disagreements(
    prepared: Prepared,
    final: Delivered,
    theta: F64,
    surveyed: Surveyed,
    directory: Directory | None = None,
) -> list[Flag]:
    """The flags of one county's units (θ: its posterior draws × 6); a flag for the
    whole county names the county."""
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
    # What a household said of the loudspeakers: it heard one, or it knew nothing at all
    # (then it heard none); one that knew but named no channel says nothing of them.
    told = np.array([bool(c) for c in surveyed.channels]) | (surveyed.informed == 0)
    outside = heard & (x.plays == 0) & (x.plays_unconfirmed == 0)
    if outside.sum() >= 2:
        county = _county(t.units[int(units[0])])
        detail = (
            f"{int(outside.sum())} of {len(heard)} surveyed households heard a loudspeaker"
            " that no footprint of a played loudspeaker holds"
        )
        out.append(Flag(county, "outside-footprint", detail))
    for u in np.unique(units[outside]).tolist():
        n = int((outside & (units == u)).sum())
        if n >= 2:
            out.append(Flag(t.units[u], "outside-footprint",
                            f"{n} surveyed households heard a loudspeaker that no"
                            " confirmed footprint holds them in"))  # fmt: skip
    if directory is not None:
        out += _radius(prepared, final, surveyed, heard, told, directory)
    # Per loudspeaker: P(no surveyed household in its footprint heard any play).
    devices = prepared.devices[Channel.LOUDSPEAKER]
    where = {int(p): k for k, p in enumerate(surveyed.positions.tolist())}
    away, hear = theta[:, AWAY], theta[:, HEAR]
    for i in range(len(devices.sent)):
        if not devices.confirmed[i] < final.minute:
            continue
        members = devices.members[devices.ptr[i] : devices.ptr[i + 1]].tolist()
        asked = [where[m] for m in members if m in where and told[where[m]]]
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
