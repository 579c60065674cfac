"""Endpoints: signatures on every message to a device, on every transport.

A message — a long-poll answer, an event of a stream, an MQTT payload — is sent as its
exact bytes with one *signature line* beside it (the `Warngate-Signature` header, the
`signature:` field of the event, the MQTT user property `signature`):

    wg1;alg=ed25519;kid=K;scope=S;seq=Q;iat=MS;exp=MS;sig=BASE64URL

The signature covers the *canonical bytes*: the line's fields before `sig`, one per
line, an empty line, then the payload bytes exactly as sent (docs/endpoint-protocol.md
gives them byte by byte, with test vectors made by `example_vectors`):

    warngate-signature-v1\\n alg=…\\n kid=…\\n scope=…\\n seq=…\\n iat=…\\n exp=…\\n \\n payload

Ed25519 (RFC 8032, `cryptography`) by default; SM2 with SM3 (GB/T 32918, GM/T 0009
default signer id, DER-encoded r and s) with `gmssl-pyx`, a binding of GmSSL, where the
emergency-broadcast signature standard asks for it. Both produce signatures that
OpenSSL 3 verifies. A device refuses what it cannot verify, what is not for it
(`scope`), what has expired, and an older `seq` than it has accepted on that scope.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "ALGORITHMS",
    "HEADER",
    "PublicKey",
    "Refused",
    "SignatureFields",
    "Signer",
    "SigningKey",
    "Verifier",
    "canonical",
    "new_key",
    "parse_line",
    "public_key",
    "seq_order",
]

VERSION = "wg1"
HEADER = "Warngate-Signature"  # the HTTP header, the SSE field and the MQTT user property
PROPERTY = "signature"
PREAMBLE = b"warngate-signature-v1\n"
ED25519, SM2 = "ed25519", "sm2-sm3"
ALGORITHMS = (ED25519, SM2)
SM2_SIGNER_ID = b"1234567812345678"  # GM/T 0009's default user id, as OpenSSL and GmSSL
_FIELDS = ("alg", "kid", "scope", "seq", "iat", "exp")
# What each field may hold: none can contain ';', '=' or a line break, so the line
# splits without escapes and the canonical bytes cannot be ambiguous.
_VALUE = {
    "alg": re.compile(r"ed25519|sm2-sm3"),
    "kid": re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"),
    "scope": re.compile(r"[A-Za-z0-9._/+-]{1,200}"),
    "seq": re.compile(r"[0-9]{1,20}-[0-9]{1,20}"),
    "iat": re.compile(r"[0-9]{1,15}"),
    "exp": re.compile(r"[0-9]{1,15}"),
    "sig": re.compile(r"[A-Za-z0-9_-]{1,200}"),
}
KID = _VALUE["kid"]


class Refused(Exception):
    """A message a device must not act on; `reason` is a stable code (reported)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class SignatureFields:
    alg: str
    kid: str
    scope: str
    seq: str
    iat: int
    exp: int


def seq_order(seq: str) -> tuple[int, int]:
    """A seq (`ms-n`) as the pair it is compared by: milliseconds, then n."""
    ms, _, n = seq.partition("-")
    return int(ms), int(n or 0)


def canonical(fields: SignatureFields, payload: bytes) -> bytes:
    """The bytes a signature covers (docs/endpoint-protocol.md, "Signatures")."""
    head = "".join(f"{k}={getattr(fields, k)}\n" for k in _FIELDS)
    return PREAMBLE + head.encode("ascii") + b"\n" + payload


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _line(fields: SignatureFields, signature: bytes) -> str:
    parts = [VERSION, *(f"{k}={getattr(fields, k)}" for k in _FIELDS), f"sig={_b64(signature)}"]
    return ";".join(parts)


def parse_line(line: str) -> tuple[SignatureFields, bytes]:
    """The fields and signature of a signature line; Refused("malformed") if it is not one."""
    parts = line.strip().split(";")
    if len(parts) != len(_FIELDS) + 2 or parts[0] != VERSION:
        raise Refused("malformed", "not a wg1 signature line")
    values: dict[str, str] = {}
    for name, part in zip((*_FIELDS, "sig"), parts[1:], strict=True):
        key, eq, value = part.partition("=")
        if key != name or not eq or not _VALUE[name].fullmatch(value):
            raise Refused("malformed", f"field {name!r} missing or invalid")
        values[name] = value
    fields = SignatureFields(
        values["alg"], values["kid"], values["scope"], values["seq"],
        int(values["iat"]), int(values["exp"]),
    )  # fmt: skip
    return fields, _unb64(values["sig"])


