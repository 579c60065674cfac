"""Deployment files: Prometheus rules and the Grafana dashboard use real metrics and valid
PromQL; the compose file wires gateway, worker, Redis (AOF), Prometheus and Grafana."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from gateway.metrics import Metrics
from tests.conftest import ROOT, need_program

DOCKER = ROOT / "docker"
BUILTIN = {"up"}


def exposed_metric_names() -> set[str]:
    """Every series name the app can expose, from its own registry."""
    names = set(BUILTIN)
    for family in Metrics().registry.collect():
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names |= {family.name + s for s in ("_bucket", "_sum", "_count")}
        else:
            names.add(family.name)
    return names


def selectors(node: Any) -> set[str]:
    """Metric names of every vector selector in a parsed PromQL expression."""
    found: set[str] = set()
    name = getattr(node, "name", None)
    if type(node).__name__ == "VectorSelector" and name:
        found.add(name)
    for attr in ("expr", "lhs", "rhs", "vector_selector", "param"):
        child = getattr(node, attr, None)
        if child is not None and not isinstance(child, str | int | float):
            found |= selectors(child)
    for arg in getattr(node, "args", None) or []:
        found |= selectors(arg)
    return found


def test_selector_walk_sees_every_metric() -> None:
    expr = promql_parser.parse(
        'histogram_quantile(0.9, sum by (le) (rate(a_bucket{x="1"}[5m]))) / on(q) b'
        " - max_over_time(c[5m:])"
    )
    assert selectors(expr) == {"a_bucket", "b", "c"}


def rule_exprs() -> list[tuple[str, str]]:
    doc = yaml.safe_load((DOCKER / "prometheus/rules.yml").read_text())
    return [(r["alert"], r["expr"]) for g in doc["groups"] for r in g["rules"]]


def test_alert_rules_are_valid_and_use_real_metrics() -> None:
    doc = yaml.safe_load((DOCKER / "prometheus/rules.yml").read_text())
    names = exposed_metric_names()
    alerts = set()
    for group in doc["groups"]:
        assert group["name"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
            assert rule["labels"]["severity"] in {"critical", "warning"}
            assert rule["annotations"]["summary"]
            used = selectors(promql_parser.parse(rule["expr"]))
            assert used, rule["alert"]
            assert used <= names, (rule["alert"], used - names)
            alerts.add(rule["alert"])
    # What the duty desk must be told about (issue: coverage, offline, backlog, dead
    # letters, circuits).
    assert {
        "WarngateCoverageBelowTargetAtDeadline",
        "WarngateEndpointsOffline",
        "WarngateQueueBacklogGrowing",
        "WarngateDeadLetters",
        "WarngateProviderCircuitOpen",
    } <= alerts


def test_every_rule_has_promtool_unit_tests_and_they_pass() -> None:
    """promtool (Debian: prometheus) checks the rules and runs their unit tests, among
    them each rule firing and each staying quiet. In CI a missing promtool is a failure."""
    promtool = need_program("promtool", "prometheus")
    tests = yaml.safe_load((DOCKER / "prometheus/rules.test.yml").read_text())
    cases = [t for case in tests["tests"] for t in case["alert_rule_test"]]
    fired = {t["alertname"] for t in cases if t.get("exp_alerts")}
    quiet = {t["alertname"] for t in cases if not t.get("exp_alerts")}
    rules = {name for name, _ in rule_exprs()}
    assert fired == rules, rules - fired
    assert quiet == rules, rules - quiet
    for args in (["check", "rules", "rules.yml"], ["test", "rules", "rules.test.yml"]):
        run = subprocess.run(
            [promtool, *args], cwd=DOCKER / "prometheus", capture_output=True, text=True
        )
        assert run.returncode == 0, run.stdout + run.stderr


def test_dashboard_panels_query_real_metrics() -> None:
    dash = json.loads((DOCKER / "grafana/dashboards/warngate.json").read_text())
    datasource = yaml.safe_load(
        (DOCKER / "grafana/provisioning/datasources/prometheus.yaml").read_text()
    )["datasources"][0]["uid"]
    names = exposed_metric_names()
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    titles = " ".join(p["title"] for p in dash["panels"]).lower()
    for wanted in ("coverage against target", "coverage over time", "channel and state",
                   "latency", "offline"):  # fmt: skip
        assert wanted in titles
    cells: set[tuple[int, int]] = set()
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] == datasource
        g = panel["gridPos"]
        area = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not area & cells, panel["title"]  # panels do not overlap
        assert g["x"] + g["w"] <= 24
        cells |= area
        assert panel["targets"]
        for target in panel["targets"]:
            used = selectors(promql_parser.parse(target["expr"]))
            assert used <= names, (panel["title"], used - names)


def test_compose_runs_the_whole_stack() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) >= {"redis", "gateway", "worker", "prometheus", "grafana"}
    assert "--appendonly" in services["redis"]["command"]
    assert services["worker"]["command"][:2] == ["warngate", "worker"]
    assert services["gateway"]["environment"]["REDIS_URL"].startswith("redis://redis:")
    mounts = " ".join(services["prometheus"]["volumes"])
    assert "rules.yml" in mounts
    prom = yaml.safe_load((DOCKER / "prometheus/prometheus.yml").read_text())
    assert prom["rule_files"] == ["/etc/prometheus/rules.yml"]
    assert prom["scrape_configs"][0]["static_configs"][0]["targets"] == ["gateway:8080"]
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert 'CMD ["warngate", "serve"' in dockerfile


@pytest.mark.parametrize("path", ["Dockerfile", "compose.yaml", "prometheus/rules.yml"])
def test_deploy_files_exist(path: str) -> None:
    assert (DOCKER / path).is_file()
    assert isinstance(Path(DOCKER / path).read_text(), str)
