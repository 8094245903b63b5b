"""Group commit: acks from many slot threads written in one transaction.

A slot thread ``submit``s its ack and blocks until it is committed. The first thread to submit
while nothing is being committed becomes the leader: it takes every pending ack, commits them in
one batch (one round trip, one transaction, one fsync), hands out the per-ack outcomes and, if
more acks arrived meanwhile, promotes the oldest waiting thread to lead the next batch. Alone, a
thread commits its own ack at once (no extra thread, no added latency); under load, batches grow
by themselves. Each ack stays all-or-nothing on its own (the provider isolates them).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from duroxide.errors import ProviderError, describe_exception

A = TypeVar("A")


class _Entry(Generic[A]):
    __slots__ = ("ack", "done", "result", "wake")

    def __init__(self, ack: A) -> None:
        self.ack = ack
        self.done = False
        self.result: ProviderError | None = None
        # Released once: when the entry is committed, or when its thread must lead the next
        # batch. One lock per waiting thread, so a commit wakes exactly the threads it concerns
        # (a shared condition would wake every waiter on every batch).
        self.wake = threading.Lock()
        self.wake.acquire()


class GroupCommit(Generic[A]):
    def __init__(
        self,
        operation: str,
        commit_many: Callable[[Sequence[A]], list[ProviderError | None]],
        max_batch: int = 256,
    ) -> None:
        self._operation = operation
        self._commit_many = commit_many
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._pending: list[_Entry[A]] = []
        self._busy = False
        self.batches = 0
        self.committed = 0

    def submit(self, ack: A) -> ProviderError | None:
        """Commit ``ack`` (with whatever else is pending); its own outcome: None or the error
        that rolled it back."""
        entry: _Entry[A] = _Entry(ack)
        with self._lock:
            self._pending.append(entry)
            lead = not self._busy
            self._busy = True
        if not lead:
            entry.wake.acquire()  # committed by another leader, or promoted to lead
            if entry.done:
                return entry.result
        # This thread leads: its entry is the oldest pending one, so it is in this batch.
        with self._lock:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
        results = self._commit(batch)
        for done, result in zip(batch, results, strict=True):
            done.result, done.done = result, True
        with self._lock:
            self.batches += 1
            self.committed += len(batch)
            successor = self._pending[0] if self._pending else None
            if successor is None:
                self._busy = False
        for done in batch:
            if done is not entry:
                done.wake.release()
        if successor is not None:
            successor.wake.release()  # not done: it leads the next batch
        return entry.result

    def _commit(self, batch: list[_Entry[A]]) -> list[ProviderError | None]:
        try:
            results = self._commit_many([e.ack for e in batch])
        except ProviderError as exc:
            return [exc] * len(batch)
        except Exception as exc:  # a bug must not strand the waiting threads
            error = ProviderError(self._operation, describe_exception(exc), retryable=False)
            return [error] * len(batch)
        if len(results) != len(batch):
            error = ProviderError(self._operation, "provider returned the wrong number of results")
            return [error] * len(batch)
        return results
