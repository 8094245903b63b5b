"""``Runtime``: registers handlers and runs the dispatchers in background threads."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from duroxide.observability.instruments import InstrumentedProvider, Instruments
from duroxide.observability.logging import configure_logging, get_logger
from duroxide.providers.base import Provider
from duroxide.registry import DEFAULT_VERSION, Registry
from duroxide.runtime.activities import ActivityWorker
from duroxide.runtime.faults import Faults
from duroxide.runtime.leases import LeaseKeeper
from duroxide.runtime.metrics import MetricsSnapshot, RuntimeMetrics
from duroxide.runtime.orchestrations import OrchestrationDispatcher
from duroxide.types import RuntimeOptions

F = TypeVar("F", bound=Callable[..., Any])

#: How long ``shutdown()`` without a timeout lets in-flight work finish.
DEFAULT_SHUTDOWN_TIMEOUT_MS = 5_000


class Runtime:
    """Runs orchestrations and activities registered on it against a provider.

    ``start()`` returns at once; ``shutdown(timeout_ms)`` stops claiming work, lets in-flight
    turns and activities finish for up to ``timeout_ms``, then releases the locks of whatever is
    still running so another runtime can continue immediately.
    """

    def __init__(
        self,
        provider: Provider,
        options: RuntimeOptions | None = None,
        *,
        instruments: Instruments | None = None,
    ) -> None:
        if not isinstance(provider, Provider):
            raise TypeError(f"Runtime needs a provider, got {type(provider).__name__}")
        self._instruments = instruments if instruments is not None else Instruments()
        self._faults = Faults.from_environment()  # fault-tolerance testing only; free if unset
        if instruments is not None:  # time every provider operation only when someone listens
            provider = InstrumentedProvider(provider, instruments)  # type: ignore[assignment]
        self._provider = provider
        self._options = options if options is not None else RuntimeOptions()
        self._registry = Registry()
        self._metrics = RuntimeMetrics()
        self.runtime_id = uuid.uuid4().hex[:12]
        self._state = "new"
        self._state_lock = threading.Lock()
        self._orchestrations: OrchestrationDispatcher | None = None
        self._activities: ActivityWorker | None = None
        self._log = get_logger("runtime", runtime_id=self.runtime_id)
        self._leases = LeaseKeeper(self._log, on_renewed=self._lock_renewed)

    @property
    def options(self) -> RuntimeOptions:
        return self._options

    @property
    def registry(self) -> Registry:
        return self._registry

    # --- registration --------------------------------------------------------------------------

    def register_activity(self, name: str, fn: F | None = None) -> Any:
        """``runtime.register_activity("Name", fn)`` or ``@runtime.register_activity("Name")``.
        ``fn(ctx, input)`` may be a plain or an ``async`` function."""
        if fn is None:
            return lambda f: self._add_activity(name, f)
        return self._add_activity(name, fn)

    def _add_activity(self, name: str, fn: F) -> F:
        self._registry.add_activity(name, fn)
        return fn

    register_activity_typed = register_activity

    def register_orchestration(self, name: str, fn: F | None = None) -> Any:
        """Register version 1.0.0 of an orchestration (a generator function ``fn(ctx, input)``)."""
        return self.register_orchestration_versioned(name, DEFAULT_VERSION, fn)

    def register_orchestration_versioned(self, name: str, version: str, fn: F | None = None) -> Any:
        if fn is None:
            return lambda f: self._add_orchestration(name, version, f)
        return self._add_orchestration(name, version, fn)

    def _add_orchestration(self, name: str, version: str, fn: F) -> F:
        self._registry.add_orchestration(name, fn, version)
        return fn

    register_orchestration_typed = register_orchestration
    register_orchestration_versioned_typed = register_orchestration_versioned

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        with self._state_lock:
            if self._state != "new":
                raise RuntimeError(f"runtime already {self._state}; create a new Runtime")
            self._state = "running"
        configure_logging(self._options.log_level, self._options.log_format)
        opts = self._options
        self._leases.start()
        if opts.orchestration_concurrency > 0:
            self._orchestrations = OrchestrationDispatcher(
                self._provider, self._registry, opts, self._metrics, self.runtime_id,
                self._leases, self._instruments, self._faults,
            )  # fmt: skip
            self._orchestrations.loop.start()
        if opts.worker_concurrency > 0 and opts.tag_filter.mode != "none":
            self._activities = ActivityWorker(
                self._provider, self._registry, opts, self._metrics, self.runtime_id,
                self._new_client, self._leases, self._instruments, self._faults,
            )  # fmt: skip
            self._activities.start()
        self._log.info("runtime.started", orchestration_concurrency=opts.orchestration_concurrency,
                       worker_concurrency=opts.worker_concurrency,
                       tag_filter=opts.worker_tag_filter or "default_only")  # fmt: skip

    def shutdown(self, timeout_ms: int | None = None) -> None:
        with self._state_lock:
            if self._state != "running":
                self._state = "stopped"
                return
            self._state = "stopping"
        timeout = DEFAULT_SHUTDOWN_TIMEOUT_MS if timeout_ms is None else max(0, int(timeout_ms))
        deadline = time.monotonic() + timeout / 1000
        loops = [d.loop for d in (self._orchestrations, self._activities) if d is not None]
        for loop in loops:
            loop.stop_claiming(deadline)
        idle = True
        for loop in loops:  # wait for every loop, even after one timed out
            idle = loop.wait_idle(deadline) and idle
        abandoned = 0
        if not idle:
            if self._orchestrations is not None:
                abandoned += self._orchestrations.abandon_inflight()
            if self._activities is not None:
                abandoned += self._activities.abandon_inflight()
        if self._activities is not None:
            self._activities.stop()
        self._leases.stop()  # it renewed the locks of in-flight work through the grace period
        for loop in loops:
            loop.close()
        for dispatcher in (self._orchestrations, self._activities):
            if dispatcher is not None:
                dispatcher.close()
        with self._state_lock:
            self._state = "stopped"
        self._log.info("runtime.stopped", abandoned=abandoned)

    def __enter__(self) -> Runtime:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # --- introspection -------------------------------------------------------------------------

    def metrics_snapshot(self) -> MetricsSnapshot:
        return self._metrics.snapshot()

    def _lock_renewed(self, kind: str) -> None:
        self._metrics.add(f"{kind}_lock_renewals")
        self._instruments.lock_renewed(kind)

    def _new_client(self) -> Any:
        from duroxide.client import Client

        return Client(self._provider)
