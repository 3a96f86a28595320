"""The Kubernetes manifests (deploy/kubernetes) render, validate and keep their promises.

Each overlay is rendered with `kubectl kustomize` (no cluster needed); every object is
validated against the Kubernetes OpenAPI schemas of 1.30 and of the newest release
kubernetes-validate knows, strictly (unknown fields are errors). The PodMonitor is a
Prometheus Operator custom resource with no schema there: it is the one object allowed
to go unvalidated, and the test says so by name. The rest are the structural promises of
issue 14 and README, "Running on Kubernetes". The security scan (checkov) runs in its
own virtualenv: `make k8s-check`.
"""

from __future__ import annotations

import inspect
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import redis.connection
import yaml
from kubernetes_validate.utils import latest_version
from prometheus_client.metrics import MetricWrapperBase

from tests.conftest import service_unavailable

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE_DIR = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("dev", "production", "gpu")
KUBERNETES_VERSIONS = ("1.30.0", latest_version())

# Custom resources kubernetes-validate has no schema for, and the only ones allowed.
CUSTOM_RESOURCES = {("monitoring.coreos.com/v1", "PodMonitor")}

# README settings that carry credentials: only ever from the Secret `phoenix-secrets`.
SECRET_SETTINGS = {
    "DJANGO_SECRET_KEY",
    "DATABASE_URL",
    "REDIS_URL",
    "PHOENIX_ALERT_WEBHOOK_URL",
    "PHOENIX_ALERT_WEBHOOK_SECRET",
    "PHOENIX_METRICS_TOKEN",
    "DJANGO_EMAIL_HOST_PASSWORD",
}
SECRET_NAME = "phoenix-secrets"

# Every checkov waiver in the repository, by overlay: adding one is a reviewed change
# here as well as an annotation with its reason in the manifests.
WAIVERS_EVERY_WORKLOAD = {"CKV_K8S_35", "CKV_K8S_40", "CKV_K8S_43"}
WAIVERS_BY_WORKLOAD = {"phoenix-beat": {"CKV_K8S_8", "CKV_K8S_9"}}
WAIVERS_BY_OVERLAY = {"dev": {"CKV_K8S_15"}}

SERVING = ("phoenix-api", "phoenix-grpc")
WORKLOADS = ("phoenix-api", "phoenix-grpc", "phoenix-worker", "phoenix-beat", "phoenix-consumer")


# --- rendering ----------------------------------------------------------------


