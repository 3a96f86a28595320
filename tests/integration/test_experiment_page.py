"""The /experiments/ page: an experiment's status, arms, test, guards and decision, and
stop / promote for the people allowed to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from monitoring.models import ExperimentStatus
from monitoring.services import experiments as service
from tests.inference_support import onnx_classifier, register

pytestmark = pytest.mark.django_db


@pytest.fixture
def experiment(tmp_path: Path, settings: Any) -> Any:
    settings.MEDIA_ROOT = tmp_path / "media"
    champion = register("credit", onnx_classifier(tmp_path / "a.onnx"), alias="champion")
    challenger = register(
        "credit", onnx_classifier(tmp_path / "b.onnx", flip=True), stage="staging"
    )
    created = service.experiment_create(
        model=champion.model, challenger=challenger, mode="canary", canary_steps=[10, 100]
    )
    return service.experiment_start(experiment_id=created.pk)


def client_in(group: str | None, username: str = "u") -> Client:
    user = User.objects.create_user(username, password="pw-1-phoenix")
    if group:
        user.groups.add(Group.objects.get_or_create(name=group)[0])
    client = Client()
    client.force_login(user)
    return client


def test_page_shows_the_running_experiment_with_its_statistics(experiment: Any) -> None:
    service.experiment_evaluate(experiment_id=experiment.pk)

    html = client_in("Operators").get("/experiments/").content.decode()

    assert "arrive with the experiments engine" not in html
    assert f'data-experiment="{experiment.pk}" data-status="running"' in html
    assert "canary step 1 of 2 at 10%" in html
    assert 'data-verdict="insufficient_data"' in html
    assert 'data-guard="latency" data-state="insufficient_data"' in html
    assert 'data-arm="challenger"' in html
    assert "Next canary step in" in html
    assert 'id="experiment-history"' in html


def test_operator_may_stop_but_not_promote(experiment: Any) -> None:
    operator = client_in("Operators")

    html = operator.get("/experiments/").content.decode()
    refused = operator.post(f"/experiments/{experiment.pk}/promote/", {"reason": "go"})
    stopped = operator.post(f"/experiments/{experiment.pk}/stop/", {"reason": "enough data"})

    assert f"/experiments/{experiment.pk}/stop/" in html
    assert f"/experiments/{experiment.pk}/promote/" not in html
    assert refused.status_code == 403
    assert stopped.status_code == 302
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.STOPPED
    assert experiment.reason == "enough data"
    assert experiment.decided_by.username == "u"


def test_data_scientist_promotes_from_the_page(experiment: Any) -> None:
    scientist = client_in("Data scientists", "ds")

    response = scientist.post(f"/experiments/{experiment.pk}/promote/", {"reason": "ship it"})

    assert response.status_code == 302
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.PROMOTED
    experiment.challenger.refresh_from_db()
    assert experiment.challenger.stage == "production"
    again = scientist.post(f"/experiments/{experiment.pk}/promote/", follow=True)
    assert "is promoted" in again.content.decode()  # a conflict, shown as a message


def test_unknown_action_and_experiment_are_404(experiment: Any) -> None:
    scientist = client_in("Data scientists", "ds")

    assert scientist.post(f"/experiments/{experiment.pk}/explode/").status_code == 404
    assert scientist.post("/experiments/999999/stop/").status_code == 404


def test_page_actions_need_post(experiment: Any) -> None:
    assert client_in("Operators").get(f"/experiments/{experiment.pk}/stop/").status_code == 405


def test_experiment_beat_schedule_exists_after_migrate() -> None:
    from django_celery_beat.models import PeriodicTask

    task = PeriodicTask.objects.get(task="monitoring.tasks.evaluate_experiments")

    assert task.enabled
    assert (task.interval.every, task.interval.period) == (30, "seconds")
    assert task.expire_seconds == 25
