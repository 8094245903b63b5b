"""The pure replay engine: ``run_turn(TurnInput) -> TurnResult``."""

from duroxide.replay.engine import Turn, resume_turn, run_turn, start_turn
from duroxide.replay.turn import HandlerLookup, TurnInput, TurnResult, TurnStatus

__all__ = [
    "HandlerLookup",
    "Turn",
    "TurnInput",
    "TurnResult",
    "TurnStatus",
    "resume_turn",
    "run_turn",
    "start_turn",
]
