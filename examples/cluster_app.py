"""A media pipeline to run on a duroxide cluster.

Every uploaded video is fetched, transcoded into several renditions in parallel on the GPU pool
(activities tagged ``gpu``), then published. The cluster imports ``setup(runtime)`` in every
child process: orchestrator processes run ``ProcessUpload``; worker processes run the untagged
activities; ``--pool gpu=N`` processes run only ``Transcode``.

Start a cluster on PostgreSQL (from the repository root)::

    python -m cluster --app examples.cluster_app:setup \\
        --database-url postgresql://postgres@127.0.0.1:5432/postgres --schema media \\
        --orchestrators 2 --workers 2 --pool gpu=1 --log-format console

and, in another terminal, submit work and wait for it::

    python examples/cluster_app.py postgresql://postgres@127.0.0.1:5432/postgres media 50
"""

from __future__ import annotations

import hashlib
import sys
import time
import uuid
from typing import Any

RENDITIONS = ("1080p", "720p", "480p")


# --- activities: the side effects ----------------------------------------------------------------


def fetch_upload(ctx: Any, upload: dict[str, Any]) -> dict[str, Any]:
    """Pretend to download the upload; returns its size and checksum."""
    digest = hashlib.sha256(upload["url"].encode()).hexdigest()[:16]
    ctx.trace_info(f"fetched {upload['url']}")
    return {"video_id": upload["video_id"], "bytes": 1_000_000 + len(upload["url"]),
            "sha256": digest}  # fmt: skip


def transcode(ctx: Any, job: dict[str, Any]) -> dict[str, Any]:
    """The expensive step: runs only on the GPU pool (tagged ``gpu``)."""
    time.sleep(0.05)  # stands in for real work
    if ctx.is_cancelled():
        raise RuntimeError("cancelled")
    return {"rendition": job["rendition"], "path": f"/media/{job['video_id']}/{job['rendition']}",
            "worker": ctx.worker_id}  # fmt: skip


def publish(ctx: Any, release: dict[str, Any]) -> str:
    ctx.trace_info(f"published {release['video_id']} ({len(release['renditions'])} renditions)")
    return f"https://cdn.example.com/{release['video_id']}"


# --- the orchestration: deterministic coordination --------------------------------------------


def process_upload(ctx: Any, upload: dict[str, Any]) -> Any:
    ctx.set_custom_status("fetching")
    source = yield ctx.schedule_activity("FetchUpload", upload)
    ctx.set_custom_status("transcoding")
    jobs = [{"video_id": source["video_id"], "rendition": r} for r in RENDITIONS]
    renditions = yield ctx.all_typed(  # raises if any transcode failed
        [ctx.schedule_activity("Transcode", job).with_tag("gpu") for job in jobs]
    )
    ctx.set_custom_status("publishing")
    url = yield ctx.schedule_activity(
        "Publish", {"video_id": source["video_id"], "renditions": renditions}
    )
    ctx.trace_info(f"upload {source['video_id']} done")  # logged once, never on replay
    return {"url": url, "renditions": renditions, "sha256": source["sha256"]}


def setup(runtime: Any) -> None:
    """Called by the cluster in every child process (``--app examples.cluster_app:setup``)."""
    runtime.register_orchestration("ProcessUpload", process_upload)
    runtime.register_activity("FetchUpload", fetch_upload)
    runtime.register_activity("Transcode", transcode)
    runtime.register_activity("Publish", publish)


# --- a client that submits uploads to a running cluster -----------------------------------------


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    from duroxide import Client
    from duroxide.providers import open_provider

    url, schema = argv[0], argv[1]
    count = int(argv[2]) if len(argv) > 2 else 10
    provider = open_provider(url, schema)
    client = Client(provider)
    batch = uuid.uuid4().hex[:6]
    ids = [f"upload-{batch}-{i}" for i in range(count)]
    started = time.monotonic()
    try:
        for i, instance_id in enumerate(ids):
            upload = {"video_id": f"v{batch}{i}", "url": f"s3://uploads/{batch}/{i}.mp4"}
            client.start_orchestration(instance_id, "ProcessUpload", upload)
        for instance_id in ids:
            result = client.wait_for_orchestration(instance_id, 120_000)
            print(f"{instance_id}: {result.status} {result.output or result.error}")
    finally:
        provider.close()
    took = time.monotonic() - started
    print(f"{count} uploads in {took:.1f}s ({count / took:.1f}/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