# -- keys --------------------------------------------------------------------------------


class PublicKey(Protocol):
    @property
    def alg(self) -> str: ...

    @property
    def kid(self) -> str: ...

    def raw(self) -> bytes: ...

    def verify(self, signature: bytes, data: bytes) -> bool: ...


class SigningKey(Protocol):
    @property
    def alg(self) -> str: ...

    @property
    def kid(self) -> str: ...

    def public(self) -> PublicKey: ...

    def private_raw(self) -> bytes: ...

    def sign(self, data: bytes) -> bytes: ...


@dataclass(frozen=True)
class _EdPublic:
    kid: str
    key: Ed25519PublicKey
    alg: str = ED25519

    def raw(self) -> bytes:
        from cryptography.hazmat.primitives import serialization as s

        return self.key.public_bytes(s.Encoding.Raw, s.PublicFormat.Raw)

    def verify(self, signature: bytes, data: bytes) -> bool:
        try:
            self.key.verify(signature, data)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class _EdPrivate:
    kid: str
    key: Ed25519PrivateKey
    alg: str = ED25519

    def public(self) -> PublicKey:
        return _EdPublic(self.kid, self.key.public_key())

    def private_raw(self) -> bytes:
        from cryptography.hazmat.primitives import serialization as s

        return self.key.private_bytes(s.Encoding.Raw, s.PrivateFormat.Raw, s.NoEncryption())

    def sign(self, data: bytes) -> bytes:
        return self.key.sign(data)


def _gmssl() -> Any:
    """gmssl-pyx, imported when SM2 is used (`pip install warngate[sm2]`)."""
    try:
        import gmssl_pyx
    except ImportError as exc:  # pragma: no cover - the dev install has it
        raise RuntimeError("SM2 signatures need gmssl-pyx: pip install 'warngate[sm2]'") from exc
    return gmssl_pyx


@dataclass(frozen=True)
class _SmPublic:
    kid: str
    point: bytes  # X || Y, 64 bytes (GmSSL's form; published as 04 || X || Y)
    alg: str = SM2

    def raw(self) -> bytes:
        return b"\x04" + self.point

    def verify(self, signature: bytes, data: bytes) -> bool:
        try:
            return bool(_gmssl().sm2_verify(self.point, data, signature, SM2_SIGNER_ID))
        except Exception:  # a malformed DER signature raises
            return False


@dataclass(frozen=True)
class _SmPrivate:
    kid: str
    secret: bytes  # 32 bytes
    point: bytes
    alg: str = SM2

    def public(self) -> PublicKey:
        return _SmPublic(self.kid, self.point)

    def private_raw(self) -> bytes:
        return self.secret

    def sign(self, data: bytes) -> bytes:
        signature: bytes = _gmssl().sm2_sign(self.secret, self.point, data, SM2_SIGNER_ID)
        return signature


def new_key(kid: str, alg: str = ED25519) -> SigningKey:
    """A fresh private key (from the operating system's random source)."""
    if alg == ED25519:
        return _EdPrivate(kid, Ed25519PrivateKey.generate())
    if alg == SM2:
        point, secret = _gmssl().sm2_key_generate()
        return _SmPrivate(kid, bytes(secret), bytes(point))
    raise ValueError(f"unknown algorithm {alg!r}; one of {', '.join(ALGORITHMS)}")


def private_key(kid: str, alg: str, secret: bytes, public: bytes) -> SigningKey:
    """A stored private key (raw bytes, as `private_raw()` and `public().raw()` gave)."""
    key: SigningKey
    if alg == ED25519:
        key = _EdPrivate(kid, Ed25519PrivateKey.from_private_bytes(secret))
    elif alg == SM2:
        key = _SmPrivate(kid, secret, _point(public))
    else:
        raise ValueError(f"unknown algorithm {alg!r}")
    if key.public().raw() != public:
        raise ValueError(f"key {kid}: the public key does not belong to the private key")
    return key


