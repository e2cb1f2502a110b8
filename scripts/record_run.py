#!/usr/bin/env python
"""Append finished runs to a per-seed CSV (mtbench.report.records; docs/results_tooling.md):

    python scripts/record_run.py results/mnist/t10k_uniform/per_seed.csv RUN_DIR... --arm mtadam [--data NAME]

One row per (arm, seed); a row already recorded is skipped (one line says so); a CSV whose
columns are not a per-seed CSV's is refused in one line naming it.
"""

import sys

from mtbench.report.records import main

if __name__ == "__main__":
    sys.exit(main())
