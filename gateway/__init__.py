"""warngate: a public warning dissemination gateway.

CAP 1.2 alerts in; authorized, planned per village × channel × language, rendered in the
local languages, fanned out with retries, receipted, and measured against the
population-coverage targets of the emergency plans.

The public surface is small: `create_app(config)`, `load_config(directory)`, and the
`Config` and `Settings` types. They are imported lazily, so that the channel adapters
can import `gateway.models` and `gateway.errors` without pulling in the whole app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Config", "Settings", "__version__", "create_app", "load_config"]

__version__ = "0.1.0"

if TYPE_CHECKING:
    from gateway.app import create_app
    from gateway.config import Config, load_config
    from gateway.settings import Settings

_LAZY = {
    "create_app": "gateway.app",
    "Config": "gateway.config",
    "load_config": "gateway.config",
    "Settings": "gateway.settings",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gateway' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
