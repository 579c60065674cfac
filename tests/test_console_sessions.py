"""Console accounts and sessions: scrypt hashes, the `warngate account` command, login,
cookie flags, CSRF, lockout after failed logins, idle and absolute timeouts, disabled
accounts, and every one of those in the audit stream."""

from __future__ import annotations

import asyncio
import io
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from redis.asyncio import Redis

from gateway.app import create_app
from gateway.config import Config
from gateway.console.accounts import (
    hash_password,
    load_accounts,
    verify_password,
)
from gateway.console.sessions import token_hash
from gateway.errors import ConfigError
from gateway.keys import CONSOLE, STORE
from tests.conftest import SAMPLE_CONFIG
from tests.console import APPROVER, DRAFTER, Client, login, password

SESSION = "/api/v1/session"


def test_passwords_are_scrypt_hashes_checked_in_constant_time() -> None:
    stored = hash_password("correct horse battery", n=2**10)
    assert stored.startswith("scrypt:1024:8:1:")
    assert verify_password("correct horse battery", stored)
    assert not verify_password("correct horse batterz", stored)
    assert not verify_password("x", "scrypt:bad")
    assert hash_password("same", n=2**10) != hash_password("same", n=2**10)  # salted


def test_a_plain_password_or_a_drafter_without_agency_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "accounts.yaml"
    row = {"id": "someone", "name": "S", "roles": ["drafter"], "jurisdiction": ["652300"]}
    path.write_text(yaml.safe_dump({"accounts": [{**row, "password": "hunter2hunter2"}]}))
    with pytest.raises(ConfigError) as err:
        load_accounts(path)
    text = str(err.value)
    assert "accounts[someone].password" in text
    path.write_text(yaml.safe_dump({"accounts": [{**row, "password": hash_password("x" * 12)}]}))
    with pytest.raises(ConfigError, match=r"accounts\[someone\]\.agency"):
        load_accounts(path)


def test_the_sample_accounts_load_with_their_demo_passwords(config: Config) -> None:
    accounts = load_accounts(SAMPLE_CONFIG / "accounts.yaml", config.registry, config.directory)
    assert {DRAFTER, APPROVER, "changji-chief", "changji-viewer"} <= set(accounts)
    assert verify_password(password(DRAFTER), accounts[DRAFTER].password)
    assert accounts[DRAFTER].agency == "changji-em"


def test_the_account_command_adds_changes_and_disables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config_dir = tmp_path / "config"
    shutil.copytree(SAMPLE_CONFIG, config_dir)
    from gateway.cli import main

    def run(*argv: str, stdin: str = "") -> int:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        return main(["account", "--config", str(config_dir), *argv])

    args = ["add", "new-officer", "--name", "New Officer", "--role", "approver"]
    assert (
        run(*args, "--jurisdiction", "652328", "--password-stdin", stdin="a good passphrase\n") == 0
    )
    accounts = load_accounts(config_dir / "accounts.yaml")
    assert verify_password("a good passphrase", accounts["new-officer"].password)
    assert "DEMO ACCOUNTS" in (config_dir / "accounts.yaml").read_text()  # header kept
    assert run("passwd", "new-officer", "--password-stdin", stdin="another passphrase\n") == 0
    assert run("disable", "new-officer") == 0
    accounts = load_accounts(config_dir / "accounts.yaml")
    assert accounts["new-officer"].disabled
    assert verify_password("another passphrase", accounts["new-officer"].password)
    with pytest.raises(SystemExit, match="at least"):
        run("passwd", "new-officer", "--password-stdin", stdin="short\n")
    # A drafter for an agency that does not exist never reaches the file.
    bad = ["add", "x-drafter", "--name", "X", "--role", "drafter", "--jurisdiction", "652300"]
    assert run(*bad, "--agency", "nobody", "--password-stdin", stdin="a good passphrase\n") == 2
    assert "x-drafter" not in load_accounts(config_dir / "accounts.yaml")
    capsys.readouterr()
    assert run("list") == 0
    assert "new-officer" in capsys.readouterr().out


async def test_login_sets_a_strict_http_only_cookie_and_logout_ends_it(client: Client) -> None:
    resp = await client.post(SESSION, json={"account": DRAFTER, "password": password(DRAFTER)})
    assert resp.status == 200
    body = await resp.json()
    assert body["roles"] == ["drafter"]
    assert body["agency"] == "changji-em"
    cookie = resp.cookies["wgsession"]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Strict"
    assert not cookie["secure"]  # plain HTTP on loopback
    client.session.cookie_jar.clear()
    person = {"Cookie": f"wgsession={cookie.value}", "X-CSRF-Token": body["csrf_token"]}
    assert (await client.get(SESSION, headers=person)).status == 200
    out = await client.delete(SESSION, headers={"Cookie": person["Cookie"]})
    assert (out.status, (await out.json())["code"]) == (403, "csrf-mismatch")
    assert (await client.delete(SESSION, headers=person)).status == 200
    gone = await client.get(SESSION, headers=person)
    assert (gone.status, (await gone.json())["code"]) == (401, "not-logged-in")
    behind_tls = await client.post(
        SESSION,
        json={"account": DRAFTER, "password": password(DRAFTER)},
        headers={"X-Forwarded-Proto": "https"},
    )
    assert behind_tls.cookies["wgsession"]["secure"]


