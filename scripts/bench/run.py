"""Side-by-side data-plane benchmark: Phoenix against its peers, in one run, on loopback.

Builds the benchmark model, then starts each contender in turn (nothing else of the run
is serving while one is measured) and drives it with the same load generator, a
separate process whose own CPU use is reported:

  raw       onnxruntime in process: single-row call time and rows/s at batch 256 (floor)
  null      a fixed tiny HTTP 200 answer (the load generator's ceiling)
  fastapi   thin FastAPI + uvicorn, onnxruntime inline, no auth or logging (2 workers)
  kserve    KServe's Python server, custom kserve.Model: v1 :predict and v2 /infer,
            1 and 2 workers, gRPC off
  phoenix   the web process exactly as `make run` starts it (phoenix.processes), fresh
            data dir, API key, routing, metrics and event logging on: REST predict,
            v2 infer, batch predict, and optionally resident memory over N requests

Peers run in their own virtualenvs made from the registry (var/bench/venvs/<peer>).
Results: markdown and JSON (default var/bench/results-<timestamp>.{md,json}).

    .venv/bin/python -m scripts.bench --duration 5
    .venv/bin/python -m scripts.bench --only phoenix --phoenix-workers 2 --memory-requests 100000
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from phoenix import processes as phoenix_stack

from .children import ChildProcesses, rss_kib, wait_ready, worker_pids
from .loadgen import ResponseParser, build_request
from .model import TREES, BenchModel, build_model
from .peer_venvs import ensure_venv, requirements_for
from .report import goals_compute, markdown

ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = Path(__file__).resolve().parent
PEERS_DIR = BENCH_DIR / "peers"
LOADGEN = BENCH_DIR / "loadgen.py"
GRPC_LOADGEN = BENCH_DIR / "grpc_loadgen.py"
HOST = "127.0.0.1"
CONTENDERS = ("raw", "null", "fastapi", "kserve", "phoenix", "phoenix-mb")
# The project's own interpreter: it must not be mistaken for a peer's.
PROJECT_VENV = ROOT / ".venv"


@dataclass
class Run:
    """What the contenders share: options, the model, the children, the result so far."""

    args: argparse.Namespace
    model: BenchModel
    children: ChildProcesses
    work: Path
    result: dict[str, Any]
    reference_label: int
    onnxruntime_version: str
    requests_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.requests_dir = self.work / "requests"
        self.requests_dir.mkdir(parents=True, exist_ok=True)

    @property
    def levels(self) -> list[int]:
        return list(self.result["config"]["concurrency"])

    def note(self, text: str) -> None:
        print(f"  note: {text}", flush=True)
        self.result["notes"].append(text)


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _ints(text: str) -> list[int]:
    return [int(part) for part in _csv(text)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without the project's interpreter settings, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")
    }
    return {**env, **extra}


def machine_describe() -> dict[str, Any]:
    cpu_model = "unknown"
    memory_kib = 0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    except OSError:
        pass
    from importlib import metadata

    import onnxruntime

    dists = [d for d in ("onnxruntime-gpu", "onnxruntime") if _installed(metadata, d)]
    return {
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "memory_gib": memory_kib / 1024 / 1024,
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "onnxruntime_dist": "+".join(dists) or "unknown",
        "loadavg_start": "/".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def _installed(metadata: Any, dist: str) -> bool:
    try:
        metadata.version(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


def exchange(port: int, raw: bytes, timeout_s: float = 10.0) -> tuple[int, bytes]:
    """One request on a fresh connection: the answer's status and body."""
    parser = ResponseParser()
    with socket.create_connection((HOST, port), timeout=timeout_s) as sock:
        sock.sendall(raw)
        while True:
            data = sock.recv(65536)
            if not data:
                final = parser.eof()
                if final is None:
                    raise ConnectionError("connection closed before a whole answer")
                return final.status, final.body
            responses = parser.feed(data)
            if responses:
                return responses[0].status, responses[0].body


def first_label(body: bytes) -> Any:
    """The first predicted label in a REST (``predictions``) or v2 (``outputs``) answer."""
    answer = json.loads(body)
    if "predictions" in answer:
        return answer["predictions"][0]
    outputs = answer["outputs"]
    labels = [o for o in outputs if "label" in o["name"]] or outputs
    return labels[0]["data"][0]


