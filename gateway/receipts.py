"""Receipts: one delivery state machine for every channel, and provider status tables.

    planned → queued → sent → delivered | played | displayed → acknowledged
                 ╲       ╲        (opened / relayed)
                  failed, expired, cancelled   (final)

A state only moves forward: a late `sent` never overwrites `delivered`, a repeated
receipt changes nothing, and a final state is never left. Final states can only be
entered before the delivery was confirmed (a message that was delivered stays
delivered even if a provider reports a failure afterwards), and `cancelled` (the
gateway's word for "never sent, the alert ended") only before it was sent: a delivery
the provider took stays `sent`, and its delivery receipt still counts.

The same rules run inside Redis (a Lua script in `store`, generated from the tables
here) so that concurrent receipts for one delivery cannot race.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

__all__ = [
    "CONFIRMED",
    "FINAL",
    "RANK",
    "DeliveryState",
    "ProviderStatusMap",
    "advance",
    "is_confirmed",
]


class DeliveryState(StrEnum):
    PLANNED = "planned"
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"  # sms, app, messenger (received by the messenger)
    PLAYED = "played"  # loudspeaker
    DISPLAYED = "displayed"  # screen
    ACKNOWLEDGED = "acknowledged"  # app opened, messenger relayed to households
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


S = DeliveryState
RANK: Mapping[DeliveryState, int] = {
    S.PLANNED: 0,
    S.QUEUED: 1,
    S.SENT: 2,
    S.DELIVERED: 3,
    S.PLAYED: 3,
    S.DISPLAYED: 3,
    S.ACKNOWLEDGED: 4,
    S.FAILED: 9,
    S.EXPIRED: 9,
    S.CANCELLED: 9,
}
FINAL = frozenset({S.FAILED, S.EXPIRED, S.CANCELLED})
# Confirmed reach: what coverage counts by default.
CONFIRMED = frozenset({S.DELIVERED, S.PLAYED, S.DISPLAYED, S.ACKNOWLEDGED})


def is_confirmed(state: DeliveryState) -> bool:
    return state in CONFIRMED


def advance(current: DeliveryState | None, new: DeliveryState) -> DeliveryState | None:
    """The state after receiving `new` while in `current`, or None if nothing changes."""
    if current is None:
        return new
    if current in FINAL or current == new:
        return None
    if new is S.CANCELLED:
        return new if RANK[current] < RANK[S.SENT] else None
    if new in FINAL:
        return new if RANK[current] < RANK[S.DELIVERED] else None
    return new if RANK[new] > RANK[current] else None


class ProviderStatusMap:
    """One provider's status words → receipt states (case-insensitive).

    The defaults cover the common SMPP/HTTP gateway words; a provider's `statuses`
    table in gateway.yaml adds to or overrides them.
    """

    DEFAULTS: Mapping[str, DeliveryState] = {
        "accepted": S.SENT,
        "enroute": S.SENT,
        "sent": S.SENT,
        "submitted": S.SENT,
        "delivrd": S.DELIVERED,
        "delivered": S.DELIVERED,
        "read": S.ACKNOWLEDGED,
        "opened": S.ACKNOWLEDGED,
        "undeliv": S.FAILED,
        "undelivered": S.FAILED,
        "rejectd": S.FAILED,
        "rejected": S.FAILED,
        "failed": S.FAILED,
        "expired": S.EXPIRED,
        "deleted": S.FAILED,
    }

    def __init__(self, overrides: Mapping[str, str] | None = None) -> None:
        table = dict(self.DEFAULTS)
        for word, state in (overrides or {}).items():
            table[word.casefold()] = DeliveryState(state)
        self.table = table

    def __call__(self, status: str) -> DeliveryState | None:
        return self.table.get(status.strip().casefold())
