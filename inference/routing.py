"""Which version serves a request: single, A/B, canary or shadow (no Django).

A/B is sticky: the arm comes from a SHA-256 of the policy's seed and the entity
id, never from the built-in ``hash()`` (salted per process, so two API workers
would disagree). Canary hashes the request id instead, so each request is an
independent draw with the configured probability.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum

# 2**64: the hash's first eight bytes as an integer divided by this is uniform in [0, 1).
_BUCKETS = float(1 << 64)


class Strategy(StrEnum):
    SINGLE = "single"
    AB = "ab"
    CANARY = "canary"
    SHADOW = "shadow"


class Arm(StrEnum):
    CHAMPION = "champion"
    CHALLENGER = "challenger"


# routed_by of the challenger's logged answer when it only shadows the champion.
SHADOW_ROUTE = "shadow"
# routed_by when the client pinned a version: no policy was applied.
PINNED_ROUTE = "pinned"
# The challenger's shadow rows get the client's request id with this suffix: their own
# id, linked to the client's (feedback for the client's id labels both arms).
SHADOW_ID_SUFFIX = ":shadow"
_REQUEST_ID_MAX = 64  # PredictionLog.request_id


@dataclass(frozen=True)
class Policy:
    strategy: Strategy = Strategy.SINGLE
    challenger_percent: float = 0.0
    seed: str = "phoenix"


@dataclass(frozen=True)
class Decision:
    """The arm whose answer the client gets, and whether the challenger shadows it."""

    arm: Arm
    routed_by: str
    shadow: bool = False


def bucket(seed: str, key: str) -> float:
    """A stable, uniform number in [0, 1) for ``key`` under ``seed``."""
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _BUCKETS


def shadow_request_id(request_id: str) -> str:
    """The request id of the challenger's shadow rows for the client's ``request_id``.

    Deterministic, so feedback finds them from the client's id alone. An id too long
    for the suffix keeps a prefix and a SHA-256 of the whole id instead.
    """
    if len(request_id) + len(SHADOW_ID_SUFFIX) <= _REQUEST_ID_MAX:
        return request_id + SHADOW_ID_SUFFIX
    digest = hashlib.sha256(request_id.encode()).hexdigest()[:16]
    keep = _REQUEST_ID_MAX - len(SHADOW_ID_SUFFIX) - len(digest) - 1
    return f"{request_id[:keep]}.{digest}{SHADOW_ID_SUFFIX}"


def decide(
    policy: Policy, *, has_challenger: bool, entity_id: str | None, request_id: str
) -> Decision:
    """Route one request.

    Without a challenger every strategy serves the champion as ``single``. A/B
    without an entity id cannot be sticky and falls back to the request id.
    """
    if not has_challenger or policy.strategy is Strategy.SINGLE:
        return Decision(Arm.CHAMPION, f"{Strategy.SINGLE}:{Arm.CHAMPION}")
    if policy.strategy is Strategy.SHADOW:
        return Decision(Arm.CHAMPION, f"{Strategy.SHADOW}:{Arm.CHAMPION}", shadow=True)
    share = min(max(policy.challenger_percent, 0.0), 100.0) / 100.0
    if policy.strategy is Strategy.AB:
        draw = bucket(policy.seed, entity_id if entity_id is not None else request_id)
    else:
        draw = bucket(policy.seed, request_id)
    arm = Arm.CHALLENGER if draw < share else Arm.CHAMPION
    return Decision(arm, f"{policy.strategy}:{arm}")
