"""Who may see the operators' dashboards and who may move a model version between stages."""

from __future__ import annotations

from typing import Any

OPERATORS_GROUP = "Operators"
# Created by the registry's group migration; its members upload and stage models.
DATA_SCIENTISTS_GROUP = "Data scientists"
DASHBOARD_GROUPS = frozenset({OPERATORS_GROUP, DATA_SCIENTISTS_GROUP})


def dashboard_access_allowed(user: Any) -> bool:
    """Operators, data scientists, staff and superusers may watch the dashboards."""
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser or user.is_staff:
        return True
    return bool(user.groups.filter(name__in=DASHBOARD_GROUPS).exists())


def stage_move_allowed(user: Any) -> bool:
    """Only data scientists (and superusers) move versions between stages."""
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser:
        return True
    return bool(user.groups.filter(name=DATA_SCIENTISTS_GROUP).exists())
