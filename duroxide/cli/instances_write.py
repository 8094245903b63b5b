"""``instances start | raise | enqueue | cancel | wait | delete | purge | prune``."""

from __future__ import annotations

import argparse
import json
import uuid
from dataclasses import asdict
from typing import Any

from duroxide.cli.common import (
    TERMINAL,
    CliError,
    Session,
    UsageError,
    parse_json,
    parse_terminal_status,
    parse_time,
    positive_int,
    positive_seconds,
)
from duroxide.cli.output import Progress
from duroxide.client import Client
from duroxide.errors import InvalidOperationError, WaitTimeoutError
from duroxide.types import InstanceFilter, OrchestrationResult, PruneOptions

DEFAULT_WAIT_S = 30.0
PURGE_PAGE = 500


def register(instances: Any, common: argparse.ArgumentParser) -> None:
    p = instances.add_parser("start", parents=[common], help="start an orchestration")
    p.add_argument("name", metavar="NAME", help="orchestration name")
    p.add_argument(
        "--id", dest="instance_id", metavar="ID", help="instance id (default: a new random id)"
    )
    p.add_argument("--input", metavar="JSON", help="input as JSON (default null)")
    p.add_argument(
        "--version",
        dest="orchestration_version",
        metavar="VERSION",
        help="orchestration version (default: the latest registered)",
    )
    p.set_defaults(handler=start)

    p = instances.add_parser("raise", parents=[common], help="raise an external event")
    p.add_argument("instance_id", metavar="ID")
    p.add_argument("event", metavar="EVENT", help="event name")
    p.add_argument("--data", metavar="JSON", help="event data as JSON (default null)")
    p.set_defaults(handler=raise_event)

    p = instances.add_parser("enqueue", parents=[common], help="append to an event queue")
    p.add_argument("instance_id", metavar="ID")
    p.add_argument("queue", metavar="QUEUE", help="queue name")
    p.add_argument("--data", metavar="JSON", help="message as JSON (default null)")
    p.set_defaults(handler=enqueue)

    p = instances.add_parser("cancel", parents=[common], help="cancel a running instance")
    p.add_argument("instance_id", metavar="ID")
    p.add_argument("--reason", default="", metavar="TEXT")
    p.set_defaults(handler=cancel)

    p = instances.add_parser(
        "wait",
        parents=[common],
        help="wait until an instance finishes",
        description="Wait until the instance completes (exit 0) or fails "
        "(exit 1); exit 1 on timeout.",
    )
    p.add_argument("instance_id", metavar="ID")
    p.add_argument(
        "--timeout",
        type=positive_seconds,
        default=DEFAULT_WAIT_S,
        metavar="S",
        help=f"seconds (default {DEFAULT_WAIT_S:g})",
    )
    p.set_defaults(handler=wait)

    p = instances.add_parser("delete", parents=[common], help="delete an instance and its tree")
    p.add_argument("instance_id", metavar="ID")
    p.add_argument(
        "--force",
        action="store_true",
        help="also when running, or a sub-orchestration of a live parent",
    )
    p.set_defaults(handler=delete)

    p = instances.add_parser(
        "purge",
        parents=[common],
        help="delete finished instances in bulk",
        description="Delete finished root instances (with their sub-orchestrations) matching "
        "the filters. Without --yes, only prints how many would be deleted.",
    )
    p.add_argument("--status", type=parse_terminal_status, help="Completed or Failed")
    p.add_argument("--completed-before", type=parse_time, metavar="TIME")
    p.add_argument("--created-before", type=parse_time, metavar="TIME")
    p.add_argument("--name", help="orchestration name")
    p.add_argument("--yes", action="store_true", help="really delete them")
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=100,
        metavar="N",
        help="instances per delete transaction (default 100)",
    )
    p.set_defaults(handler=purge)

    p = instances.add_parser("prune", parents=[common], help="delete old executions")
    p.add_argument("instance_id", metavar="ID")
    p.add_argument(
        "--keep-last",
        type=positive_int,
        metavar="N",
        help="keep the newest N executions (the current one counts)",
    )
    p.add_argument(
        "--completed-before",
        type=parse_time,
        metavar="TIME",
        help="prune only executions completed before TIME",
    )
    p.set_defaults(handler=prune)


