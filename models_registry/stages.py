"""Model version stages and the moves allowed between them (no Django)."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Protocol, TypeVar


class Stage(StrEnum):
    DEV = "dev"
    STAGING = "staging"
    PRODUCTION = "production"
    ARCHIVED = "archived"


STAGE_CHOICES: list[tuple[str, str]] = [(s.value, s.value.capitalize()) for s in Stage]


# A version may move forward one step, jump to production from dev only through
# staging, be archived from anywhere, and be restored from the archive to staging.
ALLOWED_MOVES: dict[Stage, frozenset[Stage]] = {
    Stage.DEV: frozenset({Stage.STAGING, Stage.ARCHIVED}),
    Stage.STAGING: frozenset({Stage.DEV, Stage.PRODUCTION, Stage.ARCHIVED}),
    Stage.PRODUCTION: frozenset({Stage.STAGING, Stage.ARCHIVED}),
    Stage.ARCHIVED: frozenset({Stage.STAGING}),
}

# Stages whose versions may be served (aliases can also make a staging version servable).
SERVABLE_STAGES = frozenset({Stage.PRODUCTION, Stage.STAGING})


def is_move_allowed(current: Stage | str, target: Stage | str) -> bool:
    """Whether ``current -> target`` is a permitted transition (same stage is not a move)."""
    return Stage(target) in ALLOWED_MOVES[Stage(current)]


def allowed_targets(current: Stage | str) -> list[Stage]:
    """The stages a version in ``current`` may move to, in lifecycle order."""
    return [s for s in Stage if s in ALLOWED_MOVES[Stage(current)]]


class _Staged(Protocol):
    @property
    def stage(self) -> str: ...


VersionT = TypeVar("VersionT", bound=_Staged)


def champion_resolve(
    versions: Iterable[VersionT], *, alias_holder: VersionT | None
) -> VersionT | None:
    """The version that answers a model's requests: the holder of the champion alias,
    else the model's production version, else None."""
    if alias_holder is not None:
        return alias_holder
    return next((v for v in versions if v.stage == Stage.PRODUCTION), None)
