"""CLI: `warngate account` — add, change, disable and list console accounts.

The file is accounts.yaml of the configuration directory (or `console.accounts_file`);
a running gateway reads it again within a second of a change. Passwords are asked for
twice without echo, or read from standard input with `--password-stdin` (scripts).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from pathlib import Path

from gateway.config import load_config
from gateway.console.accounts import (
    Account,
    Role,
    accounts_path,
    hash_password,
    load_accounts,
    save_accounts,
)
from gateway.errors import ConfigError

__all__ = ["add_parser", "run"]

MIN_PASSWORD = 10


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("account", help="manage console accounts (accounts.yaml)")
    p.add_argument("--config", type=Path, default=None, help="configuration directory")
    acts = p.add_subparsers(dest="action", required=True)
    a = acts.add_parser("add", help="add an account (asks for its password)")
    a.add_argument("id")
    a.add_argument("--name", required=True)
    a.add_argument("--role", action="append", required=True, choices=[r.value for r in Role])
    a.add_argument("--jurisdiction", action="append", required=True, help="a division code")
    a.add_argument("--agency", default=None, help="drafters: the agency they write for")
    a.add_argument("--language", choices=["zh", "en"], default="zh")
    a.add_argument("--password-stdin", action="store_true")
    for action, text in (
        ("passwd", "set a new password"),
        ("disable", "refuse its logins and end its sessions"),
        ("enable", "allow its logins again"),
        ("remove", "delete the account"),
        ("unlock", "end a lockout after failed logins (needs the gateway's Redis)"),
    ):
        q = acts.add_parser(action, help=text)
        q.add_argument("id")
        if action == "passwd":
            q.add_argument("--password-stdin", action="store_true")
    acts.add_parser("list", help="the accounts, their roles and jurisdictions")


def _password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise SystemExit("the passwords differ")
    if len(password) < MIN_PASSWORD:
        raise SystemExit(f"a password has at least {MIN_PASSWORD} characters")
    return password


def _header(path: Path) -> str | None:
    if not path.exists():
        return None
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines) + "\n" if lines else None


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    path = accounts_path(config.settings)
    accounts = load_accounts(path, config.registry, config.directory)
    if args.action == "list":
        for a in accounts.values():
            state = " (disabled)" if a.disabled else ""
            agency = f" as {a.agency}" if a.agency else ""
            roles = ",".join(r.value for r in a.roles)
            print(f"{a.id:<24} {roles:<18} {' '.join(a.jurisdiction)}{agency}  {a.name}{state}")
        print(f"{len(accounts)} accounts in {path}")
        return 0
    if args.action == "unlock":
        return asyncio.run(_unlock(config, args.id))
    if args.action == "add":
        if args.id in accounts:
            raise SystemExit(f"account {args.id} exists (passwd, disable or remove it)")
        account = Account.model_validate(
            {
                "id": args.id,
                "name": args.name,
                "roles": args.role,
                "jurisdiction": args.jurisdiction,
                "agency": args.agency,
                "language": args.language,
                "password": hash_password(_password(args.password_stdin)),
            }
        )
        accounts[account.id] = account
    else:
        current = accounts.get(args.id)
        if current is None:
            raise SystemExit(f"no account {args.id} in {path}")
        if args.action == "remove":
            del accounts[args.id]
        else:
            update: dict[str, object] = {}
            if args.action == "passwd":
                update["password"] = hash_password(_password(args.password_stdin))
            else:
                update["disabled"] = args.action == "disable"
            accounts[args.id] = current.model_copy(update=update)
    # Checked whole before it replaces the file (an agency that does not exist …).
    tmp = path.with_name(f".{path.name}.check")
    try:
        save_accounts(tmp, accounts.values(), *filter(None, [_header(path)]))
        load_accounts(tmp, config.registry, config.directory)
    except ConfigError:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)
    print(f"{args.action}: {args.id} ({path})")
    return 0


async def _unlock(config: object, account: str) -> int:
    from gateway.app import open_redis
    from gateway.config import Config
    from gateway.store import Store

    assert isinstance(config, Config)
    async with open_redis(config) as redis:
        store = Store(redis, config.settings.redis.prefix, config.retention())
        await store.unlock(account)
    print(f"unlocked: {account}")
    return 0
