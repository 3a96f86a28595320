"""Settings entry point: ``PHOENIX_ENV=production`` selects the hardened settings.

``DJANGO_SETTINGS_MODULE=phoenix.settings.production`` (or ``.test``) may also be
named directly; ``phoenix.settings`` is the default every entry point uses.
"""

import os

if os.environ.get("PHOENIX_ENV", "").lower() == "production":
    from .production import *  # noqa: F403
else:
    from .base import *  # noqa: F403