@cache
def _render(overlay: str) -> tuple[dict[str, Any], ...]:
    result = subprocess.run(
        ["kubectl", "kustomize", str(KUSTOMIZE_DIR / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {overlay} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    if shutil.which("kubectl") is None:
        service_unavailable("kubectl (with Kustomize) is not installed")
    return str(request.param)


@pytest.fixture
def objects(overlay: str) -> tuple[dict[str, Any], ...]:
    return _render(overlay)


def _of_kind(objects: tuple[dict[str, Any], ...], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def _pod_specs(objects: tuple[dict[str, Any], ...]) -> Iterator[tuple[str, dict[str, Any]]]:
    for o in objects:
        if o["kind"] in ("Deployment", "Job"):
            yield o["metadata"]["name"], o["spec"]["template"]["spec"]


def _phoenix_container(pod_spec: dict[str, Any]) -> dict[str, Any]:
    (container,) = (c for c in pod_spec["containers"] if c["name"] == "phoenix")
    return container


def _settings(objects: tuple[dict[str, Any], ...]) -> tuple[str, dict[str, str]]:
    """The generated settings ConfigMap: its (hashed) name and its data."""
    (config_map,) = (
        o
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("phoenix-settings")
    )
    return config_map["metadata"]["name"], config_map["data"]


def _container_env(container: dict[str, Any], settings: dict[str, str]) -> dict[str, str]:
    """What each variable resolves to in this container: a value, or `secret:<key>`."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert "configMapRef" in source, f"only the settings ConfigMap is read whole: {source}"
        env.update(settings)
    for var in container.get("env", []):
        ref = var.get("valueFrom", {})
        if "secretKeyRef" in ref:
            env[var["name"]] = f"secret:{ref['secretKeyRef']['key']}"
        elif "fieldRef" in ref:
            env[var["name"]] = f"field:{ref['fieldRef']['fieldPath']}"
        else:
            env[var["name"]] = var.get("value", "")
    return env


# --- the README's settings table ----------------------------------------------


@cache
def _names_in_code() -> frozenset[str]:
    """Every upper-case string literal in the project's Python: environment variable names."""
    names: set[str] = set()
    for package in ("phoenix", "inference", "monitoring", "models_registry"):
        for path in (ROOT / package).rglob("*.py"):
            names.update(re.findall(r"[\"']([A-Z][A-Z0-9_]{2,})[\"']", path.read_text()))
    return frozenset(names)


@cache
def readme_settings() -> frozenset[str]:
    """The variables of README's configuration table, shorthands (`/ _TIMEOUT_S`) expanded.

    A shorthand replaces a tail of the row's first name; of the candidate names, the one
    the code reads is meant, and there must be exactly one.
    """
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    settings: set[str] = set()
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        first_cell = line.split("|")[1]
        names = re.findall(r"`([A-Z_][A-Z0-9_]*)`", first_cell)
        head = names[0]
        settings.add(head)
        for shorthand in names[1:]:
            if not shorthand.startswith("_"):
                settings.add(shorthand)
                continue
            cuts = [m.start() for m in re.finditer("_", head)]
            candidates = {head[:cut] + shorthand for cut in cuts} & _names_in_code()
            assert len(candidates) == 1, f"{head} / {shorthand}: {sorted(candidates)}"
            settings |= candidates
    return frozenset(settings)


def test_readme_table_is_read_whole() -> None:
    settings = readme_settings()

    assert len(settings) > 50
    assert {
        "PHOENIX_EVENT_FLUSH_INTERVAL_S",
        "PHOENIX_MODEL_VALIDATION_TIMEOUT_S",
        "PHOENIX_EXPERIMENT_STEP_MIN_SAMPLES",
        "PHOENIX_ONNX_INTER_OP_THREADS",
        "PHOENIX_PROMETHEUS_TIMEOUT_S",
    } <= settings
    assert settings >= SECRET_SETTINGS


# --- renders and validates ----------------------------------------------------


def test_overlays_render_the_same_objects(overlay: str, objects: tuple[dict[str, Any], ...]):
    kinds = {(o["kind"], o["metadata"]["name"].split("-settings-")[0]) for o in objects}

    assert {("Deployment", name) for name in WORKLOADS} <= kinds
    assert {
        ("Job", "phoenix-migrate"),
        ("Service", "phoenix-api"),
        ("Service", "phoenix-grpc"),
        ("Ingress", "phoenix"),
        ("Ingress", "phoenix-grpc"),
        ("PersistentVolumeClaim", "phoenix-data"),
        ("HorizontalPodAutoscaler", "phoenix-api"),
        ("HorizontalPodAutoscaler", "phoenix-consumer"),
        ("PodMonitor", "phoenix"),
        ("ConfigMap", "phoenix-grafana-dashboards"),
        ("ServiceAccount", "phoenix"),
    } <= kinds
    assert {kind for kind, _ in kinds} >= {"PodDisruptionBudget", "NetworkPolicy", "Namespace"}
    # No two objects of one kind share a name (a patch that duplicated instead of merged).
    assert len(kinds) == len(objects)
    # Overlays change settings, never which objects there are (the namespace's name aside).
    dev = {(o["kind"], o["metadata"]["name"].split("-settings-")[0]) for o in _render("dev")}
    assert {k for k in kinds if k[0] != "Namespace"} == {k for k in dev if k[0] != "Namespace"}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_validates_against_the_kubernetes_schemas(
    objects: tuple[dict[str, Any], ...], version: str
) -> None:
    unvalidated: set[tuple[str, str]] = set()
    errors: list[str] = []
    for o in objects:
        try:
            kubernetes_validate.validate(o, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            unvalidated.add((o["apiVersion"], o["kind"]))
        except kubernetes_validate.ValidationError as error:
            path = "/".join(str(p) for p in error.path)
            errors.append(f"{o['kind']}/{o['metadata']['name']} at {path}: {error.message}")

    assert errors == []
    # Only the custom resources named above go unchecked; a typo in a built-in kind's
    # apiVersion would land here too and fail.
    assert unvalidated == CUSTOM_RESOURCES


def test_namespaced_objects_land_in_the_overlay_namespace(
    overlay: str, objects: tuple[dict[str, Any], ...]
) -> None:
    (namespace,) = _of_kind(objects, "Namespace")
    namespaced = [o for o in objects if o["kind"] != "Namespace"]

    assert {o["metadata"].get("namespace") for o in namespaced} == {namespace}
    labels = _of_kind(objects, "Namespace")[namespace]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


# --- pods: security, resources, probes ----------------------------------------


def test_every_container_is_non_root_with_a_read_only_root(objects: tuple[dict[str, Any], ...]):
    for name, pod in _pod_specs(objects):
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["automountServiceAccountToken"] is False, name
        for container in pod["containers"] + pod.get("initContainers", []):
            where = f"{name}/{container['name']}"
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context.get("privileged", False) is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in context["capabilities"], where
            assert container["resources"]["requests"].keys() >= {"cpu", "memory"}, where
            assert container["resources"]["limits"].keys() >= {"cpu", "memory"}, where


def test_writable_paths_are_volumes_never_the_host(objects: tuple[dict[str, Any], ...]) -> None:
    for name, pod in _pod_specs(objects):
        for volume in pod.get("volumes", []):
            assert volume.keys() & {"emptyDir", "persistentVolumeClaim"}, f"{name}: {volume}"
        for shared in ("hostNetwork", "hostPID", "hostIPC"):
            assert not pod.get(shared), f"{name}: {shared}"


def test_api_probes_ready_live_and_started(objects: tuple[dict[str, Any], ...]) -> None:
    api = _phoenix_container(
        _of_kind(objects, "Deployment")["phoenix-api"]["spec"]["template"]["spec"]
    )

    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # /readyz waits on a hung (not refusing) Redis for redis-py's socket timeout and then
    # answers ready, degraded: the probe must wait longer, or every pod fails at once.
    redis_timeout = (
        inspect.signature(redis.connection.AbstractConnection).parameters["socket_timeout"].default
    )
    assert api["readinessProbe"]["timeoutSeconds"] > redis_timeout
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    startup = api["startupProbe"]
    # Model warm-up gets minutes before liveness may restart the pod.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120
    assert api["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    # The event buffer is shipped in the lifespan shutdown.
    assert api["command"][api["command"].index("--lifespan") + 1] == "on"
    # Probes reach the pod by its IP: Django must accept it as a host.
    env = {var["name"]: var for var in api["env"]}
    names = [var["name"] for var in api["env"]]
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert "$(POD_IP)" in env["DJANGO_ALLOWED_HOSTS"]["value"]
    assert names.index("POD_IP") < names.index("DJANGO_ALLOWED_HOSTS")


def test_every_long_running_workload_is_probed(objects: tuple[dict[str, Any], ...]) -> None:
    deployments = _of_kind(objects, "Deployment")
    for name in set(WORKLOADS) - {"phoenix-beat"}:
        container = _phoenix_container(deployments[name]["spec"]["template"]["spec"])
        assert {"startupProbe", "livenessProbe", "readinessProbe"} <= container.keys(), name


@pytest.mark.parametrize("name", SERVING)
def test_grace_period_outlasts_prestop_and_the_event_flush(
    objects: tuple[dict[str, Any], ...], name: str
) -> None:
    pod = _of_kind(objects, "Deployment")[name]["spec"]["template"]["spec"]
    container = _phoenix_container(pod)
    _, settings = _settings(objects)
    pre_stop = float(container["lifecycle"]["preStop"]["exec"]["command"][1])
    command = container["command"]
    in_flight = float(command[command.index("--grace") + 1]) if "--grace" in command else 0.0

    # SIGKILL before the last flush has been sent (or journalled) would lose the buffer.
    needed = (
        pre_stop
        + in_flight
        + float(settings["PHOENIX_EVENT_FLUSH_INTERVAL_S"])
        + float(settings["PHOENIX_EVENT_SEND_TIMEOUT_S"])
    )
    assert pod["terminationGracePeriodSeconds"] > needed


def test_journal_is_on_the_persistent_volume(
    overlay: str, objects: tuple[dict[str, Any], ...]
) -> None:
    _, settings = _settings(objects)
    journal = settings["PHOENIX_EVENT_JOURNAL_DIR"]
    claims = _of_kind(objects, "PersistentVolumeClaim")

    for name in SERVING:
        pod = _of_kind(objects, "Deployment")[name]["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = [
            m
            for m in _phoenix_container(pod)["volumeMounts"]
            if journal == m["mountPath"] or journal.startswith(m["mountPath"].rstrip("/") + "/")
        ]
        # The deepest mount holding the journal is the one it is written to.
        mount = max(mounts, key=lambda m: len(m["mountPath"]))
        claim = volumes[mount["name"]]["persistentVolumeClaim"]["claimName"]
        assert claim in claims, name
        assert not mount.get("readOnly", False)
    # Several pods on several nodes write their journals to the one claim.
    access = claims["phoenix-data"]["spec"]["accessModes"]
    assert access == (["ReadWriteOnce"] if overlay == "dev" else ["ReadWriteMany"])


# --- settings and secrets -----------------------------------------------------


def test_every_readme_setting_reaches_every_phoenix_container(
    objects: tuple[dict[str, Any], ...],
) -> None:
    config_map_name, settings = _settings(objects)
    for name, pod in _pod_specs(objects):
        container = _phoenix_container(pod)
        assert container["envFrom"] == [{"configMapRef": {"name": config_map_name}}], name
        env = _container_env(container, settings)

        missing = readme_settings() - env.keys()
        assert not missing, f"{name} lacks {sorted(missing)}"
        for setting in SECRET_SETTINGS:
            assert env[setting] == f"secret:{setting}", f"{name}: {setting}"


def test_secrets_come_only_from_the_secret_never_a_value(
    objects: tuple[dict[str, Any], ...],
) -> None:
    _, settings = _settings(objects)
    credential = re.compile(r"://[^/\s:@]+:[^/\s@]+@")

    assert not [o for o in objects if o["kind"] == "Secret"]
    assert not SECRET_SETTINGS & settings.keys()
    for key, value in settings.items():
        assert not credential.search(value), key
        assert not re.search(r"SECRET|PASSWORD|TOKEN", key), key
    for name, pod in _pod_specs(objects):
        for container in pod["containers"] + pod.get("initContainers", []):
            for var in container.get("env", []):
                where = f"{name}/{container['name']}: {var['name']}"
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref is not None:
                    assert ref["name"] == SECRET_NAME, where
                    continue
                assert not credential.search(var.get("value", "")), where
                assert not re.search(r"SECRET|PASSWORD|TOKEN", var["name"]), where


def test_grpc_serves_on_the_configured_port(objects: tuple[dict[str, Any], ...]) -> None:
    _, settings = _settings(objects)
    grpc = _phoenix_container(
        _of_kind(objects, "Deployment")["phoenix-grpc"]["spec"]["template"]["spec"]
    )
    service = _of_kind(objects, "Service")["phoenix-grpc"]

    ports = {p["name"]: p["containerPort"] for p in grpc["ports"]}
    assert ports["grpc"] == int(settings["PHOENIX_GRPC_PORT"])
    assert "$(PHOENIX_GRPC_PORT)" in grpc["command"]
    assert service["spec"]["ports"][0]["appProtocol"] == "grpc"


# --- beat, consumer, migrations -----------------------------------------------


def test_beat_runs_exactly_one(objects: tuple[dict[str, Any], ...]) -> None:
    beat = _of_kind(objects, "Deployment")["phoenix-beat"]

    assert beat["spec"]["replicas"] == 1
    # A rolling update would run the new beat beside the old one for a moment.
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    targets = {
        h["spec"]["scaleTargetRef"]["name"]
        for h in _of_kind(objects, "HorizontalPodAutoscaler").values()
    }
    assert "phoenix-beat" not in targets
    assert "beat" in _phoenix_container(beat["spec"]["template"]["spec"])["command"]


def test_consumers_never_outnumber_the_partitions(objects: tuple[dict[str, Any], ...]) -> None:
    _, settings = _settings(objects)
    partitions = int(settings["PHOENIX_EVENT_TOPIC_PARTITIONS"])
    consumer = _of_kind(objects, "Deployment")["phoenix-consumer"]
    autoscaler = _of_kind(objects, "HorizontalPodAutoscaler")["phoenix-consumer"]

    assert 1 <= consumer["spec"]["replicas"] <= partitions
    assert autoscaler["spec"]["maxReplicas"] <= partitions
    assert "consume_events" in _phoenix_container(consumer["spec"]["template"]["spec"])["command"]


def test_migrations_run_before_new_pods_serve(objects: tuple[dict[str, Any], ...]) -> None:
    job = _of_kind(objects, "Job")["phoenix-migrate"]
    command = _phoenix_container(job["spec"]["template"]["spec"])["command"]

    assert command[:3] == ["python", "manage.py", "bootstrap"]
    for name, deployment in _of_kind(objects, "Deployment").items():
        (init,) = deployment["spec"]["template"]["spec"]["initContainers"]
        assert "migrate --check" in init["command"][-1], name


# --- wiring: services, ingresses, budgets, autoscalers, monitoring ------------


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_every_reference_names_something_rendered(objects: tuple[dict[str, Any], ...]) -> None:
    deployments = _of_kind(objects, "Deployment")
    pod_labels = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in deployments.items()}
    services = _of_kind(objects, "Service")

    for name, service in services.items():
        selected = [
            n for n, labels in pod_labels.items() if _selects(service["spec"]["selector"], labels)
        ]
        assert selected == [name], name
        for port in service["spec"]["ports"]:
            container = _phoenix_container(deployments[name]["spec"]["template"]["spec"])
            assert port["targetPort"] in {p["name"] for p in container["ports"]}, name
    for ingress in _of_kind(objects, "Ingress").values():
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                ports = {p["name"] for p in services[backend["name"]]["spec"]["ports"]}
                assert backend["port"]["name"] in ports
    for name, budget in _of_kind(objects, "PodDisruptionBudget").items():
        selector = budget["spec"]["selector"]["matchLabels"]
        assert [n for n, labels in pod_labels.items() if _selects(selector, labels)] == [name]
    for autoscaler in _of_kind(objects, "HorizontalPodAutoscaler").values():
        assert autoscaler["spec"]["scaleTargetRef"]["name"] in deployments
    for name, pod in _pod_specs(objects):
        claims = [
            v["persistentVolumeClaim"]["claimName"]
            for v in pod.get("volumes", [])
            if "persistentVolumeClaim" in v
        ]
        assert set(claims) <= _of_kind(objects, "PersistentVolumeClaim").keys(), name
        assert pod["serviceAccountName"] in _of_kind(objects, "ServiceAccount")


def test_budgets_keep_serving_pods_up(objects: tuple[dict[str, Any], ...]) -> None:
    budgets = _of_kind(objects, "PodDisruptionBudget")

    assert set(budgets) == set(WORKLOADS) - {"phoenix-beat"}
    assert all(b["spec"]["maxUnavailable"] == 1 for b in budgets.values())


def test_network_policy_denies_by_default(objects: tuple[dict[str, Any], ...]) -> None:
    policies = _of_kind(objects, "NetworkPolicy")
    deny = policies["phoenix-default-deny"]["spec"]

    assert deny["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "phoenix"}}
    assert deny["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny
    # Only the pods that serve accept traffic from the ingress controller.
    from_ingress = policies["phoenix-from-ingress"]["spec"]["podSelector"]["matchExpressions"]
    assert from_ingress[0]["values"] == ["api", "grpc"]


@cache
def _metric_series() -> frozenset[str]:
    """The series Phoenix exports, by the names Prometheus stores them under."""
    from inference import metrics as inference_metrics
    from monitoring.services import event_consumer

    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    series: set[str] = set()
    for module in (inference_metrics, event_consumer):
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase):
                for family in value.describe():
                    series.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return frozenset(series)


def _adapter_metrics(kind: str) -> dict[str, str]:
    """Metric served by the Prometheus adapter -> the series its rule reads."""
    values = yaml.safe_load((KUSTOMIZE_DIR / "prometheus-adapter" / "values.yaml").read_text())
    served: dict[str, str] = {}
    for rule in values["rules"][kind]:
        series = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", rule["seriesQuery"].strip("'\""))
        assert series is not None
        served[rule["name"]["as"]] = series.group(0)
    return served


def test_autoscalers_use_metrics_phoenix_exports(objects: tuple[dict[str, Any], ...]) -> None:
    autoscalers = _of_kind(objects, "HorizontalPodAutoscaler")
    custom, external = _adapter_metrics("custom"), _adapter_metrics("external")

    api = {m["type"]: m for m in autoscalers["phoenix-api"]["spec"]["metrics"]}
    assert api["Resource"]["resource"]["name"] == "cpu"
    per_pod = api["Pods"]["pods"]["metric"]["name"]
    assert custom[per_pod] == "phoenix_inference_requests_total"
    (lag,) = autoscalers["phoenix-consumer"]["spec"]["metrics"]
    assert lag["type"] == "External"
    assert external[lag["external"]["metric"]["name"]] == "phoenix_events_consumer_lag"
    assert set(custom.values()) | set(external.values()) <= _metric_series()


def test_pod_monitor_scrapes_every_metrics_port(objects: tuple[dict[str, Any], ...]) -> None:
    (monitor,) = (o for o in objects if o["kind"] == "PodMonitor")
    scraped = {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]}

    for name in set(WORKLOADS) - {"phoenix-beat"}:
        pod = _of_kind(objects, "Deployment")[name]["spec"]["template"]["spec"]
        ports = {p["name"] for p in _phoenix_container(pod)["ports"]}
        assert ports & scraped, name


def test_grafana_dashboards_are_the_provisioned_json(objects: tuple[dict[str, Any], ...]):
    dashboards = _of_kind(objects, "ConfigMap")["phoenix-grafana-dashboards"]
    source = ROOT / "deploy" / "grafana" / "dashboards" / "phoenix.json"

    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboards["data"]["phoenix.json"]) == json.loads(source.read_text())


# --- overlays -----------------------------------------------------------------


def test_images_are_one_pinned_image_per_overlay(
    overlay: str, objects: tuple[dict[str, Any], ...]
) -> None:
    images = {
        c["image"]
        for _, pod in _pod_specs(objects)
        for c in pod["containers"] + pod.get("initContainers", [])
    }

    (image,) = images
    assert ":" in image
    assert not image.endswith(":latest")
    if overlay != "dev":
        assert image.startswith("registry.example.com/")


def test_only_the_gpu_overlay_puts_model_servers_on_gpus(
    overlay: str, objects: tuple[dict[str, Any], ...]
) -> None:
    deployments = _of_kind(objects, "Deployment")
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        resources = _phoenix_container(pod)["resources"]
        on_gpu = overlay == "gpu" and name in SERVING
        if not on_gpu:
            assert "nvidia.com/gpu" not in resources["limits"], name
            assert "nodeSelector" not in pod, name
            assert "tolerations" not in pod, name
            continue
        assert resources["requests"]["nvidia.com/gpu"] == "1", name
        assert resources["limits"]["nvidia.com/gpu"] == "1", name
        assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}, name
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
            "tolerations"
        ], name
    command = _phoenix_container(deployments["phoenix-api"]["spec"]["template"]["spec"])["command"]
    workers = command[command.index("--workers") + 1]
    # Each uvicorn worker would hold its own copy of every model in device memory.
    assert workers == ("1" if overlay == "gpu" else "2")


def test_dev_runs_one_of_each(overlay: str, objects: tuple[dict[str, Any], ...]) -> None:
    replicas = {n: d["spec"]["replicas"] for n, d in _of_kind(objects, "Deployment").items()}
    autoscalers = _of_kind(objects, "HorizontalPodAutoscaler").values()

    if overlay == "dev":
        assert set(replicas.values()) == {1}
        assert {h["spec"]["maxReplicas"] for h in autoscalers} == {1}
    else:
        assert all(replicas[n] >= 2 for n in SERVING)


def test_checkov_waivers_are_the_reviewed_ones_with_reasons(
    overlay: str, objects: tuple[dict[str, Any], ...]
) -> None:
    for o in objects:
        annotations = o["metadata"].get("annotations", {})
        waived: set[str] = set()
        for key, value in annotations.items():
            if not key.startswith("checkov.io/skip"):
                continue
            check, _, reason = value.partition("=")
            assert re.fullmatch(r"CKV_K8S_\d+", check), value
            assert len(reason.split()) >= 8, f"{check} on {o['metadata']['name']}: no reason"
            waived.add(check)
        if o["kind"] not in ("Deployment", "Job"):
            assert not waived, o["metadata"]["name"]
            continue
        expected = (
            WAIVERS_EVERY_WORKLOAD
            | WAIVERS_BY_WORKLOAD.get(o["metadata"]["name"], set())
            | WAIVERS_BY_OVERLAY.get(overlay, set())
        )
        assert waived == expected, o["metadata"]["name"]
