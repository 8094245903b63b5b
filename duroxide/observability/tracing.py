"""OpenTelemetry traces, optional: everything here is a no-op when ``opentelemetry`` is absent.

The W3C trace context active when ``Client.start_orchestration`` is called is stored with the
instance (``trace_context``, a JSON carrier) and carried in every work item and child start, so
one trace shows the whole workflow: a span per orchestration turn and per activity attempt, each
a child of the client's span. Replayed steps produce no spans: a turn is one span.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from typing import Any

try:  # the API only; exporting is configured by the application (or the cluster)
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
except ImportError:  # pragma: no cover - exercised by the "observability is optional" test
    otel_context = None  # type: ignore[assignment]
    propagate = None  # type: ignore[assignment]
    trace = None  # type: ignore[assignment]


def _recording() -> bool:
    """Whether spans can be recorded: an SDK tracer provider is installed. Without one every
    span would be a no-op, so the runtime skips building them (they cost per turn)."""
    if trace is None:
        return False
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


_TRACER_NAME = "duroxide"


def current_trace_context() -> str | None:
    """The active trace context as a JSON carrier (``traceparent``…), or None."""
    if propagate is None:
        return None
    if not otel_context.get_current():  # nothing active: no propagator has anything to send
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return json.dumps(carrier, sort_keys=True) if carrier else None


@contextlib.contextmanager
def span(name: str, trace_context: str | None, attributes: Mapping[str, Any]) -> Iterator[Any]:
    """A span named ``name`` whose parent is ``trace_context`` (when given).

    Without an SDK tracer provider no span is built, but the parent context is still made
    current, so code inside (an activity) sees the client's trace and can pass it on."""
    if not _recording():
        parent = _parent(trace_context)
        if parent is None:
            yield None
            return
        token = otel_context.attach(parent)
        try:
            yield None
        finally:
            otel_context.detach(token)
        return
    parent = _parent(trace_context)
    tracer = trace.get_tracer(_TRACER_NAME)
    attrs = {k: v for k, v in attributes.items() if v is not None}
    with tracer.start_as_current_span(name, context=parent, attributes=attrs) as current:
        yield current


def record_span(
    name: str,
    trace_context: str | None,
    start_ns: int,
    end_ns: int,
    attributes: Mapping[str, Any],
    *,
    error: str | None = None,
) -> None:
    """Record a finished span (for work whose parent context is known only once it is done,
    such as an orchestration turn: the context comes out of the replay)."""
    if not _recording():
        return
    tracer = trace.get_tracer(_TRACER_NAME)
    attrs = {k: v for k, v in attributes.items() if v is not None}
    current = tracer.start_span(name, context=_parent(trace_context), attributes=attrs,
                                start_time=start_ns)  # fmt: skip
    if error is not None:
        record_failure(current, error)
    current.end(end_time=end_ns)


def _parent(trace_context: str | None) -> Any:
    if not trace_context or propagate is None:
        return None
    try:
        return propagate.extract(json.loads(trace_context))
    except (ValueError, TypeError):
        return None  # a malformed carrier must never fail the work itself


def record_failure(current: Any, message: str) -> None:
    """Mark ``current`` (a span from :func:`span`, or None) as failed."""
    if current is None or trace is None:
        return
    current.set_status(trace.Status(trace.StatusCode.ERROR, message))


def configure_from_environment(service_name: str) -> bool:
    """Install an SDK tracer provider exporting OTLP when the standard ``OTEL_*`` variables ask
    for it (``OTEL_TRACES_EXPORTER=otlp`` or ``OTEL_EXPORTER_OTLP[_TRACES]_ENDPOINT``) and the
    SDK and exporter are installed. Returns whether exporting was set up."""
    import os

    wanted = os.environ.get("OTEL_TRACES_EXPORTER", "").lower()
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if trace is None or wanted == "none" or not (wanted == "otlp" or endpoint):
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        return False
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return True
