"""Who may see the operators' dashboards and run, stop or promote experiments. Who may
move a stage is the registry's rule (``models_registry.access.stage_move_allowed``)."""

from __future__ import annotations

from typing import Any

from models_registry.access import DATA_SCIENTISTS_GROUP, stage_move_allowed

OPERATORS_GROUP = "Operators"
DASHBOARD_GROUPS = frozenset({OPERATORS_GROUP, DATA_SCIENTISTS_GROUP})


def dashboard_access_allowed(user: Any) -> bool:
    """Operators, data scientists, staff and superusers may watch the dashboards."""
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser or user.is_staff:
        return True
    return bool(user.groups.filter(name__in=DASHBOARD_GROUPS).exists())


def experiment_stop_allowed(user: Any) -> bool:
    """Operators (who steer traffic), data scientists and superusers run and stop experiments."""
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser:
        return True
    return bool(user.groups.filter(name__in=DASHBOARD_GROUPS).exists())


def experiment_promote_allowed(user: Any) -> bool:
    """Promotion is a production move: the registry's stage-move rule decides."""
    return stage_move_allowed(user)
