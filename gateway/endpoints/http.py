"""Endpoints: the HTTP transport's messages — long-poll answers and event frames, signed.

What the routes in `gateway.api.devices` send, as bytes: a long-poll answer is signed
whole (its `Warngate-Signature` header covers the body exactly as sent; scope
`endpoint/{id}`); an event of a stream carries its signature in a `signature:` field
beside `data:` (the data line's bytes; scope `unit/{unit}/{kind}`), which EventSource
clients that do not verify simply ignore.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.directory import Endpoint
from gateway.endpoints.signing import Signer

__all__ = ["answer", "poll_scope", "sse_frame", "stream_scope"]


def poll_scope(endpoint: Endpoint) -> str:
    return f"endpoint/{endpoint.id}"


def stream_scope(endpoint: Endpoint) -> str:
    return f"unit/{endpoint.unit}/{endpoint.kind.value}"


def answer(
    endpoint: Endpoint,
    cursor: str,
    messages: list[dict[str, Any]],
    server_time: int,
    signer: Signer,
) -> tuple[bytes, str]:
    """A long-poll answer's body and its signature line (seq: the answer's cursor)."""
    body = orjson.dumps(
        {
            "endpoint": endpoint.id,
            "unit": endpoint.unit,
            "cursor": cursor,
            "messages": messages,
            "server_time": server_time,
        }
    )
    seq = cursor if "-" in cursor else f"{cursor}-0"  # a device may send `since=123`
    return body, signer.sign(body, poll_scope(endpoint), seq, iat_ms=server_time)


def sse_frame(data: dict[str, Any], signer: Signer, scope: str, now_ms: int) -> bytes:
    """One event: `id` (the seq), `event` (the action), `signature`, `data` (one line)."""
    body = orjson.dumps(data)
    line = signer.sign(body, scope, str(data["seq"]), iat_ms=now_ms)
    return (
        f"id: {data['seq']}\nevent: {data['action']}\nsignature: {line}\ndata: ".encode()
        + body
        + b"\n\n"
    )