def _point(raw: bytes) -> bytes:
    if len(raw) == 65 and raw[0] == 4:
        return raw[1:]
    raise ValueError("an SM2 public key is 65 bytes: 04 || X || Y")


def public_key(kid: str, alg: str, raw: bytes) -> PublicKey:
    """A public key as devices are given it: Ed25519 32 bytes; SM2 04 || X || Y."""
    if alg == ED25519:
        if len(raw) != 32:
            raise ValueError("an Ed25519 public key is 32 bytes")
        return _EdPublic(kid, Ed25519PublicKey.from_public_bytes(raw))
    if alg == SM2:
        return _SmPublic(kid, _point(raw))
    raise ValueError(f"unknown algorithm {alg!r}")


# -- signing and verifying --------------------------------------------------------------


class Signer:
    """Signs with the active key; `validity_ms` is how long an answer or event is good."""

    def __init__(self, key: SigningKey, validity_ms: int) -> None:
        self.key = key
        self.validity_ms = validity_ms
        self.signed = 0  # messages signed (a metric reads it)

    def sign(
        self, payload: bytes, scope: str, seq: str, *, exp_ms: int | None = None,
        iat_ms: int | None = None,
    ) -> str:  # fmt: skip
        """The signature line for `payload` sent on `scope`."""
        iat = int(time.time() * 1000) if iat_ms is None else iat_ms
        exp = iat + self.validity_ms if exp_ms is None else exp_ms
        fields = SignatureFields(self.key.alg, self.key.kid, scope, seq, iat, exp)
        self.signed += 1
        return _line(fields, self.key.sign(canonical(fields, payload)))


class Verifier:
    """What a device does with each message: the trusted public keys (during a rotation,
    the old and the new one), and the highest seq accepted per scope."""

    def __init__(self, trusted: Mapping[str, PublicKey]) -> None:
        self.trusted = dict(trusted)
        self.last: dict[str, tuple[int, int]] = {}

    def verify(
        self, line: str | None, payload: bytes, scopes: set[str], now_ms: int | None = None
    ) -> SignatureFields:
        """The checked fields, or Refused with reason `unsigned`, `malformed`,
        `unknown-key`, `bad-signature`, `wrong-scope`, `expired` or `replayed`.
        Accepting records the seq: call `verify` only when you will act on it."""
        if not line:
            raise Refused("unsigned")
        fields, signature = parse_line(line)
        key = self.trusted.get(fields.kid)
        if key is None or key.alg != fields.alg:
            raise Refused("unknown-key", fields.kid)
        if not key.verify(signature, canonical(fields, payload)):
            raise Refused("bad-signature", fields.kid)
        if fields.scope not in scopes:
            raise Refused("wrong-scope", fields.scope)
        now = int(time.time() * 1000) if now_ms is None else now_ms
        if fields.exp <= now:
            raise Refused("expired", f"expired at {fields.exp}, now {now}")
        order = seq_order(fields.seq)
        if order < self.last.get(fields.scope, (-1, -1)):
            raise Refused("replayed", f"seq {fields.seq} is older than one already accepted")
        self.last[fields.scope] = order
        return fields


def example_vectors() -> list[dict[str, str]]:
    """Fixed examples for device makers (docs/endpoint-protocol.md, checked by a test):
    an Ed25519 key from a fixed seed, a payload, the canonical bytes and the line.
    Ed25519 is deterministic, so the signature is fixed too."""
    seed = bytes(range(32))
    key = _EdPrivate("example-2026", Ed25519PrivateKey.from_private_bytes(seed))
    payload = b'{"id":"abgsh3agkxn6tossegdb4rc5h","seq":"1795496517769-0","action":"play"}'
    fields = SignatureFields(ED25519, key.kid, "unit/652301001001/loudspeaker", "1795496517769-0",
                             1795496517800, 1795496817800)  # fmt: skip
    data = canonical(fields, payload)
    return [
        {
            "private_key_seed": seed.hex(),
            "public_key": _b64(key.public().raw()),
            "payload": payload.decode(),
            "canonical_hex": data.hex(),
            "line": _line(fields, key.sign(data)),
        }
    ]
