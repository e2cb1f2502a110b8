#!/usr/bin/env python
"""One page over every benchmark from the per-seed CSVs alone (mtbench.report.overview; docs/results_tooling.md):

    python scripts/summarize_results.py results/ [--out results/summary.md]

Each arm's primary metric per benchmark: mean [95% CI] and its verdict against the Hyperband-tuned
fixed weights (better / worse / tie after Holm), as in the table.md beside each per_seed.csv.
"""

import sys

from mtbench.report.overview import main

if __name__ == "__main__":
    sys.exit(main())
