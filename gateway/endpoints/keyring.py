"""Endpoints: the signing keys on disk — made, listed, activated and retired by the CLI.

One directory (`endpoints.signing.keys_dir`) holds, per key id, `<kid>.key` (the private
key: JSON with raw base64url bytes, mode 600, never sent anywhere) and `<kid>.pub` (its
public half), and a file `active` naming the key that signs. Every key present is
trusted by devices (their configuration lists them all), so a rotation is: make a new
key, give devices its public key, activate it, and after the overlap retire the old one.

Private key files readable or writable by anyone but their owner fail the start, with
the key's name.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from gateway.endpoints.signing import (
    ED25519,
    KID,
    PublicKey,
    SigningKey,
    new_key,
    private_key,
    public_key,
)
from gateway.errors import ConfigError, ConfigIssue
from gateway.settings import Settings

__all__ = [
    "KeyInfo",
    "KeyRing",
    "activate",
    "device_keys",
    "generate",
    "keys_dir",
    "listing",
    "retire",
    "trusted_keys",
]

log = logging.getLogger("warngate.endpoints.keys")
ACTIVE = "active"
SETTING = "endpoints.signing.keys_dir"


def keys_dir(settings: Settings) -> Path:
    """`endpoints.signing.keys_dir`, relative to the configuration; `keys` in data_dir."""
    found = settings.endpoints.signing.keys_dir
    if found is None:
        return settings.data_dir / "keys"
    return found if found.is_absolute() else settings.config_dir / found


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class KeyInfo:
    """A key as `warngate keys list` shows it and device configurations carry it."""

    kid: str
    alg: str
    created: str
    public_key: str  # base64url, no padding: Ed25519 32 bytes; SM2 04 || X || Y
    active: bool
    private: bool  # this gateway holds the private half

    def device_entry(self) -> dict[str, str]:
        return {"kid": self.kid, "alg": self.alg, "public_key": self.public_key}


def _new_kid(alg: str) -> str:
    day = datetime.now(UTC).strftime("%Y%m%d")
    return f"wg-{'sm2' if alg != ED25519 else 'ed'}-{day}-{secrets.token_hex(3)}"


def generate(directory: Path, alg: str = ED25519, *, activate_it: bool = False) -> str:
    """Make a key; it signs at once only if it is the first, or `activate_it`."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    kid = _new_kid(alg)
    key = new_key(kid, alg)
    created = datetime.now(UTC).isoformat(timespec="seconds")
    public = {"kid": kid, "alg": alg, "created": created, "public_key": _b64(key.public().raw())}
    private = {**public, "private_key": _b64(key.private_raw())}
    path = directory / f"{kid}.key"
    # Created 600 from the start: the secret is never on disk with wider rights.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(orjson.dumps(private, option=orjson.OPT_INDENT_2))
    (directory / f"{kid}.pub").write_bytes(orjson.dumps(public, option=orjson.OPT_INDENT_2))
    if activate_it or not (directory / ACTIVE).exists():
        activate(directory, kid)
    return kid


def activate(directory: Path, kid: str) -> None:
    if not (directory / f"{kid}.key").exists():
        raise ConfigError([ConfigIssue(str(directory), SETTING, f"no private key {kid!r}")])
    (directory / ACTIVE).write_text(kid + "\n")


def retire(directory: Path, kid: str) -> None:
    """Remove a key: nothing is signed with it, devices given a new configuration stop
    trusting it. The active key cannot be retired."""
    if _active(directory) == kid:
        raise ConfigError(
            [ConfigIssue(str(directory), SETTING, f"{kid} is active: activate another first")]
        )
    found = False
    for suffix in (".key", ".pub"):
        path = directory / f"{kid}{suffix}"
        if path.exists():
            path.unlink()
            found = True
    if not found:
        raise ConfigError([ConfigIssue(str(directory), SETTING, f"no key {kid!r}")])


def _active(directory: Path) -> str | None:
    try:
        return (directory / ACTIVE).read_text().strip() or None
    except FileNotFoundError:
        return None


def _read(path: Path) -> dict[str, Any]:
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ConfigError([ConfigIssue(str(path), SETTING, f"cannot read key: {exc}")]) from None
    if not isinstance(data, dict) or not KID.fullmatch(str(data.get("kid", ""))):
        raise ConfigError([ConfigIssue(str(path), SETTING, "not a warngate key file")])
    return data


def listing(directory: Path) -> list[KeyInfo]:
    """Every key of the directory, oldest first."""
    active = _active(directory)
    out = []
    for path in sorted(directory.glob("*.pub")) if directory.is_dir() else []:
        data = _read(path)
        kid = str(data["kid"])
        out.append(
            KeyInfo(
                kid, str(data["alg"]), str(data.get("created", "")), str(data["public_key"]),
                kid == active, (directory / f"{kid}.key").exists(),
            )
        )  # fmt: skip
    return sorted(out, key=lambda k: (k.created, k.kid))


def check_permissions(directory: Path) -> None:
    """Fail if a private key file is open to anyone but its owner (with its name)."""
    issues = []
    for path in sorted(directory.glob("*.key")) if directory.is_dir() else []:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            issues.append(
                ConfigIssue(
                    str(path),
                    f"{SETTING} key {path.stem}",
                    f"the private key is open to others (mode {mode:o}): chmod 600 {path}",
                )
            )
    if issues:
        raise ConfigError(issues)


@dataclass(frozen=True)
class KeyRing:
    """The keys a gateway process signs with (the active one) and publishes (all)."""

    directory: Path
    active: SigningKey
    keys: tuple[KeyInfo, ...]

    @classmethod
    def of(cls, settings: Settings) -> KeyRing:
        s = settings.endpoints.signing
        return cls.load(keys_dir(settings), generate_missing=s.generate_missing, alg=s.algorithm)

    @classmethod
    def load(cls, directory: Path, *, generate_missing: bool, alg: str) -> KeyRing:
        check_permissions(directory)
        kid = _active(directory)
        if kid is None:
            if not generate_missing:
                raise ConfigError(
                    [
                        ConfigIssue(
                            str(directory), SETTING,
                            "no signing key: make one with `warngate keys generate`",
                        )
                    ]
                )  # fmt: skip
            kid = generate(directory, alg)
            log.warning(
                "made signing key %s in %s: devices must be given its public key"
                " (`warngate keys list`, `warngate device-config`)", kid, directory,
            )  # fmt: skip
        path = directory / f"{kid}.key"
        if not path.exists():
            raise ConfigError([ConfigIssue(str(path), SETTING, f"active key {kid!r} is missing")])
        data = _read(path)
        try:
            key = private_key(
                kid, str(data["alg"]), _unb64(str(data["private_key"])),
                _unb64(str(data["public_key"])),
            )  # fmt: skip
        except (KeyError, ValueError) as exc:
            raise ConfigError([ConfigIssue(str(path), SETTING, f"key {kid}: {exc}")]) from None
        return cls(directory, key, tuple(listing(directory)))

    def trusted(self) -> dict[str, PublicKey]:
        """The public keys devices are to trust, by key id."""
        return trusted_keys([k.device_entry() for k in self.keys])


def device_keys(settings: Settings) -> dict[str, PublicKey]:
    """The public keys a device configured for this gateway trusts (simulator, CLI)."""
    return trusted_keys([k.device_entry() for k in listing(keys_dir(settings))])


def trusted_keys(entries: list[dict[str, str]]) -> dict[str, PublicKey]:
    """Public keys as a device configuration lists them (`KeyInfo.device_entry`)."""
    return {e["kid"]: public_key(e["kid"], e["alg"], _unb64(e["public_key"])) for e in entries}
