"""CLI: the `warngate` command (serve, worker, check-config, validate, hash-key, demo …)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import orjson

from gateway.auth import hash_key, new_key
from gateway.cap import decode, to_alert
from gateway.config import load_config
from gateway.directory import Directory
from gateway.errors import ConfigError, ProblemError
from gateway.settings import packaged_dir

__all__ = ["main"]


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="configuration directory (default: $WARNGATE_CONFIG or ./config)",
    )


def _server_args(p: argparse.ArgumentParser) -> None:
    _config_arg(p)
    p.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 8080)")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the embedded Redis keeps its data when REDIS_URL is not set",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="warngate", description="Public warning dissemination gateway."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the HTTP API and the workers")
    _server_args(p)

    p = sub.add_parser("worker", help="run dispatch workers only (no HTTP listener)")
    _config_arg(p)
    p.add_argument("--planners", type=int, default=None, help="planning loops (default 1)")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--metrics-port", type=int, default=None, help="serve /metrics here")
    p.add_argument("--metrics-host", default="127.0.0.1")

    p = sub.add_parser("check-config", help="validate a configuration directory")
    p.add_argument("directory", type=Path, nargs="?", default=None)

    p = sub.add_parser("validate", help="check CAP 1.2 files (XML or JSON) offline")
    p.add_argument("files", type=Path, nargs="+")
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="also apply the gateway's acceptance rules (hazards, levels, areas) of this config",
    )

    p = sub.add_parser("hash-key", help="print the stored form of an API key or device token")
    p.add_argument("key", nargs="?", help="the key; omitted: make a new random key")

    p = sub.add_parser("report", help="coverage of an alert, or statistics of a period")
    _config_arg(p)
    p.add_argument("alert", nargs="?", help="alert id (omit with --period)")
    p.add_argument("--at", type=int, default=None, help="minutes after acceptance")
    p.add_argument("--period", choices=["daily", "weekly", "monthly", "quarterly", "annual"])
    p.add_argument("--end", default=None, help="end of the period (ISO date/time; default now)")
    p.add_argument("--format", choices=["table", "json", "csv"], default="table")
    p.add_argument(
        "--alerts", action="store_true", help="with --period: one row per alert, not totals"
    )
    p.add_argument("--data-dir", type=Path, default=None)

    p = sub.add_parser("simulate", help="run a simulated county around a running gateway")
    _config_arg(p)
    p.add_argument("--gateway", default="http://127.0.0.1:8080", help="the gateway's base URL")
    p.add_argument("--operator-key", default="wgdemo-changji-duty")
    p.add_argument("--time-scale", type=float, default=1.0, help="multiply simulated delays")
    p.add_argument("--offline", type=float, default=0.05, help="share of devices offline")
    p.add_argument("--flaky", type=float, default=0.1, help="share of flaky devices")
    p.add_argument("--sms-failure", type=float, default=0.0, help="share of SMS calls failing")
    p.add_argument("--receipt-loss", type=float, default=0.05)
    p.add_argument("--correlation", type=float, default=0.5)
    p.add_argument("--report-every", type=float, default=15.0, help="seconds between reports")
    p.add_argument(
        "--world",
        type=Path,
        default=None,
        help="a world file (config/worlds/*.yaml): its people and devices are the truth",
    )
    p.add_argument("--world-name", default=None, help="which world of the file (default: first)")

    p = sub.add_parser("endpoint-sim", help="a reference loudspeaker/screen client")
    p.add_argument("--gateway", default="http://127.0.0.1:8080")
    p.add_argument("--id", required=True, help="endpoint id (see endpoints.csv)")
    p.add_argument("--token", default=None, help="device token (default: the demo token)")
    p.add_argument("--config", type=Path, default=None)
    p.add_argument("--wait", type=float, default=30.0)
    p.add_argument("--mqtt", default=None, help="broker URL: take messages over MQTT instead")
    p.add_argument("--keys", type=Path, default=None,
                   help="device configuration (warngate device-config) with the keys to trust;"
                        " default: the public keys of --config")  # fmt: skip

    p = sub.add_parser("keys", help="the keys that sign messages to devices: make, list, rotate")
    _config_arg(p)
    p.add_argument("action", choices=["list", "generate", "activate", "retire"])
    p.add_argument("kid", nargs="?", help="key id (activate, retire)")
    p.add_argument("--algorithm", choices=["ed25519", "sm2-sm3"], default=None,
                   help="of a new key (default: endpoints.signing.algorithm)")  # fmt: skip
    p.add_argument("--activate", action="store_true", help="generate: sign with it at once")
    p.add_argument("--format", choices=["table", "json"], default="table")

    p = sub.add_parser("device-config", help="what a device needs: keys to trust, topics")
    _config_arg(p)
    p.add_argument("id", help="endpoint id (see endpoints.csv)")

    p = sub.add_parser("demo", help="serve the sample county and walk through an alert's life")
    _server_args(p)

    from gateway.console import cli as console_cli

    console_cli.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        if args.command == "serve":
            return cmd_serve(args)
        if args.command == "worker":
            return cmd_worker(args)
        if args.command == "check-config":
            return cmd_check_config(args.directory)
        if args.command == "validate":
            return cmd_validate(args.files, args.config)
        if args.command == "report":
            return asyncio.run(cmd_report(args))
        if args.command == "hash-key":
            return cmd_hash_key(args.key)
        if args.command == "keys":
            from gateway.endpoints.cli import cmd_keys

            return cmd_keys(args)
        if args.command == "device-config":
            from gateway.endpoints.cli import cmd_device_config

            return cmd_device_config(args)
        if args.command == "account":
            from gateway.console import cli as console_cli

            return console_cli.run(args)
        if args.command == "simulate":
            from gateway.sim.cli import run_simulate

            return asyncio.run(run_simulate(load_config(_sample_or(args.config)), args))
        if args.command == "endpoint-sim":
            from gateway.sim.cli import run_endpoint

            return asyncio.run(run_endpoint(load_config(_sample_or(args.config)), args))
        if args.command == "demo":
            from gateway.demo import run_demo

            return run_demo(load_config(_sample_or(args.config), **_overrides(args)))
    except ConfigError as exc:
        print("configuration problems:", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        if any(i.reason == "configuration directory not found" for i in exc.issues):
            print(
                "give one with --config DIR or WARNGATE_CONFIG; the sample configuration"
                f" installed with warngate is {packaged_dir('config')}",
                file=sys.stderr,
            )
        return 2
    raise AssertionError(args.command)


def _sample_or(directory: Path | None) -> Path | None:
    """The sample county's tools (demo, simulate, endpoint-sim) use the sample
    configuration installed with warngate when none is named and there is no ./config."""
    if directory is None and not os.environ.get("WARNGATE_CONFIG") and not Path("config").is_dir():
        return packaged_dir("config")
    return directory


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    out: dict[str, object] = {"host": args.host, "port": args.port, "data_dir": args.data_dir}
    return {k: v for k, v in out.items() if v is not None}


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.app import serve

    config = load_config(args.config, **_overrides(args))
    if config.settings.console.enabled:
        from gateway.console.web import check_files

        check_files(config)  # a bad accounts, quick or canaries file stops the start
    logging.getLogger().setLevel(config.settings.log_level)
    asyncio.run(serve(config))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from gateway.app import run_workers

    overrides = {"data_dir": args.data_dir} if args.data_dir else {}
    config = load_config(args.config, **overrides)
    logging.getLogger().setLevel(config.settings.log_level)
    asyncio.run(
        run_workers(
            config,
            planners=args.planners,
            metrics_host=args.metrics_host,
            metrics_port=args.metrics_port,
        )
    )
    return 0


def cmd_check_config(directory: Path | None) -> int:
    config = load_config(directory)
    d = config.directory
    print(f"{config.settings.config_dir}: OK")
    print(
        f"  agencies {len(config.registry.agencies)}, operators {len(config.registry.operators)},"
        f" hazards {len(config.hazards.by_id)}"
    )
    print(
        f"  divisions {len(d.divisions)} ({len(d.units)} villages/communities),"
        f" endpoints {len(d.endpoints)}, recipients {d.recipient_count()}, groups {len(d.groups)}"
    )
    print(f"  {_households_line(d)}")
    from gateway.console.web import check_files

    accounts, quick, schedules = check_files(config)
    print(f"  console accounts {accounts}, quick templates {quick}, scheduled tests {schedules}")
    return 0


def _households_line(d: Directory) -> str:
    """What coverage can measure: definition v2 needs households (docs/coverage.md)."""
    h = d.households
    if h is None:
        return "households: none (coverage definition v1 for every unit)"
    with_homes = sum(1 for u in d.units if u in h.by_unit)
    linked = sum(1 for cols in d.recipients.values() for home in cols.household if home >= 0)
    return (
        f"households {len(h)} ({int(h.residents.sum())} residents) in {with_homes} of"
        f" {len(d.units)} units; endpoints with a footprint"
        f" {sum(1 for f in d.footprints.values() if len(f))} of {len(d.endpoints)};"
        f" recipients linked to a household {linked}"
    )


def cmd_validate(files: Sequence[Path], config_dir: Path | None) -> int:
    ingestor = None
    if config_dir is not None:
        from gateway.ingest import Ingestor

        ingestor = Ingestor(load_config(config_dir), store=None)
    bad = 0
    for path in files:
        problems: list[str] = []
        try:
            body = path.read_bytes()
        except OSError as exc:
            print(f"{path}: cannot read: {exc}")
            bad += 1
            continue
        kind = "application/json" if body.lstrip()[:1] in (b"{", b"[") else "application/xml"
        try:
            decoded = decode(body, kind)
            problems += [f"{n.loc}: {n.msg}" for n in decoded.notes]
            alert = to_alert(decoded.data)
            if ingestor is not None:
                ingestor.check(alert, datetime.now(UTC), expiry=False)
        except ProblemError as exc:
            problems += [f"{e.loc}: {e.msg}" for e in exc.errors] or [exc.detail]
        if problems:
            bad += 1
            print(f"{path}: {len(problems)} problem(s)")
            for p in problems:
                print(f"  {p}")
        else:
            print(f"{path}: OK")
    return 1 if bad else 0


async def cmd_report(args: argparse.Namespace) -> int:
    from gateway.app import open_redis
    from gateway.reports import (
        alert_report,
        format_period,
        format_report,
        period_report,
        rows_csv,
        totals_csv,
    )
    from gateway.store import Store

    overrides = {"data_dir": args.data_dir} if args.data_dir else {}
    config = load_config(args.config, **overrides)
    if (args.alert is None) == (args.period is None):
        print("give an alert id or --period", file=sys.stderr)
        return 2
    async with open_redis(config) as redis:
        store = Store(redis, config.settings.redis.prefix, config.retention())
        if args.period:
            end = datetime.fromisoformat(args.end) if args.end else None
            if end is not None and end.tzinfo is None:
                end = end.replace(tzinfo=UTC)
            stats = await period_report(config, store, args.period, end=end)
            if args.format == "json":
                print(orjson.dumps(stats, option=orjson.OPT_INDENT_2).decode())
            elif args.format == "csv":
                print(rows_csv(stats["rows"]) if args.alerts else totals_csv(stats), end="")
            else:
                print(format_period(stats, alerts=args.alerts))
            return 0
        record = await store.get_alert(args.alert)
        if record is None:
            print(f"no alert {args.alert!r}", file=sys.stderr)
            return 1
        report = await alert_report(config, store, record, at=args.at)
    if args.format == "json":
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    elif args.format == "csv":
        print(rows_csv([{k: v for k, v in u.items() if not isinstance(v, dict)}
                        for u in report.get("units", [])]), end="")  # fmt: skip
    else:
        print(format_report(report, config.directory))
    return 0


def cmd_hash_key(key: str | None) -> int:
    if key is None:
        key = new_key()
        print(f"key:  {key}")
    print(f"hash: {hash_key(key)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
