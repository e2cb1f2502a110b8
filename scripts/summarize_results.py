"""Collect the reproduction reports (results/*/*/report.csv) into one markdown file of short tables.

`mtbench report` labels a row by the overrides that tell it apart, which is exact but long
(``fixed [baselines_dir=..., experiment=mnist_unbalanced, method.weights=baseline, ...]``). This
script names those rows the way the papers do (balanced Adam, unbalanced Adam, Hyperband-tuned
fixed weights), keeps the columns that matter per benchmark, and writes results/summary.md:

    python scripts/summarize_results.py [--results results] [--out results/summary.md]
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

ORDER = ["reference", "fixed", "tuned", "softadapt", "softadapt_normalized", "softadapt_loss_weighted", "mtadam"]
# extra columns per model (besides the primary metric): (csv metric name, header)
COLUMNS = {
    "mnist": [("nll", "test NLL")],
    "pix2pix": [("ssim", "SSIM"), ("l1", "L1")],
    "cyclegan": [("ssim", "SSIM"), ("cycle_l1", "cycle L1")],
    "srgan": [("Set5/psnr", "Set5 PSNR"), ("Set5/ssim", "Set5 SSIM"), ("Set14/psnr", "Set14 PSNR"),
              ("Set14/ssim", "Set14 SSIM")],
}
PRIMARY_HEADER = {"acc": "test acc", "psnr": "PSNR (dB)", "fid": "FID"}


def row_kind(row: dict[str, str]) -> tuple[str, str]:
    """(sort key, label) of a report row."""
    s, method = row["settings"], row["method"]
    if "method.weights=baseline" in s:
        return "tuned", "fixed, Hyperband-tuned weights"
    if "experiment=mnist_balanced" in s:
        return "reference", "balanced Adam (all scales 1; the reference)"
    if method == "fixed":
        return "fixed", ("unbalanced Adam (fixed weights 1)" if row["model"] == "mnist"
                         else "fixed, default weights")
    return method, method


def cell(row: dict[str, str], name: str, digits: int) -> str:
    mean, std = row.get(f"{name}_mean", ""), row.get(f"{name}_std", "")
    if mean in ("", None):
        return "n/a"
    m = float(mean)
    text = f"{m:.{digits}f}"
    if std not in ("", None) and not math.isnan(float(std)):
        text += f" ± {float(std):.{digits}f}"
    return text


def table(path: Path) -> list[str]:
    rows = list(csv.DictReader(path.open()))
    rows = [r for r in rows if r["baseline"] != "true"]
    if not rows:
        return []
    model = rows[0]["model"]
    primary = rows[0]["primary_metric"]
    hib = rows[0]["higher_is_better"] == "true"
    digits = 4 if primary == "acc" else 2
    extra = [(n, h) for n, h in COLUMNS.get(model, []) if f"{n}_mean" in rows[0]]
    arrow = "↑" if hib else "↓"
    head = ["method", f"{PRIMARY_HEADER.get(primary, primary)} {arrow}", *[h for _, h in extra],
            "seeds", "s / run"]
    out = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    kinds = [(row_kind(r), r) for r in rows]
    kinds.sort(key=lambda kr: ORDER.index(kr[0][0]) if kr[0][0] in ORDER else 99)
    primary_means = [float(r[f"{primary}_mean"]) for _, r in kinds if r.get(f"{primary}_mean")]
    best = (max if hib else min)(primary_means) if primary_means else None
    for (_, label), r in kinds:
        p = cell(r, primary, digits)
        if best is not None and r.get(f"{primary}_mean") and float(r[f"{primary}_mean"]) == best:
            p = f"**{p}**"
        extras = [cell(r, n, 4 if "ssim" in n or n in ("nll", "l1", "cycle_l1") else 2) for n, _ in extra]
        wall = r.get("wall_time_s_mean") or ""
        out.append("| " + " | ".join([label, p, *extras, r["n_seeds"], f"{float(wall):.0f}" if wall else "n/a"])
                   + " |")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--out", type=Path, default=None, help="default: <results>/summary.md")
    args = ap.parse_args(argv)
    reports = sorted(args.results.glob("*/*/report.csv"))
    if not reports:
        print(f"error: no */*/report.csv under {args.results}", file=sys.stderr)
        return 2
    lines = ["# Summary of the reproduction runs", "",
             "Made by `python scripts/summarize_results.py` from the `report.csv` files below (each written by",
             "`mtbench report` in `scripts/reproduce_*.sh`). Mean ± sample std over seeds; the best mean of the",
             "primary metric is in bold; s / run is the mean wall time of one run on the 2-core CPU machine",
             "(runs were made alone at 2 threads or two at a time at 1 thread each, so it is a rough guide).", ""]
    for rep in reports:
        rel = rep.parent.relative_to(args.results)
        lines += [f"## {rel}", "", f"[full report]({rel}/report.md)", "", *table(rep), ""]
    out = args.out or args.results / "summary.md"
    out.write_text("\n".join(lines))
    print(out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
