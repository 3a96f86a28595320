"""Which processes make up a running Phoenix, for the embedded and the service-backed setup.

Pure: the ``run_stack`` command hands the result to honcho, which starts them
together, prefixes their output and stops all of them when one stops or on Ctrl-C.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass


def default_web_workers(cores: int | None) -> int:
    """Web processes for a machine: one per core, at least one, at most four (beyond
    that, run more replicas behind a load balancer)."""
    return max(1, min(cores or 1, 4))


@dataclass(frozen=True)
class StackProcess:
    name: str
    argv: list[str]
    env: dict[str, str]

    @property
    def command(self) -> str:
        return shlex.join(self.argv)


def stack_processes(
    *,
    python: str,
    host: str,
    port: int,
    web_workers: int,
    kafka_enabled: bool,
    worker_concurrency: int = 2,
    grpc_port: int | None = None,
) -> list[StackProcess]:
    """The web server, Celery worker and beat, the gRPC inference server (on
    ``grpc_port``; None: none), and (with Kafka) the event consumer.

    ``web_workers`` uvicorn processes share the port with or without Redis. Without
    Redis the channel layer lives in process memory, which is enough: each process
    feeds its own websockets, its snapshots read every process's metrics (the
    caller sets PROMETHEUS_MULTIPROC_DIR), and events stored by other processes
    reach it through its poll of the database (monitoring/services/live.py).
    Without Kafka, prediction events are written by a thread inside each web process.
    """
    workers = max(1, web_workers)
    processes = [
        StackProcess(
            name="web",
            argv=[
                python,
                "-m",
                # uvicorn, writing each response head with its body (phoenix/web_server.py).
                "phoenix.web_server",
                "phoenix.asgi:application",
                "--host",
                host,
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--no-access-log",
                # The lifespan shutdown flushes the event buffer (phoenix/lifespan.py).
                "--lifespan",
                "on",
            ],
            env={"PHOENIX_PRELOAD_MODELS": "1"},
        ),
        StackProcess(
            name="worker",
            argv=[
                python,
                "-m",
                "celery",
                "-A",
                "phoenix",
                "worker",
                "--loglevel",
                "INFO",
                # Threads: no forked copies of the app, and Ctrl-C stops it promptly.
                "--pool",
                "threads",
                "--concurrency",
                str(worker_concurrency),
                "--hostname",
                "worker@%h",
            ],
            env={},
        ),
        StackProcess(
            name="beat",
            argv=[python, "-m", "celery", "-A", "phoenix", "beat", "--loglevel", "INFO"],
            env={},
        ),
    ]
    if grpc_port is not None:
        processes.append(
            StackProcess(
                name="grpc",
                argv=[
                    python,
                    "manage.py",
                    "serve_grpc",
                    "--host",
                    host,
                    "--port",
                    str(grpc_port),
                ],
                env={},
            )
        )
    if kafka_enabled:
        processes.append(
            StackProcess(name="events", argv=[python, "manage.py", "consume_events"], env={})
        )
    return processes
