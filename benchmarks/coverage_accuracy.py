"""Benchmark: how close the coverage figures come to a truth they do not share.

    python -m benchmarks.coverage_accuracy --worlds config/worlds/shipped.yaml --alerts 200
        [--json OUT] [--estimator v1|v2] [--config DIR]

For each world of the file: the world is built over the sample county (gateway.sim.
worldgen), the gateway is given only its registry; N alerts are planned by the
gateway's own planner (`plan_alert`), played through the world (`World.run_alert`:
true radii, people away, lying devices, lost receipts …), their receipts replayed
through the gateway's own state machine (`gateway.sim.replay`), and the gateway's
coverage code reads them. Everything runs in process: no HTTP, no Redis.

Printed, and written as one JSON object per world (`--json`): world, alerts,
delivery_mae_pp (|D − true delivered share|, mean), informed_bias_pp, informed_sd_pp,
interval_hit_rate (share of alerts whose true informed share lies in the stated 90 %
interval — for v1, its [lower, upper] "bounds"), interval_width_pp, and per unit
unit_interval_hit_rate — all at the world's `evaluate_at_min`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import ROOT, alert_json, alert_record
from gateway import codes
from gateway.codes import Tier
from gateway.config import Config, load_config
from gateway.coverage import alert_coverage
from gateway.coverage.delivery import Prepared, targets
from gateway.coverage.fit import fit_county, pooled_prior
from gateway.coverage.reach import ChannelReach, Reach
from gateway.coverage.survey import Surveyed as SurveyRows
from gateway.coverage.v2 import county_of, measure, rng_for
from gateway.directory import Directory
from gateway.models import Channel, Level
from gateway.plan import Plan, plan_alert
from gateway.receipts import DeliveryState
from gateway.sim.replay import Deliveries, Replayed, replay
from gateway.sim.world import AlertRun, Survey, World
from gateway.sim.worldgen import build_world, registry
from gateway.sim.worldspec import WorldSpec, load_worlds

__all__ = ["AlertInputs", "Estimate", "main", "run_world"]

S = DeliveryState
NOON = datetime(2026, 7, 1, 4, 0, tzinfo=UTC)  # 12:00 in the county: no quiet hours
AGENCY = "changji-met"


@dataclass
class AlertInputs:
    """What the gateway knows of one alert: its plan and what the receipts said."""

    plan: Plan
    summary: dict[str, Any]
    replayed: dict[str, Replayed]  # channel → its deliveries' first sent/confirmed
    deliveries: dict[str, Deliveries]
    aggregates: dict[str, int]
    run: AlertRun
    minute: int
    alert: str
    world: World
    run_level: Level
    survey: Survey | None = None


@dataclass
class Estimate:
    delivered: float  # D (v1: its coverage figure)
    informed: float  # C, median (v1: the same figure)
    low: float  # the stated 90 % interval of C (v1: its lower and upper figures)
    high: float
    units: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    delivered_confirmed: float | None = None  # D on confirmed receipts alone (v2)
    flags: int = 0  # units or counties where surveys and receipts disagree (v2)


class Estimator:
    """Reads one alert's inputs as the gateway would; may learn across alerts."""

    name = ""

    def __call__(self, directory: Directory, config: Config, a: AlertInputs) -> Estimate:
        raise NotImplementedError


class V1(Estimator):
    name = "v1"

    def __call__(self, directory: Directory, config: Config, a: AlertInputs) -> Estimate:
        cov = alert_coverage(a.summary, a.aggregates, directory, config.policy, minutes=a.minute)
        return Estimate(
            cov.estimate,
            cov.estimate,
            cov.lower,
            cov.upper,
            {u.unit: (u.estimate, u.estimate, u.lower, u.upper) for u in cov.units},
        )


def reach_of(a: AlertInputs) -> Reach:
    """What the receipts said, as the gateway's receipt log would hold it (minute
    buckets); messengers' acknowledgements with the households they named."""
    out = Reach()
    for channel, d in a.deliveries.items():
        r = a.replayed[channel]
        out.channels[channel] = ChannelReach(
            channel=channel,
            ids=list(d.ids),
            units=[d.unit_codes[int(u)] for u in d.units],
            sent=np.floor(r.first_sent),
            confirmed=np.floor(r.first_confirmed),
            failed=np.floor(r.final_failed),
            provider=[channel] * len(d.ids),
        )
    m = out.channels["messenger"]
    for i, o in enumerate(a.run.messengers):
        if not np.isfinite(o.acknowledged) or not len(o.households):
            continue
        if not a.world.spec.messenger_names_households:
            m.counted.append((i, float(np.floor(o.acknowledged)), len(o.households)))
            continue
        for at in np.unique(o.acked[np.isfinite(o.acked)]).tolist():
            ids = [a.world.hh_ids[h] for h in o.households[o.acked == at].tolist()]
            m.named.append((i, float(np.floor(at)), ids))
    return out


