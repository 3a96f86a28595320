"""Helpers shared by the inference tests: models, registration, keys, recorded events."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

FEATURES = ["x1", "x2", "x3"]


def onnx_classifier(path: Path, *, flip: bool = False, seed: int = 7) -> Path:
    """A logistic regression over x1..x3 (``flip`` learns the opposite labels)."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(400, 3)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] - x[:, 2] > 0).astype(np.int64)
    if flip:
        y = 1 - y
    clf = LogisticRegression().fit(x, y)
    model = to_onnx(clf, x[:1], options={id(clf): {"zipmap": False}}, target_opset=17)
    meta = model.metadata_props.add()
    meta.key, meta.value = "feature_names", ",".join(FEATURES)
    path.write_bytes(model.SerializeToString())
    return path


def onnx_regressor(path: Path) -> Path:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 3)).astype(np.float32)
    reg = LinearRegression().fit(x, x @ np.array([1.0, 2.0, -1.0]) + 0.5)
    model = to_onnx(reg, x[:1], target_opset=17)
    meta = model.metadata_props.add()
    meta.key, meta.value = "feature_names", ",".join(FEATURES)
    path.write_bytes(model.SerializeToString())
    return path


TEXTS = ["refund my order", "card was charged twice", "app crashes on login",
         "cannot log in", "where is my parcel", "delivery is late"]  # fmt: skip


def onnx_text_classifier(path: Path) -> Path:
    """Tf-idf + logistic regression over raw strings (input ``text``, [N, 1] BYTES), 3 classes.

    ``lowercase=False``: lowercasing becomes ONNX's StringNormalizer, which onnxruntime
    can only build where the en_US.UTF-8 locale is installed.
    """
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import StringTensorType
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    pipeline = make_pipeline(TfidfVectorizer(lowercase=False), LogisticRegression(max_iter=200))
    pipeline.fit(TEXTS * 5, [0, 0, 1, 1, 2, 2] * 5)
    model = to_onnx(
        pipeline,
        initial_types=[("text", StringTensorType([None, 1]))],
        options={id(pipeline.steps[-1][1]): {"zipmap": False}},
        target_opset=17,
    )
    path.write_bytes(model.SerializeToString())
    return path


def register(name: str, path: Path, *, stage: str = "production", alias: str | None = None) -> Any:
    from models_registry.services import model_version_register

    return model_version_register(model_name=name, file=path, stage=stage, alias=alias)


def onnx_predict(path: Path, rows: list[list[float]]) -> tuple[list[int], np.ndarray]:
    """What onnxruntime itself says, to check the API against."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    labels, probs = session.run(None, {"X": np.array(rows, dtype=np.float32)})
    return labels.tolist(), probs


def prediction_events_record(monkeypatch: Any) -> list[dict[str, Any]]:
    """Prediction events as the publisher would build them, recorded in a list instead
    of reaching its buffer and flusher thread (``monkeypatch``: pytest's fixture)."""
    import inference.events
    from inference.event_schema import PredictionRecord, prediction_events

    recorded: list[dict[str, Any]] = []

    def record(prediction: PredictionRecord) -> None:
        recorded.extend(prediction_events(prediction))

    monkeypatch.setattr(inference.events, "publish_prediction", record)
    return recorded


@contextmanager
def embedded_publisher_installed(
    journal_dir: Path, *, buffer_size: int = 100, batch_size: int = 50, flush_s: float = 60.0
) -> Iterator[Any]:
    """The embedded backend's publisher (PredictionLog rows), in place of this process's
    while the block runs; with the long ``flush_s`` it ships only when flushed."""
    from inference import events as events_module
    from inference.events import EventPublisher, PublisherConfig

    config = PublisherConfig(
        backend="database",
        topic="inference-events",
        buffer_size=buffer_size,
        batch_size=batch_size,
        flush_interval_s=flush_s,
        journal_dir=journal_dir,
    )
    publisher = EventPublisher(config)
    previous = events_module.set_publisher(publisher)
    try:
        yield publisher
    finally:
        publisher.stop()
        events_module.set_publisher(previous)


def wsgi_call(
    app: Any, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """Call a WSGI application in this thread, keeping the test's database transaction."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "testserver",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    seen: dict[str, Any] = {}

    def start_response(status: str, pairs: list[tuple[str, str]], exc: Any = None) -> Any:
        seen["status"], seen["headers"] = int(status[:3]), dict(pairs)
        return lambda chunk: None

    # As Django's test client does: closing "old" connections at the request's start
    # and end would close the test's transaction on PostgreSQL.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        iterable = app(environ, start_response)
        try:
            content = b"".join(iterable)
        finally:
            iterable.close()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    return seen["status"], seen["headers"], content
