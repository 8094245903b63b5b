"""1. SIGKILL of worker processes mid-activity, repeatedly (see ``_kills``)."""

from __future__ import annotations

from tests.chaos.result import ChaosEnv, ScenarioResult
from tests.chaos.scenarios._kills import KillPlan, run_kills

NUMBER = 1
TITLE = "SIGKILL workers mid-activity"

SMALL = KillPlan("worker", instances=60, k=4, sleep_s=0.2, every_s=0.8, timeout_s=60)
FULL = KillPlan("worker", instances=600, k=5, sleep_s=0.1, every_s=1.0, timeout_s=240)


def run(env: ChaosEnv) -> ScenarioResult:
    return run_kills(env, NUMBER, TITLE, SMALL if env.size == "small" else FULL)
