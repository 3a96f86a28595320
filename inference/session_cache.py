"""The process's warm ONNX Runtime sessions and serving plans.

Sessions are keyed by the file's sha256, so a replaced file can never be served
with stale weights. The serving plans (which version is champion/challenger of
each model, and its routing policy) are read from the database once and kept in
memory: a warm request reads two dicts and touches no database.

When the registry says it changed (``phoenix.change_bus``, heard from
this process at once and from others over Redis or the change log), new plans
are read and any new version is loaded and warmed up *before* the plans are
swapped in; requests keep being served by the old plans meanwhile, and sessions
no longer referenced are dropped only after the swap.

A model whose routing policy turns micro-batching on gets one ``MicroBatcher``
per served version, built with the plans and closed when a refresh no longer
wants it (or wants other bounds); requests on worker threads share it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from typing import Any

from django.conf import settings
from django.db import DatabaseError, close_old_connections

from phoenix.change_bus import Change, ChangeReason
from phoenix.exceptions import DependencyUnavailable
from phoenix.health import ComponentStatus, register_check

from . import metrics
from .batching import BatchingPolicy, MicroBatcher
from .runtime import LoadedModel, model_load
from .selectors import ModelServing, ServedVersion, serving_plans_read

logger = logging.getLogger(__name__)

# A file that failed to load is not retried on every request for this long.
FAILED_RETRY_S = 30.0


class SessionCache:
    def __init__(self) -> None:
        self._sessions: dict[str, LoadedModel] = {}
        self._labels: dict[str, ServedVersion] = {}
        self._failed: dict[str, tuple[float, str]] = {}
        self._load_locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._plans: dict[str, ModelServing] | None = None
        # Versions pinned by clients since the last refresh, by (model, version).
        self._pinned: dict[tuple[str, str], ServedVersion] = {}
        # Micro-batchers of the plans' versions whose model batches, by (model, sha256).
        self._batchers: dict[tuple[str, str], tuple[BatchingPolicy, MicroBatcher]] = {}

    # --- reads on the request path (no locks, no database once warm) ---------

    def get(self, sha256: str) -> LoadedModel | None:
        return self._sessions.get(sha256)

    def plans(self) -> dict[str, ModelServing]:
        """The serving plans, read from the registry on first use.

        Raises DependencyUnavailable (503) when the registry's database cannot be read.
        """
        plans = self._plans
        if plans is None:
            try:
                self.refresh(reason="first request")
            except DatabaseError as exc:
                raise DependencyUnavailable(
                    "The model registry cannot be read right now.", details={}
                ) from exc
            plans = self._plans or {}
        return plans

    def loaded_plans(self) -> dict[str, ModelServing] | None:
        """The plans if already read (never reads the database)."""
        return self._plans

    def pinned(self, model_name: str, version: str) -> ServedVersion | None:
        return self._pinned.get((model_name, version))

    def remember_pinned(self, served: ServedVersion) -> None:
        self._pinned[(served.model_name, served.version)] = served

    def batcher_for(self, served: ServedVersion) -> MicroBatcher | None:
        """The micro-batcher of ``served`` when its model batches (plans' versions only)."""
        entry = self._batchers.get((served.model_name, served.sha256))
        return entry[1] if entry is not None else None

    def session_for(self, served: ServedVersion) -> LoadedModel:
        """The warm session of ``served``, loading it first if needed.

        Only a request for a model that is not warm waits, and only for that model.
        Raises DependencyUnavailable when the file cannot be loaded.
        """
        model = self._sessions.get(served.sha256)
        if model is not None:
            return model
        return self._load(served)

    # --- loading -------------------------------------------------------------

    def _lock_for(self, sha256: str) -> threading.Lock:
        with self._locks_guard:
            return self._load_locks.setdefault(sha256, threading.Lock())

    def _load(self, served: ServedVersion) -> LoadedModel:
        with self._lock_for(served.sha256):
            model = self._sessions.get(served.sha256)
            if model is not None:
                return model
            failed = self._failed.get(served.sha256)
            if failed is not None and time.monotonic() - failed[0] < FAILED_RETRY_S:
                raise DependencyUnavailable(
                    f"{served.label} could not be loaded: {failed[1]}",
                    details={"model": served.model_name, "version": served.version},
                )
            try:
                model = model_load(path=served.path, sha256=served.sha256)
            except Exception as exc:
                message = f"{type(exc).__name__}: {exc}"
                self._failed[served.sha256] = (time.monotonic(), message)
                logger.error("could not load %s (%s): %s", served.label, served.path, message)
                raise DependencyUnavailable(
                    f"{served.label} could not be loaded.",
                    details={"model": served.model_name, "version": served.version},
                ) from exc
            self._failed.pop(served.sha256, None)
            model.on_degraded = _degraded_reporter(served)
            self._sessions[served.sha256] = model
            self._labels[served.sha256] = served
            metrics.model_loaded(served.model_name, served.version, model.provider, loaded=True)
            logger.info(
                "loaded %s on %s in %.0f ms (warm call %.1f us, %s)",
                served.label,
                model.provider,
                model.load_s * 1000,
                model.warm_call_s * 1e6,
                "inline" if model.inline else "thread pool",
            )
            return model

    def refresh(self, *, reason: str = "") -> None:
        """Re-read the plans, warm every servable version, then swap; drop the unused."""
        with self._refresh_lock:
            plans = serving_plans_read()
            for plan in plans.values():
                for served in plan.versions.values():
                    # A file that fails is reported by readiness and answered 503;
                    # the others still load.
                    with contextlib.suppress(DependencyUnavailable):
                        self.session_for(served)
            batchers = self._batchers_for(plans)
            self._plans, self._batchers, retired = plans, batchers, self._batchers
            self._pinned = {}
            for key, (_, batcher) in retired.items():
                if batchers.get(key, (None, None))[1] is not batcher:
                    batcher.close()  # requests gathering now run; later ones use the new one
            wanted = {v.sha256 for p in plans.values() for v in p.versions.values()}
            for sha256 in list(self._sessions):
                if sha256 not in wanted:
                    self._sessions.pop(sha256, None)
                    gone = self._labels.pop(sha256, None)
                    if gone is not None:
                        metrics.model_loaded(gone.model_name, gone.version, "", loaded=False)
            logger.info(
                "serving plans refreshed (%s): %d model(s), %d session(s)",
                reason or "registry change",
                len(plans),
                len(self._sessions),
            )

    def _batchers_for(
        self, plans: dict[str, ModelServing]
    ) -> dict[tuple[str, str], tuple[BatchingPolicy, MicroBatcher]]:
        """A batcher per loaded version of every batching plan; unchanged ones kept."""
        batchers: dict[tuple[str, str], tuple[BatchingPolicy, MicroBatcher]] = {}
        for plan in plans.values():
            if plan.batching is None:
                continue
            for served in plan.versions.values():
                model = self._sessions.get(served.sha256)
                if model is None:
                    continue
                key = (served.model_name, served.sha256)
                kept = self._batchers.get(key)
                if kept is not None and kept[0] == plan.batching and kept[1].batchable:
                    batchers[key] = kept
                    continue
                batchers[key] = (plan.batching, _batcher(served, model, plan.batching))
        return batchers

    def clear(self) -> None:
        """Forget everything (tests; the next request reads the registry again)."""
        with self._refresh_lock:
            for _, batcher in self._batchers.values():
                batcher.close()
            self._batchers = {}
            self._plans = None
            self._pinned = {}
            self._sessions = {}
            self._labels = {}
            self._failed = {}

    # --- readiness -------------------------------------------------------------

    def readiness(self) -> list[tuple[str, ComponentStatus]]:
        """One component per servable version, ok only when its session is warm here.

        Once the plans are read, the versions are the plans' (no database: readiness
        must not fail while the database is down and this process serves from memory).
        Before that (start-up), they are read from the registry; when the registry
        cannot be read either, start-up has not finished: one failing component.
        """
        plans = self._plans
        versions: list[ServedVersion] | None
        if plans is not None:
            versions = [v for plan in plans.values() for v in plan.versions.values()]
        else:
            versions = self._versions_from_registry()
        if versions is None:
            unread = {"error": "start-up not finished: the model registry cannot be read"}
            return [("models", ComponentStatus(ok=False, detail=unread))]
        statuses: list[tuple[str, ComponentStatus]] = []
        for served in versions:
            loaded = self._sessions.get(served.sha256)
            detail: dict[str, Any] = {"stage": served.stage, "aliases": list(served.aliases)}
            if loaded is not None:
                detail.update(
                    provider=loaded.provider,
                    warm_call_us=round(loaded.warm_call_s * 1e6, 1),
                    execution="inline" if loaded.inline else "thread pool",
                )
                if loaded.degraded is not None:
                    detail["degraded_reason"] = loaded.degraded
                if self.batcher_for(served) is not None:
                    detail["micro_batching"] = True
            else:
                failed = self._failed.get(served.sha256)
                detail["error"] = failed[1] if failed else "not loaded in this process"
            status = ComponentStatus(
                ok=loaded is not None,
                detail=detail,
                degraded=loaded is not None and loaded.degraded is not None,
            )
            statuses.append((f"model:{served.model_name}:{served.version}", status))
        return statuses

    @staticmethod
    def _versions_from_registry() -> list[ServedVersion] | None:
        from models_registry.selectors import servable_versions

        from .selectors import served_version_from

        try:
            return [served_version_from(v) for v in servable_versions()]
        except DatabaseError:
            return None


session_cache = SessionCache()


def _batcher(served: ServedVersion, model: LoadedModel, policy: BatchingPolicy) -> MicroBatcher:
    def unbatchable(reason: str) -> None:
        logger.warning(
            "%s cannot be micro-batched, running requests alone: %s", served.label, reason
        )

    return MicroBatcher.for_policy(
        model.run,
        policy,
        on_batch=metrics.batch_observer(served.model_name, served.version),
        on_unbatchable=unbatchable,
    )


def _degraded_reporter(served: ServedVersion) -> Any:
    """What a model calls when it falls back from its accelerator to the CPU."""

    def report(previous_provider: str, reason: str) -> None:
        metrics.model_loaded(served.model_name, served.version, "", loaded=False)
        metrics.model_loaded(served.model_name, served.version, "CPUExecutionProvider", loaded=True)
        metrics.model_degraded(served.model_name, served.version)
        logger.error(
            "%s runs degraded on the CPU after a failure on %s: %s",
            served.label,
            previous_provider,
            reason,
        )

    return report


def _on_registry_change(change: Change) -> None:
    """Registry (or routing policy / API key) changed somewhere: bring this process up to date."""
    from .auth import api_key_cache_clear

    reason = ChangeReason(change.reason)
    # A deleted model leaves the keys scoped to it (the cached principals name it).
    if reason in (ChangeReason.API_KEY, ChangeReason.DELETE, ChangeReason.RESYNC):
        api_key_cache_clear()
        if reason is ChangeReason.API_KEY:
            return
    # A process that has never served has nothing stale: it reads plans on first use.
    if session_cache._plans is None:
        return
    try:
        session_cache.refresh(reason=f"{reason.value} {change.model_name}".strip())
    finally:
        # The listener thread must not keep a broken or stale connection. A request
        # thread's connection is left alone: it may be inside a transaction.
        if threading.current_thread().daemon:
            close_old_connections()


def install() -> None:
    """Subscribe to registry changes and register the readiness check (AppConfig.ready)."""
    from phoenix.change_bus import subscribe

    subscribe(_on_registry_change)
    register_check("models", session_cache.readiness)


def preload(*, always: bool = False) -> None:
    """Warm every servable version now and listen for other processes' changes.

    Called by the ASGI/WSGI entry points when ``PHOENIX_PRELOAD_MODELS`` is on (and
    ``always`` by servers that only serve models, such as serve_grpc). A failure is
    logged, not raised: the server still starts, and readiness says what is wrong.
    """
    if not (always or settings.PHOENIX_PRELOAD_MODELS):
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        _preload()
        return
    # uvicorn imports the app inside its event loop, where the ORM refuses to run;
    # nothing is served yet, so waiting for a thread here costs no request anything.
    worker = threading.Thread(target=_preload, name="phoenix-preload")
    worker.start()
    worker.join()


def _preload() -> None:
    from phoenix.change_bus import start_listener

    started = time.perf_counter()
    try:
        start_listener()
        session_cache.refresh(reason="process start")
    except Exception:
        logger.exception("preloading models failed; /readyz will report it, retrying")
        # Nothing else would load them: behind a load balancer an unready process gets
        # no request, so it must finish start-up on its own once the registry is back.
        threading.Thread(target=_preload_retry, name="phoenix-preload-retry", daemon=True).start()
    else:
        logger.info("session cache preloaded in %.0f ms", (time.perf_counter() - started) * 1000)
    finally:
        close_old_connections()


def _preload_retry(first_delay_s: float = 1.0, max_delay_s: float = 30.0) -> None:
    delay = first_delay_s
    while session_cache.loaded_plans() is None:
        time.sleep(delay)
        try:
            session_cache.refresh(reason="process start, retried")
        except Exception as exc:
            logger.warning("preloading models failed again (%s); next try in %.0f s", exc, delay)
            delay = min(delay * 2, max_delay_s)
        finally:
            close_old_connections()
