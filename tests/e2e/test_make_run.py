"""`make run`, as a new user runs it: embedded defaults, ready, serving, stopped by Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

# Variables that would point the stack at servers or at the test settings.
NOT_INHERITED = (
    "DATABASE_URL",
    "REDIS_URL",
    "KAFKA_BOOTSTRAP_SERVERS",
    "CELERY_BROKER_URL",
    "DJANGO_SETTINGS_MODULE",
    "PHOENIX_ENV",
    "CELERY_TASK_ALWAYS_EAGER",
)


def http(url: str, body: dict[str, object] | None = None, headers: dict[str, str] | None = None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def wait_ready(base: str, process: subprocess.Popen[bytes], timeout_s: float) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        assert process.poll() is None, "make run exited before it was ready"
        try:
            status, body = http(f"{base}/readyz")
            last = body
            if status == 200:
                return body
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"/readyz not 200 within {timeout_s}s; last answer: {last}")


def test_make_run_starts_everything_serves_predictions_and_stops_on_ctrl_c(
    tmp_path: Path,
) -> None:
    port, grpc_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    env.update(
        PORT=str(port),
        PHOENIX_GRPC_PORT=str(grpc_port),
        PHOENIX_DATA_DIR=str(tmp_path / "var"),
        DJANGO_SUPERUSER_USERNAME="ops",
        DJANGO_SUPERUSER_PASSWORD="a-long-test-password-1",
        PYTHON=sys.executable,
    )
    log = (tmp_path / "make-run.log").open("wb")
    # A session of its own, so the test can Ctrl-C the whole group as a terminal would.
    process = subprocess.Popen(
        ["make", "run"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        ready = wait_ready(base, process, timeout_s=240)
        components = ready["components"]
        assert isinstance(components, dict)
        assert any(name.startswith("model:credit-risk") for name in components), components

        key_output = subprocess.run(
            [sys.executable, "manage.py", "create_api_key", "smoke-test", "--all-models"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        api_key = key_output.strip().splitlines()[-1]

        row: dict[str, object] = {
            "features": {
                "income": 52000,
                "debt": 9000,
                "age": 37,
                "credit_history_years": 11,
                "open_accounts": 3,
                "utilisation": 0.31,
            }
        }
        auth = {"Authorization": f"Bearer {api_key}"}
        status, body = http(f"{base}/api/v1/models/credit-risk/predict", row, auth)
        assert status == 200, body
        assert body["model"] == "credit-risk"
        assert body["predictions"][0] in (0, 1)

        # More than one core: more than one web process, and /metrics adds them all up.
        if (os.cpu_count() or 1) > 1:
            # honcho's shell and the server itself match; its children are the uvicorn workers.
            matches = subprocess.run(
                ["pgrep", "-f", f"phoenix.web_server phoenix.asgi:application .*--port {port}"],
                capture_output=True,
                text=True,
            ).stdout.split()
            workers = max(
                (
                    subprocess.run(
                        ["pgrep", "-P", pid], capture_output=True, text=True
                    ).stdout.split()
                    for pid in matches
                ),
                key=len,
            )
            assert len(workers) >= 2, (matches, workers)
        for _ in range(60):  # a new connection each: the workers share the port
            assert http(f"{base}/api/v1/models/credit-risk/predict", row, auth)[0] == 200
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
            exposition = response.read().decode()
        served = sum(
            float(line.rsplit(" ", 1)[1])
            for line in exposition.splitlines()
            if line.startswith("phoenix_inference_requests_total{")
            and 'model="credit-risk"' in line
            and 'status="200"' in line
        )
        assert served == 61

        # The gRPC inference server of the stack: same model, same keys.
        import numpy as np
        import tritonclient.grpc as grpcclient

        with grpcclient.InferenceServerClient(url=f"127.0.0.1:{grpc_port}") as triton:
            assert triton.is_server_ready()
            tensor = grpcclient.InferInput("X", [1, 6], "FP32")
            tensor.set_data_from_numpy(np.array([[52000, 9000, 37, 11, 3, 0.31]], np.float32))
            result = triton.infer("credit-risk", [tensor], headers={"x-api-key": api_key})
            assert result.as_numpy("label").tolist()[0] in (0, 1)
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        finally:
            log.close()
    output = (tmp_path / "make-run.log").read_text(errors="replace")
    assert "Password" not in output  # the password came from the environment
    for name in ("web", "worker", "beat", "grpc"):
        assert f"{name} stopped" in output, output[-3000:]
    leftover = subprocess.run(
        ["pgrep", "-f", f"--port ({port}|{grpc_port})"], capture_output=True, text=True
    ).stdout.strip()
    assert leftover == "", f"processes still running after Ctrl-C: {leftover}"
