"""Crash recovery: a runtime process is SIGKILLed mid-workflow and a fresh process finishes it.

The workflow (``apps/twenty_steps.py``) runs 20 sequential activities on a SQLite *file*. Each
activity appends ``step-<n> <pid>`` to a side-effect file (fsynced before it returns), so after
the instance completes the test can count how often every step ran and in which process.
Activities are at-least-once: a kill may re-run the step that was in flight, never a step whose
completion was committed, so each step runs once or twice and the workflow output is exact.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from duroxide import Client, SqliteProvider

pytestmark = pytest.mark.slow

APP = Path(__file__).parent / "apps" / "twenty_steps.py"
INSTANCE = "crash-me"
STEPS = 20
EXPECTED_OUTPUT = [f"done-{n}" for n in range(1, STEPS + 1)]
CHILD_DEADLINE_S = 90


class Children:
    """Spawns app processes (output to a log file) and kills any still alive at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.db = tmp_path / "crash 'db' ש🚀.db"  # the path is passed through argv and a URL
        self.effects = tmp_path / "effects.txt"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def spawn(self, *extra: str) -> subprocess.Popen[bytes]:
        log = self.tmp_path / f"child-{len(self.procs) + 1}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, str(APP), str(self.db), str(self.effects),
                 "--instance", INSTANCE, "--deadline-s", str(CHILD_DEADLINE_S), *extra],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.procs.append(proc)
        self.logs.append(log)
        return proc

    def log_of(self, proc: subprocess.Popen[bytes]) -> str:
        return self.logs[self.procs.index(proc)].read_text(errors="replace")

    def wait_until(self, proc: subprocess.Popen[bytes], what: str, check: Callable[[], bool],
                   timeout_s: float = 30.0) -> None:  # fmt: skip
        """Wait for ``check()`` while ``proc`` is alive; fail with its log otherwise."""
        deadline = time.monotonic() + timeout_s
        while not check():
            if proc.poll() is not None:
                raise AssertionError(
                    f"child exited ({proc.returncode}) before {what}:\n{self.log_of(proc)}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not seen within {timeout_s}s:\n{self.log_of(proc)}")
            time.sleep(0.005)

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        proc.kill()  # SIGKILL: no shutdown, no lock release, no cleanup of any kind
        assert proc.wait(timeout=10) == -9, self.log_of(proc)

    def effects_lines(self) -> list[tuple[int, int]]:
        """``(step, pid)`` of every side effect so far."""
        if not self.effects.exists():
            return []
        out = []
        for line in self.effects.read_text().splitlines():
            step, pid = line.split()
            assert step.startswith("step-"), line
            out.append((int(step.removeprefix("step-")), int(pid)))
        return out

    def steps_run_by(self, proc: subprocess.Popen[bytes]) -> set[int]:
        return {step for step, pid in self.effects_lines() if pid == proc.pid}

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Children]:
    c = Children(tmp_path)
    yield c
    c.close()


@pytest.fixture
def file_client(children: Children) -> Iterator[Client]:
    """A client of the test process on the same database file the children use."""
    provider = SqliteProvider.open(f"sqlite:{children.db}")
    yield Client(provider)
    provider.close()


def history_kinds(client: Client) -> list[str]:
    return [e.kind for e in client.read_execution_history(INSTANCE, 1)]


def assert_mid_workflow(client: Client) -> int:
    """The instance is still running with some but not all steps completed; returns how many."""
    status = client.get_status(INSTANCE)
    assert status.status == "Running", status
    completed = history_kinds(client).count("ActivityCompleted")
    assert 0 < completed < STEPS, completed
    return completed


def assert_finished_correctly(client: Client, children: Children, last: subprocess.Popen[bytes]
                              ) -> Counter[int]:  # fmt: skip
    assert last.wait(timeout=60) == 0, children.log_of(last)
    result = client.wait_for_orchestration(INSTANCE, 5000)
    assert result.status == "Completed", result
    assert result.output == EXPECTED_OUTPUT

    history = client.read_execution_history(INSTANCE, 1)
    kinds = [e.kind for e in history]
    assert [e.event_id for e in history] == list(range(1, len(history) + 1))
    assert kinds[0] == "OrchestrationStarted"
    assert kinds[-1] == "OrchestrationCompleted"
    assert kinds.count("OrchestrationCompleted") == 1
    assert kinds.count("ActivityScheduled") == STEPS
    assert kinds.count("ActivityCompleted") == STEPS
    assert "ActivityFailed" not in kinds
    assert "OrchestrationFailed" not in kinds
    scheduled = {e.event_id: e for e in history if e.kind == "ActivityScheduled"}
    inputs = [json.loads(e.data)["input"] for e in scheduled.values()]
    assert inputs == list(range(1, STEPS + 1))
    sources = [e.source_event_id for e in history if e.kind == "ActivityCompleted"]
    assert sorted(sources) == sorted(scheduled), "each schedule completed exactly once"
    assert json.loads(history[-1].data) == EXPECTED_OUTPUT

    runs = Counter(step for step, _ in children.effects_lines())
    assert set(runs) == set(range(1, STEPS + 1)), runs
    too_many = {step: n for step, n in runs.items() if not 1 <= n <= 2}
    assert not too_many, f"side effects ran more than once more than needed: {too_many}"
    return runs


def test_two_sigkills_mid_workflow_then_a_fresh_process_finishes(
    children: Children, file_client: Client
) -> None:
    first = children.spawn("--start")
    children.wait_until(first, "step 5", lambda: 5 in children.steps_run_by(first))
    children.kill(first)
    done_after_first = assert_mid_workflow(file_client)

    second = children.spawn()
    children.wait_until(second, "step 12", lambda: 12 in children.steps_run_by(second))
    children.kill(second)
    done_after_second = assert_mid_workflow(file_client)
    assert done_after_second > done_after_first, "the second process made progress"

    third = children.spawn()
    runs = assert_finished_correctly(file_client, children, third)
    # Each kill can interrupt at most the one step in flight (the steps are sequential).
    assert sum(runs.values()) <= STEPS + 2, runs
    assert max(children.steps_run_by(third)) == STEPS, "the third process finished the workflow"


def test_sigkill_inside_an_activity_reruns_it_in_the_next_process(
    children: Children, file_client: Client
) -> None:
    blocked_step = 7
    first = children.spawn("--start", "--block-at", str(blocked_step))
    children.wait_until(
        first, f"step {blocked_step} running", lambda: blocked_step in children.steps_run_by(first)
    )
    # The activity is parked inside its body: steps before it are committed, it is not.
    assert history_kinds(file_client).count("ActivityCompleted") == blocked_step - 1
    children.kill(first)
    assert assert_mid_workflow(file_client) == blocked_step - 1

    second = children.spawn()
    runs = assert_finished_correctly(file_client, children, second)
    expected = dict.fromkeys(range(1, STEPS + 1), 1)
    expected[blocked_step] = 2  # interrupted inside, so run again; nothing else repeats
    assert dict(runs) == expected
    assert children.steps_run_by(first) == set(range(1, blocked_step + 1))
    assert children.steps_run_by(second) == set(range(blocked_step, STEPS + 1))