class V2(Estimator):
    """Definition v2, with the county's surveyed alerts pooled into its prior — the same
    code as the gateway's reports (gateway.coverage.fit), state kept in memory."""

    name = "v2"

    def __init__(self, draws: int = 400) -> None:
        self.draws = draws
        self.posteriors: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        self.widths_before: list[float] = []

    def __call__(self, directory: Directory, config: Config, a: AlertInputs) -> Estimate:
        t = targets(directory, list(a.summary["units"]), a.summary.get("groups", []))
        prepared = Prepared(directory, t, reach_of(a))
        final = prepared.at(None)
        policies = {u: config.policy.for_unit(u) for u in t.units}
        goals = {u: (p.targets.binding, p.targets.expected) for u, p in policies.items()}
        deadline = min(p.targets.deadline_minutes[a.run_level] for p in policies.values())
        pos = t.position(len(a.world.hh_residents))
        survey = SurveyRows(np.zeros(0, np.int64), np.zeros(0, np.int64), [])
        if a.survey is not None:
            keep = pos[a.survey.households] >= 0
            survey = SurveyRows(
                pos[a.survey.households[keep]],
                a.survey.informed[keep].astype(np.int64),
                [c for c, k in zip(a.survey.channels, keep.tolist(), strict=True) if k],
            )
        theta: dict[str, np.ndarray] = {}
        prior_theta: dict[str, np.ndarray] = {}
        corrections: dict[str, tuple[float, float]] = {}
        flags = []
        for county in sorted({county_of(u) for u in t.units}):
            model = next(p for u, p in policies.items() if county_of(u) == county).coverage
            prior = pooled_prior(
                model.ranges(), model.prior_strength, self.posteriors.get(county, [])
            )
            fit = fit_county(directory, prepared, final, county, prior, survey,
                             alert=a.alert, draws=self.draws)  # fmt: skip
            theta[county], prior_theta[county] = fit.theta, fit.prior_theta
            flags += fit.flags
            if fit.correction is not None:
                corrections[county] = fit.correction
            if fit.surveyed:
                self.posteriors.setdefault(county, []).append(fit.record)
        noise = rng_for(a.alert, "noise")
        if a.survey is not None:
            before = measure(directory, prepared, prior_theta, minutes=a.minute, targets=goals,
                             rng=rng_for(a.alert, "noise"))  # fmt: skip
            self.widths_before.append(before.informed_high - before.informed_low)
        v = measure(directory, prepared, theta, minutes=a.minute, targets=goals, rng=noise,
                    corrections=corrections, correct_from=deadline)  # fmt: skip
        return Estimate(
            v.delivered_estimate,
            v.informed,
            v.informed_low,
            v.informed_high,
            {u.unit: (u.delivered_estimate, u.informed, u.informed_low, u.informed_high)
             for u in v.units},
            delivered_confirmed=v.delivered,
            flags=len(flags),
        )  # fmt: skip


ESTIMATORS: dict[str, type[Estimator]] = {"v1": V1, "v2": V2}


def summary_of(plan: Plan) -> dict[str, Any]:
    """The parts of the planner's stored summary that coverage reads."""
    return {
        "alert": plan.alert,
        "exercise": plan.exercise,
        "groups": plan.groups,
        "units": {
            u.code: {"population": u.population, "channels": [c.value for c in u.channels]}
            for u in plan.units
        },
        "targeted": {f"{u}|{c.value}": n for (u, c), n in plan.targeted().items()},
    }


@dataclass
class Planned:
    plan: Plan
    summary: dict[str, Any]
    units: list[int]
    loudspeakers: list[int]
    displays: list[int]
    phones: np.ndarray
    messengers: list[int]


