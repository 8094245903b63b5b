"""The fault-tolerance suite: the real cluster against a real PostgreSQL, with injected faults,
checked by an independent invariant checker (docs/chaos.md). ``python -m tests.chaos``."""
