"""Logging: ``init_tracing`` routes runtime logs to a file; orchestration traces are replay-safe."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from duroxide import init_tracing
from duroxide.observability.logging import ROOT, get_logger


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger(ROOT)
    saved = (list(root.handlers), root.level, root.propagate)
    yield
    for handler in root.handlers:
        if handler not in saved[0]:
            root.removeHandler(handler)
            handler.close()
    root.handlers[:] = saved[0]
    root.level, root.propagate = saved[1], saved[2]


def test_init_tracing_writes_structured_records_to_the_file(
    tmp_path: Path, restore_logging: None
) -> None:
    path = tmp_path / "duroxide.log"
    init_tracing(str(path), log_level="info", log_format="json")
    log = get_logger("test", instance_id="order-1")
    log.info("orchestration.trace", message="hello")
    log.debug("not.shown")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records == [
        {**records[0], "event": "orchestration.trace", "instance_id": "order-1",
         "message": "hello", "level": "info"}
    ]  # fmt: skip


def test_init_tracing_with_an_unwritable_path_raises_runtime_error(
    tmp_path: Path, restore_logging: None
) -> None:
    with pytest.raises(RuntimeError, match="Failed to open log file"):
        init_tracing(str(tmp_path / "missing-dir" / "x.log"))


def test_init_tracing_rejects_an_unknown_level(tmp_path: Path, restore_logging: None) -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        init_tracing(str(tmp_path / "x.log"), log_level="loud")
