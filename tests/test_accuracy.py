"""The accuracy benchmark (benchmarks/coverage_accuracy.py) on a small world: it runs in
process and reports every figure the issue names. Its full runs are not part of CI;
their results are in docs/coverage.md."""

from __future__ import annotations

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