async def test_wrong_passwords_lock_the_account_and_are_audited(client: Client) -> None:
    """Five failures lock the account (429 with Retry-After, even with the right
    password); an unknown account gets the same 401 as a wrong password."""
    store = client.app[STORE]
    for _ in range(4):
        resp = await client.post(SESSION, json={"account": APPROVER, "password": "guess-guess"})
        assert (resp.status, (await resp.json())["code"]) == (401, "bad-login")
    unknown = await client.post(SESSION, json={"account": "nobody", "password": "guess-guess"})
    assert (unknown.status, (await unknown.json())["code"]) == (401, "bad-login")
    fifth = await client.post(SESSION, json={"account": APPROVER, "password": "guess-guess"})
    assert fifth.status == 401
    right = await client.post(SESSION, json={"account": APPROVER, "password": password(APPROVER)})
    body = await right.json()
    assert (right.status, body["code"]) == (429, "account-locked")
    assert 0 < int(right.headers["Retry-After"]) <= 900
    events = [e["event"] for e in await store.audit(20) if e.get("by") == APPROVER]
    assert events.count("login-failed") == 5
    assert "locked-out" in events
    assert "login-refused-locked" in events
    await store.unlock(APPROVER)
    assert (await login(client, APPROVER))["X-CSRF-Token"]
    assert "login" in [e["event"] for e in await store.audit(5) if e.get("by") == APPROVER]


async def test_sessions_end_when_idle_and_at_their_maximum(client: Client, redis: Redis) -> None:
    store = client.app[STORE]
    person = await login(client, DRAFTER)
    token = person["Cookie"].split("=", 1)[1]
    key = store.keys.session(token_hash(token))
    ttl = await redis.pttl(key)
    assert 890_000 < ttl <= 900_000  # console.idle_s: renewed by every request
    row = await redis.hgetall(key)
    assert token not in str(row)  # only its hash is stored
    created = int(row["created"])
    assert await store.touch_session(token_hash(token), created + 1000, 900_000, 43_200_000)
    late = created + 43_200_000
    assert await store.touch_session(token_hash(token), late, 900_000, 43_200_000) is None
    assert not await redis.exists(key)
    resp = await client.get(SESSION, headers=person)
    assert resp.status == 401
    again = await login(client, DRAFTER)
    await redis.pexpire(store.keys.session(token_hash(again["Cookie"].split("=", 1)[1])), 1)
    await asyncio.sleep(0.02)
    assert (await client.get(SESSION, headers=again)).status == 401


async def test_a_disabled_account_loses_its_session(
    aiohttp_client: Any, config: Config, redis: Redis, tmp_path: Path
) -> None:
    path = tmp_path / "accounts.yaml"
    shutil.copy(SAMPLE_CONFIG / "accounts.yaml", path)
    console = config.settings.console.model_copy(update={"accounts_file": path})
    settings = config.settings.model_copy(update={"console": console})
    cfg = Config(settings, config.registry, config.hazards, config.directory, config.policy)
    client = await aiohttp_client(create_app(cfg, background=False))
    person = await login(client, DRAFTER)
    assert (await client.get(SESSION, headers=person)).status == 200
    data = yaml.safe_load(path.read_text())
    for row in data["accounts"]:
        if row["id"] == DRAFTER:
            row["disabled"] = True
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    client.app[CONSOLE].book._checked = 0.0  # read again now, not within the second
    assert (await client.get(SESSION, headers=person)).status == 401
    resp = await client.post(SESSION, json={"account": DRAFTER, "password": password(DRAFTER)})
    assert resp.status == 401


async def test_an_admin_sees_accounts_and_ends_a_lockout(client: Client) -> None:
    store = client.app[STORE]
    for _ in range(5):
        await client.post(SESSION, json={"account": APPROVER, "password": "guess-guess"})
    assert await store.locked_ms(APPROVER) > 0
    viewer = await login(client, "changji-viewer")
    refused = await client.get("/api/v1/accounts", headers=viewer)
    assert (refused.status, (await refused.json())["code"]) == (403, "role-required")
    admin = await login(client, "changji-admin")
    listed = await (await client.get("/api/v1/accounts", headers=admin)).json()
    row = next(a for a in listed["accounts"] if a["id"] == APPROVER)
    assert row["locked_s"] > 0
    assert "password" not in row
    assert not any("scrypt" in str(a) for a in listed["accounts"])
    page = await client.get("/console/accounts", headers={"Cookie": admin["Cookie"]})
    assert "Unlock" in await page.text()  # the admin reads English (accounts.yaml)
    done = await client.post(
        f"/console/accounts/{APPROVER}/unlock",
        data={"csrf": admin["X-CSRF-Token"]},
        headers={"Cookie": admin["Cookie"]},
        allow_redirects=False,
    )
    assert done.status == 303
    assert await store.locked_ms(APPROVER) == 0
    unlocked = next(e for e in await store.audit(5) if e.get("event") == "unlock")
    assert (unlocked["account"], unlocked["by"]) == (APPROVER, "changji-admin")
    assert (await login(client, APPROVER))["X-CSRF-Token"]
