"""Start web, worker, beat (and the event consumer with Kafka) together; Ctrl-C stops all."""

from __future__ import annotations

import os
import shutil
import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from honcho.manager import Manager

from phoenix.processes import default_web_workers, stack_processes


class Command(BaseCommand):
    help = (
        "Run the whole application in the foreground: the ASGI web server (HTTP and "
        "websockets), the Celery worker and beat, the gRPC inference server "
        "(--grpc-port), and with KAFKA_BOOTSTRAP_SERVERS set the event consumer. "
        "Ctrl-C (or SIGTERM) stops every process; so does any one exiting."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument(
            "--web-workers",
            type=int,
            default=int(os.environ.get("WEB_CONCURRENCY", default_web_workers(os.cpu_count()))),
            help="web (uvicorn) processes sharing the port; default: one per core, at most 4 "
            "(WEB_CONCURRENCY)",
        )

        parser.add_argument(
            "--grpc-port",
            type=int,
            default=settings.PHOENIX_GRPC_PORT,
            help="port of the gRPC inference server (PHOENIX_GRPC_PORT; 0: do not start it)",
        )

    def handle(
        self, *args: Any, host: str, port: int, web_workers: int, grpc_port: int, **options: Any
    ) -> None:
        processes = stack_processes(
            python=sys.executable,
            host=host,
            port=port,
            web_workers=web_workers,
            kafka_enabled=settings.PHOENIX_EVENT_BACKEND == "kafka",
            grpc_port=grpc_port or None,
        )
        settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
        env = {**os.environ}
        if "PROMETHEUS_MULTIPROC_DIR" not in env:
            # Every process of the stack writes its metrics here, so /metrics and the
            # dashboards add up all web workers (and the Celery worker's drift gauges).
            # Files of an earlier run would be counted again: start empty.
            metrics_dir = settings.DATA_DIR / "prometheus"
            shutil.rmtree(metrics_dir, ignore_errors=True)
            metrics_dir.mkdir(parents=True)
            env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        self.stdout.write(f"Phoenix ML on http://{host}:{port}/  (admin: /admin/, API: /api/v1/)")
        if grpc_port:
            self.stdout.write(f"Open Inference Protocol over gRPC on {host}:{grpc_port}")
        manager = Manager()
        for process in processes:
            manager.add_process(process.name, process.command, env={**env, **process.env})
        manager.loop()
        sys.exit(manager.returncode)
