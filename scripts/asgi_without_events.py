"""``phoenix.asgi`` with prediction event logging switched off.

For the "off" runs of ``scripts/bench_events_http.py`` only: the predict service
builds no event record and publishes nothing. Never serve production with it.
"""

from __future__ import annotations

import importlib
from typing import Any

from phoenix.asgi import application

# Imported after phoenix.asgi, which sets Django up.
_services: Any = importlib.import_module("inference.prediction.service")
_services._publish = lambda record: None
_services._record = lambda **kwargs: None

__all__ = ["application"]
