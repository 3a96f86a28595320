"""The apps import one way, with no cycle (docs/ARCHITECTURE.md, "Allowed import directions")."""

from __future__ import annotations

from scripts.import_graph import Edge, app_cycles, backwards, cycles, demo_imports, edges


def test_no_import_cycle_between_modules() -> None:
    assert cycles(edges()) == []


def test_no_import_cycle_between_apps() -> None:
    assert app_cycles(edges()) == []


def test_no_app_imports_a_higher_one() -> None:
    assert backwards(edges()) == []


def test_nothing_outside_the_demo_imports_it() -> None:
    assert demo_imports(edges()) == []


def test_the_check_sees_backwards_imports_and_cycles_function_level_ones_included() -> None:
    graph = [
        Edge("inference.event_sinks", "monitoring.services.prediction_log", 215),
        Edge("monitoring.services.prediction_log", "inference.event_sinks", 3),
        Edge("phoenix.asgi", "monitoring.ws_urls", 39),  # composition: allowed
        Edge("models_registry.services", "phoenix.demo.recipes", 1),
    ]

    assert backwards(graph) == [graph[0]]
    assert cycles(graph) == [["inference.event_sinks", "monitoring.services.prediction_log"]]
    assert app_cycles(graph) == [["inference", "monitoring"]]
    assert demo_imports(graph) == [graph[3]]


def test_function_level_imports_are_edges(tmp_path) -> None:
    from scripts import import_graph

    (tmp_path / "inference").mkdir()
    (tmp_path / "monitoring").mkdir()
    (tmp_path / "inference" / "sinks.py").write_text(
        "def send():\n    from monitoring.log import write\n    return write\n"
    )
    (tmp_path / "monitoring" / "log.py").write_text("from inference import sinks\n")
    modules = {
        "inference.sinks": tmp_path / "inference" / "sinks.py",
        "monitoring.log": tmp_path / "monitoring" / "log.py",
        "inference": tmp_path / "inference" / "__init__.py",
    }
    (tmp_path / "inference" / "__init__.py").write_text("")

    found = {(e.importer, e.imported) for e in import_graph.edges(modules)}

    assert ("inference.sinks", "monitoring.log") in found
    assert ("monitoring.log", "inference.sinks") in found
