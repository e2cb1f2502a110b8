#!/usr/bin/env python
"""Tables from per-seed CSVs alone (mtbench.report.seedtable; docs/results_tooling.md):

    python scripts/make_tables.py results/ [--baseline-arm tuned] [--defaults-arm fixed] [--alpha 0.05]

For every per_seed.csv given or found below a folder, writes table.md (mean ± sd, 95% CI, tests
against the tuned baseline with Holm's correction, ties, bold winners) and table_stats.csv beside it.
"""

import sys

from mtbench.report.seedtable import main

if __name__ == "__main__":
    sys.exit(main())
