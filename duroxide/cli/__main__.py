"""``python -m duroxide.cli``."""

import sys

from duroxide.cli.app import main

sys.exit(main())
