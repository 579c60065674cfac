"""Coverage: the report of an alert under definition v2 — what it reads from the store
(reach logs, surveys, the county's posteriors), the figures at any minute, the series,
time to target, and what the surveys revealed.

An alert is measured by v2 when every unit it targeted has households in the
directory; otherwise by v1 (gateway.reports.alert). The parts that cost most — the
alert's deliveries mapped onto households, the survey posterior — are kept per
process until the reach log or the surveys change.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gateway.codes import Tier
from gateway.config import Config
from gateway.coverage import DEFINITION_V2, SERIES_MINUTES
from gateway.coverage.delivery import Prepared, Targets, first_minute, targets
from gateway.coverage.fit import CountyFit, fit_county, pooled_prior
from gateway.coverage.survey import Flag
from gateway.coverage.survey import Surveyed as SurveyRows
from gateway.coverage.v2 import AlertV2, Surveyed, county_of, measure, rng_for
from gateway.models import AlertRecord
from gateway.store import Store

__all__ = ["Inputs", "applies", "inputs", "measured", "report_v2"]

F64 = NDArray[np.float64]
DRAWS = 400
SCAN_DRAWS = 100  # for the minute-by-minute scan of time to target
KEEP = 16
TIERS = {"township": Tier.TOWNSHIP, "county": Tier.COUNTY, "prefecture": Tier.PREFECTURE}


@dataclass
class Inputs:
    targets: Targets
    prepared: Prepared
    theta: dict[str, F64]  # county → θ draws (the posterior where surveyed)
    prior_theta: dict[str, F64]  # before this alert's surveys
    surveyed: Surveyed
    flags: list[Flag]
    goals: dict[str, tuple[float, float]]  # unit → (binding, expected)
    # county → (shift, standard error) of C where the surveys found the registry suspect
    corrections: dict[str, tuple[float, float]] = field(default_factory=dict)
    correct_from: float = 0.0  # the deadline: surveys tell the outcome


_prepared: OrderedDict[tuple[Any, ...], Prepared] = OrderedDict()
_fits: OrderedDict[tuple[Any, ...], CountyFit] = OrderedDict()
_inputs: OrderedDict[tuple[Any, ...], Inputs] = OrderedDict()
# A report computed for an alert's inputs, `at` and the minute it was asked in.
_reports: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()


def _keep(cache: OrderedDict[tuple[Any, ...], Any], key: tuple[Any, ...], value: Any) -> None:
    cache[key] = value
    while len(cache) > KEEP:
        cache.popitem(last=False)


def applies(config: Config, summary: dict[str, Any]) -> bool:
    """Definition v2 measures the alert: every unit it targeted has households."""
    units = list(summary.get("units", {}))
    d = config.directory
    return bool(units) and all(d.has_households(u) for u in units)


async def inputs(config: Config, store: Store, record: AlertRecord, summary: dict[str, Any]
                 ) -> Inputs:  # fmt: skip
    d = config.directory
    units = sorted(summary.get("units", {}))
    reach = await store.reach(record.id)
    key = (record.id, id(d), reach.version)
    prepared = _prepared.get(key)
    if prepared is None:
        t = targets(d, units, summary.get("groups", []))
        prepared = await asyncio.to_thread(Prepared, d, t, reach)
        _keep(_prepared, key, prepared)
    t = prepared.targets
    policies = {u: config.policy.for_unit(u) for u in t.units}
    goals = {u: (p.targets.binding, p.targets.expected) for u, p in policies.items()}
    correct_from = float(
        min((p.targets.deadline_minutes[record.level] for p in policies.values()), default=0)
    )
    answers = await store.surveys(record.id)
    pasts = {
        c: await store.posteriors(c) for c in sorted({county_of(u) for u in prepared.targets.units})
    }
    ikey = (key, tuple(sorted((k, v.get("informed")) for k, v in answers.items())),
            tuple(len(v) for v in pasts.values()))  # fmt: skip
    done = _inputs.get(ikey)
    if done is not None:
        return done
    h = d.households
    assert h is not None
    pos = t.position(len(h))
    rows = [(pos[h.index[hid]], a) for hid, a in sorted(answers.items())
            if hid in h.index and pos[h.index[hid]] >= 0]  # fmt: skip
    theta: dict[str, F64] = {}
    prior_theta: dict[str, F64] = {}
    corrections: dict[str, tuple[float, float]] = {}
    flags: list[Flag] = []
    final = prepared.at(None)
    survey = SurveyRows(
        np.array([p for p, _ in rows], np.int64),
        np.array([a["informed"] for _, a in rows], np.int64),
        [list(a.get("channels", [])) for _, a in rows],
    )
    for county in sorted({county_of(u) for u in t.units}):
        model = next(p for u, p in policies.items() if county_of(u) == county).coverage
        past = [
            (np.array(r["mean"]), np.array(r["var"]))
            for r in pasts[county]
            if r.get("alert") != record.id
        ]
        prior = pooled_prior(model.ranges(), model.prior_strength, past)
        answered = tuple(zip(survey.positions.tolist(), survey.informed.tolist(), strict=True))
        fkey = (record.id, county, reach.version, len(past), answered)
        fit = _fits.get(fkey)
        if fit is None:
            fit = await asyncio.to_thread(
                fit_county, d, prepared, final, county, prior, survey, alert=record.id,
                draws=DRAWS,
            )  # fmt: skip
            _keep(_fits, fkey, fit)
            if fit.surveyed:
                mean, var = fit.record
                await store.save_posterior(
                    county,
                    {"alert": record.id, "households": fit.surveyed,
                     "mean": mean.tolist(), "var": var.tolist()},
                )  # fmt: skip
        theta[county], prior_theta[county] = fit.theta, fit.prior_theta
        flags += fit.flags
        if fit.correction is not None:
            corrections[county] = fit.correction
    surveyed = Surveyed(
        np.array([t.households[p] for p, _ in rows], np.int64),
        np.array([a["informed"] for _, a in rows], np.int64),
    )
    done = Inputs(
        t, prepared, theta, prior_theta, surveyed, flags, goals, corrections, correct_from
    )
    _keep(_inputs, ikey, done)
    return done


def measured(inp: Inputs, config: Config, record: AlertRecord, minutes: float | None,
             *, draws: int | None = None, prior: bool = False) -> AlertV2:  # fmt: skip
    theta = inp.prior_theta if prior else inp.theta
    if draws is not None:
        theta = {c: th[:draws] for c, th in theta.items()}
    return measure(
        config.directory, inp.prepared, theta, minutes=minutes, targets=inp.goals,
        rng=rng_for(record.id, "noise"), surveyed=None if prior else inp.surveyed,
        corrections=None if prior else inp.corrections, correct_from=inp.correct_from,
    )  # fmt: skip


def _scan_minutes(deadline: int, elapsed: int) -> list[int]:
    """Minutes at which time to target is looked for: each to the deadline, then every
    five to an hour (or as far as the alert has gone)."""
    end = max(deadline, min(max(elapsed, deadline), 60))
    return list(range(1, deadline + 1)) + list(range(deadline + 5, end + 1, 5))


def _time_to_target(inp: Inputs, config: Config, record: AlertRecord, deadline: int,
                    elapsed: int, binding: float, expected: float) -> dict[str, Any]:  # fmt: skip
    t = inp.targets
    first = inp.prepared.first_covered()
    res = t.residents.astype(np.float64)
    pop = t.population.astype(np.float64)
    one = np.zeros(len(first), np.int64)
    total = np.array([pop.sum()])
    unit_goals = np.array([inp.goals.get(u, (binding, expected)) for u in t.units]).reshape(-1, 2)

    def minute(x: float) -> int | None:
        return int(x) if np.isfinite(x) and x <= max(elapsed, 0) + 1 else None

    out: dict[str, Any] = {"delivered": {}, "informed": {}, "units": {}}
    for name, goal, k in (("binding", binding, 0), ("expected", expected, 1)):
        out["delivered"][name] = minute(first_minute(first, res, one, total, goal)[0])
        per_unit = [first_minute(first, res, t.unit_of, pop, g)[u]
                    for u, g in enumerate(unit_goals[:, k].tolist())]  # fmt: skip
        for u, m in zip(t.units, per_unit, strict=True):
            out["units"].setdefault(u, {"delivered": {}, "informed": {}})["delivered"][name] = (
                minute(m)
            )
    scan = [m for m in _scan_minutes(deadline, elapsed) if m <= max(elapsed, 0) + 1]
    reached: dict[str, int | None] = {"binding": None, "expected": None}
    unit_reached: dict[str, dict[str, int | None]] = {
        u: {"binding": None, "expected": None} for u in t.units
    }
    for m in scan:
        v = measured(inp, config, record, m, draws=SCAN_DRAWS)
        for name, goal, k in (("binding", binding, 0), ("expected", expected, 1)):
            if reached[name] is None and v.informed >= goal:
                reached[name] = m
            for i, row in enumerate(v.units):
                if unit_reached[row.unit][name] is None and row.informed >= unit_goals[i, k]:
                    unit_reached[row.unit][name] = m
        if all(x is not None for x in reached.values()) and all(
            x is not None for r in unit_reached.values() for x in r.values()
        ):
            break
    out["informed"] = reached
    for u, r in unit_reached.items():
        out["units"][u]["informed"] = r
    return out


def _interval(low: float, high: float) -> list[float]:
    return [round(low, 4), round(high, 4)]


def _informed_verdict(low: float, high: float, target: float, passed: bool) -> str:
    if low >= target:
        return "met"
    if high < target:
        return "not met" if passed else "in progress"
    return "uncertain" if passed else "in progress"


async def report_v2(
    config: Config,
    store: Store,
    record: AlertRecord,
    summary: dict[str, Any],
    *,
    at: int | None,
    now: int,
    deadline_minutes: int,
    binding: float,
    expected: float,
) -> dict[str, Any]:
    """The v2 part of an alert's coverage report (gateway.reports.alert adds the rest).
    The arithmetic runs in a worker thread: a county's report takes a second of numpy,
    which must not hold up the event loop (numpy lets go of the interpreter meanwhile)."""
    inp = await inputs(config, store, record, summary)
    key = (record.id, id(inp), at, (now - int(record.received.timestamp() * 1000)) // 60_000)
    found = _reports.get(key)
    if found is None:
        found = await asyncio.to_thread(
            _report, inp, config, record, at, now, deadline_minutes, binding, expected
        )
        _keep(_reports, key, found)
    return found


def _report(
    inp: Inputs,
    config: Config,
    record: AlertRecord,
    at: int | None,
    now: int,
    deadline_minutes: int,
    binding: float,
    expected: float,
) -> dict[str, Any]:
    accepted_ms = int(record.received.timestamp() * 1000)
    elapsed = max(0, (now - accepted_ms) // 60_000)
    deadline = record.received + timedelta(minutes=deadline_minutes)
    passed = now >= int(deadline.timestamp() * 1000)
    current = measured(inp, config, record, at)
    at_deadline = measured(inp, config, record, deadline_minutes)
    series = []
    for m in SERIES_MINUTES:
        point = measured(inp, config, record, m)
        series.append(
            {
                "minutes": m,
                "delivered": round(point.delivered, 4),
                "delivered_estimate": round(point.delivered_estimate, 4),
                "informed": round(point.informed, 4),
                "informed_interval": _interval(point.informed_low, point.informed_high),
                "reached": m <= elapsed,
            }
        )
    ttt = _time_to_target(inp, config, record, deadline_minutes, elapsed, binding, expected)
    units = []
    for u in current.units:
        row = u.as_dict()
        row["time_to_target"] = ttt["units"].get(u.unit, {})
        units.append(row)
    n_surveyed = len(inp.surveyed.households)
    surveys: dict[str, Any] = {"households": n_surveyed}
    if n_surveyed:
        before = measured(inp, config, record, at, prior=True)
        surveys.update(
            {
                "informed_interval_without": _interval(before.informed_low, before.informed_high),
                "informed_interval": _interval(current.informed_low, current.informed_high),
                "narrowed_by_pp": round(
                    100
                    * (
                        (before.informed_high - before.informed_low)
                        - (current.informed_high - current.informed_low)
                    ),
                    1,
                ),
                "flags": [f.as_dict() for f in inp.flags],
            }
        )
    verdict = _verdict(at_deadline.delivered, binding, passed)
    return {
        "definition": DEFINITION_V2,
        "planned": True,
        "at_minutes": at,
        "population": current.population,
        "delivered": round(current.delivered, 4),
        "delivered_estimate": round(current.delivered_estimate, 4),
        "p_delivered_without_receipt": {k: round(v, 4) for k, v in sorted(current.p.items())},
        "informed": round(current.informed, 4),
        "informed_interval": _interval(current.informed_low, current.informed_high),
        "interval": "90 %",
        "target": {
            "binding": binding,
            "expected": expected,
            "deadline_minutes": deadline_minutes,
            "deadline": deadline.isoformat(),
            "delivered_at_deadline": round(at_deadline.delivered, 4),
            "delivered_estimate_at_deadline": round(at_deadline.delivered_estimate, 4),
            "informed_at_deadline": round(at_deadline.informed, 4),
            "informed_interval_at_deadline": _interval(
                at_deadline.informed_low, at_deadline.informed_high
            ),
            "verdict": verdict,
            "expected_verdict": _verdict(at_deadline.delivered, expected, passed),
            "informed_verdict": _informed_verdict(
                at_deadline.informed_low, at_deadline.informed_high, binding, passed
            ),
        },
        "time_to_target": {"delivered": ttt["delivered"], "informed": ttt["informed"]},
        "series": series,
        "units": units,
        "units_below_target": sum(1 for u in current.units if u.delivered < u.target),
        "rollups": {name: current.rollup(config.directory, tier) for name, tier in TIERS.items()},
        "surveys": surveys,
        "registry_suspect": sorted({f.unit for f in inp.flags}),
    }


def _verdict(value: float, target: float, passed: bool) -> str:
    if value >= target:
        return "met"
    return "not met" if passed else "in progress"
