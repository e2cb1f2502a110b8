"""``python -m mtbench.report``: the same as ``mtbench report``."""

import sys

from mtbench.report import main

sys.exit(main())