def sanity_check(run: Run, name: str, port: int, raw: bytes) -> dict[str, Any]:
    """Send one request and compare its label with raw onnxruntime's on the same row."""
    try:
        status, body = exchange(port, raw)
    except OSError as exc:
        return {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
    if status != 200:
        detail = f"HTTP {status}: {body[:300].decode('utf-8', 'replace')}"
        run.note(f"{name}: sanity request failed: {detail}")
        return {"ok": False, "detail": detail}
    try:
        label = first_label(body)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        run.note(f"{name}: no prediction in the answer ({exc!r}): {body[:200]!r}")
        return {"ok": False, "detail": "no prediction in the answer"}
    if name != "null" and label != run.reference_label:
        run.note(f"{name}: predicted {label!r}, raw onnxruntime {run.reference_label!r}")
        return {"ok": False, "label": label, "detail": "label differs from raw onnxruntime"}
    return {"ok": True, "label": label}


def drive(
    run: Run,
    slug: str,
    port: int,
    raw: bytes,
    levels: list[int],
    *,
    max_requests: int | None = None,
    time_limit_s: float = 600.0,
) -> list[dict[str, Any]]:
    """Run the load generator process over ``levels`` and return its per-level results."""
    request_file = run.requests_dir / f"{slug}.http"
    request_file.write_bytes(raw)
    spec = {
        "host": HOST,
        "port": port,
        "request_file": str(request_file),
        "levels": levels,
        "duration_s": run.args.duration,
        "warmup_s": run.args.warmup,
        "max_requests": max_requests,
        "time_limit_s": time_limit_s,
        "loop": run.args.loop,
    }
    spec_file = run.requests_dir / f"{slug}.json"
    spec_file.write_text(json.dumps(spec))
    per_level = (time_limit_s if max_requests else run.args.duration) + run.args.warmup + 15
    out = run.children.run(
        [sys.executable, str(LOADGEN), "--spec", str(spec_file)],
        env=clean_env(),
        cwd=ROOT,
        timeout_s=per_level * len(levels) + 30,
    )
    answer = json.loads(out.strip().splitlines()[-1])
    run.result["loadgen_loop"] = answer["loop"]
    results: list[dict[str, Any]] = answer["levels"]
    for level in results:
        flag = f"  ERRORS {level['errors']}: {level['first_error']}" if level["errors"] else ""
        print(
            f"    c={level['concurrency']:<3} {level['rps']:9,.0f} req/s  p50 "
            f"{level['p50_ms']:7.2f}  p95 {level['p95_ms']:7.2f}  p99 {level['p99_ms']:7.2f} ms"
            f"  client {level['cpu_cores']:.2f} cores{flag}",
            flush=True,
        )
    return results


def add_row(
    run: Run,
    *,
    row_id: str,
    server: str,
    endpoint: str,
    workers: int,
    port: int,
    raw: bytes,
    leader: int | None,
) -> dict[str, Any]:
    print(f"  {server} {endpoint} ({workers} worker{'s' if workers != 1 else ''})", flush=True)
    sanity = sanity_check(run, row_id, port, raw)
    levels = drive(run, row_id, port, raw, run.levels)
    row = {
        "id": row_id,
        "server": server,
        "endpoint": endpoint,
        "workers": workers,
        "levels": levels,
        "errors": sum(level["errors"] for level in levels) + (0 if sanity["ok"] else 1),
        "sanity": sanity,
        "rss_kib": [rss_kib(pid) for pid in worker_pids(leader)] if leader else [],
    }
    run.result["rows"].append(row)
    return row


# --- gRPC rows (Open Inference Protocol's ModelInfer) ------------------------------------


def grpc_request(run: Run) -> bytes:
    """One single-row ModelInferRequest, serialised once (raw FP32 contents)."""
    import numpy as np
    from tritonclient.grpc import service_pb2

    row = run.model.row
    request = service_pb2.ModelInferRequest(model_name=run.args.model_name)
    request.inputs.add(name=run.model.input_name, datatype="FP32", shape=[1, len(row)])
    request.raw_input_contents.append(np.asarray([row], dtype=np.float32).tobytes())
    return bytes(request.SerializeToString())


def grpc_sanity(run: Run, name: str, port: int, metadata: list[tuple[str, str]]) -> dict[str, Any]:
    """One ModelInfer call through grpcio, its label compared with raw onnxruntime's."""
    import grpc
    import numpy as np
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    try:
        with grpc.insecure_channel(f"{HOST}:{port}") as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            request = service_pb2.ModelInferRequest.FromString(grpc_request(run))
            response = stub.ModelInfer(request, metadata=metadata, timeout=30)
    except grpc.RpcError as error:
        detail = f"{error.code().name}: {error.details()}"
        run.note(f"{name}: sanity call failed: {detail}")
        return {"ok": False, "detail": detail}
    first = response.outputs[0]
    if response.raw_output_contents:
        dtype = np.int64 if first.datatype == "INT64" else np.float32
        label = np.frombuffer(response.raw_output_contents[0], dtype=dtype).tolist()[0]
    else:
        label = (list(first.contents.int64_contents) or list(first.contents.fp32_contents))[0]
    if label != run.reference_label:
        run.note(f"{name}: predicted {label!r}, raw onnxruntime {run.reference_label!r}")
        return {"ok": False, "label": label, "detail": "label differs from raw onnxruntime"}
    return {"ok": True, "label": label}


def grpc_wait(port: int, timeout_s: float) -> None:
    import grpc

    with grpc.insecure_channel(f"{HOST}:{port}") as channel:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)


