from __future__ import annotations

import pytest

from models_registry.stages import Stage, allowed_targets, is_move_allowed


@pytest.mark.parametrize(
    ("current", "target", "allowed"),
    [
        (Stage.DEV, Stage.STAGING, True),
        (Stage.STAGING, Stage.PRODUCTION, True),
        (Stage.PRODUCTION, Stage.ARCHIVED, True),
        (Stage.DEV, Stage.PRODUCTION, False),
        (Stage.ARCHIVED, Stage.PRODUCTION, False),
        (Stage.STAGING, Stage.STAGING, False),
    ],
)
def test_move_rules(current: Stage, target: Stage, allowed: bool) -> None:
    assert is_move_allowed(current, target) is allowed


def test_allowed_targets_in_lifecycle_order() -> None:
    assert allowed_targets("staging") == [Stage.DEV, Stage.PRODUCTION, Stage.ARCHIVED]
