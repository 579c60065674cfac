"""Endpoints: the hub of village loudspeakers and display screens, by transport.

`hub` holds the unit state as devices see it (read once per unit, presented once per
device view) and the receipts and heartbeats devices send back; the HTTP routes are in
`gateway.api.devices`. The protocol is documented for device makers in
docs/endpoint-protocol.md.
"""

from __future__ import annotations

from gateway.endpoints.hub import (
    CACHE_S,
    DISPLAY,
    FLUSH_S,
    LOUDSPEAKER,
    PRESENTED_MAX,
    STOPPING_FRAME,
    TAIL_OK_S,
    EndpointHub,
    Heartbeat,
    Receipt,
    Receipts,
    cursor_key,
    present,
    visible,
)

__all__ = [
    "CACHE_S",
    "DISPLAY",
    "FLUSH_S",
    "LOUDSPEAKER",
    "PRESENTED_MAX",
    "STOPPING_FRAME",
    "TAIL_OK_S",
    "EndpointHub",
    "Heartbeat",
    "Receipt",
    "Receipts",
    "cursor_key",
    "present",
    "visible",
]
