"""Who may change the registry: the one home of the rule, for the API, the pages and admin.

The "Data scientists" group (migration 0002) holds the add and change permissions on
model versions; superusers hold every permission. Everyone else may only look.
"""

from __future__ import annotations

from typing import Any

# Created by migration 0002_data_scientists_group; its members upload and stage models.
DATA_SCIENTISTS_GROUP = "Data scientists"
REGISTER_PERMISSION = "models_registry.add_modelversion"
MOVE_PERMISSION = "models_registry.change_modelversion"


def _has(user: Any, permission: str) -> bool:
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    return bool(user.has_perm(permission))


def version_register_allowed(user: Any) -> bool:
    """Uploads: the add permission on versions (data scientists, superusers)."""
    return _has(user, REGISTER_PERMISSION)


def stage_move_allowed(user: Any) -> bool:
    """Stage and alias moves: the change permission on versions (data scientists, superusers)."""
    return _has(user, MOVE_PERMISSION)
