"""Console: operator accounts — people with roles in a jurisdiction, kept in accounts.yaml.

Passwords are stored as scrypt hashes (`hashlib.scrypt`, RFC 7914; no dependency): a
slow, memory-hard hash, because people choose passwords (API keys are long random
tokens and need no slow hash, see gateway/auth.py). The file is managed by
`warngate account` and read again by a running gateway when it changes, so an account
disabled on the command line cannot log in a moment later.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gateway import codes
from gateway.auth import Registry
from gateway.directory import Directory
from gateway.errors import ConfigError, ConfigIssue
from gateway.settings import Settings, read_yaml

__all__ = [
    "ACCOUNTS_FILE",
    "Account",
    "AccountBook",
    "Role",
    "accounts_path",
    "hash_password",
    "load_accounts",
    "save_accounts",
    "verify_password",
]

log = logging.getLogger("warngate.console")
ACCOUNTS_FILE = "accounts.yaml"

# scrypt cost: 2^14 × 8 × 128 bytes = 16 MiB and ~50 ms per check on the project's
# machine (the parameters are stored with each hash, so they can be raised later).
_N, _R, _P = 2**14, 8, 1
_MAXMEM = 64 * 1024 * 1024
_PREFIX = "scrypt"


def hash_password(password: str, *, n: int = _N, r: int = _R, p: int = _P) -> str:
    """`scrypt:N:r:p:<salt>:<hash>` (base64) of a password."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM)
    b64 = base64.b64encode
    return f"{_PREFIX}:{n}:{r}:{p}:{b64(salt).decode()}:{b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches a stored hash (constant-time comparison)."""
    try:
        kind, n, r, p, salt, digest = stored.split(":")
        if kind != _PREFIX:
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=_MAXMEM,
            dklen=len(want),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def _check_hash(value: str) -> str:
    parts = value.split(":")
    if len(parts) != 6 or parts[0] != _PREFIX or not all(x.isdigit() for x in parts[1:4]):
        raise ValueError(
            "password holds a scrypt hash ('scrypt:N:r:p:salt:hash', made by"
            " `warngate account`), never a plain password"
        )
    return value


class Role(StrEnum):
    """What a person may do in the console (and by the person routes of the API)."""

    DRAFTER = "drafter"  # compose, submit, update and cancel alerts of their agency
    APPROVER = "approver"  # approve or reject alerts of their jurisdiction; review
    VIEWER = "viewer"  # read only: alerts, previews, watch pages, broadcast coverage
    ADMIN = "admin"  # accounts: see them, unlock them (passwords stay with the CLI)


class Account(BaseModel):
    """One person. Everything they do is audited under `id`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{1,63}$")
    name: str = Field(min_length=1, max_length=200)
    roles: list[Role] = Field(min_length=1)
    jurisdiction: list[str] = Field(min_length=1)
    # Drafters write alerts as this agency (its sender, hazards and jurisdiction).
    agency: str | None = None
    password: str
    disabled: bool = False
    language: Literal["zh", "en"] = "zh"

    _hash = field_validator("password")(_check_hash)

    @field_validator("jurisdiction", mode="before")
    @classmethod
    def _codes(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [codes.normalize(str(v)) for v in value]
        return value

    def has(self, role: Role) -> bool:
        return role in self.roles

    def covers(self, code: str) -> bool:
        return any(codes.covers(j, code) for j in self.jurisdiction)

    def overlaps(self, jurisdiction: Iterable[str]) -> bool:
        """Whether some area of `jurisdiction` and this account's overlap."""
        return any(
            codes.covers(mine, theirs) or codes.covers(theirs, mine)
            for mine in self.jurisdiction
            for theirs in jurisdiction
        )


def accounts_path(settings: Settings) -> Path:
    return settings.console.accounts_file or settings.config_dir / ACCOUNTS_FILE


