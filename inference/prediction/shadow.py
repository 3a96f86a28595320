"""Where shadow scoring runs: inline for models cheaper than a thread hop, else a
small bounded pool, so a heavy challenger never slows the champion's answers.

A full queue drops the shadow work (logged): the client's answer never waits for
the challenger, and memory stays bounded when the challenger falls behind.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

logger = logging.getLogger(__name__)

SHADOW_MAX_PENDING = 256

_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="phoenix-shadow")
_pending = 0
_lock = threading.Lock()


def shadow_run(job: Callable[[], None], *, inline: bool, label: str, request_id: str) -> None:
    """Run ``job`` (which handles its own errors) now if ``inline``, else on the pool."""
    global _pending
    if inline:
        job()
        return
    with _lock:
        if _pending >= SHADOW_MAX_PENDING:
            logger.warning("shadow queue full; %s not scored for %s", label, request_id)
            return
        _pending += 1

    def run() -> None:
        global _pending
        try:
            job()
        finally:
            with _lock:
                _pending -= 1

    _pool.submit(run)
