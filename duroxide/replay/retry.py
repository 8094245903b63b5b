"""Retry policies for ``schedule_activity_with_retry``.

A policy is given as a dict (as in the reference SDK): ``max_attempts``, ``backoff``
(``"exponential"`` | ``"linear"`` | ``"fixed"`` | ``"none"``), ``timeout_ms`` (per attempt) and
``total_timeout_ms`` (across attempts). Optional tuning keys: ``delay_ms`` (base delay, default
100), ``max_delay_ms`` (cap, default 30 000) and ``multiplier`` (exponential, default 2.0).

Retries are durable: each attempt is an ``ActivityScheduled`` event and each backoff a durable
timer, so a retry schedule survives restarts and replays identically.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

BACKOFF_KINDS = ("exponential", "linear", "fixed", "none")
_KNOWN_KEYS = {
    "max_attempts", "backoff", "timeout_ms", "total_timeout_ms", "delay_ms", "max_delay_ms",
    "multiplier",
}  # fmt: skip
#: The camelCase spellings the reference SDK also accepts.
_ALIASES = {
    "maxAttempts": "max_attempts", "timeoutMs": "timeout_ms", "totalTimeoutMs": "total_timeout_ms",
    "delayMs": "delay_ms", "maxDelayMs": "max_delay_ms",
}  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    max_attempts: int = 3
    backoff: str = "exponential"
    delay_ms: int = 100
    max_delay_ms: int = 30_000
    multiplier: float = 2.0
    timeout_ms: int | None = None
    total_timeout_ms: int | None = None

    @classmethod
    def parse(cls, policy: Any) -> RetryPolicy:
        if isinstance(policy, RetryPolicy):
            return policy
        if isinstance(policy, int) and not isinstance(policy, bool):
            policy = {"max_attempts": policy}
        if not isinstance(policy, Mapping):
            raise TypeError(f"retry policy must be a dict, got {type(policy).__name__}")
        policy = {_ALIASES.get(k, k): v for k, v in policy.items()}
        unknown = set(policy) - _KNOWN_KEYS
        if unknown:
            raise ValueError(f"unknown retry policy keys: {sorted(unknown)}")
        kwargs: dict[str, Any] = {}
        for key in ("max_attempts", "delay_ms", "max_delay_ms", "timeout_ms", "total_timeout_ms"):
            value = policy.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"retry policy {key} must be an int, got {value!r}")
            minimum = 1 if key in ("max_attempts", "timeout_ms", "total_timeout_ms") else 0
            if value < minimum:
                raise ValueError(f"retry policy {key} must be >= {minimum}, got {value}")
            kwargs[key] = value
        backoff = policy.get("backoff") or "exponential"
        if backoff not in BACKOFF_KINDS:
            raise ValueError(
                f"retry policy backoff must be one of {BACKOFF_KINDS}, got {backoff!r}"
            )
        kwargs["backoff"] = backoff
        multiplier = policy.get("multiplier")
        if multiplier is not None:
            if isinstance(multiplier, bool) or not isinstance(multiplier, int | float):
                raise TypeError(f"retry policy multiplier must be a number, got {multiplier!r}")
            if not math.isfinite(multiplier) or multiplier < 1:
                raise ValueError(f"retry policy multiplier must be >= 1, got {multiplier}")
            kwargs["multiplier"] = float(multiplier)
        return cls(**kwargs)

    def delay_before(self, attempt: int) -> int:
        """Backoff in ms before ``attempt`` (2, 3, …)."""
        n = attempt - 1  # retries so far
        if self.backoff == "none":
            return 0
        if self.backoff == "fixed":
            delay = self.delay_ms
        elif self.backoff == "linear":
            delay = self.delay_ms * n
        else:
            # Capping the exponent keeps huge attempt counts from overflowing the float.
            delay = int(min(self.max_delay_ms, self.delay_ms * self.multiplier ** min(n - 1, 64)))
        return min(delay, self.max_delay_ms)