def load_accounts(
    path: Path, registry: Registry | None = None, directory: Directory | None = None
) -> dict[str, Account]:
    """The accounts of a file (none if it does not exist); raise ConfigError listing
    every problem, each with its account and key."""
    name = path.name
    if not path.exists():
        return {}
    data = read_yaml(path) or {}
    rows = data.get("accounts", []) if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise ConfigError([ConfigIssue(name, "accounts", "expected a list of accounts")])
    issues: list[ConfigIssue] = []
    out: dict[str, Account] = {}
    for i, row in enumerate(rows):
        key = f"accounts[{row.get('id', i) if isinstance(row, dict) else i}]"
        try:
            account = Account.model_validate(row)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                loc = ".".join(str(p) for p in err["loc"])
                issues.append(ConfigIssue(name, f"{key}.{loc}" if loc else key, str(err["msg"])))
            continue
        except ValueError as exc:  # a division code that is not one
            issues.append(ConfigIssue(name, f"{key}.jurisdiction", str(exc)))
            continue
        if account.id in out:
            issues.append(ConfigIssue(name, key, "id is used twice"))
        issues += _account_issues(name, key, account, registry, directory)
        out[account.id] = account
    if issues:
        raise ConfigError(issues)
    return out


def _account_issues(
    file: str, key: str, account: Account, registry: Registry | None, directory: Directory | None
) -> list[ConfigIssue]:
    issues = []
    if account.has(Role.DRAFTER) and account.agency is None:
        issues.append(
            ConfigIssue(file, f"{key}.agency", "a drafter names the agency they write for")
        )
    if registry is not None and account.agency is not None:
        agency = registry.agencies.get(account.agency)
        if agency is None:
            issues.append(ConfigIssue(file, f"{key}.agency", f"unknown agency {account.agency!r}"))
        elif not all(agency.covers(c) for c in account.jurisdiction):
            issues.append(
                ConfigIssue(
                    file,
                    f"{key}.jurisdiction",
                    f"reaches beyond agency {agency.id}'s jurisdiction"
                    f" ({', '.join(agency.jurisdiction)})",
                )
            )
    if directory is not None and directory.divisions:
        for code in account.jurisdiction:
            if code not in directory.divisions:
                issues.append(
                    ConfigIssue(file, f"{key}.jurisdiction", f"{code} is not in divisions.yaml")
                )
    return issues


_HEADER = """\
# Console accounts (docs/console.md), managed by `warngate account`: passwords are scrypt
# hashes, never plain passwords. roles: drafter, approver, viewer, admin.
"""


def save_accounts(path: Path, accounts: Iterable[Account], header: str = _HEADER) -> None:
    """Write the file whole and move it into place (a reader never sees half of it)."""
    rows = [a.model_dump(mode="json", exclude_defaults=True) for a in accounts]
    for row, account in zip(rows, accounts, strict=False):
        row["roles"] = [r.value for r in account.roles]
    body = yaml.safe_dump({"accounts": rows}, allow_unicode=True, sort_keys=False, width=100)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(header + "\n" + body, encoding="utf-8")
    os.replace(tmp, path)


class AccountBook:
    """The accounts of a running gateway, read again when the file changes (checked at
    most once a second); a file that no longer reads keeps the accounts last read."""

    def __init__(
        self,
        path: Path,
        registry: Registry | None = None,
        directory: Directory | None = None,
        *,
        strict: bool = True,
    ) -> None:
        """`strict=False`: a file that does not read at start leaves no account (logged)."""
        self.path = path
        self.registry = registry
        self.directory = directory
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        self._accounts: dict[str, Account] = {}
        self.reload(strict=strict)

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def reload(self, *, strict: bool = False) -> None:
        stamp = self._file_stamp()
        if stamp == self._stamp and self._stamp is not None:
            return
        try:
            self._accounts = load_accounts(self.path, self.registry, self.directory)
        except ConfigError as exc:
            if strict:
                raise
            log.error("%s no longer reads; keeping the accounts read before: %s", self.path, exc)
        self._stamp = stamp

    def _fresh(self) -> dict[str, Account]:
        now = time.monotonic()
        if now - self._checked >= 1.0:
            self._checked = now
            self.reload()
        return self._accounts

    def get(self, account: str) -> Account | None:
        return self._fresh().get(account)

    def all(self) -> list[Account]:
        return sorted(self._fresh().values(), key=lambda a: a.id)
