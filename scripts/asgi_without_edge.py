"""``phoenix.asgi`` without its ASGI edge (no limits, no throttles).

For the "bare" runs of ``scripts/bench_edge.py --http`` only. Never serve production
with it: nothing limits bodies or headers and nothing throttles.
"""

from __future__ import annotations

from phoenix.asgi import data_plane as application

__all__ = ["application"]
