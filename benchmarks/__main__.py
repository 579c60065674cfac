"""Benchmarks: run them all (each in its own process) and print a results table.

    python -m benchmarks                  # full sizes (1,000,000 recipients, 10,000 endpoints)
    python -m benchmarks --quick          # 100,000 recipients, 2,000 endpoints: a few minutes
    python -m benchmarks --only fanout    # one of: ingest, plan_render, fanout, peer_apprise

Raw results: benchmarks/results/<name>.json (<name>.quick.json for --quick). A full run
of everything also copies them to latest-<name>.json, the files docs/benchmarks.md cites
(the only JSON files kept in git).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from typing import Any

from benchmarks.common import RESULTS, log, machine_info

BENCHMARKS = ("ingest", "plan_render", "fanout", "peer_apprise")

# Headline rows: (summary key, label, reference summary key or None)
HEADLINES: dict[str, list[tuple[str, str, str | None]]] = {
    "ingest": [
        ("c1_gateway_p50_ms", "POST /alerts p50, 1 connection (ms)", "c1_echo_p50_ms"),
        ("c1_gateway_p99_ms", "POST /alerts p99, 1 connection (ms)", "c1_echo_p99_ms"),
        ("c32_gateway_per_s", "POST /alerts, 32 connections (req/s)", "c32_echo_per_s"),
        ("c32_gateway_p50_ms", "POST /alerts p50, 32 connections (ms)", "c32_echo_p50_ms"),
        ("c32_gateway_p99_ms", "POST /alerts p99, 32 connections (ms)", "c32_echo_p99_ms"),
    ],
    "plan_render": [
        ("pure_total_s", "plan_alert + render, no I/O (s)", None),
        ("pure_plan_s", "  plan_alert (s)", None),
        ("pure_render_s", "  render (s)", None),
        ("planner_total_s", "Planner.plan() against Redis (s)", None),
        ("planner_rest_s", "  of which batching + GC, no I/O (s)", None),
        ("planner_enqueue_s", "  of which store.enqueue (s)", None),
        ("planner_peak_rss_extra_mb", "Planner.plan() peak RSS over the directory (MiB)", None),
    ],
    "fanout": [
        ("sms_per_s", "SMS handed over (/s) vs bare storage", "reference_recipients_per_s"),
        (
            "sms_per_s",
            "SMS handed over (/s) vs bare storage + HTTP",
            "reference_http_recipients_per_s",
        ),
        ("done_s", "POST → last batch acknowledged (s)", "reference_http_total_s"),
        ("first_sms_s", "POST → first SMS at the provider (s)", None),
        ("p95_sms_s", "POST → 95 % of SMS at the provider (s)", None),
        ("peak_rss_mb", "gateway peak RSS (MiB)", None),
        (
            "pull_alert_last_s",
            "long-poll: last endpoint has the alert (s)",
            "pull_alert_reference_last_s",
        ),
        (
            "pull_update_last_s",
            "long-poll: last endpoint has the update (s)",
            "pull_update_reference_last_s",
        ),
        (
            "pull_cancel_last_s",
            "long-poll: last endpoint has the cancel (s)",
            "pull_cancel_reference_last_s",
        ),
        *(
            (
                f"sse_{ph}_last_s",
                f"SSE: last endpoint has the {ph} (s)",
                f"sse_{ph}_reference_last_s",
            )
            for ph in ("alert", "update", "cancel")
        ),
    ],
    "peer_apprise": [
        ("apprise_per_s", "Apprise notify(), 1,000 webhooks (msg/s)", None),
        (
            "adapter_per_receiver_per_s",
            "AppPushAdapter, one POST per receiver (msg/s)",
            "apprise_per_s",
        ),
        ("adapter_batched_per_s", "AppPushAdapter, batches of 500 (msg/s)", "apprise_per_s"),
    ],
}


def _fmt(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def _value(v: Any) -> tuple[float | None, float | None, float | None, int]:
    if isinstance(v, dict):
        return v.get("median"), v.get("min"), v.get("max"), int(v.get("n", 0))
    if isinstance(v, int | float):
        return float(v), None, None, 1
    return None, None, None, 0


def table(results: dict[str, dict[str, Any]]) -> str:
    rows = [("benchmark", "figure", "median", "min–max", "n", "reference", "ratio")]
    for name, doc in results.items():
        summary = doc.get("summary", {})
        for key, label, ref_key in HEADLINES.get(name, []):
            if key not in summary:
                continue
            med, lo, hi, n = _value(summary[key])
            ref = _value(summary[ref_key])[0] if ref_key and ref_key in summary else None
            ratio = med / ref if med is not None and ref else None
            spread = f"{_fmt(lo)}–{_fmt(hi)}" if lo is not None else ""
            rows.append(
                (name, label, _fmt(med), spread, str(n), _fmt(ref),
                 f"{ratio:.3g}" if ratio is not None else "")
            )  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, fewer repetitions")
    parser.add_argument("--only", choices=BENCHMARKS, action="append")
    parser.add_argument("--reps", type=int, help="repetitions (overrides each default)")
    args = parser.parse_args(argv)
    names = args.only or list(BENCHMARKS)
    info = machine_info()
    log(f"machine: {info['cpu']}, {info['cores']} cores, Python {info['python']},"
        f" redis-server {info['redis_server']}")  # fmt: skip
    results: dict[str, dict[str, Any]] = {}
    failed = []
    for name in names:
        cmd = [sys.executable, "-m", f"benchmarks.{name}"]
        cmd += ["--quick"] if args.quick else []
        cmd += ["--reps", str(args.reps)] if args.reps else []
        log(f"running {' '.join(cmd[1:])}")
        t = time.monotonic()
        code = subprocess.call(cmd)
        log(f"{name}: exit {code} after {time.monotonic() - t:.0f}s")
        path = RESULTS / f"{name}{'.quick' if args.quick else ''}.json"
        if code != 0 or not path.exists():
            failed.append(name)
            continue
        results[name] = json.loads(path.read_text())
        if not args.quick and not args.reps:
            shutil.copy(path, RESULTS / f"latest-{name}.json")
    print()
    print(table(results))
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
