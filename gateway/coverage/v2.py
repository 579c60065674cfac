"""Coverage: definition v2 of one alert — D and C per unit, rolled up to any tier.

`AlertV2` is computed by `measure(…)` from the directory's households, the alert's
targets, what the receipts said (`Reach`, prepared once per alert), the θ draws of
each county (prior, or posterior when surveys came in) and the surveyed households.
C's draws are kept per unit (persons informed, one column per draw), so that any tier's
interval is the percentile of its own summed draws — a township's interval is not
built from its villages' intervals.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gateway import codes
from gateway.codes import Tier
from gateway.coverage.delivery import Delivered, Prepared, Targets
from gateway.coverage.informed import Exposure, moments
from gateway.directory import Directory

__all__ = ["INTERVAL", "AlertV2", "Surveyed", "UnitV2", "county_of", "measure", "rng_for"]

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
INTERVAL = (0.05, 0.95)  # the 90 % interval of C
_CAPS = (63, 31, 15, 15, 15, 1, 20, 15, 15)  # residents, plays, …: see _profiles
_BITS = (6, 5, 4, 4, 4, 1, 5, 4, 4)


def rng_for(alert: str, purpose: str) -> np.random.Generator:
    """A generator fixed by the alert: its figures do not change between two reads."""
    digest = hashlib.sha256(f"{alert}|{purpose}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def county_of(unit: str) -> str:
    return codes.normalize(codes.significant(unit)[: int(Tier.COUNTY)])


@dataclass(frozen=True)
class Surveyed:
    """Households surveyed after the alert: directory indices and residents informed."""

    households: I64
    informed: I64


@dataclass
class UnitV2:
    unit: str
    population: int
    delivered: float  # D
    delivered_estimate: float  # D with unconfirmed sends at their measured probability
    informed: float  # C, median
    informed_low: float
    informed_high: float
    target: float
    expected: float
    surveyed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "population": self.population,
            "delivered": round(self.delivered, 4),
            "delivered_estimate": round(self.delivered_estimate, 4),
            "informed": round(self.informed, 4),
            "informed_interval": [round(self.informed_low, 4), round(self.informed_high, 4)],
            "target": self.target,
            "below_target": self.delivered < self.target,
            "surveyed_households": self.surveyed,
        }


@dataclass
class AlertV2:
    minutes: float | None
    targets: Targets
    units: list[UnitV2]
    draws: F64  # units × draws: persons informed
    delivered: float
    delivered_estimate: float
    informed: float
    informed_low: float
    informed_high: float
    p: dict[str, float] = field(default_factory=dict)

    @property
    def population(self) -> int:
        return int(self.targets.population.sum())

    def rollup(self, directory: Directory, tier: Tier) -> list[dict[str, Any]]:
        """D and C per division of a tier; C's interval from the tier's own draws."""
        groups: dict[str, list[int]] = {}
        for k, u in enumerate(self.units):
            groups.setdefault(_ancestor(u.unit, tier), []).append(k)
        out = []
        for code, members in sorted(groups.items()):
            pop = sum(self.units[k].population for k in members)
            summed = self.draws[members].sum(axis=0) / max(pop, 1)
            low, mid, high = np.quantile(summed, (INTERVAL[0], 0.5, INTERVAL[1]))
            div = directory.divisions.get(code)

            def weighted(attr: str, members: list[int] = members, pop: int = pop) -> float:
                total = sum(getattr(self.units[k], attr) * self.units[k].population
                            for k in members)  # fmt: skip
                return float(total / max(pop, 1))

            out.append(
                {
                    "code": code,
                    "name": div.label("zh") if div else code,
                    "population": pop,
                    "delivered": round(weighted("delivered"), 4),
                    "delivered_estimate": round(weighted("delivered_estimate"), 4),
                    "informed": round(float(mid), 4),
                    "informed_interval": [round(float(low), 4), round(float(high), 4)],
                    "units": len(members),
                    "units_below_target": sum(
                        1 for k in members if self.units[k].delivered < self.units[k].target
                    ),
                }
            )
        return out


def _ancestor(unit: str, tier: Tier) -> str:
    if tier is Tier.VILLAGE:
        return unit
    return codes.normalize(codes.significant(unit)[: int(tier)].ljust(6, "0"))


def _profiles(x: Exposure) -> tuple[I64, Exposure]:
    """Households with the same exposure share one row: (row of each household, the
    distinct rows). Counts above the caps are held at the cap (a household of more
    than 63 residents, more than 31 plays …)."""
    q = np.round(x.visit_weight * 20).astype(np.int64)
    # Phones beyond the residents change nothing (each resident holds at most one that
    # counts): held at the residents, so a county of five phones a household keeps few rows.
    phones = np.minimum(x.phones, x.residents)
    unconfirmed = np.minimum(x.phones_unconfirmed, x.residents - phones)
    cols = (x.residents, x.plays, x.plays_unconfirmed, x.screens, x.screens_unconfirmed,
            x.visited, q, phones, unconfirmed)  # fmt: skip
    key = np.zeros(len(x.residents), np.int64)
    for col, cap, bits in zip(cols, _CAPS, _BITS, strict=True):
        key = (key << bits) | np.minimum(col.astype(np.int64), cap)
    distinct, inverse = np.unique(key, return_inverse=True)
    rest = distinct.copy()
    values = []
    for bits in reversed(_BITS):
        values.append(rest & ((1 << bits) - 1))
        rest = rest >> bits
    n, plays, pu, sc, su, vis, vq, ph, phu = reversed(values)
    rows = Exposure(n, plays, pu, sc, su, vis, vq / 20.0, ph, phu,
                    x.p_play, x.p_screen, x.p_phone)  # fmt: skip
    return inverse.astype(np.int64), rows


def measure(
    directory: Directory,
    prepared: Prepared,
    theta: Mapping[str, F64],
    *,
    minutes: float | None,
    targets: Mapping[str, tuple[float, float]],
    rng: np.random.Generator,
    surveyed: Surveyed | None = None,
    corrections: Mapping[str, tuple[float, float]] | None = None,
    correct_from: float = 0.0,
) -> AlertV2:
    """D and C of an alert by `minutes` (None: everything so far). `theta`: county →
    draws × 6 of the model's parameters; `targets`: unit → (binding, expected);
    `corrections`: county → (shift, standard error) of its informed share where the
    surveys found the registry suspect (gateway.coverage.fit), applied to figures from
    minute `correct_from` on (the surveys tell the alert's outcome, not its start)."""
    t = prepared.targets
    got: Delivered = prepared.at(minutes)
    k = len(t.units)
    row_of, rows = _profiles(got.exposure)
    draws = next(iter(theta.values())).shape[0] if theta else 1
    persons = np.zeros((k, draws))
    variance = np.zeros((k, draws))
    counties = np.array([county_of(u) for u in t.units])
    for county, th in theta.items():
        in_county = np.flatnonzero(counties[t.unit_of] == county) if k else np.zeros(0, int)
        if not len(in_county):
            continue
        used, local = np.unique(row_of[in_county], return_inverse=True)
        ex, var = moments(rows.take(used), th)
        # Units × profiles counts, then one product per county.
        counts = np.zeros((k, len(used)))
        np.add.at(counts, (t.unit_of[in_county], local), 1.0)
        persons += counts @ ex
        variance += counts @ var
    n_surveyed = np.zeros(k, np.int64)
    if surveyed is not None and minutes is None and len(surveyed.households):
        # What surveyed households said replaces what the model expected of them.
        pos = t.position(len(directory.households or []))
        at = pos[surveyed.households]
        ok = at >= 0
        for p_, informed in zip(at[ok].tolist(), surveyed.informed[ok].tolist(), strict=True):
            u = int(t.unit_of[p_])
            county = counties[u]
            found = theta.get(county)
            if found is None:
                continue
            ex, var = moments(got.exposure.take(np.array([p_])), found)
            persons[u] += informed - ex[0]
            variance[u] -= var[0]
            n_surveyed[u] += 1
    noise = rng.standard_normal((k, draws)) * np.sqrt(np.maximum(variance, 0.0))
    pop = np.maximum(t.population, 1).astype(np.float64)
    if corrections and (minutes is None or minutes >= correct_from):
        for county, (shift, se) in sorted(corrections.items()):
            units_of = counties == county
            error = rng.normal(shift, se, draws)
            persons[units_of] += pop[units_of, None] * error[None, :]
    informed_draws = np.clip(persons + noise, 0.0, pop[:, None])
    units = []
    lo, hi = INTERVAL
    for i, unit in enumerate(t.units):
        share = informed_draws[i] / pop[i]
        low, mid, high = np.quantile(share, (lo, 0.5, hi)) if draws else (0.0, 0.0, 0.0)
        binding, expected = targets.get(unit, (0.9, 0.95))
        units.append(
            UnitV2(
                unit, int(t.population[i]), float(got.delivered[i]),
                float(got.delivered_estimate[i]), float(mid), float(low), float(high),
                binding, expected, int(n_surveyed[i]),
            )
        )  # fmt: skip
    total = max(int(t.population.sum()), 1)
    overall = informed_draws.sum(axis=0) / total
    low, mid, high = np.quantile(overall, (lo, 0.5, hi)) if k else (0.0, 0.0, 0.0)
    res = t.population.astype(np.float64)
    return AlertV2(
        minutes=minutes,
        targets=t,
        units=units,
        draws=informed_draws,
        delivered=float((got.delivered * res).sum() / total),
        delivered_estimate=float((got.delivered_estimate * res).sum() / total),
        informed=float(mid),
        informed_low=float(low),
        informed_high=float(high),
        p=got.p,
    )


def rollup_rows(units: Sequence[UnitV2]) -> list[dict[str, Any]]:
    return [u.as_dict() for u in units]
