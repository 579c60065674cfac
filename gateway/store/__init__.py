"""Storage: the only package that knows Redis key names (see `keys`), shapes and scripts."""

from gateway.store.alerts import AcceptOutcome, AlertStore, alert_id
from gateway.store.base import Retention, now_ms
from gateway.store.console import ConsoleStore
from gateway.store.coverage import CoverageStore
from gateway.store.deliveries import (
    Batch,
    BatchRecipient,
    BatchStart,
    DeliveryStore,
    ReceiptUpdate,
)
from gateway.store.keys import Keys
from gateway.store.units import Publish, UnitEntry, UnitStore, seq_key

__all__ = [
    "AcceptOutcome",
    "Batch",
    "BatchRecipient",
    "BatchStart",
    "Keys",
    "Publish",
    "ReceiptUpdate",
    "Retention",
    "Store",
    "UnitEntry",
    "alert_id",
    "now_ms",
    "seq_key",
]


class Store(AlertStore, DeliveryStore, UnitStore, CoverageStore, ConsoleStore):
    """Typed access to everything warngate keeps in Redis."""
