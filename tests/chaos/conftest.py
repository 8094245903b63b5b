"""The chaos scenarios import ``tests.chaos.*`` (as under ``python -m tests.chaos``, run from
the repository root): put the root on the import path, before ``tests/``."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
