"""``cluster.signals``: stop requests from signal handlers never deadlock, and a wedged process
still ends (and says where it was stuck). Each case runs in its own interpreter, so a
regression fails the test instead of hanging it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs,  # type: ignore[call-overload]
    )  # fmt: skip


def _finish(proc: subprocess.Popen[str], timeout_s: float = 30) -> tuple[str, str]:
    """Its output once it exits; killed (and the test failed) if it is still running."""
    try:
        return proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(
            f"still running after {timeout_s}s (deadlocked?)\n{out}{err}"
        ) from None


def test_a_stop_signal_arriving_while_the_main_thread_holds_the_events_lock_still_stops() -> None:
    # The main thread holds the lock inside the Event (as Event.wait does for a moment on every
    # call) when the signal's handler runs: a handler calling stop.set() itself would wait on
    # that lock forever; through on_signals, the relay thread sets it once the lock is free.
    proc = _python("""
        import os, signal, threading
        from cluster.signals import on_signals
        stop = threading.Event()
        on_signals([signal.SIGTERM], lambda _signum: stop.set())
        with stop._cond:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, under the lock
            for _ in range(1000):
                pass
        print("stopped" if stop.wait(10) else "not stopped", flush=True)
    """)
    out, err = _finish(proc)
    assert proc.returncode == 0, err
    assert out.strip() == "stopped"


def test_every_signal_reaches_the_callback_with_its_number() -> None:
    proc = _python("""
        import os, signal, threading
        from cluster.signals import on_signals
        seen, done = [], threading.Event()
        def got(signum):
            seen.append(signum)
            if len(seen) == 2:
                done.set()
        on_signals([signal.SIGTERM, signal.SIGINT], got)
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        print(sorted(seen) if done.wait(10) else "missing", flush=True)
    """)
    out, err = _finish(proc)
    assert proc.returncode == 0, err
    assert out.strip() == str(sorted([int(signal.SIGTERM), int(signal.SIGINT)]))


def test_exit_after_ends_a_wedged_process_with_code_1_and_its_stacks() -> None:
    started = time.monotonic()
    proc = _python("""
        import threading
        from cluster.signals import exit_after
        exit_after(0.5)
        lock = threading.Lock()
        lock.acquire()
        def stuck_forever():
            lock.acquire()  # a deadlock: nothing in Python will ever run again here
        stuck_forever()
    """)
    _out, err = _finish(proc)
    assert proc.returncode == 1
    assert time.monotonic() - started < 20
    assert "Timeout" in err and "stuck_forever" in err  # where it was stuck


def test_sigusr1_writes_the_stacks_of_a_wedged_process() -> None:
    proc = _python("""
        import sys, threading
        from cluster.signals import dump_stacks_on
        import signal
        dump_stacks_on(signal.SIGUSR1)
        lock = threading.Lock()
        lock.acquire()
        print("wedged", flush=True)
        def waiting_here():
            lock.acquire()
        waiting_here()
    """)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "wedged"
        os.kill(proc.pid, signal.SIGUSR1)
        assert proc.stderr is not None
        lines: list[str] = []
        deadline = time.monotonic() + 20
        while not any("waiting_here" in line for line in lines):
            assert time.monotonic() < deadline, "".join(lines)
            lines.append(proc.stderr.readline())
        assert proc.poll() is None  # a dump, not an exit
    finally:
        proc.kill()
        proc.communicate()
