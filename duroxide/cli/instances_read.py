"""``instances list | show | history | tree``: read-only views of instances."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from duroxide.cli.common import CliError, Session, parse_status, parse_time, positive_int
from duroxide.cli.output import Printer, compact, iso, payload
from duroxide.cli.timeline import describe
from duroxide.client import Client
from duroxide.errors import InstanceNotFoundError
from duroxide.types import ExecutionInfo, InstanceFilter, InstanceInfo

DEFAULT_LIMIT = 50
MAX_LIMIT = 10_000
#: Executions ``show`` details (the newest ones); ``history --execution N`` reaches the rest.
SHOWN_EXECUTIONS = 10

Handler = Callable[[argparse.Namespace, Session], int]


def page_size(text: str) -> int:
    value = positive_int(text)
    if value > MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"at most {MAX_LIMIT}, got {value}")
    return value


def register(instances: Any, common: argparse.ArgumentParser) -> None:
    p = instances.add_parser(
        "list",
        parents=[common],
        help="list instances (paged by id)",
        description="List instances ordered by id, one page at a time: pass the printed "
        "cursor to --cursor for the next page.",
    )
    p.add_argument("--status", type=parse_status, help="Running, Completed or Failed")
    p.add_argument("--name", help="orchestration name")
    p.add_argument("--created-after", type=parse_time, metavar="TIME")
    p.add_argument("--created-before", type=parse_time, metavar="TIME")
    p.add_argument(
        "--limit",
        type=page_size,
        default=DEFAULT_LIMIT,
        help=f"page size (default {DEFAULT_LIMIT}, at most {MAX_LIMIT})",
    )
    p.add_argument("--cursor", metavar="ID", help="continue after this instance id")
    p.set_defaults(handler=list_instances)

    p = instances.add_parser("show", parents=[common], help="status, output, executions, tree")
    p.add_argument("instance_id", metavar="ID")
    p.set_defaults(handler=show)

    p = instances.add_parser("history", parents=[common], help="timeline of one execution")
    p.add_argument("instance_id", metavar="ID")
    p.add_argument(
        "--execution",
        type=positive_int,
        metavar="N",
        help="execution id (default: the current one)",
    )
    p.set_defaults(handler=history)

    p = instances.add_parser("tree", parents=[common], help="the instance and its descendants")
    p.add_argument("instance_id", metavar="ID")
    p.set_defaults(handler=tree)


# --- list ----------------------------------------------------------------------------------------


def _row(info: InstanceInfo) -> dict[str, Any]:
    return {
        "instance_id": info.instance_id,
        "orchestration_name": info.orchestration_name,
        "orchestration_version": info.orchestration_version,
        "status": info.status,
        "current_execution_id": info.current_execution_id,
        "created_at": iso(info.created_at, millis=True),
        "updated_at": iso(info.updated_at, millis=True),
        "parent_instance_id": info.parent_instance_id,
    }


def list_instances(args: argparse.Namespace, session: Session) -> int:
    flt = InstanceFilter(
        status=args.status,
        orchestration_name=args.name,
        created_before=args.created_before,
        created_after=args.created_after,
    )
    # One more than a page tells whether another page follows, without counting anything.
    found = session.client().list_instances(flt, after_id=args.cursor, limit=args.limit + 1)
    page = found[: args.limit]
    cursor = page[-1].instance_id if len(found) > args.limit else None
    out = session.printer
    if out.json_mode:
        out.json({"instances": [_row(i) for i in page], "next_cursor": cursor})
        return 0
    out.table(
        ["id", "name", "version", "status", "created", "updated"],
        [
            (
                i.instance_id,
                i.orchestration_name,
                i.orchestration_version,
                i.status,
                iso(i.created_at),
                iso(i.updated_at),
            )
            for i in page
        ],
        empty="no instances",
    )
    if cursor is not None:
        out.line(f"next cursor: {cursor}")
    return 0


# --- tree ----------------------------------------------------------------------------------------


def _tree(client: Client, instance_id: str) -> tuple[dict[str, Any], dict[str, InstanceInfo]]:
    """The instance's tree as nested dicts, and the info of every node."""
    ids = client.get_instance_tree(instance_id).all_ids
    infos: dict[str, InstanceInfo] = {}
    for node_id in ids:
        info = _info_or_none(client, node_id)
        if info is not None:
            infos[node_id] = info
    children: dict[str, list[str]] = {}
    for node_id in ids[1:]:
        info = infos.get(node_id)
        if info is not None and info.parent_instance_id is not None:
            children.setdefault(info.parent_instance_id, []).append(node_id)

    def node(node_id: str) -> dict[str, Any]:
        info = infos.get(node_id)
        return {
            "instance_id": node_id,
            "orchestration_name": info.orchestration_name if info else None,
            "status": info.status if info else None,
            "children": [node(c) for c in sorted(children.get(node_id, []))],
        }

    return node(instance_id), infos