def _existing(client: Client, instance_id: str) -> OrchestrationResult:
    status = client.get_status(instance_id)
    if status.status == "NotFound":
        raise CliError(f"instance not found: {instance_id!r} (has a runtime started it yet?)")
    return status


def _done(session: Session, message: str, record: dict[str, Any]) -> int:
    if session.printer.json_mode:
        session.printer.json(record)
    else:
        session.printer.line(message)
    return 0


# --- signals -------------------------------------------------------------------------------------


def start(args: argparse.Namespace, session: Session) -> int:
    data = parse_json(args.input, "--input")
    instance_id = args.instance_id or uuid.uuid4().hex
    client = session.client()
    existing = client.get_status(instance_id)
    if existing.status != "NotFound":
        raise CliError(f"instance {instance_id!r} already exists (status {existing.status})")
    if args.orchestration_version:
        client.start_orchestration_versioned(
            instance_id, args.name, data, args.orchestration_version
        )
    else:
        client.start_orchestration(instance_id, args.name, data)
    return _done(
        session,
        f"started {instance_id} ({args.name}); a runtime that has it registered will run it",
        {
            "instance_id": instance_id,
            "orchestration_name": args.name,
            "orchestration_version": args.orchestration_version,
            "started": True,
        },
    )


def _terminal_note(session: Session, status: OrchestrationResult, what: str) -> None:
    if status.is_terminal and not session.printer.json_mode:
        session.printer.note(f"note: instance is {status.status}; the {what} will be ignored")


def raise_event(args: argparse.Namespace, session: Session) -> int:
    data = parse_json(args.data, "--data")
    client = session.client()
    status = _existing(client, args.instance_id)
    client.raise_event(args.instance_id, args.event, data)
    _terminal_note(session, status, "event")
    return _done(
        session,
        f"raised {args.event!r} on {args.instance_id}",
        {"instance_id": args.instance_id, "event": args.event, "raised": True},
    )


def enqueue(args: argparse.Namespace, session: Session) -> int:
    data = parse_json(args.data, "--data")
    client = session.client()
    status = _existing(client, args.instance_id)
    client.enqueue_event(args.instance_id, args.queue, data)
    _terminal_note(session, status, "message")
    return _done(
        session,
        f"enqueued a message on {args.queue!r} of {args.instance_id}",
        {"instance_id": args.instance_id, "queue": args.queue, "enqueued": True},
    )


def cancel(args: argparse.Namespace, session: Session) -> int:
    client = session.client()
    status = _existing(client, args.instance_id)
    record = {"instance_id": args.instance_id, "status": status.status}
    if status.is_terminal:
        return _done(
            session,
            f"{args.instance_id} is already {status.status}; nothing to cancel",
            {**record, "cancel_requested": False},
        )
    client.cancel_instance(args.instance_id, args.reason)
    return _done(
        session,
        f"cancellation of {args.instance_id} requested"
        + (f" (reason: {args.reason})" if args.reason else ""),
        {**record, "cancel_requested": True, "reason": args.reason},
    )


def wait(args: argparse.Namespace, session: Session) -> int:
    client = session.client()
    try:
        result = client.wait_for_orchestration(args.instance_id, int(args.timeout * 1000))
    except WaitTimeoutError:
        state = client.get_status(args.instance_id).status
        raise CliError(
            f"instance {args.instance_id!r} did not finish within {args.timeout:g} s "
            f"(status: {state})"
        ) from None
    out = session.printer
    if out.json_mode:
        out.json(
            {
                "instance_id": result.instance_id,
                "status": result.status,
                "output": result.output,
                "error": result.error,
                "custom_status": result.custom_status,
            }
        )
    else:
        detail = ("output", compact_value(result.output))
        if result.status == "Failed":
            detail = ("error", result.error)
        out.fields([("instance", result.instance_id), ("status", result.status), detail])
    if result.status == "Failed":
        out.note(f"error: instance {args.instance_id!r} failed")
        return 1
    return 0


