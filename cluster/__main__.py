"""``python -m cluster``: see ``cluster.cli``."""

from __future__ import annotations

import sys

from cluster.cli import main

if __name__ == "__main__":  # spawned children import this module as __mp_main__
    sys.exit(main())
