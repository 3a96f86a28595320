"""Serve the Open Inference Protocol (KServe v2) over gRPC in this process."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = (
        "Serve inference.GRPCInferenceService (KServe v2: ServerLive, ServerReady, "
        "ModelReady, ServerMetadata, ModelMetadata, ModelInfer) with the same API keys, "
        "routing, metrics and events as the HTTP API. Models are warmed up before the "
        "port opens. SIGTERM/SIGINT: stop accepting, finish calls in progress (--grace), "
        "flush the event buffer, exit."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a server's job
        parser.add_argument("--port", type=int, default=settings.PHOENIX_GRPC_PORT)
        parser.add_argument(
            "--threads",
            type=int,
            default=settings.PHOENIX_GRPC_THREADS,
            help="worker threads answering calls",
        )
        parser.add_argument(
            "--grace", type=float, default=10.0, help="seconds calls in progress may finish"
        )
        parser.add_argument(
            "--metrics-port", type=int, default=0, help="serve Prometheus metrics on this port"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from inference.session_cache import preload

        if options["threads"] < 1:
            raise CommandError("--threads must be at least 1")
        if options["metrics_port"]:
            from phoenix.metrics_exporter import metrics_exporter_start

            metrics_exporter_start(port=options["metrics_port"])
        preload(always=True)
        asyncio.run(self._serve(options))

    async def _serve(self, options: dict[str, Any]) -> None:
        from inference.api.v2_grpc import grpc_server_build
        from inference.api_key_usage import api_key_usage_stop
        from inference.events import event_publishing_stop

        try:
            server, port = grpc_server_build(
                host=options["host"], port=options["port"], threads=options["threads"]
            )
        except (OSError, RuntimeError) as exc:
            raise CommandError(str(exc)) from exc
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        await server.start()
        self.stdout.write(f"gRPC inference on {options['host']}:{port}")
        try:
            await stopping.wait()
            self.stderr.write("stopping: finishing calls in progress")
        finally:
            await server.stop(options["grace"])
            event_publishing_stop()
            # A database write: off the event loop.
            await loop.run_in_executor(None, api_key_usage_stop)