def compact_value(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# --- deletion ------------------------------------------------------------------------------------


def delete(args: argparse.Namespace, session: Session) -> int:
    try:
        result = session.client().delete_instance(args.instance_id, force=args.force)
    except InvalidOperationError as exc:
        raise CliError(str(exc).replace("pass force=True", "use --force")) from None
    record = {"instance_id": args.instance_id, **asdict(result)}
    if session.printer.json_mode:
        session.printer.json(record)
    else:
        session.printer.line(
            f"deleted {args.instance_id}: {result.instances_deleted} instance(s), "
            f"{result.executions_deleted} execution(s), {result.events_deleted} event(s), "
            f"{result.queue_messages_deleted} queued message(s)"
        )
    return 0


def _purge_filter(args: argparse.Namespace) -> InstanceFilter:
    if not (args.status or args.completed_before or args.created_before or args.name):
        raise UsageError(
            "purge needs at least one filter: --status, --completed-before, --created-before "
            "or --name"
        )
    return InstanceFilter(
        status=args.status,
        completed_before=args.completed_before,
        created_before=args.created_before,
        orchestration_name=args.name,
    )


def _candidate_pages(client: Client, flt: InstanceFilter, page: int) -> Any:
    """Pages of ids of finished root instances matching ``flt`` (what a bulk delete takes),
    read by cursor; never a count of the whole table."""
    after: str | None = None
    while True:
        found = client.list_instances(flt, after_id=after, limit=page)
        if not found:
            return
        after = found[-1].instance_id
        ids = [
            i.instance_id for i in found if i.parent_instance_id is None and i.status in TERMINAL
        ]
        if ids:
            yield ids
        if len(found) < page:
            return


def purge(args: argparse.Namespace, session: Session) -> int:
    flt = _purge_filter(args)
    client = session.client()
    matched = sum(len(ids) for ids in _candidate_pages(client, flt, PURGE_PAGE))
    out = session.printer
    if not args.yes:
        return _done(
            session,
            f"{matched} finished root instance(s) would be deleted, with their "
            "sub-orchestrations; run again with --yes to delete them",
            {"matched": matched, "deleted": False},
        )
    totals = {
        "instances_deleted": 0,
        "executions_deleted": 0,
        "events_deleted": 0,
        "queue_messages_deleted": 0,
    }
    progress = Progress.for_stream("purging", matched, out.err)
    for ids in _candidate_pages(client, flt, PURGE_PAGE):
        for start_at in range(0, len(ids), args.batch_size):
            batch = ids[start_at : start_at + args.batch_size]
            # The filter is checked again at deletion time; running trees are skipped.
            result = client.delete_instance_bulk(
                InstanceFilter(
                    instance_ids=batch,
                    status=flt.status,
                    completed_before=flt.completed_before,
                    created_before=flt.created_before,
                    orchestration_name=flt.orchestration_name,
                )
            )
            for key, value in asdict(result).items():
                totals[key] += value
            progress.advance(len(batch))
    progress.finish()
    return _done(
        session,
        f"deleted {totals['instances_deleted']} instance(s) ({matched} matched root instance(s) "
        f"and their sub-orchestrations): {totals['executions_deleted']} execution(s), "
        f"{totals['events_deleted']} event(s), {totals['queue_messages_deleted']} queued "
        "message(s)",
        {"matched": matched, "deleted": True, **totals},
    )


def prune(args: argparse.Namespace, session: Session) -> int:
    if args.keep_last is None and args.completed_before is None:
        raise UsageError("prune needs --keep-last N and/or --completed-before TIME")
    options = PruneOptions(keep_last=args.keep_last, completed_before=args.completed_before)
    result = session.client().prune_executions(args.instance_id, options)
    return _done(
        session,
        f"pruned {args.instance_id}: {result.executions_deleted} execution(s), "
        f"{result.events_deleted} event(s) deleted",
        {"instance_id": args.instance_id, **asdict(result)},
    )