class Bench:
    """One world, its registry and the gateway's configuration around it."""

    def __init__(self, spec: WorldSpec, config: Config) -> None:
        self.spec = spec
        self.config = config
        self.world: World = build_world(spec, config.directory)
        self.directory, self.rows = registry(self.world, config.directory)
        self.agency = config.registry.agencies[AGENCY]
        self.plans: dict[str, Planned] = {}
        self.unit_code_index = {u: i for i, u in enumerate(self.world.units)}
        county = codes.normalize(spec.county)
        self.townships = sorted(
            c for c, d in config.directory.divisions.items()
            if d.tier is Tier.TOWNSHIP and codes.covers(county, c)
        )  # fmt: skip

    def planned(self, area: str) -> Planned:
        found = self.plans.get(area)
        if found is not None:
            return found
        record = alert_record(alert_json(f"ACC-{area}", geocodes=[area]))
        plan = plan_alert(
            record, self.directory, self.config.policy, self.agency, now=NOON,
            geocode_names=self.config.settings.ingest.geocode_names,
        )  # fmt: skip
        w = self.world
        phones: list[np.ndarray] = []
        msgrs: list[np.ndarray] = []
        for g in plan.push:
            idx = self.rows[(g.unit, g.channel)][list(g.rows)]
            (msgrs if g.channel is Channel.MESSENGER else phones).append(idx)
        found = Planned(
            plan=plan,
            summary=summary_of(plan),
            units=[w.unit_index[u.code] for u in plan.units],
            loudspeakers=[w.device_index[e.endpoint.id] for e in plan.endpoints
                          if e.channel is Channel.LOUDSPEAKER],
            displays=[w.device_index[e.endpoint.id] for e in plan.endpoints
                      if e.channel is Channel.DISPLAY],
            phones=np.concatenate(phones) if phones else np.zeros(0, np.int64),
            messengers=[int(i) for i in np.concatenate(msgrs)] if msgrs else [],
        )  # fmt: skip
        self.plans[area] = found
        return found

    def area(self, rng: np.random.Generator) -> str:
        mode = self.spec.alert_area
        if mode == "county" or not self.townships or (mode == "mixed" and rng.random() < 0.5):
            return codes.normalize(self.spec.county)
        return str(self.townships[int(rng.integers(len(self.townships)))])

    def deliveries(self, p: Planned, run: AlertRun) -> dict[str, Deliveries]:
        w = self.world
        units = w.units
        out: dict[str, Deliveries] = {}
        push = run.push
        for channel, is_app in (("sms", False), ("app", True)):
            sel = np.flatnonzero(w.ph_app[push.phone] == is_app)
            phones = push.phone[sel]
            pattern = np.where(
                ~np.isfinite(push.receipt[sel]), 0, np.where(push.delivered[sel], 1, 2)
            )
            out[channel] = Deliveries(
                channel=channel,
                ids=[w.ph_ids[i] for i in phones],
                unit_codes=units,
                units=w.hh_unit[w.ph_household[phones]].astype(np.int64),
                persons=w.hh_residents[w.ph_household[phones]].astype(np.int64),
                patterns=[(S.SENT,), (S.SENT, S.DELIVERED), (S.SENT, S.FAILED)],
                pattern=pattern.astype(np.int64),
                times=np.stack([push.sent[sel], push.receipt[sel]], axis=1),
            )
        for channel in ("loudspeaker", "display"):
            confirm = S.PLAYED if channel == "loudspeaker" else S.DISPLAYED
            outs = [o for o in run.devices if w.devices[o.device].kind.value == channel]
            kinds: list[int] = []
            times: list[tuple[float, float]] = []
            for o in outs:
                if not np.isfinite(o.fetched):
                    kinds.append(0)
                    times.append((np.inf, np.inf))
                elif o.reported:
                    kinds.append(2)
                    times.append((o.fetched, min(o.reported)))
                elif np.isfinite(o.failed_at):
                    kinds.append(3)
                    times.append((o.fetched, o.failed_at))
                else:
                    kinds.append(1)
                    times.append((o.fetched, np.inf))
            covers = self.directory.endpoints
            out[channel] = Deliveries(
                channel=channel,
                ids=[w.devices[o.device].id for o in outs],
                unit_codes=units,
                units=np.array([w.devices[o.device].unit for o in outs], np.int64),
                persons=np.array([covers[w.devices[o.device].id].covers_population
                                  for o in outs], np.int64),
                patterns=[(), (S.SENT,), (S.SENT, confirm), (S.SENT, S.FAILED)],
                pattern=np.array(kinds, np.int64),
                times=np.array(times, np.float64).reshape(len(outs), 2),
            )  # fmt: skip
        size = self.config.settings.dispatch.household_size
        ms = run.messengers
        out["messenger"] = Deliveries(
            channel="messenger",
            ids=[w.messengers[o.messenger].id for o in ms],
            unit_codes=units,
            units=np.array([w.messengers[o.messenger].unit for o in ms], np.int64),
            persons=np.array([round(len(o.households) * size) for o in ms], np.int64),
            patterns=[(S.SENT, S.DELIVERED), (S.SENT, S.DELIVERED, S.ACKNOWLEDGED)],
            pattern=np.array([1 if np.isfinite(o.acknowledged) else 0 for o in ms], np.int64),
            times=np.array([(o.task_delivered - 0.2, o.task_delivered, o.acknowledged)
                            for o in ms], np.float64).reshape(len(ms), 3),
            reach_state=S.ACKNOWLEDGED,
            sent_persons=np.zeros(len(ms), np.int64),
        )  # fmt: skip
        return out

    def alert(self, i: int) -> AlertInputs:
        rng = np.random.default_rng([self.spec.seed, i])
        p = self.planned(self.area(rng))
        run = self.world.run_alert(
            int(rng.integers(2**62)), p.units, loudspeakers=p.loudspeakers,
            displays=p.displays, phones=p.phones, messengers=p.messengers,
        )  # fmt: skip
        deliveries = self.deliveries(p, run)
        replayed = {ch: replay(d) for ch, d in deliveries.items()}
        aggregates: dict[str, int] = {}
        for r in replayed.values():
            aggregates.update(r.aggregates)
        survey = None
        if self.spec.survey_households:
            survey = run.survey(self.world, rng, self.spec.survey_households,
                                self.spec.survey_minute)  # fmt: skip
        return AlertInputs(p.plan, p.summary, replayed, deliveries, aggregates, run,
                           self.spec.evaluate_at_min, f"{self.spec.name}-{i}", self.world,
                           p.plan.level, survey)  # fmt: skip


