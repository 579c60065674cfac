"""Coverage: definition v1, for directories without households — a pure function.

Definition version 1 (docs/coverage.md):

- Target units are the villages/communities the alert's plan targeted; each has a
  population P_u from the directory.
- Reach of channel c in unit u, r_uc = min(1, persons_uc / P_u), where persons_uc counts
  confirmed receipts only (delivered, played, displayed, acknowledged): for loudspeakers
  and screens the `covers_population` of endpoints that played/displayed, for SMS and
  app the `persons` of recipients with a delivered receipt, for messengers the persons
  of households they confirmed relayed.
- Unit coverage c_u = 1 − Π_c (1 − r_uc) (channels independent), reported beside
  `lower` = max_c r_uc (what it would read if the channels had reached the same people)
  and `upper` = min(1, Σ_c r_uc) (if they had reached different people). These are not
  bounds on the truth: loudspeakers that overlap are summed before the cap, so even
  `lower` can lie above it (docs/coverage.md, "How good is v1").
- Alert coverage C = Σ P_u c_u / Σ P_u (and the same for the bounds), at any minute
  after acceptance, compared with the jurisdiction's target at its deadline.
- Broadcast coverage (应急广播覆盖率) needs no alert: the residents within reach of
  loudspeakers with a heartbeat within the health window over the population — the
  union of their footprints where the directory has households, else Σ
  covers_population capped per unit.
- Exercise and test alerts are reported apart and never counted as live coverage.

Inputs are the directory, the plan summary the planner stored, and the reach counters
the receipt script keeps (`r|{channel}|{unit}|{minute}` persons first confirmed in that
minute after acceptance; `s|…` likewise first sent; `L|…|{lang}`, `G|…|{group}`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gateway import codes
from gateway.codes import Tier
from gateway.directory import Directory
from gateway.policy import Policy

__all__ = [
    "DEFINITION",
    "SERIES_MINUTES",
    "AlertCoverage",
    "UnitCoverage",
    "alert_coverage",
    "broadcast_coverage",
    "combine",
    "rollup_broadcast",
    "verdict",
]

DEFINITION = "warngate-coverage-v1"
SERIES_MINUTES = (1, 5, 10, 15, 30, 60)


def combine(reaches: Iterable[float]) -> tuple[float, float, float]:
    """(lower, independent estimate, upper) of a unit's coverage from channel reaches."""
    values = [min(1.0, max(0.0, r)) for r in reaches]
    if not values:
        return 0.0, 0.0, 0.0
    miss = 1.0
    for r in values:
        miss *= 1.0 - r
    return max(values), 1.0 - miss, min(1.0, sum(values))


@dataclass(frozen=True)
class UnitCoverage:
    unit: str
    population: int
    reach: dict[str, float]  # channel → r_uc
    persons: dict[str, int]  # channel → persons reached (uncapped)
    lower: float
    estimate: float
    upper: float
    target: float  # binding target of the unit's jurisdiction
    targeted: dict[str, int] = field(default_factory=dict)  # channel → persons planned

    def as_dict(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "population": self.population,
            "coverage": round(self.estimate, 4),
            "lower": round(self.lower, 4),
            "upper": round(self.upper, 4),
            "target": self.target,
            "below_target": self.estimate < self.target,
            "reach": {c: round(r, 4) for c, r in sorted(self.reach.items())},
            "persons": dict(sorted(self.persons.items())),
            "targeted": dict(sorted(self.targeted.items())),
        }


@dataclass(frozen=True)
class AlertCoverage:
    alert: str
    minutes: int | None
    population: int
    lower: float
    estimate: float
    upper: float
    units: list[UnitCoverage]
    exercise: bool
    by_language: dict[str, int]
    by_group: dict[str, int]
    sent_estimate: float

    def rollup(self, directory: Directory, tier: Tier) -> list[dict[str, Any]]:
        """Population-weighted coverage per division of a tier (township, county …)."""
        groups: dict[str, list[UnitCoverage]] = {}
        for u in self.units:
            code = _ancestor_at(directory, u.unit, tier)
            groups.setdefault(code, []).append(u)
        out = []
        for code, members in sorted(groups.items()):
            pop = sum(m.population for m in members)
            div = directory.divisions.get(code)
            out.append(
                {
                    "code": code,
                    "name": div.label("zh") if div else code,
                    "population": pop,
                    "coverage": round(_weighted(members, "estimate"), 4),
                    "lower": round(_weighted(members, "lower"), 4),
                    "upper": round(_weighted(members, "upper"), 4),
                    "units": len(members),
                    "units_below_target": sum(1 for m in members if m.estimate < m.target),
                }
            )
        return out


def _weighted(units: list[UnitCoverage], attr: str) -> float:
    pop = sum(u.population for u in units)
    if pop == 0:
        return 0.0
    return float(sum(u.population * getattr(u, attr) for u in units) / pop)


def _ancestor_at(directory: Directory, unit: str, tier: Tier) -> str:
    if tier is Tier.VILLAGE:
        return unit
    sig = codes.significant(unit)[: int(tier)]
    return codes.normalize(sig.ljust(6, "0"))


