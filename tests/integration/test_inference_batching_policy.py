"""The per-model micro-batching policy: stored, edited in admin, carried into the plan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.db import IntegrityError, transaction

from inference.batching import BatchingPolicy
from inference.models import RoutingPolicy
from inference.selectors import serving_plans_read
from tests.inference_support import onnx_classifier, register

ADD_URL = "/admin/inference/routingpolicy/add/"


@pytest.fixture
def champion(db: None, tmp_path: Path) -> Any:
    return register("credit", onnx_classifier(tmp_path / "a.onnx"))


def _routing_form(model: Any) -> dict[str, Any]:
    return {"model": model.model.pk, "strategy": "single", "challenger_percent": "0", "seed": "s"}


def test_model_without_a_policy_is_served_without_batching(champion: Any) -> None:
    assert serving_plans_read()["credit"].batching is None


def test_policy_with_batching_off_is_served_without_batching(champion: Any) -> None:
    RoutingPolicy.objects.create(
        model=champion.model, micro_batch_max_rows=8, micro_batch_max_delay_ms=2.0
    )

    assert serving_plans_read()["credit"].batching is None


def test_policy_with_batching_on_reaches_the_serving_plan(champion: Any) -> None:
    RoutingPolicy.objects.create(
        model=champion.model,
        strategy="canary",
        challenger_percent=10.0,
        micro_batching=True,
        micro_batch_max_rows=64,
        micro_batch_max_delay_ms=0.5,
    )

    plan = serving_plans_read()["credit"]

    assert plan.batching == BatchingPolicy(max_rows=64, max_delay_ms=0.5)
    assert plan.batching.max_delay_s == pytest.approx(0.0005)
    assert plan.policy.challenger_percent == 10.0  # the routing part is read as before


def test_admin_turns_batching_on_with_its_limits(admin_client: Any, champion: Any) -> None:
    page = admin_client.get(ADD_URL).content.decode()
    assert "Micro-batching" in page
    assert 'name="micro_batch_max_delay_ms"' in page

    response = admin_client.post(
        ADD_URL,
        {
            **_routing_form(champion),
            "micro_batching": "on",
            "micro_batch_max_rows": "16",
            "micro_batch_max_delay_ms": "2.5",
        },
    )

    assert response.status_code == 302, response.content
    assert serving_plans_read()["credit"].batching == BatchingPolicy(max_rows=16, max_delay_ms=2.5)


@pytest.mark.parametrize("blank", [False, True])
def test_admin_post_without_batching_numbers_keeps_the_defaults(
    admin_client: Any, champion: Any, blank: bool
) -> None:
    form = _routing_form(champion)
    if blank:
        form |= {"micro_batch_max_rows": "", "micro_batch_max_delay_ms": ""}

    response = admin_client.post(ADD_URL, form)

    assert response.status_code == 302, response.content
    stored = RoutingPolicy.objects.get()
    assert (stored.micro_batching, stored.micro_batch_max_rows) == (False, 32)
    assert stored.micro_batch_max_delay_ms == 1.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("micro_batch_max_rows", "0"),
        ("micro_batch_max_rows", "1025"),
        ("micro_batch_max_delay_ms", "0.01"),
        ("micro_batch_max_delay_ms", "51"),
    ],
)
def test_admin_refuses_batching_limits_outside_the_bounds(
    admin_client: Any, champion: Any, field: str, value: str
) -> None:
    response = admin_client.post(
        ADD_URL, {**_routing_form(champion), "micro_batching": "on", field: value}
    )

    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert not RoutingPolicy.objects.exists()


@pytest.mark.parametrize(
    "limits",
    [
        {"micro_batch_max_rows": 0},
        {"micro_batch_max_rows": 2048},
        {"micro_batch_max_delay_ms": 0.0},
        {"micro_batch_max_delay_ms": 100.0},
    ],
)
def test_database_refuses_batching_limits_outside_the_bounds(
    champion: Any, limits: dict[str, Any]
) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        RoutingPolicy.objects.create(model=champion.model, micro_batching=True, **limits)