def _info_or_none(client: Client, instance_id: str) -> InstanceInfo | None:
    try:
        return client.get_instance_info(instance_id)
    except InstanceNotFoundError:  # deleted while we walked the tree
        return None


def _tree_lines(root: dict[str, Any]) -> list[str]:
    def label(n: dict[str, Any]) -> str:
        return f"{n['instance_id']}  {n['orchestration_name'] or '?'}  {n['status'] or '?'}"

    lines = [label(root)]

    def walk(n: dict[str, Any], prefix: str) -> None:
        kids = n["children"]
        for i, child in enumerate(kids):
            last = i == len(kids) - 1
            lines.append(f"{prefix}{'`-- ' if last else '|-- '}{label(child)}")
            walk(child, prefix + ("    " if last else "|   "))

    walk(root, "")
    return lines


def tree(args: argparse.Namespace, session: Session) -> int:
    root, _ = _tree(session.client(), args.instance_id)
    if session.printer.json_mode:
        session.printer.json(root)
    else:
        for line in _tree_lines(root):
            session.printer.line(line)
    return 0


# --- show ----------------------------------------------------------------------------------------


def _execution(e: ExecutionInfo) -> dict[str, Any]:
    return {
        "execution_id": e.execution_id,
        "status": e.status,
        "event_count": e.event_count,
        "started_at": iso(e.started_at, millis=True),
        "completed_at": iso(e.completed_at, millis=True),
    }


def show(args: argparse.Namespace, session: Session) -> int:
    client = session.client()
    info = client.get_instance_info(args.instance_id)
    execution_ids = client.list_executions(args.instance_id)
    shown = execution_ids[-SHOWN_EXECUTIONS:]
    executions = [client.get_execution_info(args.instance_id, e) for e in shown]
    root, _ = _tree(client, args.instance_id)
    out = session.printer
    if out.json_mode:
        out.json(
            {
                **_row(info),
                "output": payload(info.output) if info.status == "Completed" else None,
                "error": info.error,
                "custom_status": info.custom_status,
                "custom_status_version": info.custom_status_version,
                "execution_ids": execution_ids,
                "executions": [_execution(e) for e in executions],
                "children": root["children"],
            }
        )
        return 0
    result: tuple[str, Any]
    if info.status == "Completed":
        result = ("output", compact(info.output))
    elif info.status == "Failed":
        result = ("error", info.error)
    else:
        result = ("output", None)
    out.fields(
        [
            ("instance", info.instance_id),
            ("orchestration", f"{info.orchestration_name} {info.orchestration_version}"),
            ("status", info.status),
            result,
            ("custom status", info.custom_status),
            ("execution", f"{info.current_execution_id} (of {len(execution_ids)})"),
            ("created", iso(info.created_at)),
            ("updated", iso(info.updated_at)),
            ("parent", info.parent_instance_id),
        ]
    )
    out.line()
    hidden = len(execution_ids) - len(shown)
    out.line("executions" + (f" (newest {len(shown)}; {hidden} older not shown)" if hidden else ""))
    out.table(
        ["execution", "status", "events", "started", "completed"],
        [
            (e.execution_id, e.status, e.event_count, iso(e.started_at), iso(e.completed_at))
            for e in executions
        ],
    )
    out.line()
    out.line("tree" if root["children"] else "tree (no sub-orchestrations)")
    if root["children"]:
        for line in _tree_lines(root):
            out.line(line)
    return 0


# --- history -------------------------------------------------------------------------------------


def history(args: argparse.Namespace, session: Session) -> int:
    client = session.client()
    execution = args.execution
    if execution is None:
        execution = client.get_instance_info(args.instance_id).current_execution_id
    else:
        executions = client.list_executions(args.instance_id)
        if execution not in executions:
            raise CliError(
                f"instance {args.instance_id!r} has no execution {execution} "
                f"(it has {_ranges(executions)})"
            )
    events = client.read_execution_history(args.instance_id, execution)
    out: Printer = session.printer
    if out.json_mode:
        out.json(
            {
                "instance_id": args.instance_id,
                "execution_id": execution,
                "events": [
                    {
                        "event_id": e.event_id,
                        "time": iso(e.timestamp_ms, millis=True),
                        "kind": e.kind,
                        "source_event_id": e.source_event_id,
                        "data": payload(e.data),
                    }
                    for e in events
                ],
            }
        )
        return 0
    out.table(
        ["event", "time", "kind", "detail"],
        [
            (
                e.event_id,
                iso(e.timestamp_ms, millis=True),
                e.kind,
                describe(e.kind, e.data, e.source_event_id),
            )
            for e in events
        ],
        empty=f"execution {execution} has no events",
    )
    return 0


def _ranges(ids: list[int]) -> str:
    if not ids:
        return "none"
    return f"execution {ids[0]}" if len(ids) == 1 else f"executions {ids[0]}-{ids[-1]}"