def _persons_until(
    aggregates: Mapping[str, int], kind: str, minutes: int | None
) -> dict[tuple[str, str], int]:
    """(unit, channel) → persons first reached within `minutes` after acceptance
    (minute buckets 0 … minutes−1; bucket b holds [b, b+1) minutes)."""
    out: dict[tuple[str, str], int] = {}
    prefix = kind + "|"
    for key, n in aggregates.items():
        if not key.startswith(prefix):
            continue
        _, channel, unit, minute = key.split("|", 3)
        if minutes is not None and int(minute) >= minutes:
            continue
        out[(unit, channel)] = out.get((unit, channel), 0) + n
    return out


def alert_coverage(
    summary: Mapping[str, Any],
    aggregates: Mapping[str, int],
    directory: Directory,
    policy: Policy,
    *,
    minutes: int | None = None,
) -> AlertCoverage:
    """Coverage of one alert version `minutes` after acceptance (None: everything so far)."""
    units = summary.get("units", {})
    targeted_raw = summary.get("targeted", {})
    confirmed = _persons_until(aggregates, "r", minutes)
    sent = _persons_until(aggregates, "s", minutes)
    result: list[UnitCoverage] = []
    sent_cov: list[tuple[int, float]] = []
    for unit in sorted(units):
        pop = int(units[unit].get("population") or directory.population(unit))
        channels = {c for (u, c) in confirmed if u == unit} | set(units[unit].get("channels", []))
        persons = {c: confirmed.get((unit, c), 0) for c in sorted(channels)}
        reach = {c: (min(1.0, p / pop) if pop else 0.0) for c, p in persons.items()}
        lower, estimate, upper = combine(reach.values())
        targeted = {
            k.split("|", 1)[1]: v for k, v in targeted_raw.items() if k.split("|", 1)[0] == unit
        }
        target = policy.for_unit(unit).targets.binding
        result.append(
            UnitCoverage(unit, pop, reach, persons, lower, estimate, upper, target, targeted)
        )
        sent_reach = [min(1.0, sent.get((unit, c), 0) / pop) if pop else 0.0 for c in channels]
        sent_cov.append((pop, combine(sent_reach)[1]))
    total = sum(u.population for u in result)
    by_lang: dict[str, int] = {}
    by_group: dict[str, int] = {}
    for key, n in aggregates.items():
        kind, _, rest = key.partition("|")
        if kind == "L":
            lang = rest.rsplit("|", 1)[1]
            by_lang[lang] = by_lang.get(lang, 0) + n
        elif kind == "G":
            group = rest.rsplit("|", 1)[1]
            by_group[group] = by_group.get(group, 0) + n
    return AlertCoverage(
        alert=str(summary.get("alert", "")),
        minutes=minutes,
        population=total,
        lower=_weighted(result, "lower"),
        estimate=_weighted(result, "estimate"),
        upper=_weighted(result, "upper"),
        units=result,
        exercise=bool(summary.get("exercise", False)),
        by_language=dict(sorted(by_lang.items())),
        by_group=dict(sorted(by_group.items())),
        sent_estimate=(sum(p * c for p, c in sent_cov) / total) if total else 0.0,
    )


def verdict(coverage_at_deadline: float, target: float, *, deadline_passed: bool) -> str:
    """`met`, `not met` or `in progress` for a coverage figure against a target."""
    if coverage_at_deadline >= target:
        return "met"
    return "not met" if deadline_passed else "in progress"


def broadcast_coverage(
    directory: Directory,
    heartbeats: Mapping[str, int],
    *,
    now_ms: int,
    healthy_within_ms: int,
    under: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Broadcast coverage per unit: population within reach of loudspeakers that are
    healthy now (a heartbeat within the window), over the unit's population."""
    out: dict[str, dict[str, Any]] = {}
    units = directory.units_under(under) if under else directory.units
    for unit in units:
        pop = directory.divisions[unit].population
        speakers = [
            e for e in directory.endpoints_by_unit.get(unit, []) if e.kind.value == "loudspeaker"
        ]
        healthy = [
            e for e in speakers if now_ms - heartbeats.get(e.id, -(10**15)) <= healthy_within_ms
        ]
        if directory.has_households(unit) and directory.households is not None:
            # With households: the union of the healthy loudspeakers' footprints.
            heard = [f for e in healthy if (f := directory.footprints.get(e.id)) is not None]
            found = np.unique(np.concatenate(heard)) if heard else np.zeros(0, np.int64)
            covered = int(directory.households.residents[found].sum())
        else:
            covered = sum(e.covers_population for e in healthy)
        out[unit] = {
            "population": pop,
            "loudspeakers": len(speakers),
            "healthy": len(healthy),
            "covered": min(covered, pop),
            "coverage": round(min(1.0, covered / pop), 4) if pop else 0.0,
        }
    return out


def rollup_broadcast(
    directory: Directory, per_unit: Mapping[str, Mapping[str, Any]], tier: Tier
) -> list[dict[str, Any]]:
    """Broadcast coverage per division of a tier, population-weighted."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for unit, row in per_unit.items():
        groups.setdefault(_ancestor_at(directory, unit, tier), []).append(row)
    out = []
    for code, rows in sorted(groups.items()):
        pop = sum(int(r["population"]) for r in rows)
        covered = sum(int(r["covered"]) for r in rows)
        div = directory.divisions.get(code)
        out.append(
            {
                "code": code,
                "name": div.label("zh") if div else code,
                "population": pop,
                "covered": covered,
                "coverage": round(covered / pop, 4) if pop else 0.0,
                "loudspeakers": sum(int(r["loudspeakers"]) for r in rows),
                "healthy": sum(int(r["healthy"]) for r in rows),
                "units": len(rows),
            }
        )
    return out
