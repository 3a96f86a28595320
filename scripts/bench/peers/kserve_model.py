"""KServe's Python model server with a custom ``kserve.Model`` running onnxruntime.

Serves v1 ``POST /v1/models/<name>:predict`` ({"instances": [[...]]}) and v2
``POST /v2/models/<name>/infer`` with KServe's own request and response helpers, its
defaults otherwise (latency logging, metrics). Workers come from KServe's own
``--workers`` flag (more than one: KServe spawns uvicorn processes that share one
socket, each unpickling the model, so the session is re-created there).

    BENCH_MODEL=model.onnx python kserve_model.py --model_name bench --http_port 8080 \\
        --workers 2 --enable_grpc false
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import kserve
import numpy as np
from kserve.utils.utils import get_predict_input, get_predict_response
from ort_session import load_session


class OnnxModel(kserve.Model):  # type: ignore[misc]
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.session: Any = None
        self.input_name = ""
        self.load()

    def load(self) -> bool:
        self.session = load_session(self.path)
        self.input_name = self.session.get_inputs()[0].name
        self.ready = True
        return True

    # Worker processes are spawned and receive the model pickled: sessions don't pickle.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["session"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.load()

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        features = np.asarray(get_predict_input(payload), dtype=np.float32)
        labels = self.session.run(None, {self.input_name: features})[0]
        return get_predict_response(payload, labels, self.name)


def main() -> None:
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    args, _ = parser.parse_known_args()
    model = OnnxModel(args.model_name, os.environ["BENCH_MODEL"])
    kserve.ModelServer().start([model])


if __name__ == "__main__":
    main()
