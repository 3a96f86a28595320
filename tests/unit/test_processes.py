from __future__ import annotations

from phoenix.processes import default_web_workers, stack_processes


def names(**overrides: object) -> dict[str, list[str]]:
    options: dict[str, object] = {
        "python": "/venv/bin/python",
        "host": "127.0.0.1",
        "port": 8123,
        "web_workers": 4,
        "kafka_enabled": False,
    }
    options.update(overrides)
    return {p.name: p.argv for p in stack_processes(**options)}  # type: ignore[arg-type]


def test_embedded_stack_is_web_worker_beat_with_every_web_worker() -> None:
    processes = names()
    assert list(processes) == ["web", "worker", "beat"]
    web = processes["web"]
    assert web[web.index("--port") + 1] == "8123"
    # No Redis needed for more than one web process (the in-memory channel layer
    # feeds each process's own websockets).
    assert web[web.index("--workers") + 1] == "4"


def test_with_kafka_the_consumer_runs() -> None:
    processes = names(kafka_enabled=True)
    assert processes["events"][-1] == "consume_events"


def test_default_web_workers_follow_the_cores() -> None:
    assert [default_web_workers(n) for n in (None, 1, 2, 3, 16)] == [1, 1, 2, 3, 4]


def test_web_process_preloads_models() -> None:
    web = next(
        p
        for p in stack_processes(python="py", host="h", port=1, web_workers=1, kafka_enabled=False)
        if p.name == "web"
    )
    assert web.env == {"PHOENIX_PRELOAD_MODELS": "1"}


def test_grpc_server_runs_on_its_port_when_asked() -> None:
    assert "grpc" not in names()
    grpc = names(grpc_port=8181)["grpc"]
    assert grpc[1:4] == ["manage.py", "serve_grpc", "--host"]
    assert grpc[grpc.index("--port") + 1] == "8181"
