"""The accuracy benchmark (benchmarks/coverage_accuracy.py) on a small world: it runs in
process and reports every figure the issue names. Its full runs are not part of CI;
their results are in docs/coverage.md."""

from __future__ import annotations

import math
from typing import Any

from benchmarks.coverage_accuracy import run_world
from gateway.config import Config
from gateway.sim.worldspec import WorldSpec

KEYS = {
    "world", "alerts", "delivery_mae_pp", "informed_bias_pp", "informed_sd_pp",
    "interval_hit_rate", "interval_width_pp", "unit_interval_hit_rate",
}  # fmt: skip


def township(**kw: Any) -> WorldSpec:
    return WorldSpec.model_validate({"name": "t", "county": "652301001", **kw})


def test_benchmark_reports_every_figure(sample_config_cached: Config) -> None:
    res = run_world(township(), sample_config_cached, 6, "v1")
    assert set(res) >= KEYS
    assert res["alerts"] == 6
    assert 0.0 <= res["interval_hit_rate"] <= 1.0
    assert 0.3 < res["true_delivered_mean"] <= 1.0
    assert 0.2 < res["true_informed_mean"] <= res["true_delivered_mean"] + 0.05
    units = sample_config_cached.directory.units_under("652301001")
    assert res["units_evaluated"] == 6 * len(units)  # the township's units, every alert


def binomial_region(n: int, p: float, tail: float) -> tuple[int, int]:
    """The counts k with P(X < k) > tail and P(X > k) > tail for X ~ Binomial(n, p): a
    calibrated interval's hits fall outside with probability below 2 × tail."""
    pmf = [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]
    low = next(k for k in range(n + 1) if sum(pmf[: k + 1]) > tail)
    high = next(k for k in range(n, -1, -1) if sum(pmf[k:]) > tail)
    return low, high


def test_v2_is_calibrated_over_24_seeds_of_the_township(sample_config_cached: Config) -> None:
    """The end-to-end path of the benchmark (the gateway's planner, its receipt state
    machine replayed, coverage v2) over 24 worlds of one township, 3 alerts each, people
    behaving within the county's priors.

    Bounds fixed before running:
    - C's 90 % interval holds the true informed share in a number of the 72 alerts
      inside the 99.8 % region of Binomial(72, 0.9) (outside it with probability
      < 0.2 % if the interval is calibrated): 56 to 71 hits;
    - per unit (432 intervals, six units sharing each alert's θ, so up to six times the
      binomial variance: sd ≤ 3.5 points), a hit rate within 0.80-0.98;
    - D (with the unconfirmed-send correction) within 1 point of the true delivered
      share on average; on confirmed receipts alone never above it (no device lies).
    """
    n_seeds, per_seed = 24, 3
    hits = unit_hits = units = 0
    errors: list[float] = []
    above = 0
    for seed in range(1, n_seeds + 1):
        res = run_world(township(seed=seed, lying_devices=0.0, alert_area="township"),
                        sample_config_cached, per_seed, "v2")  # fmt: skip
        hits += round(res["interval_hit_rate"] * per_seed)
        unit_hits += round(res["unit_interval_hit_rate"] * res["units_evaluated"])
        units += res["units_evaluated"]
        errors.append(res["delivery_mae_pp"])
        above += round(res["confirmed_above_truth_rate"] * per_seed)
    low, high = binomial_region(n_seeds * per_seed, 0.9, 0.001)
    assert (low, high) == (56, 71)  # the region written in the docstring
    assert low <= hits <= high, hits
    assert 0.80 <= unit_hits / units <= 0.98, unit_hits / units
    assert sum(errors) / len(errors) <= 1.0, errors
    assert above == 0