def add_grpc_row(
    run: Run,
    *,
    row_id: str,
    server: str,
    workers: int,
    port: int,
    metadata: list[tuple[str, str]],
    leader: int | None,
) -> None:
    print(f"  {server} gRPC ModelInfer ({workers} process)", flush=True)
    sanity = grpc_sanity(run, row_id, port, metadata)
    request_file = run.requests_dir / f"{row_id}.bin"
    request_file.write_bytes(grpc_request(run))
    spec = {
        "host": HOST,
        "port": port,
        "request_file": str(request_file),
        "metadata": metadata,
        "levels": run.levels,
        "duration_s": run.args.duration,
        "warmup_s": run.args.warmup,
    }
    spec_file = run.requests_dir / f"{row_id}.json"
    spec_file.write_text(json.dumps(spec))
    out = run.children.run(
        [sys.executable, str(GRPC_LOADGEN), "--spec", str(spec_file)],
        env=clean_env(),
        cwd=ROOT,
        timeout_s=(run.args.duration + run.args.warmup + 15) * len(run.levels) + 30,
    )
    levels: list[dict[str, Any]] = json.loads(out.strip().splitlines()[-1])["levels"]
    for level in levels:
        flag = f"  ERRORS {level['errors']}: {level['first_error']}" if level["errors"] else ""
        print(
            f"    c={level['concurrency']:<3} {level['rps']:9,.0f} req/s  p50 "
            f"{level['p50_ms']:7.2f}  p99 {level['p99_ms']:7.2f} ms"
            f"  client {level['cpu_cores']:.2f} cores{flag}",
            flush=True,
        )
    run.result["rows"].append(
        {
            "id": row_id,
            "server": server,
            "endpoint": "gRPC ModelInfer",
            "workers": workers,
            "levels": levels,
            "errors": sum(level["errors"] for level in levels) + (0 if sanity["ok"] else 1),
            "sanity": sanity,
            "rss_kib": [rss_kib(pid) for pid in worker_pids(leader)] if leader else [],
        }
    )


@contextmanager
def serving(
    run: Run,
    name: str,
    argv: list[str],
    *,
    env: dict[str, str],
    cwd: Path,
    port: int,
    ready_path: str,
    workers: int,
) -> Iterator[int]:
    """A server started from ``argv``, ready; yields its process id and stops its group."""
    log = run.work / "logs" / f"{name}.log"
    process = run.children.start(argv, env=env, cwd=cwd, log=log)
    try:
        warning = wait_ready(
            process,
            host=HOST,
            port=port,
            path=ready_path,
            log=log,
            workers=workers,
            timeout_s=run.args.ready_timeout,
        )
        if warning:
            run.note(f"{name}: {warning}")
        yield process.pid
    finally:
        run.children.stop(process)


