"""Ingest: who is posting (API keys) and what they may warn about (hazard, area, status).

API keys are stored as `sha256:<hex>` of the key. Keys are long random tokens, so a
plain SHA-256 is the right tool (a slow password hash buys nothing for 256-bit secrets
and would cost every request); `warngate hash-key` makes new keys and their hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway import codes
from gateway.errors import Unauthorized
from gateway.models import Status

__all__ = ["Agency", "Operator", "Principal", "Registry", "hash_key", "new_key"]

_HASH_PREFIX = "sha256:"
# RFC 6750's b64token: what a bearer key may be made of. Anything else (a non-ASCII
# byte, a control character, a space inside) is refused before it is hashed.
_BEARER_KEY = re.compile(r"[A-Za-z0-9._~+/-]{1,512}=*")


def hash_key(key: str) -> str:
    return _HASH_PREFIX + hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "wg_" + secrets.token_urlsafe(32)


def _check_hashes(values: list[str]) -> list[str]:
    for value in values:
        hexpart = value.removeprefix(_HASH_PREFIX)
        if not value.startswith(_HASH_PREFIX) or len(hexpart) != 64:
            raise ValueError(
                "api_keys hold hashes ('sha256:' + 64 hex digits, see `warngate hash-key`),"
                " never plain keys"
            )
        int(hexpart, 16)
    return values


def _normalize_codes(values: list[str]) -> list[str]:
    return [codes.normalize(str(v)) for v in values]


class _Principal(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{1,63}$")
    name: dict[str, str] | str
    api_keys: list[str] = Field(min_length=1)
    jurisdiction: list[str] = Field(min_length=1)

    _hashes = field_validator("api_keys")(_check_hashes)
    _codes = field_validator("jurisdiction", mode="before")(_normalize_codes)

    def display_name(self, lang: str = "zh") -> str:
        if isinstance(self.name, str):
            return self.name
        return self.name.get(lang) or next(iter(self.name.values()))

    def covers(self, code: str) -> bool:
        return any(codes.covers(j, code) for j in self.jurisdiction)


class Agency(_Principal):
    """An issuing agency: may post alerts."""

    senders: list[str] = Field(min_length=1)
    # Hazard catalogue ids this agency may warn about; "*" for any.
    hazards: list[str] = Field(min_length=1)
    statuses: list[Status] = [Status.ACTUAL]
    # Its API posts are released without a second person even where the policy asks
    # for approval (a national feed, a bureau's own system); audited as auto-release.
    auto_release: bool = False

    def may_warn(self, hazard: str) -> bool:
        return "*" in self.hazards or hazard in self.hazards


class Operator(_Principal):
    """A duty desk: may read alerts, deliveries and coverage within its jurisdiction."""


Principal = Agency | Operator


class Registry:
    """Everyone who may call the API, found by the hash of their key."""

    def __init__(self, agencies: Iterable[Agency], operators: Iterable[Operator] = ()) -> None:
        self.agencies = {a.id: a for a in agencies}
        self.operators = {o.id: o for o in operators}
        self._by_hash: dict[str, Principal] = {}
        principals: list[Principal] = [*self.agencies.values(), *self.operators.values()]
        for principal in principals:
            for digest in principal.api_keys:
                self._by_hash[digest] = principal

    def authenticate(self, authorization: str | None) -> Principal:
        """The agency or operator holding the bearer key; raises `Unauthorized`."""
        if not authorization:
            raise Unauthorized("send 'Authorization: Bearer <key>'", code="missing-key")
        scheme, _, key = authorization.partition(" ")
        key = key.strip(" \t")
        if scheme.lower() != "bearer" or not _BEARER_KEY.fullmatch(key):
            raise Unauthorized(
                "the Authorization header must be 'Bearer <key>', the key made of ASCII"
                " letters, digits and -._~+/ (at most 512)",
                code="bad-key",
            )
        digest = hash_key(key)
        found = self._by_hash.get(digest)
        # Compare again in constant time so a lookup hit and miss cost alike.
        if found is None or not any(hmac.compare_digest(digest, d) for d in found.api_keys):
            raise Unauthorized("this key is not known", code="unknown-key")
        return found

    def agency_for_sender(self, sender: str) -> Agency | None:
        for agency in self.agencies.values():
            if sender in agency.senders:
                return agency
        return None
