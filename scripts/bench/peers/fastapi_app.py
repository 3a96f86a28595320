"""The thin reference: FastAPI + uvicorn, onnxruntime inline in the handler.

No authentication, no logging, no metrics: what a small team writes in an afternoon.
The body is validated by a pydantic model, as FastAPI users do; the model runs on the
event loop (an ``async def`` handler), as it takes microseconds.

    BENCH_MODEL=model.onnx uvicorn fastapi_app:app --app-dir scripts/bench/peers --workers 2
"""

from __future__ import annotations

import os

import numpy as np
from fastapi import FastAPI
from ort_session import load_session
from pydantic import BaseModel

session = load_session(os.environ["BENCH_MODEL"])
input_name = session.get_inputs()[0].name
app = FastAPI()


# FastAPI and pydantic live in the peer's venv only: untyped where mypy runs.
class PredictRequest(BaseModel):  # type: ignore[misc]
    features: list[list[float]]


@app.post("/predict")  # type: ignore[untyped-decorator]
async def predict(body: PredictRequest) -> dict[str, list[int]]:
    labels = session.run(None, {input_name: np.asarray(body.features, dtype=np.float32)})[0]
    return {"predictions": labels.tolist()}


@app.get("/healthz")  # type: ignore[untyped-decorator]
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
