"""Group commit: concurrent acks share transactions, and each still gets its own outcome."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import pytest
from integration.support import eventually

from duroxide.errors import LockLostError, ProviderError
from duroxide.runtime.group_commit import GroupCommit


class SlowStore:
    """Commits take a while (like a database round trip), so acks pile up behind them."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = threading.Event()
        self.started = threading.Event()  # the first commit is running
        self.threads: list[str] = []  # the thread of each commit
        self._active = threading.Lock()

    def commit(self, acks: Sequence[int]) -> list[ProviderError | None]:
        assert self._active.acquire(blocking=False), "two commits at once"
        try:
            self.batches.append(list(acks))
            self.threads.append(threading.current_thread().name)
            if len(self.batches) == 1:
                self.started.set()
                self.release.wait(5)  # hold the first commit until everyone has submitted
            return [LockLostError("ack") if n % 7 == 0 else None for n in acks]
        finally:
            self._active.release()


def test_acks_submitted_during_a_commit_share_the_next_transaction() -> None:
    store = SlowStore()
    commits = GroupCommit[int]("ack", store.commit)
    results: dict[int, ProviderError | None] = {}
    first = threading.Thread(target=lambda: results.__setitem__(1, commits.submit(1)))
    first.start()
    assert store.started.wait(5)
    others = [threading.Thread(target=lambda n=n: results.__setitem__(n, commits.submit(n)))
              for n in range(2, 22)]  # fmt: skip
    for t in others:
        t.start()
    eventually(lambda: len(commits._pending) == 20)  # all twenty queued behind the first commit
    store.release.set()
    for t in [first, *others]:
        t.join(5)

    assert store.batches[0] == [1]
    assert sorted(n for batch in store.batches[1:] for n in batch) == list(range(2, 22))
    assert len(store.batches) == 2  # the twenty waiting acks went in ONE transaction
    assert sorted(results) == list(range(1, 22))
    for n, result in results.items():
        assert isinstance(result, LockLostError) == (n % 7 == 0)


def test_a_lone_ack_is_committed_by_its_own_thread_at_once() -> None:
    calls: list[str] = []

    def commit(acks: Sequence[str]) -> list[ProviderError | None]:
        calls.append(threading.current_thread().name)
        return [None] * len(acks)

    commits = GroupCommit[str]("ack", commit)
    assert commits.submit("x") is None
    assert calls == [threading.current_thread().name]


def test_a_crashing_commit_fails_every_ack_of_its_batch_without_stranding_anyone() -> None:
    def commit(acks: Sequence[int]) -> list[ProviderError | None]:
        raise RuntimeError("driver bug")

    commits = GroupCommit[int]("ack", commit)
    error = commits.submit(1)
    assert isinstance(error, ProviderError) and "driver bug" in str(error)
    assert commits.submit(2) is not None  # still usable afterwards


