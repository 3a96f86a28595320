"""Test settings: the base settings made faster. Services follow the same env vars."""

from __future__ import annotations

import tempfile
from pathlib import Path

from .base import *  # noqa: F403
from .base import DATABASES, env

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Each test run keeps its uploads and journal apart from the developer's var/.
DATA_DIR = Path(tempfile.mkdtemp(prefix="phoenix-test-"))
MEDIA_ROOT = DATA_DIR / "media"
PHOENIX_EVENT_JOURNAL_DIR = DATA_DIR / "journal"
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=True)
CELERY_TASK_EAGER_PROPAGATES = True
# No background writer of API keys' last use: tests flush it when they look at it.
PHOENIX_API_KEY_USAGE_FLUSH_S = 0.0
# The edge's throttles would carry counts from one test to the next through the one
# phoenix.asgi application a test process imports (the fuzz test alone answers hundreds
# of 401s): off here. tests/integration/test_http_edge.py builds edges with its own.
PHOENIX_THROTTLE_IP_RATE = env.str("PHOENIX_THROTTLE_IP_RATE", default="0")
PHOENIX_THROTTLE_KEY_RATE = env.str("PHOENIX_THROTTLE_KEY_RATE", default="0")
PHOENIX_THROTTLE_AUTH_FAILURE_RATE = env.str("PHOENIX_THROTTLE_AUTH_FAILURE_RATE", default="0")

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not Django's shared in-memory test database. Live-server threads then open
    # connections of their own (WAL, busy timeout, as in production) instead of sharing
    # the test's: a lock error in a server thread cannot leave the test's connection in
    # a broken transaction (one failure poisoning the tests after it), and the shared
    # cache's "database table is locked", which no busy timeout waits out, cannot occur.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}
