"""Benchmark results as one line per run and as a markdown table."""

from __future__ import annotations

from typing import Any

_KEYS = ("orchestrations_per_s", "activities_per_s", "latency_p50_ms", "latency_p99_ms",
         "lateness_p50_ms", "lateness_p99_ms", "turn_p50_ms_at_100", "turn_p50_ms_at_10000",
         "history_ratio")  # fmt: skip


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return "" if value is None else str(value)


def one_line(row: dict[str, Any]) -> str:
    if "error" in row:
        return f"   ERROR {row['error']}"
    figures = ", ".join(f"{k}={_fmt(row[k])}" for k in _KEYS if k in row)
    extra = f", write_tx/orch={_fmt(row.get('write_transactions_per_orchestration'))}" if (
        "write_transactions_per_orchestration" in row) else ""  # fmt: skip
    return (f"   {figures}, cpu={_fmt(row.get('cpu_s_all_processes'))}s, "
            f"peak_rss_max={_fmt(row.get('peak_rss_mb_max'))}MB{extra}")  # fmt: skip


def markdown(data: dict[str, Any]) -> str:
    lines = ["| impl | backend | mode | workload | n | result | p50 / p99 | CPU s | peak RSS MB "
             "| write tx / orch | commits/s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in data["rows"]:
        if "error" in row:
            lines.append(
                f"| {row['impl']} | {row['backend']} | {row['mode']} | "
                f"{row['workload']} | {row['n']} | error: {row['error']} |||||"
            )
            continue
        result = _headline(row)
        pct = _percentiles(row)
        lines.append(
            f"| {row['impl']} | {row['backend']} | {row['mode']} | {row['workload']} | "
            f"{row['n']} | {result} | {pct} | {_fmt(row.get('cpu_s_all_processes'))} | "
            f"{_fmt(row.get('peak_rss_mb_max'))} | "
            f"{_fmt(row.get('write_transactions_per_orchestration'))} | "
            f"{_fmt(row.get('commits_per_s'))} |"
        )
    lines += ["", *_ratios(data["rows"])]
    if data.get("pgbench"):
        lines.append(f"\npgbench single-row INSERT tps by clients: {data['pgbench']}")
    machine = data.get("machine", {})
    lines.append(f"\nmachine: {machine}")
    return "\n".join(lines) + "\n"


def _headline(row: dict[str, Any]) -> str:
    w = row["workload"]
    if w == "hello":
        return f"{_fmt(row['orchestrations_per_s'])} orch/s"
    if w in ("chain10", "fanout"):
        return f"{_fmt(row['activities_per_s'])} act/s"
    if w == "history":
        return f"ratio {_fmt(row['history_ratio'])} ({row['history_events']} events)"
    return ""


def _percentiles(row: dict[str, Any]) -> str:
    for a, b in (("latency_p50_ms", "latency_p99_ms"), ("lateness_p50_ms", "lateness_p99_ms"),
                 ("turn_p50_ms_at_100", "turn_p50_ms_at_10000")):  # fmt: skip
        if a in row:
            return f"{_fmt(row[a])} / {_fmt(row[b])} ms"
    return ""


_COMPARED = (("orchestrations_per_s", True), ("activities_per_s", True),
             ("latency_p50_ms", False), ("lateness_p50_ms", False))  # fmt: skip


def _ratios(rows: list[dict[str, Any]]) -> list[str]:
    """duroxide-py vs reference on the same backend/mode/workload (>1: ours is better)."""
    out = []
    ours = {(r["backend"], r["mode"], r["workload"]): r for r in rows
            if r.get("impl") == "duroxide-py" and "error" not in r}  # fmt: skip
    for r in rows:
        if r.get("impl") != "reference" or "error" in r:
            continue
        mine = ours.get((r["backend"], r["mode"], r["workload"]))
        if not mine:
            continue
        for key, higher_is_better in _COMPARED:
            if key in r and key in mine and r[key] and mine[key]:
                ratio = mine[key] / r[key] if higher_is_better else r[key] / mine[key]
                out.append(
                    f"- {r['backend']} {r['mode']} {r['workload']} {key}: "
                    f"ours {_fmt(mine[key])} vs reference {_fmt(r[key])} "
                    f"→ {ratio:.2f}x {'faster' if ratio >= 1 else 'slower'}"
                )
    if out:
        out.insert(0, "Ratios (ours / reference, same machine, alternating runs):")
    return out
