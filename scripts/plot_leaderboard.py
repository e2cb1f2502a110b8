#!/usr/bin/env python
"""The leaderboard figure from per-seed CSVs alone (mtbench.report.leaderboard; docs/results_tooling.md):

    python scripts/plot_leaderboard.py results/ --ratios results/bench_methods.md --out results

Each method's mean rank over the benchmarks (primary metric, per-seed means) against its step-time
ratio to fixed (log axis): leaderboard.png and leaderboard.csv in --out.
"""

import sys

from mtbench.report.leaderboard import main

if __name__ == "__main__":
    sys.exit(main())
