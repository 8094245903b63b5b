"""2. SIGKILL of orchestrator processes mid-turn, repeatedly (see ``_kills``)."""

from __future__ import annotations

from tests.chaos.result import ChaosEnv, ScenarioResult
from tests.chaos.scenarios._kills import KillPlan, run_kills

NUMBER = 2
TITLE = "SIGKILL orchestrators mid-turn"

SMALL = KillPlan("orchestrator", instances=200, k=4, sleep_s=0.02, every_s=0.5, timeout_s=60)
FULL = KillPlan("orchestrator", instances=1000, k=5, sleep_s=0.02, every_s=1.0, timeout_s=240)


def run(env: ChaosEnv) -> ScenarioResult:
    return run_kills(env, NUMBER, TITLE, SMALL if env.size == "small" else FULL)
