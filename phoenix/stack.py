"""Which processes make up a running Phoenix, for the embedded and the service-backed setup.

Pure: the ``run_stack`` command hands the result to honcho, which starts them
together, prefixes their output and stops all of them when one stops or on Ctrl-C.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass


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
    redis_enabled: bool,
    worker_concurrency: int = 2,
) -> list[StackProcess]:
    """The web server, Celery worker and beat, and (with Kafka) the event consumer.

    Without Redis the channel layer lives in process memory, so the live dashboards
    need every websocket in one web process: more web workers need Redis.
    Without Kafka, prediction events are written by a thread inside the web process.
    """
    workers = web_workers if redis_enabled else 1
    processes = [
        StackProcess(
            name="web",
            argv=[
                python,
                "-m",
                "uvicorn",
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
    if kafka_enabled:
        processes.append(
            StackProcess(name="events", argv=[python, "manage.py", "consume_events"], env={})
        )
    return processes