def single_row_bodies(model: BenchModel) -> dict[str, bytes]:
    row = model.row
    v2 = {
        "inputs": [
            {"name": model.input_name, "shape": [1, len(row)], "datatype": "FP32", "data": row}
        ]
    }
    return {
        "matrix": json.dumps({"features": [row]}).encode(),
        "named": json.dumps({"features": dict(zip(model.features, row, strict=True))}).encode(),
        "instances": json.dumps({"instances": [row]}).encode(),
        "v2": json.dumps(v2).encode(),
    }


# --- contenders ------------------------------------------------------------------------


def contender_raw(run: Run) -> None:
    out = run.children.run(
        [
            *(sys.executable, str(PEERS_DIR / "raw_ort.py"), str(run.model.path)),
            "--row=" + ",".join(map(str, run.model.row)),
            *("--batch", str(run.args.batch or 256), "--duration", str(run.args.raw_duration)),
        ],
        env=clean_env(),
        cwd=ROOT,
        timeout_s=4 * run.args.raw_duration + 120,
    )
    raw = json.loads(out.strip().splitlines()[-1])
    run.result["raw"] = raw
    print(
        f"  {raw['single_row_us_p50']:.1f} us per row (median), "
        f"{raw['batch_rows_per_s']:,.0f} rows/s at batch {raw['batch']} ({raw['provider']})",
        flush=True,
    )


def contender_null(run: Run) -> None:
    port = free_port()
    argv = [sys.executable, str(PEERS_DIR / "null_server.py"), "--port", str(port)]
    raw = build_request(HOST, "/predict", "", single_row_bodies(run.model)["matrix"], port=port)
    with serving(
        run, "null", argv, env=clean_env(), cwd=ROOT, port=port, ready_path="/", workers=1
    ) as pid:
        add_row(
            run,
            row_id="null",
            server="null server (asyncio Protocol, fixed answer)",
            endpoint="any",
            workers=1,
            port=port,
            raw=raw,
            leader=pid,
        )


def peer_python(run: Run, peer: str) -> Path:
    python, frozen = ensure_venv(
        run.children,
        peer=peer,
        root=Path(run.args.venv_dir),
        onnxruntime_version=run.onnxruntime_version,
        project_venv=PROJECT_VENV,
        cwd=ROOT,
        env=clean_env(),
    )
    run.result["peers"][peer] = {
        "requirements": requirements_for(peer, run.onnxruntime_version),
        "freeze": frozen,
    }
    return python


def contender_fastapi(run: Run) -> None:
    python = peer_python(run, "fastapi")
    port = free_port()
    workers = run.args.fastapi_workers
    argv = [str(python), "-m", "uvicorn", "fastapi_app:app", "--app-dir", str(PEERS_DIR)]
    argv += ["--host", HOST, "--port", str(port), "--workers", str(workers), "--no-access-log"]
    env = clean_env(BENCH_MODEL=str(run.model.path))
    raw = build_request(HOST, "/predict", "", single_row_bodies(run.model)["matrix"], port=port)
    with serving(
        run,
        "fastapi",
        argv,
        env=env,
        cwd=PEERS_DIR,
        port=port,
        ready_path="/healthz",
        workers=workers,
    ) as pid:
        add_row(
            run,
            row_id="fastapi",
            server="FastAPI + uvicorn (thin, no auth/logging)",
            endpoint="POST /predict",
            workers=workers,
            port=port,
            raw=raw,
            leader=pid,
        )


