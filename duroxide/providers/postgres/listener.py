"""LISTEN/NOTIFY wake-ups between processes: a latency hint on top of polling.

One daemon thread per provider owns a dedicated connection (not from the pool). It turns every
notification sent by *another* process into calls on the provider's ``WakeupHub``; it also sends
this provider's own notifications.

Each queue has its own channel (``queue_channel``: the schema's ``channel_name`` and ``_o``,
``_w`` or ``_s``), and a process LISTENs only on those of the queues it waits on — the hub tells
(``WakeupHub.bind_watcher``): an orchestrator process hears of orchestrator work and timers, a
worker of activities and cancellations, a client waiting for a result of status changes. Every
notification wakes each listening backend and its process, so on a few cores the wake-ups of
processes with nothing to do slowed down the one that had. The thread also LISTENs on the
schema's channel itself, where versions before the split sent everything: during a rolling
deploy the new processes still hear the old ones (the old ones do not hear the new ones and
find their work by polling until they are replaced).

Why the notifications are not sent inside the operations' transactions: a transaction that
calls NOTIFY takes a cluster-wide lock at commit and holds it through its WAL flush, which
serializes every notifying commit and caps throughput at one fsync per turn. Instead an
operation, after it committed, hands a hint to ``post`` (no I/O); this thread sends the hints
batched as ``SELECT pg_notify(...)`` on its own connection — a transaction without table
writes, committed without waiting for a WAL flush — at most one batch per send interval
(adaptive, from ``MIN_SEND_INTERVAL_S`` when posts are rare to ``MAX_SEND_INTERVAL_S`` under
load), at once when idle. So an operation stays one round trip and never waits for the notify.

Payload: compact JSON, ``{"o": [delays]}`` on the orchestrator channel, ``{"w": [delays], "c":
[[instance, execution, activity], ...]}`` on the worker channel, ``{"s": 1}`` on the status
channel (a payload on the schema's channel, from an older version, may hold all of them).
``o``/``w``: work on the orchestrator/worker queue visible after each delay in milliseconds (0:
now; a timer carries its delay, which the receiver registers as a due time on its hub) — every
distinct due time of a batch, to the millisecond; ``s``: an instance status, custom status or
KV changed; ``c``: cancelled activities (the receiver calls ``publish_cancelled`` so a running
activity learns at once). Payloads stay under PostgreSQL's 8000-byte limit (long lists of
delays or keys are split over several).

The connection is checked every ``KEEPALIVE_S`` when idle; after it breaks (server restart,
``pg_terminate_backend``) the thread reconnects with exponential back-off and, since it may
have missed notifications, wakes every channel once. Hints posted while it is disconnected are
kept (up to ``MAX_PENDING`` due times per queue) and sent once it is back, so the other
processes still learn of the timers due later; polling stays the source of truth.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg import pq, sql

from duroxide.observability.logging import get_logger
from duroxide.providers.postgres.connection import control_queries
from duroxide.providers.postgres.lean import LeanStatement
from duroxide.providers.wakeup import ORCHESTRATOR, STATUS, WORKER, WakeupHub
from duroxide.work_items import ActivityKey

#: Idle time after which the listener checks its connection with a query.
KEEPALIVE_S = 10.0
#: Time between two notification batches of one provider: adaptive between these bounds. A
#: batch that coalesced ``BUSY_BATCH`` posts or more doubles the interval, a smaller one halves
#: it: a lone request is announced at once (latency), a busy process sends a few batches per
#: second instead of one per post (every NOTIFY is a committed transaction with its own xid).
MIN_SEND_INTERVAL_S = 0.002
MAX_SEND_INTERVAL_S = 0.025
#: Posts coalesced into one batch from which the interval grows (a lone request posts up to
#: three hints in a burst — worker, orchestrator, status — which must not count as load).
BUSY_BATCH = 4
#: Largest payload sent (PostgreSQL's limit is 8000 bytes).
MAX_PAYLOAD = 7900
#: Due times kept per queue while disconnected (beyond, the latest are dropped: the wake-up
#: after the reconnect and polling cover them).
MAX_PENDING = 10_000
_BACKOFF_FIRST_S = 0.05
_BACKOFF_MAX_S = 5.0


def _now_ms() -> int:
    return time.monotonic_ns() // 1_000_000


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"))


def encode_payloads(
    orchestrator: Sequence[int],
    worker: Sequence[int],
    status: bool,
    cancelled: Sequence[ActivityKey],
) -> list[tuple[str, str]]:
    """The ``(queue, payload)`` pairs announcing one batch, each payload at most
    ``MAX_PAYLOAD`` bytes: every distinct delay of the orchestrator queue on ``orchestrator``,
    every distinct delay of the worker queue and every cancelled key on ``worker``, a status
    change on ``status``."""
    pairs = [(ORCHESTRATOR, p) for p in _chunks("o", [str(d) for d in sorted(set(orchestrator))])]
    if worker or cancelled:
        base: dict[str, Any] = {"w": sorted(set(worker))} if worker else {}
        keys = [[k.instance_id, k.execution_id, k.activity_id] for k in cancelled]
        whole = _dumps({**base, "c": keys} if keys else base)
        if len(whole) <= MAX_PAYLOAD:
            pairs.append((WORKER, whole))
        else:
            pairs += [(WORKER, p) for p in _chunks("w", [str(d) for d in base.get("w", ())])]
            pairs += [(WORKER, p) for p in _chunks("c", [_dumps(key) for key in keys])]
    if status:
        pairs.append((STATUS, '{"s":1}'))
    return pairs


def _chunks(key: str, items: list[str]) -> list[str]:
    """``{"<key>": [items]}`` payloads of at most ``MAX_PAYLOAD`` bytes (an item too large
    alone is dropped)."""
    prefix, payloads = f'{{"{key}":[', []
    chunk: list[str] = []
    size = len(prefix) + 2
    for item in items:
        if size + len(item) + 1 > MAX_PAYLOAD and chunk:
            payloads.append(prefix + ",".join(chunk) + "]}")
            chunk, size = [], len(prefix) + 2
        if size + len(item) + 1 <= MAX_PAYLOAD:
            chunk.append(item)
            size += len(item) + 1
    if chunk:
        payloads.append(prefix + ",".join(chunk) + "]}")
    return payloads


def apply_payload(hub: WakeupHub, payload: str) -> None:
    """Replay one received payload on ``hub``; malformed parts are ignored."""
    try:
        data = json.loads(payload)
    except ValueError:
        return
    if not isinstance(data, dict):
        return
    for key, channel in (("o", ORCHESTRATOR), ("w", WORKER)):
        delays = data.get(key)
        if isinstance(delays, list):
            for delay in delays:
                if isinstance(delay, int):
                    hub.notify(channel, delay if delay > 0 else None)
    if data.get("s"):
        hub.notify(STATUS)
    cancelled = data.get("c")
    if isinstance(cancelled, list):
        keys = [
            ActivityKey(instance_id=k[0], execution_id=k[1], activity_id=k[2])
            for k in cancelled
            if isinstance(k, list) and len(k) == 3 and isinstance(k[0], str)
            and isinstance(k[1], int) and isinstance(k[2], int)
        ]  # fmt: skip
        hub.publish_cancelled(keys)


class PgListener:
    """The LISTEN connection and notification sender of one provider (see the module doc)."""

    def __init__(
        self, url: str, connect_kwargs: dict[str, Any], channel: str, hub: WakeupHub
    ) -> None:
        self._url = url
        self._kwargs = connect_kwargs
        self._channel = channel  # the schema's own: only processes of older versions send on it
        self._channels = {queue: queue_channel(channel, queue)
                          for queue in (ORCHESTRATOR, WORKER, STATUS)}  # fmt: skip
        self._watching: set[str] = set()  # queues this process waits on (``watch``)
        self._listened: set[str] = set()  # those LISTENed on the current connection
        self._hub = hub
        self._log = get_logger("provider.postgres", channel=channel)
        self._lock = threading.Lock()
        self._orchestrator: set[int] = set()  # due times, monotonic milliseconds
        self._worker: set[int] = set()
        self._status = False
        self._cancelled: list[ActivityKey] = []
        self._signalled = False
        self._posts = 0  # posts since the last batch
        self._interval = MIN_SEND_INTERVAL_S
        self._pid: int | None = None
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._notify = LeanStatement.of("notify_many", control_queries()["notify_many"])
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._thread = threading.Thread(target=self._run, name=f"{channel}-listener", daemon=True)
        self._thread.start()

    @property
    def pid(self) -> int | None:
        """Server process id of the listening connection (None while disconnected)."""
        return self._pid

    def wait_listening(self, timeout_s: float) -> bool:
        """Block until the listener is connected (or the timeout); True if it is."""
        return self._listening.wait(timeout_s)

    def post(
        self,
        *,
        orchestrator: Iterable[int] = (),
        worker: Iterable[int] = (),
        status: bool = False,
        cancelled: Sequence[ActivityKey] = (),
    ) -> None:
        """Announce committed work to the other processes (sent soon, asynchronously).

        ``orchestrator``/``worker``: delays in ms after which new work becomes visible (0: now).
        Kept while the listener is disconnected and sent once it is back.
        """
        now = _now_ms()
        with self._lock:
            for pending, delays in ((self._orchestrator, orchestrator),
                                    (self._worker, worker)):  # fmt: skip
                for delay in delays:
                    if len(pending) < MAX_PENDING:
                        pending.add(now + max(delay, 0))
            self._status = self._status or status
            self._cancelled.extend(cancelled)
            self._posts += 1
            if self._signalled or not (self._orchestrator or self._worker or self._status
                                       or self._cancelled):  # fmt: skip
                return
            self._signalled = True
        self._wake()

    def watch(self, queue: str) -> None:
        """Receive the hints of ``queue`` (``orchestrator``, ``worker`` or ``status``) from now
        on. The LISTEN runs on the listener's thread; once it is in place the queue's waiters
        are woken once, since a hint sent before it was missed."""
        with self._lock:
            if queue in self._watching:
                return
            self._watching.add(queue)
        self._wake()

    def is_listening(self, queue: str) -> bool:
        """Whether the hints of ``queue`` reach this process now (its LISTEN is in place)."""
        return queue in self._listened

    def close(self) -> None:
        """Send what is pending (best effort), stop the thread and close its connection. A
        second call does nothing."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake()
        self._thread.join(timeout=5.0)
        if not self._thread.is_alive():
            os.close(self._wake_r)
            os.close(self._wake_w)

    # --- the thread ------------------------------------------------------------------------------

    def _wake(self) -> None:
        # A full pipe means a wake-up is pending anyway; a closed one, that we are closing.
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\0")

    def _run(self) -> None:
        backoff = _BACKOFF_FIRST_S
        reconnecting = False
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._url, **self._kwargs) as conn:
                    self._listened = set()
                    _exec(conn, _listen(conn, self._channel))
                    _exec(conn, control_queries()["listener_session"].encode())
                    self._pid = conn.info.backend_pid
                    self._listen_watched(conn)
                    self._receive(conn)
                    backoff = _BACKOFF_FIRST_S
                    if reconnecting:  # notifications may have been missed meanwhile
                        self._hub.notify_many((ORCHESTRATOR, WORKER, STATUS))
                        self._log.info("listener.reconnected", pid=self._pid)
                    self._listening.set()
                    self._serve(conn)
            except (psycopg.Error, OSError) as exc:
                if not self._stop.is_set():
                    self._log.warning("listener.disconnected", error=str(exc), retry_in_s=backoff)
            self._pid = None
            self._listening.clear()
            reconnecting = True
            if self._stop.wait(backoff):
                break
            backoff = min(backoff * 2, _BACKOFF_MAX_S)

    def _serve(self, conn: psycopg.Connection[Any]) -> None:
        sock = conn.fileno()
        poller = select.poll()  # not select(): file descriptors may exceed FD_SETSIZE
        poller.register(sock, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        last_sent = 0.0
        last_io = time.monotonic()
        while True:
            stopping = self._stop.is_set()
            now = time.monotonic()
            if self._signalled and (stopping or now - last_sent >= self._interval):
                self._drain_pipe()
                payloads = self._take_payloads()
                if payloads:
                    self._send(conn, payloads)
                    last_sent = last_io = time.monotonic()
                    self._receive(conn)  # notifications that arrived during the query
            if stopping:
                return
            # After the send, which drained the wake-up pipe: a watch whose wake-up that
            # drain swallowed is seen here.
            if len(self._listened) != len(self._watching):
                self._listen_watched(conn)
                self._receive(conn)  # notifications read during the LISTEN round trips
            timeout = KEEPALIVE_S
            if self._signalled:
                timeout = max(0.0, last_sent + self._interval - time.monotonic())
            readable = {fd for fd, _ in poller.poll(timeout * 1000)}
            if sock in readable:
                self._receive(conn)
                last_io = time.monotonic()
            elif not readable and time.monotonic() - last_io >= KEEPALIVE_S:
                _exec(conn, control_queries()["keepalive"].encode())
                last_io = time.monotonic()
                self._receive(conn)
            if self._wake_r in readable:
                self._drain_pipe()

    def _listen_watched(self, conn: psycopg.Connection[Any]) -> None:
        """LISTEN on the channel of every queue watched since the last call."""
        with self._lock:
            new = self._watching - self._listened
        if not new:
            return
        for queue in sorted(new):
            _exec(conn, _listen(conn, self._channels[queue]))
        self._hub.notify_many(new)  # a hint sent before the LISTEN took effect was missed
        self._listened |= new  # after the wake-up: is_listening() means both happened

    def _drain_pipe(self) -> None:
        try:
            while os.read(self._wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def _take_payloads(self) -> list[tuple[str, str]]:
        now = _now_ms()
        with self._lock:
            orchestrator, self._orchestrator = self._orchestrator, set()
            worker, self._worker = self._worker, set()
            status, self._status = self._status, False
            cancelled, self._cancelled = self._cancelled, []
            self._signalled = False
            posts, self._posts = self._posts, 0
        if posts >= BUSY_BATCH:
            self._interval = min(self._interval * 2, MAX_SEND_INTERVAL_S)
        else:
            self._interval = max(self._interval / 2, MIN_SEND_INTERVAL_S)
        return encode_payloads(
            [max(0, due - now) for due in orchestrator],
            [max(0, due - now) for due in worker],
            status,
            cancelled,
        )

    # The connection is used through libpq directly: a notification batch is one small
    # statement, sent up to a few hundred times a second by every process, and psycopg's cursor
    # machinery (query conversion, parameter dumpers, its wait loop) cost more than the round
    # trip. So every notification stays in libpq until _receive reads it.

    def _send(self, conn: psycopg.Connection[Any], payloads: list[tuple[str, str]]) -> None:
        """Send ``(queue, payload)`` pairs (usually one to three) in one statement, so one tiny
        transaction, each on its queue's channel."""
        channels = [self._channels[queue] for queue, _ in payloads]
        params = (channels, [payload for _, payload in payloads])
        _exec(conn, self._notify.text, self._notify.encode(params))

    def _receive(self, conn: psycopg.Connection[Any]) -> None:
        """Apply the notifications libpq has read (or reads now); our own are skipped."""
        pgconn = conn.pgconn
        pgconn.consume_input()  # raises when the connection broke
        own = self._pid
        while (notify := pgconn.notifies()) is not None:
            if notify.be_pid != own:
                apply_payload(self._hub, notify.extra.decode())


def queue_channel(channel: str, queue: str) -> str:
    """The channel of one queue's hints: the schema's channel (at most 58 bytes, see
    ``channel_name``) and ``_o``, ``_w`` or ``_s``."""
    return f"{channel}_{queue[0]}"


def _listen(conn: psycopg.Connection[Any], channel: str) -> bytes:
    query = sql.SQL(control_queries()["listen"]).format(channel=sql.Identifier(channel))
    return query.as_bytes(conn)


def _exec(
    conn: psycopg.Connection[Any], statement: bytes, params: list[bytes | None] | None = None
) -> None:
    """Run one statement on the listener's connection through libpq; a failure raises
    ``psycopg.OperationalError`` (the listener then reconnects)."""
    result = conn.pgconn.exec_params(statement, params or [])
    if result.status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
        raise psycopg.OperationalError(result.get_error_message() or "listener statement failed")
