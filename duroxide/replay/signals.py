"""Control flow inside one replay; neither exception ever escapes the engine."""

from __future__ import annotations


class Fatal(BaseException):
    """Nondeterminism found; a BaseException so user ``except Exception`` cannot swallow it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NeedsRead(BaseException):
    """A cross-instance KV read is needed and no reader was given: the turn is re-run."""

    def __init__(self, instance_id: str, key: str) -> None:
        super().__init__(instance_id, key)
        self.target = (instance_id, key)
