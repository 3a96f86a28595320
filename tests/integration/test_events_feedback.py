"""POST /api/v1/predictions/{request_id}/feedback: ground truth onto logged predictions."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from inference import events as events_module
from inference.auth import api_key_cache_clear, key_hash
from inference.event_sinks import Item
from inference.events import EventPublisher, PublisherConfig
from inference.models import ApiKey
from inference.request_ids import request_id_new
from models_registry.models import RegisteredModel
from monitoring.models import PendingFeedback, PredictionLog
from monitoring.services.prediction_log import prediction_log_write_events
from tests.inference_support import embedded_publisher_installed
from tests.registry_support import LABELLERS, make_member

pytestmark = pytest.mark.django_db


def make_events(
    n: int, *, model: str = "credit", request_id: str | None = None
) -> list[dict[str, Any]]:
    """Events of one request; by default under an id this server issued (signed)."""
    request_id = request_id or request_id_new()
    return [
        {
            "event_id": str(uuid.uuid4()),
            "request_id": request_id,
            "row_index": i,
            "model": model,
            "version": "1",
            "routed_by": "single",
            "features": {"x1": float(i)},
            "prediction": i % 2,
            "probabilities": None,
            "confidence": None,
            "latency_ms": 0.25,
            "created_at": datetime.now(UTC).isoformat(),
        }
        for i in range(n)
    ]


def url(request_id: str) -> str:
    return f"/api/v1/predictions/{request_id}/feedback"


@pytest.fixture
def staff_client() -> Client:
    """A signed-in person allowed to label (the "Labellers" group)."""
    user = make_member(get_user_model(), "ops", LABELLERS, is_staff=True)
    client = Client()
    client.force_login(user)
    return client


def _post(client: Client, request_id: str, body: Any, **headers: str) -> Any:
    return client.post(url(request_id), body, content_type="application/json", headers=headers)


def test_feedback_is_stored_on_the_single_row(staff_client: Client) -> None:
    events = make_events(1)
    prediction_log_write_events(events=events)
    request_id = events[0]["request_id"]

    response = _post(staff_client, request_id, {"actual": 1})

    assert response.status_code == 200
    assert response.json() == {
        "request_id": request_id,
        "status": "recorded",
        "rows": 1,
        "changed": 1,
    }
    row = PredictionLog.objects.get(request_id=request_id)
    assert row.actual == 1
    assert row.actual_at is not None


def test_repeating_feedback_changes_nothing(staff_client: Client) -> None:
    events = make_events(1)
    prediction_log_write_events(events=events)
    request_id = events[0]["request_id"]
    _post(staff_client, request_id, {"actual": "approved"})
    first_at = PredictionLog.objects.get(request_id=request_id).actual_at

    again = _post(staff_client, request_id, {"actual": "approved"})

    assert again.status_code == 200
    assert again.json()["changed"] == 0
    assert PredictionLog.objects.get(request_id=request_id).actual_at == first_at


def test_batch_feedback_takes_one_value_per_row(staff_client: Client) -> None:
    events = make_events(3)
    prediction_log_write_events(events=events)
    request_id = events[0]["request_id"]

    response = _post(staff_client, request_id, {"actual": [0, 1, 1]})

    assert response.status_code == 200
    actuals = list(
        PredictionLog.objects.filter(request_id=request_id)
        .order_by("row_index")
        .values_list("actual", flat=True)
    )
    assert actuals == [0, 1, 1]


def test_batch_feedback_of_the_wrong_length_is_a_400(staff_client: Client) -> None:
    events = make_events(3)
    prediction_log_write_events(events=events)

    response = _post(staff_client, events[0]["request_id"], {"actual": [0, 1]})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_input"


def test_unknown_request_id_is_a_404(staff_client: Client) -> None:
    response = _post(staff_client, "no-such-request", {"actual": 1})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_missing_actual_is_a_400(staff_client: Client) -> None:
    events = make_events(1)
    prediction_log_write_events(events=events)

    response = _post(staff_client, events[0]["request_id"], {"label": 1})

    assert response.status_code == 400
    assert "actual" in response.json()["error"]["details"]


def test_feedback_without_credentials_is_refused() -> None:
    response = _post(Client(), "anything", {"actual": 1})

    assert response.status_code == 401


def _api_key(*, models: list[str] | None = None, can_label: bool = False) -> str:
    key = f"phx_{uuid.uuid4().hex}"
    api_key = ApiKey.objects.create(
        name="client",
        prefix=key[:8],
        key_hash=key_hash(key),
        all_models=not models,
        can_label=can_label,
    )
    for name in models or []:
        api_key.allowed_models.add(RegisteredModel.objects.create(name=name))
    api_key_cache_clear()
    return key


def test_a_labelling_api_key_may_label_another_keys_prediction() -> None:
    events = make_events(1)
    prediction_log_write_events(events=events)
    key = _api_key(can_label=True)

    response = _post(
        Client(), events[0]["request_id"], {"actual": 0}, Authorization=f"Bearer {key}"
    )

    assert response.status_code == 200


def test_an_api_key_scoped_to_another_model_is_forbidden() -> None:
    events = make_events(1, model="credit")
    prediction_log_write_events(events=events)
    key = _api_key(models=["fraud"])

    response = _post(Client(), events[0]["request_id"], {"actual": 0}, **{"X-API-Key": key})

    assert response.status_code == 403


class CapturingKafkaSink:
    name = "kafka"

    def __init__(self) -> None:
        self.received: list[Item] = []

    def send(self, items: list[Item]) -> None:
        self.received.extend(items)

    def close(self) -> None:
        pass


@pytest.fixture
def kafka_publisher(tmp_path: Path, settings: Any) -> Iterator[CapturingKafkaSink]:
    settings.PHOENIX_EVENT_BACKEND = "kafka"
    sink = CapturingKafkaSink()
    config = PublisherConfig(
        backend="kafka",
        topic="inference-events",
        buffer_size=100,
        batch_size=10,
        flush_interval_s=0.05,
        journal_dir=tmp_path / "journal",
    )
    publisher = EventPublisher(config, sink=sink)
    previous = events_module.set_publisher(publisher)
    yield sink
    publisher.stop()
    events_module.set_publisher(previous)


def test_with_kafka_early_feedback_waits_for_its_rows(
    staff_client: Client, kafka_publisher: CapturingKafkaSink
) -> None:
    events = make_events(2)
    request_id = events[0]["request_id"]

    response = _post(staff_client, request_id, {"actual": [1, 0]})

    assert response.status_code == 202
    assert response.json()["status"] == "pending"
    assert PendingFeedback.objects.filter(request_id=request_id).exists()

    result = prediction_log_write_events(events=events)  # the consumer catches up

    assert result.feedback_applied == 2
    assert not PendingFeedback.objects.exists()
    actuals = list(
        PredictionLog.objects.filter(request_id=request_id)
        .order_by("row_index")
        .values_list("actual", flat=True)
    )
    assert actuals == [1, 0]


def test_with_kafka_feedback_is_also_published_to_feedback_events(
    staff_client: Client, kafka_publisher: CapturingKafkaSink
) -> None:
    events = make_events(1)
    prediction_log_write_events(events=events)
    request_id = events[0]["request_id"]

    _post(staff_client, request_id, {"actual": 1})
    events_module.get_publisher().flush()

    assert [(t, e["request_id"], e["actual"]) for t, e in kafka_publisher.received] == [
        ("feedback-events", request_id, 1)
    ]


def test_null_actual_is_a_400(staff_client: Client) -> None:
    events = make_events(1)
    prediction_log_write_events(events=events)

    response = _post(staff_client, events[0]["request_id"], {"actual": None})

    assert response.status_code == 400
    assert PredictionLog.objects.get(request_id=events[0]["request_id"]).actual is None


def _feedback_events(sink: CapturingKafkaSink) -> list[dict[str, Any]]:
    events_module.get_publisher().flush()
    return [e for topic, e in sink.received if topic == "feedback-events"]


@pytest.mark.parametrize(
    "request_id",
    ["no-such-request", uuid.uuid4().hex, str(uuid.uuid4()), "0" * 32 + "." + "0" * 16],
)
def test_with_kafka_an_id_never_issued_is_a_404(
    staff_client: Client, kafka_publisher: CapturingKafkaSink, request_id: str
) -> None:
    response = _post(staff_client, request_id, {"actual": 1})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert not PendingFeedback.objects.exists()
    assert _feedback_events(kafka_publisher) == []


def test_with_kafka_a_forged_signature_is_a_404(
    staff_client: Client, kafka_publisher: CapturingKafkaSink
) -> None:
    issued = request_id_new()
    forged = issued[:-1] + ("0" if issued[-1] != "0" else "1")
    signed_elsewhere = request_id_new(secret="another deployment's secret")

    assert _post(staff_client, forged, {"actual": 1}).status_code == 404
    assert _post(staff_client, signed_elsewhere, {"actual": 1}).status_code == 404
    assert not PendingFeedback.objects.exists()


def test_with_kafka_repeated_early_feedback_stays_one_pending_entry(
    staff_client: Client, kafka_publisher: CapturingKafkaSink
) -> None:
    events = make_events(1)
    request_id = events[0]["request_id"]

    first = _post(staff_client, request_id, {"actual": 1})
    again = _post(staff_client, request_id, {"actual": 1})

    assert (first.status_code, again.status_code) == (202, 202)
    assert PendingFeedback.objects.filter(request_id=request_id).count() == 1
    prediction_log_write_events(events=events)
    assert PredictionLog.objects.get(request_id=request_id).actual == 1


def test_with_kafka_a_client_chosen_id_is_recorded_once_its_rows_exist(
    staff_client: Client, kafka_publisher: CapturingKafkaSink
) -> None:
    events = make_events(1, request_id="client-trace-42")

    before = _post(staff_client, "client-trace-42", {"actual": 0})
    prediction_log_write_events(events=events)
    after = _post(staff_client, "client-trace-42", {"actual": 0})

    assert before.status_code == 404  # not ours: nothing says rows are on their way
    assert not PendingFeedback.objects.exists()
    assert after.status_code == 200
    assert PredictionLog.objects.get(request_id="client-trace-42").actual == 0


@pytest.fixture
def credit_model(tmp_path: Path) -> str:
    from inference.api_keys import api_key_create
    from inference.auth import api_key_cache_clear as clear_keys
    from inference.session_cache import session_cache
    from tests.inference_support import onnx_classifier, register

    session_cache.clear()
    clear_keys()
    register("credit", onnx_classifier(tmp_path / "credit.onnx"))
    return api_key_create(name="feedback-tests", all_models=True)[1]


def _predicted_events(sink: CapturingKafkaSink, request_id: str) -> list[dict[str, Any]]:
    events_module.get_publisher().flush()
    return [
        e
        for topic, e in sink.received
        if topic != "feedback-events" and e["request_id"] == request_id
    ]


def test_with_kafka_a_served_prediction_takes_feedback_before_and_after_its_rows(
    staff_client: Client, kafka_publisher: CapturingKafkaSink, credit_model: str
) -> None:
    predicted = Client().post(
        "/api/v1/models/credit/predict",
        {"features": {"x1": 0.5, "x2": -1.0, "x3": 2.0}},
        content_type="application/json",
        headers={"X-API-Key": credit_model},
    )
    assert predicted.status_code == 200, predicted.content
    request_id = predicted.json()["request_id"]

    early = _post(staff_client, request_id, {"actual": 1})  # the consumer has not run yet

    assert early.status_code == 202
    events = _predicted_events(kafka_publisher, request_id)
    assert len(events) == 1
    result = prediction_log_write_events(events=events)  # the consumer catches up
    assert result.feedback_applied == 1
    assert PredictionLog.objects.get(request_id=request_id).actual == 1
    assert _post(staff_client, request_id, {"actual": 1}).json()["changed"] == 0


def test_with_kafka_a_v2_client_id_is_not_pending_but_found_once_written(
    staff_client: Client, kafka_publisher: CapturingKafkaSink, credit_model: str
) -> None:
    body = {
        "id": "triton-client-7",
        "inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 3], "data": [0.5, -1.0, 2.0]}],
    }
    inferred = Client().post(
        "/v2/models/credit/infer",
        body,
        content_type="application/json",
        headers={"X-API-Key": credit_model},
    )
    assert inferred.status_code == 200, inferred.content
    assert inferred.json()["id"] == "triton-client-7"

    assert _post(staff_client, "triton-client-7", {"actual": 0}).status_code == 404
    prediction_log_write_events(events=_predicted_events(kafka_publisher, "triton-client-7"))
    assert _post(staff_client, "triton-client-7", {"actual": 0}).status_code == 200


def test_a_v2_id_longer_than_the_log_keeps_is_a_400(credit_model: str) -> None:
    body = {
        "id": "x" * 65,
        "inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 3], "data": [0.5, -1.0, 2.0]}],
    }
    response = Client().post(
        "/v2/models/credit/infer",
        body,
        content_type="application/json",
        headers={"X-API-Key": credit_model},
    )

    assert response.status_code == 400
    assert "'id'" in response.json()["error"]  # the protocol's error shape: a string


def test_embedded_backend_finds_a_prediction_still_in_the_buffer(
    staff_client: Client, credit_model: str, embedded_publisher: EventPublisher
) -> None:
    # Nothing ships on its own during the test (a 60 s flush interval).
    predicted = Client().post(
        "/api/v1/models/credit/predict",
        {"features": {"x1": 0.5, "x2": -1.0, "x3": 2.0}},
        content_type="application/json",
        headers={"X-API-Key": credit_model},
    )
    request_id = predicted.json()["request_id"]
    assert not PredictionLog.objects.filter(request_id=request_id).exists()

    response = _post(staff_client, request_id, {"actual": 1})

    assert response.status_code == 200
    assert PredictionLog.objects.get(request_id=request_id).actual == 1
    assert _post(staff_client, request_id[:-1] + "x", {"actual": 1}).status_code == 404


# --- who may label, and what (issue 16 item 2) --------------------------------------


def _key_id(key: str) -> int:
    return int(ApiKey.objects.get(key_hash=key_hash(key)).pk)


def _predict(key: str, model: str = "credit") -> str:
    response = Client().post(
        f"/api/v1/models/{model}/predict",
        {"features": {"x1": 0.5, "x2": -1.0, "x3": 2.0}},
        content_type="application/json",
        headers={"X-API-Key": key},
    )
    assert response.status_code == 200, response.content
    return str(response.json()["request_id"])


@pytest.fixture
def embedded_publisher(tmp_path: Path) -> Iterator[EventPublisher]:
    """The embedded backend, shipping only when asked (feedback flushes it)."""
    with embedded_publisher_installed(tmp_path / "journal") as publisher:
        yield publisher


def test_the_prediction_log_records_the_key_that_made_the_prediction(
    credit_model: str, embedded_publisher: EventPublisher
) -> None:
    request_id = _predict(credit_model)
    embedded_publisher.flush()

    assert PredictionLog.objects.get(request_id=request_id).api_key_id == _key_id(credit_model)


def test_the_key_that_made_a_prediction_may_label_it(
    credit_model: str, embedded_publisher: EventPublisher
) -> None:
    request_id = _predict(credit_model)

    response = _post(Client(), request_id, {"actual": 1}, **{"X-API-Key": credit_model})

    assert response.status_code == 200, response.content
    assert PredictionLog.objects.get(request_id=request_id).actual == 1


def test_another_key_for_the_same_model_may_not_label_it(
    credit_model: str, embedded_publisher: EventPublisher
) -> None:
    from inference.api_keys import api_key_create

    request_id = _predict(credit_model)
    other = api_key_create(name="other-client", model_names=["credit"])[1]

    response = _post(Client(), request_id, {"actual": 0}, **{"X-API-Key": other})

    assert response.status_code == 403
    assert "made this prediction" in response.json()["error"]["message"]
    embedded_publisher.flush()
    assert PredictionLog.objects.get(request_id=request_id).actual is None


def test_a_labelling_key_needs_the_model_in_its_scope(
    credit_model: str, embedded_publisher: EventPublisher
) -> None:
    from inference.api_keys import api_key_create

    request_id = _predict(credit_model)
    RegisteredModel.objects.create(name="fraud")
    elsewhere = api_key_create(name="fraud-labeller", model_names=["fraud"], can_label=True)[1]
    labeller = api_key_create(name="credit-labeller", model_names=["credit"], can_label=True)[1]

    refused = _post(Client(), request_id, {"actual": 0}, **{"X-API-Key": elsewhere})
    accepted = _post(Client(), request_id, {"actual": 0}, **{"X-API-Key": labeller})

    assert refused.status_code == 403
    assert accepted.status_code == 200
    assert PredictionLog.objects.get(request_id=request_id).actual == 0


def test_a_signed_in_person_without_the_labelling_permission_is_forbidden() -> None:
    events = make_events(1)
    prediction_log_write_events(events=events)
    user = get_user_model().objects.create_user("viewer", password="pw", is_staff=True)
    client = Client()
    client.force_login(user)

    response = _post(client, events[0]["request_id"], {"actual": 1})

    assert response.status_code == 403
    assert "monitoring.label_predictionlog" in response.json()["error"]["message"]
    assert PredictionLog.objects.get(request_id=events[0]["request_id"]).actual is None


@pytest.mark.parametrize(
    ("actual", "words"),
    [(2, "[0, 1]"), ("yes", "integer class"), (True, "integer class"), (0.5, "integer class")],
)
def test_a_classifier_label_outside_its_classes_is_a_400(
    credit_model: str, embedded_publisher: EventPublisher, actual: Any, words: str
) -> None:
    request_id = _predict(credit_model)

    response = _post(Client(), request_id, {"actual": actual}, **{"X-API-Key": credit_model})

    assert response.status_code == 400
    error = response.json()["error"]
    assert "does not fit credit v1" in error["message"]
    assert words in error["message"]
    assert error["details"]["classes"] == [0, 1]
    assert PredictionLog.objects.get(request_id=request_id).actual is None


@pytest.fixture
def price_model(tmp_path: Path) -> str:
    from inference.api_keys import api_key_create
    from inference.session_cache import session_cache
    from tests.inference_support import onnx_regressor, register

    session_cache.clear()
    api_key_cache_clear()
    register("price", onnx_regressor(tmp_path / "price.onnx"))
    return api_key_create(name="price-client", model_names=["price"])[1]


@pytest.mark.parametrize(
    "body", [b'{"actual": "cheap"}', b'{"actual": 1e999}', b'{"actual": [1]}x']
)
def test_a_regressor_label_that_is_not_a_finite_number_is_a_400(
    price_model: str, embedded_publisher: EventPublisher, body: bytes
) -> None:
    request_id = _predict(price_model, model="price")

    response = Client().post(
        url(request_id), body, content_type="application/json", headers={"X-API-Key": price_model}
    )

    assert response.status_code == 400


def test_a_regressor_takes_a_number(price_model: str, embedded_publisher: EventPublisher) -> None:
    request_id = _predict(price_model, model="price")

    response = _post(Client(), request_id, {"actual": 12.5}, **{"X-API-Key": price_model})

    assert response.status_code == 200
    assert PredictionLog.objects.get(request_id=request_id).actual == 12.5


def test_relabelling_is_audited_with_who_and_both_values(
    staff_client: Client, credit_model: str, embedded_publisher: EventPublisher
) -> None:
    from models_registry.models import AuditAction, AuditEvent

    request_id = _predict(credit_model)
    _post(Client(), request_id, {"actual": 0}, **{"X-API-Key": credit_model})
    assert not AuditEvent.objects.filter(action=AuditAction.RELABEL).exists()  # a first label

    again = _post(Client(), request_id, {"actual": 0}, **{"X-API-Key": credit_model})
    changed = _post(staff_client, request_id, {"actual": 1})

    assert (again.json()["changed"], changed.json()["changed"]) == (0, 1)
    entry = AuditEvent.objects.get(action=AuditAction.RELABEL)
    assert (entry.model_name, entry.version, entry.from_value, entry.to_value) == (
        "credit",
        "1",
        "0",
        "1",
    )
    assert entry.actor_name == "ops"
    assert entry.details["request_id"] == request_id
    assert entry.details["rows"] == [{"row": 0, "from": 0, "to": 1}]


def test_with_kafka_pending_feedback_from_the_predicting_key_is_applied(
    kafka_publisher: CapturingKafkaSink, credit_model: str
) -> None:
    request_id = _predict(credit_model)

    early = _post(Client(), request_id, {"actual": 1}, **{"X-API-Key": credit_model})

    assert early.status_code == 202
    events = _predicted_events(kafka_publisher, request_id)
    assert events[0]["api_key_id"] == _key_id(credit_model)
    assert prediction_log_write_events(events=events).feedback_applied == 1
    row = PredictionLog.objects.get(request_id=request_id)
    assert (row.actual, row.api_key_id) == (1, _key_id(credit_model))


def test_with_kafka_pending_feedback_from_another_key_is_dropped_when_the_rows_arrive(
    kafka_publisher: CapturingKafkaSink, credit_model: str
) -> None:
    from inference.api_keys import api_key_create

    request_id = _predict(credit_model)
    other = api_key_create(name="other-client", model_names=["credit"])[1]

    early = _post(Client(), request_id, {"actual": 1}, **{"X-API-Key": other})

    assert early.status_code == 202  # the rows are not known yet: nothing to check against
    result = prediction_log_write_events(events=_predicted_events(kafka_publisher, request_id))
    assert result.feedback_applied == 0
    assert not PendingFeedback.objects.exists()
    assert PredictionLog.objects.get(request_id=request_id).actual is None


def test_with_kafka_pending_feedback_that_does_not_fit_the_model_is_dropped(
    kafka_publisher: CapturingKafkaSink, credit_model: str
) -> None:
    request_id = _predict(credit_model)

    assert (
        _post(Client(), request_id, {"actual": 7}, **{"X-API-Key": credit_model}).status_code == 202
    )
    result = prediction_log_write_events(events=_predicted_events(kafka_publisher, request_id))

    assert result.feedback_applied == 0
    assert PredictionLog.objects.get(request_id=request_id).actual is None


@pytest.mark.django_db(transaction=True)
def test_the_embedded_feedback_path_flushes_the_publisher_outside_any_transaction(
    credit_model: str, embedded_publisher: EventPublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The flush writes other requests' rows too: they must not share this request's
    # transaction (nor, on SQLite, wait for a lock it holds).
    from django.db import connection

    import monitoring.services.feedback as feedback

    seen: list[bool] = []

    def flush() -> None:
        seen.append(connection.in_atomic_block)
        embedded_publisher.flush()

    monkeypatch.setattr(feedback, "event_publishing_flush", flush)
    request_id = _predict(credit_model)

    response = _post(Client(), request_id, {"actual": 1}, **{"X-API-Key": credit_model})

    assert response.status_code == 200
    assert seen == [False]
