from __future__ import annotations

from dataclasses import dataclass

import pytest

from models_registry.stages import Stage, allowed_targets, champion_resolve, is_move_allowed


@dataclass(frozen=True)
class _Version:
    name: str
    stage: str


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


def test_champion_is_the_alias_holder_else_the_production_version() -> None:
    staging, production = _Version("2", "staging"), _Version("1", "production")

    assert champion_resolve([production, staging], alias_holder=staging) == staging
    assert champion_resolve([staging, production], alias_holder=None) == production
    assert champion_resolve([staging], alias_holder=None) is None
