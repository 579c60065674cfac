"""warngate: a public warning dissemination gateway.

CAP 1.2 alerts in; authorized, planned per village × channel × language, rendered in the
local languages, fanned out with retries, receipted, and measured against the
population-coverage targets of the emergency plans.
"""

from gateway.app import create_app
from gateway.config import Config, load_config
from gateway.settings import Settings

__all__ = ["Config", "Settings", "__version__", "create_app", "load_config"]

__version__ = "0.1.0"
