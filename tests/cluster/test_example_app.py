"""``examples/cluster_app.py`` registers a working app (checked in process, on SQLite)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from cluster.app import AppLoadError, load_setup
from duroxide import Client, Runtime, RuntimeOptions, SqliteProvider, TagFilter

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cluster_app.py"


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cluster_app_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_app_runs_its_pipeline() -> None:
    app = _example()
    provider = SqliteProvider.in_memory()
    runtime = Runtime(provider, RuntimeOptions(dispatcher_poll_interval_ms=20,
                                               worker_tag_filter=TagFilter.default_and(["gpu"]),
                                               worker_node_id="test-node"))  # fmt: skip
    app.setup(runtime)
    runtime.start()
    try:
        client = Client(provider)
        client.start_orchestration("u1", "ProcessUpload", {"video_id": "v1", "url": "s3://a.mp4"})
        result = client.wait_for_orchestration("u1", 20_000)
    finally:
        runtime.shutdown(1_000)
    assert result.status == "Completed", result.error
    assert result.output["url"] == "https://cdn.example.com/v1"
    assert [r["rendition"] for r in result.output["renditions"]] == list(app.RENDITIONS)


def test_load_setup_explains_what_is_wrong() -> None:
    for spec, message in [
        ("no_such_module_xyz:setup", "cannot import module 'no_such_module_xyz'"),
        ("json:no_such_attr", "has no attribute 'no_such_attr'"),
        ("json:__doc__", "is a str, not a function setup(runtime)"),
    ]:
        try:
            load_setup(spec)
        except AppLoadError as exc:
            assert message in str(exc)
        else:
            raise AssertionError(f"{spec} loaded")
    assert callable(load_setup("json:dumps"))