def contender_kserve(run: Run) -> None:
    python = peer_python(run, "kserve")
    name = run.args.model_name
    bodies = single_row_bodies(run.model)
    for workers in _ints(run.args.kserve_workers):
        port = free_port()
        argv = [str(python), str(PEERS_DIR / "kserve_model.py"), "--model_name", name]
        argv += ["--http_port", str(port), "--workers", str(workers)]
        argv += shlex.split(run.args.kserve_args)
        # KServe's gRPC server runs in its main process only: measured with one worker.
        grpc_port = free_port() if workers == 1 and run.args.grpc else None
        if grpc_port is not None:
            argv += ["--enable_grpc", "true", "--grpc_port", str(grpc_port)]
        env = clean_env(BENCH_MODEL=str(run.model.path))
        run.result["config"]["kserve_argv"] = argv[1:]
        with serving(
            run,
            f"kserve-w{workers}",
            argv,
            env=env,
            cwd=PEERS_DIR,
            port=port,
            ready_path=f"/v2/models/{name}/ready",
            workers=workers,
        ) as pid:
            for protocol, path, body in (
                ("v1", f"/v1/models/{name}:predict", bodies["instances"]),
                ("v2", f"/v2/models/{name}/infer", bodies["v2"]),
            ):
                add_row(
                    run,
                    row_id=f"kserve-{protocol}-w{workers}",
                    server="KServe 0.21 Python server",
                    endpoint=f"{protocol} POST {path.replace(name, '{name}')}",
                    workers=workers,
                    port=port,
                    raw=build_request(HOST, path, "", body, port=port),
                    leader=pid,
                )
            if grpc_port is not None:
                grpc_wait(grpc_port, run.args.ready_timeout)
                add_grpc_row(
                    run,
                    row_id="kserve-grpc",
                    server="KServe 0.21 Python server",
                    workers=1,
                    port=grpc_port,
                    metadata=[],
                    leader=pid,
                )


def phoenix_env(run: Run, data_dir: Path) -> dict[str, str]:
    overrides = dict(item.split("=", 1) for item in run.args.phoenix_env)
    return clean_env(PHOENIX_DATA_DIR=str(data_dir), **overrides)


# The routing policy that turns micro-batching on, as an operator sets it in admin.
_MICRO_BATCHING_ON = (
    "from inference.models import RoutingPolicy; "
    "from models_registry.models import RegisteredModel; "
    "RoutingPolicy.objects.update_or_create(model=RegisteredModel.objects.get(name={name!r}), "
    "defaults={{'micro_batching': True}})"
)


def phoenix_prepare(run: Run, env: dict[str, str], *, micro_batching: bool = False) -> str:
    """Migrate, register the model as production/champion (with micro-batching on if
    asked), and return a new API key."""
    manage = [sys.executable, str(ROOT / "manage.py")]
    name = run.args.model_name

    def call(*argv: str) -> str:
        return run.children.run([*manage, *argv], env=env, cwd=ROOT, timeout_s=300)

    call("migrate", "--noinput", "--verbosity", "0")
    registered = call(
        "register_model",
        str(run.model.path),
        *("--name", name, "--stage", "production", "--alias", "champion"),
    )
    print(f"  {registered.strip()}", flush=True)
    if micro_batching:
        call("shell", "-c", _MICRO_BATCHING_ON.format(name=name))
    return call("create_api_key", "bench", "--model", name).strip().splitlines()[-1].strip()


def phoenix_web_process(run: Run, *, port: int, env: dict[str, str]) -> phoenix_stack.StackProcess:
    """The "web" entry of ``phoenix.processes``, as ``manage.py run_stack`` (``make run``) gets it.

    Only the keywords ``stack_processes`` takes are passed, and the flags run_stack
    derives from settings are derived from the same variables, so this follows the
    stack as it changes.
    """
    backend = "kafka" if env.get("KAFKA_BOOTSTRAP_SERVERS") else "database"
    options: dict[str, Any] = {
        "python": sys.executable,
        "host": HOST,
        "port": port,
        "web_workers": run.args.phoenix_workers,
        "kafka_enabled": env.get("PHOENIX_EVENT_BACKEND", backend) == "kafka",
        "redis_enabled": bool(env.get("REDIS_URL")),
    }
    accepted = inspect.signature(phoenix_stack.stack_processes).parameters
    processes = phoenix_stack.stack_processes(**{k: v for k, v in options.items() if k in accepted})
    return next(p for p in processes if p.name == "web")


