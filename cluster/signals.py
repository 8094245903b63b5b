"""Signal handling that cannot deadlock, and a shutdown deadline that needs no interpreter.

CPython runs a Python signal handler in the main thread between two bytecodes, possibly while
that thread holds a lock: the one inside ``threading.Event.wait``, for instance, which the
supervisor's and every child's main loop call all the time. A handler that calls
``Event.set()`` takes that same lock and then waits forever, on its own thread. So the
handlers installed here only write the signal's number to a pipe (``os.write`` takes no Python
lock); a relay thread reads the pipe and runs the callback, which may take any lock.

``exit_after`` arms the last resort of a shutdown: ``faulthandler``'s watchdog, a C thread
that needs neither the GIL nor any lock, writes every thread's stack to stderr and exits the
process with code 1 when the deadline passes. So a wedged process still ends, and says where
it was stuck. ``dump_stacks_on`` installs the same dump on a signal (``kill -USR1 <pid>``),
written by the C handler itself.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable


def on_signals(signums: Iterable[int], callback: Callable[[int], None]) -> None:
    """Run ``callback(signum)`` (in a relay thread) for every one of ``signums`` received."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)

    def handler(signum: int, _frame: object) -> None:
        with contextlib.suppress(OSError):  # a full pipe: the relay has signals to read anyway
            os.write(write_fd, bytes((signum,)))

    def relay() -> None:
        while True:
            for signum in os.read(read_fd, 64):
                callback(signum)

    threading.Thread(target=relay, name="signal-relay", daemon=True).start()
    for signum in signums:
        signal.signal(signum, handler)


def exit_after(seconds: float) -> None:
    """Exit with code 1, after writing every thread's stack to stderr, if the process is still
    running ``seconds`` from now. A later call replaces the deadline."""
    faulthandler.dump_traceback_later(seconds, exit=True, file=sys.stderr)


def dump_stacks_on(signum: int) -> None:
    """Write every thread's stack to stderr on ``signum``, even when the process is wedged."""
    faulthandler.register(signum, file=sys.stderr, all_threads=True)
