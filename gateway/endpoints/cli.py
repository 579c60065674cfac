"""CLI: `warngate keys` (the signing keys) and `warngate device-config` (what a device
is given at installation: the public keys it trusts, its scopes and topics)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from gateway.config import load_config
from gateway.directory import Endpoint
from gateway.endpoints import keyring
from gateway.endpoints.http import poll_scope, stream_scope
from gateway.settings import Settings, load_settings

__all__ = ["cmd_device_config", "cmd_keys", "device_config"]


def cmd_keys(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    directory = keyring.keys_dir(settings)
    if args.action == "generate":
        alg = args.algorithm or settings.endpoints.signing.algorithm
        kid = keyring.generate(directory, alg, activate_it=args.activate)
        active = next(k for k in keyring.listing(directory) if k.kid == kid).active
        print(f"{kid}: new {alg} key in {directory}" + (" (active)" if active else ""))
        if not active:
            print(f"give devices its public key, then: warngate keys activate {kid}")
        return 0
    if args.action in ("activate", "retire"):
        if not args.kid:
            print(f"keys {args.action}: name the key id", file=sys.stderr)
            return 2
        (keyring.activate if args.action == "activate" else keyring.retire)(directory, args.kid)
        print(f"{args.kid}: {args.action}d")
        return 0
    keys = keyring.listing(directory)
    if args.format == "json":
        rows = [{**k.device_entry(), "created": k.created, "active": k.active} for k in keys]
        print(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(f"{directory}: {len(keys)} key(s)")
    for k in keys:
        state = "active " if k.active else "standby"
        print(f"  {k.kid:<28} {k.alg:<8} {state} {k.created}  {k.public_key}")
    return 0


def device_config(settings: Settings, endpoint: Endpoint) -> dict[str, Any]:
    """A device's configuration: every key it must trust (during a rotation, both), the
    scopes its messages are signed for, and its MQTT topics."""
    keys = keyring.listing(keyring.keys_dir(settings))
    prefix = settings.endpoints.mqtt.prefix
    unit_views = [
        f"unit/{endpoint.unit}/{endpoint.kind.value}/{lang}" for lang in endpoint.languages
    ]
    return {
        "endpoint": endpoint.id,
        "unit": endpoint.unit,
        "kind": endpoint.kind.value,
        "languages": endpoint.languages,
        "signing": {
            "keys": [k.device_entry() for k in keys],
            "scopes": {
                "poll": poll_scope(endpoint),
                "sse": stream_scope(endpoint),
                "mqtt": unit_views,
            },
        },
        "mqtt": {
            "username": endpoint.id,
            "subscribe": [f"{prefix}/{view}" for view in unit_views],
            "receipts": f"{prefix}/device/{endpoint.id}/receipts",
            "heartbeat": f"{prefix}/device/{endpoint.id}/heartbeat",
        },
    }


def cmd_device_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    endpoint = config.directory.endpoints.get(args.id)
    if endpoint is None:
        print(f"no endpoint {args.id!r} in the configuration", file=sys.stderr)
        return 2
    out = device_config(config.settings, endpoint)
    print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
    return 0