def contender_phoenix(run: Run, *, micro_batching: bool = False) -> None:
    base = Path(run.args.work_dir) / "phoenix-data"
    base.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="run-", dir=base))
    try:
        env = phoenix_env(run, data_dir)
        if "PROMETHEUS_MULTIPROC_DIR" not in env:
            # As run_stack: every web worker writes its metrics here (a fresh, empty folder).
            (data_dir / "prometheus").mkdir()
            env["PROMETHEUS_MULTIPROC_DIR"] = str(data_dir / "prometheus")
        key = phoenix_prepare(run, env, micro_batching=micro_batching)
        port = free_port()
        web = phoenix_web_process(run, port=port, env=env)
        env = {**env, **web.env, "PHOENIX_PRELOAD_MODELS": "1"}
        argv = list(web.argv)
        workers = int(argv[argv.index("--workers") + 1]) if "--workers" in argv else 1
        if workers != run.args.phoenix_workers:
            run.note(
                f"phoenix: asked for {run.args.phoenix_workers} web workers, the stack starts "
                f"{workers} (phoenix.processes decides)"
            )
        run.result["config"]["phoenix_argv"] = argv[1:]
        run.result["config"]["phoenix_env"] = {
            k: v for k, v in env.items() if k.startswith(("PHOENIX_", "DATABASE_", "REDIS_"))
        }
        with serving(
            run,
            "phoenix",
            argv,
            env=env,
            cwd=ROOT,
            port=port,
            ready_path="/readyz",
            workers=workers,
        ) as pid:
            observed = len(worker_pids(pid))
            if observed != workers:
                run.note(f"phoenix: {observed} serving processes for --workers {workers}")
            phoenix_measure(
                run,
                port=port,
                key=key,
                leader=pid,
                workers=observed,
                suffix="-mb" if micro_batching else "",
            )
        if run.args.grpc and not micro_batching:
            phoenix_grpc_measure(run, env=env, key=key)
    finally:
        if run.args.keep_data:
            print(f"  Phoenix data kept in {data_dir}", flush=True)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


def phoenix_grpc_measure(run: Run, *, env: dict[str, str], key: str) -> None:
    """The stack's gRPC process (``manage.py serve_grpc`` as make run starts it)."""
    port = free_port()
    processes = phoenix_stack.stack_processes(
        python=sys.executable,
        host=HOST,
        port=free_port(),
        web_workers=1,
        kafka_enabled=False,
        grpc_port=port,
    )
    grpc = next(p for p in processes if p.name == "grpc")
    log = run.work / "logs" / "phoenix-grpc.log"
    process = run.children.start(list(grpc.argv), env={**env, **grpc.env}, cwd=ROOT, log=log)
    try:
        grpc_wait(port, run.args.ready_timeout)
        add_grpc_row(
            run,
            row_id="phoenix-grpc",
            server="Phoenix (make run grpc process)",
            workers=1,
            port=port,
            metadata=[("x-api-key", key)],
            leader=process.pid,
        )
    finally:
        run.children.stop(process)


def phoenix_measure(
    run: Run, *, port: int, key: str, leader: int, workers: int, suffix: str = ""
) -> None:
    """The REST and v2 rows (ids end in ``suffix``); the batch and memory runs only for
    the plain server (no suffix)."""
    name = run.args.model_name
    server = "Phoenix (make run web process" + (", micro-batching on)" if suffix else ")")
    bodies = single_row_bodies(run.model)
    rest_path = f"/api/v1/models/{name}/predict"
    rest = build_request(HOST, rest_path, key, bodies["named"], port=port)
    for row_id, endpoint, raw in (
        ("phoenix-rest" + suffix, "REST POST /api/v1/models/{name}/predict", rest),
        (
            "phoenix-v2" + suffix,
            "v2 POST /v2/models/{name}/infer",
            build_request(HOST, f"/v2/models/{name}/infer", key, bodies["v2"], port=port),
        ),
    ):
        add_row(
            run,
            row_id=row_id,
            server=server,
            endpoint=endpoint,
            workers=workers,
            port=port,
            raw=raw,
            leader=leader,
        )
    if suffix:
        return
    if run.args.batch:
        import numpy as np

        rows = np.random.default_rng(1).normal(size=(run.args.batch, len(run.model.features)))
        body = json.dumps({"features": rows.round(4).tolist()}).encode()
        raw = build_request(HOST, rest_path, key, body, port=port)
        print(f"  Phoenix REST batch of {run.args.batch} rows", flush=True)
        sanity_status, answer = exchange(port, raw)
        if sanity_status != 200:
            run.note(f"phoenix batch: HTTP {sanity_status}: {answer[:300]!r}")
        levels = drive(run, "phoenix-batch", port, raw, _ints(run.args.batch_concurrency))
        for level in levels:
            level["rows_per_s"] = level["rps"] * run.args.batch
        run.result["batch"] = levels
    if run.args.memory_requests:
        memory_measure(run, port=port, raw=rest, leader=leader)


