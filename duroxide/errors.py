"""One exception tree for the whole library, plus the error details stored with failures.

User code only ever sees ``TaskFailedError`` (and its subclasses) thrown into an orchestration
generator; everything else is raised to the caller of a Client/Runtime/Provider method.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class ErrorCategory(StrEnum):
    """Why something failed; stored with every failure."""

    APPLICATION = "application"  # user code raised, or the instance was cancelled
    CONFIGURATION = "configuration"  # nondeterminism, missing handler, bad registration
    INFRASTRUCTURE = "infrastructure"  # storage failure
    POISON = "poison"  # a message was fetched more than max_attempts times


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorDetails:
    """A failure as stored in history and shown to clients.

    ``message`` is what ``result.error`` shows; ``kind`` is a stable machine-readable reason
    (``"cancelled"``, ``"nondeterminism"``, ``"timeout"``, ``"unregistered"`` …) or empty.
    """

    category: ErrorCategory
    message: str
    kind: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"category": self.category.value, "message": self.message, "kind": self.kind}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ErrorDetails:
        return cls(
            category=ErrorCategory(data["category"]),
            message=str(data["message"]),
            kind=str(data.get("kind", "")),
        )

    @classmethod
    def application(cls, message: str, kind: str = "") -> ErrorDetails:
        return cls(category=ErrorCategory.APPLICATION, message=message, kind=kind)

    @classmethod
    def configuration(cls, message: str, kind: str = "") -> ErrorDetails:
        return cls(category=ErrorCategory.CONFIGURATION, message=message, kind=kind)

    @classmethod
    def infrastructure(cls, message: str, kind: str = "") -> ErrorDetails:
        return cls(category=ErrorCategory.INFRASTRUCTURE, message=message, kind=kind)

    @classmethod
    def poison(cls, message: str) -> ErrorDetails:
        return cls(category=ErrorCategory.POISON, message=message, kind="poison")


def describe_exception(exc: BaseException) -> str:
    """The message to store for an exception user code raised, without ever raising itself.

    ``str(exc)`` for an ``Exception`` (its type name when that is empty);
    ``"SystemExit: 3"`` style for other ``BaseException`` types; a placeholder when even
    ``str()`` fails.
    """
    name = type(exc).__name__
    try:
        text = str(exc)
    except BaseException:  # a broken __str__ (even one raising SystemExit) must not escape
        return f"{name} (its message could not be rendered)"
    if not isinstance(exc, Exception):
        return f"{name}: {text}" if text else name
    return text or name


class DuroxideError(Exception):
    """Root of every error raised by duroxide."""


class TaskFailedError(DuroxideError):
    """A durable task failed; thrown into the orchestration generator at its ``yield``.

    ``str(error)`` is exactly the failure message (for an activity: what it raised).
    """

    def __init__(self, message: str, details: ErrorDetails | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or ErrorDetails.application(message)

    @property
    def category(self) -> str:
        return self.details.category.value

    def __str__(self) -> str:
        return self.message


class ActivityFailedError(TaskFailedError):
    """An activity raised, timed out, or was poisoned."""


class SubOrchestrationFailedError(TaskFailedError):
    """A sub-orchestration failed or was cancelled."""


class NondeterminismError(DuroxideError):
    """The orchestration code no longer produces the recorded history."""


class ProviderError(DuroxideError):
    """A storage operation failed. ``retryable`` tells the runtime whether trying again may help."""

    def __init__(
        self, operation: str, message: str, *, retryable: bool = False, sqlstate: str | None = None
    ) -> None:
        super().__init__(f"{operation}: {message}")
        self.operation = operation
        self.message = message
        self.retryable = retryable
        #: The database's error code (SQLSTATE), when the database raised it.
        self.sqlstate = sqlstate


class LockLostError(ProviderError):
    """The lock token is unknown or expired: another worker may own the item now."""

    def __init__(self, operation: str, message: str = "lock lost or expired") -> None:
        super().__init__(operation, message, retryable=False)


class InstanceNotFoundError(DuroxideError, LookupError):
    """No instance has this id."""

    def __init__(self, instance_id: str) -> None:
        super().__init__(f"instance not found: {instance_id!r}")
        self.instance_id = instance_id


class InvalidOperationError(DuroxideError, ValueError):
    """The request is well-formed but not allowed in the current state."""


class PayloadTooLargeError(DuroxideError, ValueError):
    """A payload exceeds the configured size limit; never retried."""


class WaitTimeoutError(DuroxideError, TimeoutError, RuntimeError):
    """A client wait ran out of time. Also a ``RuntimeError``, which is what the reference SDK
    raises, so ``except RuntimeError`` keeps working."""


class OrchestrationFailedError(DuroxideError):
    """Raised by ``wait_for_orchestration_typed`` when the orchestration failed."""

    def __init__(self, instance_id: str, error: str | None) -> None:
        super().__init__(f"orchestration {instance_id!r} failed: {error}")
        self.instance_id = instance_id
        self.error = error