def _unit_truth(world: World, run: AlertRun, minute: float) -> tuple[np.ndarray, np.ndarray]:
    """True delivered and informed shares per unit of the world."""
    n_units = len(world.units)
    res = world.hh_residents.astype(np.float64)
    delivered = np.bincount(world.hh_unit, weights=res * (run.hh_delivered <= minute),
                            minlength=n_units)  # fmt: skip
    person_unit = world.hh_unit[world.person_household]
    informed = np.bincount(person_unit, weights=(run.informed <= minute).astype(np.float64),
                           minlength=n_units)  # fmt: skip
    pop = np.maximum(1, world.unit_population).astype(np.float64)
    return delivered / pop, informed / pop


def run_world(
    spec: WorldSpec, config: Config, alerts: int, estimator: str = "v1",
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:  # fmt: skip
    started = time.perf_counter()
    bench = Bench(spec, config)
    estimate = ESTIMATORS[estimator]()
    built = time.perf_counter() - started
    rows = []
    unit_rows = []
    confirmed: list[float] = []
    flagged: list[bool] = []
    for i in range(alerts):
        a = bench.alert(i)
        est = estimate(bench.directory, config, a)
        t = a.minute
        d_true, c_true = a.run.delivered_share(bench.world, t), a.run.informed_share(bench.world, t)
        rows.append((est.delivered, est.informed, est.low, est.high, d_true, c_true))
        flagged.append(est.flags > 0)
        confirmed.append(est.delivered if est.delivered_confirmed is None
                         else est.delivered_confirmed)  # fmt: skip
        ud, uc = _unit_truth(bench.world, a.run, t)
        for code, (d, c, low, high) in est.units.items():
            k = bench.world.unit_index[code]
            unit_rows.append((d, c, low, high, float(ud[k]), float(uc[k])))
        if progress and (i + 1) % 50 == 0:
            progress(f"  {spec.name}: {i + 1}/{alerts} alerts")
    r = np.array(rows, np.float64).reshape(-1, 6)
    u = np.array(unit_rows, np.float64).reshape(-1, 6)

    def pp(x: Any) -> float:
        return round(float(x) * 100, 2)

    err_c = r[:, 1] - r[:, 5]
    return {
        "world": spec.name,
        "estimator": estimator,
        "alerts": alerts,
        "evaluate_at_min": spec.evaluate_at_min,
        "delivery_mae_pp": pp(np.abs(r[:, 0] - r[:, 4]).mean()),
        "delivery_bias_pp": pp((r[:, 0] - r[:, 4]).mean()),
        # D on confirmed receipts alone: never above the truth unless devices lie.
        "confirmed_delivery_bias_pp": pp((np.array(confirmed) - r[:, 4]).mean()),
        "confirmed_above_truth_rate": round(
            float((np.array(confirmed) > r[:, 4] + 1e-9).mean()), 4
        ),
        "informed_bias_pp": pp(err_c.mean()),
        "informed_sd_pp": pp(err_c.std(ddof=1)) if len(r) > 1 else 0.0,
        "interval_hit_rate": round(float(((r[:, 2] <= r[:, 5]) & (r[:, 5] <= r[:, 3])).mean()), 4),
        "interval_width_pp": pp((r[:, 3] - r[:, 2]).mean()),
        "unit_interval_hit_rate": round(
            float(((u[:, 2] <= u[:, 5]) & (u[:, 5] <= u[:, 3])).mean()), 4
        ),
        "unit_interval_width_pp": pp((u[:, 3] - u[:, 2]).mean()),
        "unit_delivery_mae_pp": pp(np.abs(u[:, 0] - u[:, 4]).mean()),
        "unit_informed_error_range_pp": [pp((u[:, 1] - u[:, 5]).min()),
                                         pp((u[:, 1] - u[:, 5]).max())],
        "true_delivered_mean": round(float(r[:, 4].mean()), 4),
        "true_informed_mean": round(float(r[:, 5].mean()), 4),
        "units_evaluated": len(u),
        # Alerts where surveys and receipts disagreed: the registry is flagged suspect.
        "registry_flagged_rate": round(float(np.mean(flagged)), 4) if flagged else 0.0,
        "interval_width_before_survey_pp": (
            pp(np.mean(estimate.widths_before)) if isinstance(estimate, V2)
            and estimate.widths_before else None
        ),
        "seconds": round(time.perf_counter() - started, 1),
        "seconds_building_world": round(built, 1),
    }  # fmt: skip


def markdown(results: Sequence[dict[str, Any]]) -> str:
    """The results as the table of docs/coverage.md."""

    def f(x: Any, pct: bool = False) -> str:
        if x is None:
            return "–"
        return f"{x * 100:.1f} %" if pct else f"{x:+.2f}" if isinstance(x, float) else str(x)

    rows = [
        "| world | D error (mean \\|D − truth\\|) | D on receipts alone, bias | C bias | C sd"
        " | C in 90 % interval | width | per unit: in interval | width | flagged |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        width = f"{r['interval_width_pp']:.1f}"
        if r.get("interval_width_before_survey_pp") is not None:
            width += f" (without survey {r['interval_width_before_survey_pp']:.1f})"
        rows.append(
            f"| {r['world']} | {r['delivery_mae_pp']:.2f}"
            f" | {f(r.get('confirmed_delivery_bias_pp'))}"
            f" | {r['informed_bias_pp']:+.2f} | {r['informed_sd_pp']:.2f}"
            f" | {f(r['interval_hit_rate'], True)} | {width}"
            f" | {f(r['unit_interval_hit_rate'], True)} | {r['unit_interval_width_pp']:.1f}"
            f" | {f(r.get('registry_flagged_rate'), True)} |"
        )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.coverage_accuracy",
                                     description=__doc__.split("\n\n")[0])  # fmt: skip
    parser.add_argument("--worlds", type=Path, default=ROOT / "config" / "worlds" / "shipped.yaml")
    parser.add_argument("--alerts", type=int, default=200)
    parser.add_argument("--json", type=Path, default=None, help="write one JSON object per world")
    parser.add_argument("--estimator", choices=sorted(ESTIMATORS), default="v1")
    parser.add_argument("--config", type=Path, default=ROOT / "config")
    parser.add_argument("--only", default=None, help="comma-separated world names")
    parser.add_argument(
        "--table", type=Path, default=None, help="print the results of a --json file as markdown"
    )
    args = parser.parse_args(argv)
    if args.table is not None:
        lines = args.table.read_text().splitlines()
        print(markdown([json.loads(x) for x in lines if x.strip()]))
        return 0
    config = load_config(args.config)
    worlds = load_worlds(args.worlds)
    if args.only:
        wanted = set(args.only.split(","))
        worlds = [w for w in worlds if w.name in wanted]
    results = []
    for spec in worlds:
        res = run_world(spec, config, args.alerts, args.estimator,
                        progress=lambda m: print(m, file=sys.stderr, flush=True))  # fmt: skip
        results.append(res)
        print(json.dumps(res), flush=True)
    if args.json:
        args.json.write_text("".join(json.dumps(r) + "\n" for r in results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