def memory_measure(run: Run, *, port: int, raw: bytes, leader: int) -> None:
    requests, concurrency = run.args.memory_requests, run.args.memory_concurrency
    print(f"  Phoenix resident memory over {requests:,} REST requests", flush=True)
    pids = worker_pids(leader)
    before = {pid: rss_kib(pid) for pid in pids}
    levels = drive(
        run,
        "phoenix-memory",
        port,
        raw,
        [concurrency],
        max_requests=requests,
        time_limit_s=max(120.0, requests / 50),
    )
    time.sleep(1.0)  # let the event writer drain what the last requests queued
    workers = []
    for pid in pids:
        after = rss_kib(pid)
        start = before[pid]
        growth = 100 * (after - start) / start if after and start else 0.0
        workers.append({"pid": pid, "before_kib": start, "after_kib": after, "growth_pct": growth})
        print(f"    pid {pid}: {start} -> {after} KiB ({growth:+.1f}%)", flush=True)
    level = levels[0]
    run.result["memory"] = {
        "requests": level["requests"],
        "concurrency": concurrency,
        "errors": level["errors"],
        "workers": workers,
    }


CONTENDER_RUNS: dict[str, Callable[[Run], None]] = {
    "raw": contender_raw,
    "null": contender_null,
    "fastapi": contender_fastapi,
    "kserve": contender_kserve,
    "phoenix": contender_phoenix,
    "phoenix-mb": lambda run: contender_phoenix(run, micro_batching=True),
}


# --- command line ------------------------------------------------------------------------