def test_many_threads_each_get_their_own_outcome_exactly_once() -> None:
    """Sixteen threads, 200 acks each, small batches: every ack is committed once, in some
    batch no larger than the limit, and every thread returns (nobody is left waiting)."""
    seen: list[int] = []
    overlapping: list[list[int]] = []  # commits that ran while another was running
    lock = threading.Lock()

    active = threading.Lock()

    def commit(acks: Sequence[int]) -> list[ProviderError | None]:
        if not active.acquire(blocking=False):
            overlapping.append(list(acks))
            return [None] * len(acks)
        try:
            assert len(acks) <= 4
            with lock:
                seen.extend(acks)
            return [LockLostError("ack") if n % 5 == 0 else None for n in acks]
        finally:
            active.release()

    commits = GroupCommit[int]("ack", commit, max_batch=4)
    wrong: list[int] = []

    def run(base: int) -> None:
        for n in range(base, base + 200):
            outcome = commits.submit(n)
            ok = isinstance(outcome, LockLostError) if n % 5 == 0 else outcome is None
            if not ok:
                wrong.append(n)

    threads = [threading.Thread(target=run, args=(t * 1000,)) for t in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    assert not any(t.is_alive() for t in threads)
    assert overlapping == []
    assert wrong == []
    assert sorted(seen) == sorted(t * 1000 + n for t in range(16) for n in range(200))
    assert commits.committed == 3200


def _first_commit_running(
    name: str | None = None,
) -> tuple[SlowStore, GroupCommit[int], threading.Thread]:
    """A group commit whose first commit (of ack 1, by the thread returned) is running, held until
    ``store.release`` is set."""
    store = SlowStore()
    commits = GroupCommit[int]("ack", store.commit)
    first = threading.Thread(target=commits.submit, args=(1,), name=name)
    first.start()
    assert store.started.wait(5)
    return store, commits, first


def test_a_submitter_behind_a_commit_goes_on_and_the_committer_runs_its_then() -> None:
    """``submit_then`` never waits for a commit another thread runs; the thread that committed
    the first batch does not stay on either: the committer thread commits what arrived
    meanwhile and runs each ``then`` with its own outcome."""
    store, commits, first = _first_commit_running()
    seen: list[tuple[str, ProviderError | None]] = []
    both = threading.Event()

    def then(outcome: ProviderError | None) -> None:
        seen.append((threading.current_thread().name, outcome))
        if len(seen) == 2:
            both.set()

    commits.submit_then(7, then)
    commits.submit_then(8, then)

    assert seen == []  # returned at once: both wait for the next batch
    store.release.set()
    first.join(5)
    assert not first.is_alive()
    assert both.wait(5)
    assert store.batches == [[1], [7, 8]]
    assert [name for name, _ in seen] == ["duroxide-commit-ack"] * 2
    assert isinstance(seen[0][1], LockLostError) and seen[1][1] is None


def test_a_failing_then_does_not_strand_the_acks_behind_it() -> None:
    store, commits, _ = _first_commit_running()
    outcomes: list[ProviderError | None] = []
    done = threading.Event()

    def explode(_: ProviderError | None) -> None:
        raise RuntimeError("bug in a caller")

    def record(outcome: ProviderError | None) -> None:
        outcomes.append(outcome)
        done.set()

    commits.submit_then(2, explode)
    commits.submit_then(3, record)
    store.release.set()

    assert done.wait(5)
    assert store.batches == [[1], [2, 3]]
    assert outcomes == [None]
    assert commits.submit(4) is None  # still usable afterwards


def test_what_the_thens_return_runs_after_every_then_of_the_batch() -> None:
    """So a dispatcher updates its caches for the whole batch before it frees any slot."""
    order: list[str] = []
    store, commits, _ = _first_commit_running()
    done = threading.Event()

    def then(n: int) -> Callable[[ProviderError | None], Callable[[], None]]:
        def then_(_: ProviderError | None) -> Callable[[], None]:
            order.append(f"then {n}")

            def finish() -> None:
                order.append(f"finish {n}")
                if n == 3:
                    done.set()

            return finish

        return then_

    commits.submit_then(2, then(2))
    commits.submit_then(3, then(3))
    store.release.set()

    assert done.wait(5)
    assert order == ["then 2", "then 3", "finish 2", "finish 3"]


def test_once_the_committer_is_idle_a_lone_ack_is_committed_by_its_own_thread_again() -> None:
    store, commits, _ = _first_commit_running()
    committed = threading.Event()
    commits.submit_then(2, lambda _: committed.set())
    store.release.set()
    assert committed.wait(5)
    eventually(lambda: not commits._busy)  # the committer drained the queue: it is idle

    seen: list[str] = []
    commits.submit_then(3, lambda _: seen.append(threading.current_thread().name))

    assert seen == [threading.current_thread().name]  # committed before submit_then returned
    assert store.threads[-1] == threading.current_thread().name
    commits.close()
    assert commits.submit(4) is None  # closed: still committed, by the submitter
    assert store.threads[-1] == threading.current_thread().name


def test_with_no_thread_to_be_had_the_submitter_commits_what_arrived(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Out of threads (no committer can start), nothing is stranded: the thread that
    committed the first batch goes on with the rest."""
    store, commits, first = _first_commit_running(name="first")
    outcomes: list[ProviderError | None] = []
    commits.submit_then(2, outcomes.append)

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    store.release.set()
    first.join(5)

    assert not first.is_alive()
    assert outcomes == [None]
    assert store.threads == ["first", "first"]
