"""inference.routing with plain values: stickiness, split accuracy, strategies."""

from __future__ import annotations

import pytest

from inference import routing
from inference.routing import Arm, Policy, Strategy, bucket, decide


def _arms(policy: Policy, ids: range, *, entity: bool = True) -> list[Arm]:
    return [
        decide(
            policy,
            has_challenger=True,
            entity_id=f"cust_{i}" if entity else None,
            request_id=f"req-{i}",
        ).arm
        for i in ids
    ]


def test_bucket_is_stable_and_in_unit_interval() -> None:
    assert bucket("seed", "cust_1") == bucket("seed", "cust_1")
    assert bucket("seed", "cust_1") != bucket("other", "cust_1")
    assert all(0.0 <= bucket("s", str(i)) < 1.0 for i in range(1000))


def test_ab_same_entity_gets_same_arm_for_same_seed() -> None:
    policy = Policy(Strategy.AB, 50.0, "exp-1")
    first = _arms(policy, range(500))
    # Different request ids, same entities: the entity decides, not the request.
    again = [
        decide(policy, has_challenger=True, entity_id=f"cust_{i}", request_id=f"other-{i}").arm
        for i in range(500)
    ]
    assert first == again


def test_ab_new_seed_reshuffles_entities() -> None:
    a = _arms(Policy(Strategy.AB, 50.0, "exp-1"), range(1000))
    b = _arms(Policy(Strategy.AB, 50.0, "exp-2"), range(1000))
    changed = sum(x != y for x, y in zip(a, b, strict=True))
    assert 400 < changed < 600


@pytest.mark.parametrize("percent", [10.0, 25.0, 50.0, 90.0])
def test_ab_split_within_one_percent_over_100k_ids(percent: float) -> None:
    arms = _arms(Policy(Strategy.AB, percent, "split"), range(100_000))
    share = 100.0 * arms.count(Arm.CHALLENGER) / len(arms)
    assert abs(share - percent) < 1.0


def test_canary_draws_per_request_not_per_entity() -> None:
    policy = Policy(Strategy.CANARY, 30.0, "c")
    arms = [
        decide(policy, has_challenger=True, entity_id="same", request_id=f"r{i}").arm
        for i in range(20_000)
    ]
    share = 100.0 * arms.count(Arm.CHALLENGER) / len(arms)
    assert abs(share - 30.0) < 1.5


@pytest.mark.parametrize(("percent", "expected"), [(0.0, Arm.CHAMPION), (100.0, Arm.CHALLENGER)])
def test_extremes_send_everything_one_way(percent: float, expected: Arm) -> None:
    for strategy in (Strategy.AB, Strategy.CANARY):
        assert set(_arms(Policy(strategy, percent), range(2000))) == {expected}


def test_ab_without_entity_falls_back_to_request_id() -> None:
    arms = _arms(Policy(Strategy.AB, 50.0), range(4000), entity=False)
    assert 1800 < arms.count(Arm.CHALLENGER) < 2200


def test_shadow_serves_champion_and_asks_for_shadow() -> None:
    decision = decide(Policy(Strategy.SHADOW), has_challenger=True, entity_id=None, request_id="r")
    assert decision.arm is Arm.CHAMPION
    assert decision.shadow
    assert decision.routed_by == "shadow:champion"


@pytest.mark.parametrize("strategy", list(Strategy))
def test_without_challenger_every_strategy_is_single(strategy: Strategy) -> None:
    decision = decide(Policy(strategy, 100.0), has_challenger=False, entity_id="e", request_id="r")
    assert decision.arm is Arm.CHAMPION
    assert not decision.shadow
    assert decision.routed_by == "single:champion"


@pytest.mark.parametrize("request_id", ["abc", "x" * 57, "y" * 58, "z" * 64])
def test_shadow_request_id_is_linked_distinct_and_fits_the_log(request_id: str) -> None:
    shadow = routing.shadow_request_id(request_id)

    assert shadow != request_id
    assert shadow.endswith(routing.SHADOW_ID_SUFFIX)
    assert len(shadow) <= 64
    assert shadow == routing.shadow_request_id(request_id)  # found again from the client's id


def test_long_request_ids_get_distinct_shadow_ids() -> None:
    first, second = "a" * 63 + "1", "a" * 63 + "2"

    assert routing.shadow_request_id(first) != routing.shadow_request_id(second)