def default_phoenix_workers() -> int:
    """What run_stack's --web-workers defaults to (WEB_CONCURRENCY, else the stack's choice)."""
    if "WEB_CONCURRENCY" in os.environ:
        return int(os.environ["WEB_CONCURRENCY"])
    default = getattr(phoenix_stack, "default_web_workers", None)
    return int(default(os.cpu_count())) if callable(default) else 2


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench",
        description=__doc__,
        formatter_class=_HelpFormatter,
    )
    add = parser.add_argument
    add("--only", default="", help="comma-separated contenders to run (default: all)")
    add("--skip", default="", help="comma-separated contenders to leave out")
    add("--concurrency", default="1,8,64", help="concurrent clients per level")
    add("--duration", type=float, default=5.0, help="measured seconds per level")
    add("--warmup", type=float, default=1.0, help="unmeasured seconds before each level")
    add("--raw-duration", type=float, default=2.0, help="seconds per raw onnxruntime figure")
    add("--batch", type=int, default=256, help="rows per batch request (0: no batch run)")
    add("--batch-concurrency", default="1,8", help="clients for the batch run")
    add("--memory-requests", type=int, default=0, help="REST requests for the RSS check (0: skip)")
    add("--memory-concurrency", type=int, default=8, help="clients for the RSS check")
    add("--fastapi-workers", type=int, default=2, help="uvicorn workers of the FastAPI peer")
    add("--kserve-workers", default="1,2", help="KServe worker counts, one server each")
    add("--kserve-args", default="--enable_grpc false", help="more KServe server flags")
    add(
        "--phoenix-workers",
        type=int,
        default=None,
        help="web_workers handed to phoenix.processes (default: as `make run`, WEB_CONCURRENCY "
        "or phoenix.processes's default)",
    )
    add(
        "--phoenix-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment override for Phoenix (repeatable)",
    )
    add(
        "--no-grpc",
        dest="grpc",
        action="store_false",
        help="leave out the gRPC rows (Phoenix serve_grpc, KServe's gRPC server)",
    )
    add("--model-name", default="bench", help="model name on every server")
    add("--venv-dir", default=str(ROOT / "var" / "bench" / "venvs"), help="peer virtualenvs")
    add("--work-dir", default=str(ROOT / "var" / "bench" / "work"), help="model, logs, data")
    add("--out", default="", help="results path without suffix (.md and .json are written)")
    add("--loop", default="auto", choices=["auto", "uvloop", "asyncio"], help="client loop")
    add("--ready-timeout", type=float, default=180.0, help="seconds a server may take to start")
    add("--keep-data", action="store_true", help="keep Phoenix's temporary data dir")
    args = parser.parse_args(argv)
    only, skip = set(_csv(args.only)), set(_csv(args.skip))
    unknown = (only | skip) - set(CONTENDERS)
    if unknown:
        parser.error(f"unknown contenders {sorted(unknown)}; known: {', '.join(CONTENDERS)}")
    if args.phoenix_workers is None:
        args.phoenix_workers = default_phoenix_workers()
    args.contenders = [c for c in CONTENDERS if (not only or c in only) and c not in skip]
    for item in args.phoenix_env:
        if "=" not in item:
            parser.error(f"--phoenix-env takes KEY=VALUE, not {item!r}")
    return args


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if Path(sys.prefix).resolve() != PROJECT_VENV.resolve():
        print(f"warning: not running from {PROJECT_VENV}; Phoenix runs on {sys.executable}")
    signal.signal(signal.SIGTERM, _terminate)
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else ROOT / "var" / "bench" / f"results-{stamp}"
    if out.suffix in (".md", ".json"):
        out = out.with_suffix("")
    work = Path(args.work_dir).resolve()
    children = ChildProcesses()
    import onnxruntime as ort

    print(f"building the model in {work}", flush=True)
    model = build_model(work)
    session = ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"])
    row = [model.row]
    import numpy as np

    feed = {model.input_name: np.asarray(row, dtype=np.float32)}
    reference_label = int(session.run(None, feed)[0][0])
    result: dict[str, Any] = {
        "started_at": started.isoformat(timespec="seconds"),
        "command": shlex.join([Path(sys.executable).name, "-m", "scripts.bench", *sys.argv[1:]]),
        "machine": machine_describe(),
        "config": {
            "contenders": args.contenders,
            "concurrency": _ints(args.concurrency),
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "batch": args.batch,
            "host": HOST,
        },
        "model": {
            "description": f"{TREES}-tree GradientBoostingClassifier, "
            f"{len(model.features)} FP32 features ({','.join(model.features)}), skl2onnx, "
            "zipmap off",
            "path": str(model.path),
            "sha256": model.sha256,
            "row": model.row,
            "label": reference_label,
        },
        "raw": None,
        "rows": [],
        "batch": None,
        "memory": None,
        "peers": {},
        "failures": [],
        "notes": [],
    }
    run = Run(
        args=args,
        model=model,
        children=children,
        work=work,
        result=result,
        reference_label=reference_label,
        onnxruntime_version=ort.__version__,
    )
    interrupted = False
    try:
        for contender in args.contenders:
            print(f"[{contender}]", flush=True)
            try:
                CONTENDER_RUNS[contender](run)
            except (RuntimeError, OSError, ValueError, KeyError) as exc:
                message = f"{type(exc).__name__}: {exc}"
                print(f"  FAILED: {message[-2000:]}", flush=True)
                result["failures"].append({"contender": contender, "error": message[-2000:]})
    except (KeyboardInterrupt, SystemExit):
        interrupted = True
        result["notes"].append("interrupted: the figures are partial")
        print("interrupted: stopping every child process", flush=True)
    finally:
        children.stop_all()
    result["machine"]["loadavg_end"] = "/".join(f"{x:.2f}" for x in os.getloadavg())
    result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    result["goals"] = goals_compute(result)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    page = markdown(result)
    out.with_suffix(".md").write_text(page)
    print("\n" + page)
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")
    if interrupted:
        return 130
    return 1 if result["failures"] else 0
