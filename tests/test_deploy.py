"""Deployment files: Prometheus rules and the Grafana dashboard use real metrics and valid
PromQL; the compose file wires gateway, worker, Redis (AOF), Prometheus and Grafana; the
wheel the Dockerfile installs holds everything and serves from outside the checkout."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import venv
import zipfile
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import promql_parser
import pytest
import yaml
from redis.asyncio import Redis

from gateway.metrics import Metrics
from gateway.redis_server import free_port
from tests import alerts as A
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


# -- the wheel, as the Dockerfile builds and installs it ---------------------------------


def test_dockerfile_installs_the_wheel_and_ignores_the_checkout_s_clutter() -> None:
    """What the wheel test below does is what the image does."""
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert "pip wheel --no-deps --wheel-dir /wheels ." in dockerfile
    assert "pip install /wheels/warngate-*.whl" in dockerfile
    assert "COPY --from=build /wheels /wheels" in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "**/__pycache__", "tests"} <= set(ignored)


def tail(log: Path) -> str:
    return log.read_text()[-5000:]


def run(args: list[str | Path], **kw: Any) -> str:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, **kw)
    assert done.returncode == 0, f"{args}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done.stdout


async def test_wheel_installed_outside_the_checkout_serves(
    tmp_path: Path, redis_url: str, prefix: str, redis: Redis
) -> None:
    """Build the wheel (as the Dockerfile does), install it with its dependencies in a
    fresh virtual environment, and run `warngate serve` from there, away from the
    checkout, on the sample configuration it ships, against a real Redis."""
    started = time.monotonic()
    wheels, env_dir, elsewhere = tmp_path / "wheels", tmp_path / "venv", tmp_path / "run"
    elsewhere.mkdir()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("WARNGATE_", "PYTHON"))}
    clean.pop("REDIS_URL", None)
    clean.pop("VIRTUAL_ENV", None)
    # Signing keys the served wheel makes go where the suite's are, not under $HOME.
    clean["WARNGATE_ENDPOINTS__SIGNING__KEYS_DIR"] = os.environ[
        "WARNGATE_ENDPOINTS__SIGNING__KEYS_DIR"
    ]
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", wheels, ROOT],
        env=clean, cwd=elsewhere)  # fmt: skip
    (wheel,) = wheels.glob("warngate-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in ("gateway", "channels"):  # every package and module of the checkout
        for path in (ROOT / package).rglob("*.py"):
            assert path.relative_to(ROOT).as_posix() in names
    for path in (ROOT / "templates").rglob("*"):
        if path.is_file():
            assert f"gateway/_data/{path.relative_to(ROOT).as_posix()}" in names
    for path in (ROOT / "config").rglob("*"):
        if path.is_file():
            assert f"gateway/_data/{path.relative_to(ROOT).as_posix()}" in names

    await asyncio.to_thread(venv.EnvBuilder(with_pip=True).create, env_dir)
    python = env_dir / "bin" / "python"
    run([python, "-m", "pip", "install", "-q", wheel], env=clean, cwd=elsewhere)
    show = (
        "import json, gateway; from gateway.settings import packaged_dir; print(json.dumps("
        "[gateway.__file__, str(packaged_dir('templates')), str(packaged_dir('config'))]))"
    )
    where = json.loads(run([python, "-c", show], env=clean, cwd=elsewhere))
    for found in where:
        assert Path(found).is_relative_to(env_dir), where  # nothing from the checkout
    installed = time.monotonic() - started

    port = free_port()
    env = {**clean, "REDIS_URL": redis_url, "WARNGATE_REDIS__PREFIX": prefix,
           "WARNGATE_DISPATCH__WORKERS": "0"}  # fmt: skip
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            str(env_dir / "bin" / "warngate"), "serve", "--config", where[2], "--port", str(port),
            cwd=elsewhere, env=env, stdout=subprocess.DEVNULL, stderr=out,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(600):
                if proc.returncode is not None:
                    raise AssertionError(tail(log))
                try:
                    async with http.get(f"{base}/readyz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            async with http.post(
                f"{base}/api/v1/alerts", data=orjson.dumps(A.alert()), headers=A.json_headers()
            ) as resp:
                assert resp.status == 202, await resp.text()
                alert = (await resp.json())["id"]
            async with http.get(f"{base}/api/v1/alerts/{alert}", headers=A.auth(A.OPERATOR)) as r:
                assert r.status == 200
            # The console from the installed package: its pages, static assets, accounts.
            for path in ("/console/login", "/console/static/console.js"):
                async with http.get(base + path) as r:
                    assert r.status == 200, path
            login = {"account": "changji-viewer", "password": "wgdemo-changji-viewer"}
            async with http.post(f"{base}/api/v1/session", json=login) as r:
                assert r.status == 200, await r.text()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "Traceback" not in tail(log)
    print(f"wheel built and installed in {installed:.1f} s, all {time.monotonic() - started:.1f} s")
