"""Consume prediction events from Kafka into the prediction log (a consumer-group member)."""

from __future__ import annotations

import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from monitoring.services.event_consumer import ConsumerConfig, PredictionLogConsumer


class Command(BaseCommand):
    help = (
        "Read prediction events from Kafka in batches, write them to PredictionLog "
        "(duplicates ignored), commit offsets after the database commit. Run several "
        "to share the topic's partitions. Stops cleanly on SIGTERM/SIGINT."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bootstrap-servers", default=settings.KAFKA_BOOTSTRAP_SERVERS)
        parser.add_argument("--topic", default=settings.PHOENIX_EVENT_TOPIC)
        parser.add_argument(
            "--group-id",
            default=settings.PHOENIX_EVENT_CONSUMER_GROUP,
        )
        parser.add_argument("--dlq-topic", default=settings.PHOENIX_EVENT_DLQ_TOPIC)
        parser.add_argument("--batch-size", type=int, default=settings.PHOENIX_EVENT_BATCH_SIZE)
        parser.add_argument(
            "--partitions",
            default="",
            help="comma-separated partitions to read without joining the group (default: join)",
        )
        parser.add_argument(
            "--metrics-port", type=int, default=0, help="serve Prometheus metrics on this port"
        )
        parser.add_argument("--max-batches", type=int, default=None)
        parser.add_argument(
            "--idle-timeout", type=float, default=None, help="exit after this many idle seconds"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["bootstrap_servers"]:
            raise CommandError("no Kafka: set KAFKA_BOOTSTRAP_SERVERS or --bootstrap-servers")
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        try:
            partitions = (
                [int(p) for p in options["partitions"].split(",")]
                if options["partitions"]
                else None
            )
        except ValueError as exc:
            raise CommandError("--partitions must be integers, e.g. 0,1,2") from exc
        if options["metrics_port"]:
            from phoenix.metrics_exporter import metrics_exporter_start

            metrics_exporter_start(port=options["metrics_port"])
        consumer = PredictionLogConsumer(
            ConsumerConfig(
                bootstrap_servers=options["bootstrap_servers"],
                topic=options["topic"],
                group_id=options["group_id"],
                dlq_topic=options["dlq_topic"],
                batch_size=options["batch_size"],
                partitions=partitions,
                partitions_on_create=settings.PHOENIX_EVENT_TOPIC_PARTITIONS,
            )
        )

        def shutdown(signum: int, frame: object) -> None:
            # Finish the batch in hand, commit it, close: no half-written batch.
            self.stderr.write(f"signal {signum}: stopping after the current batch")
            consumer.stop()

        previous = {sig: signal.signal(sig, shutdown) for sig in (signal.SIGTERM, signal.SIGINT)}
        self.stdout.write(
            f"consuming {options['topic']} as group {options['group_id']!r} "
            f"from {options['bootstrap_servers']}"
        )
        try:
            stats = consumer.run(
                max_batches=options["max_batches"], idle_timeout_s=options["idle_timeout"]
            )
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.stdout.write(
            f"stopped: {stats.batches} batches, {stats.inserted} inserted, "
            f"{stats.duplicates} duplicates, {stats.dead_lettered} dead-lettered"
        )
