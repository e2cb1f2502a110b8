"""Does a method undo the MNIST term scales? Final weight x scale per term, for every method's runs.

In the MTAdam paper's MNIST experiment term c is the class-c NLL multiplied by s_c (s_0 = 1).
A method that balances the terms ends with w_c * s_c about equal for all c (w_c ~ 1/s_c up
to a common factor); fixed weights 1 leave w_c * s_c = s_c. This script reads the finished runs
under the given folders (summary.json: final weights; run.yaml: the scales' config), plots
w_c * s_c / (w_0 * s_0) against s_c on log-log axes, one panel per method, and prints per method the
spread of log10(w_c s_c / w_0 s_0) over terms and runs (0 = perfectly balanced; fixed weights: the
spread of log10 s_c itself).

    python scripts/plot_mnist_scales.py runs/reproduce/mnist/*/unbalanced --out results/mnist/effective_scales.png
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import yaml

from mtbench.models.mnist import draw_scales
from mtbench.report import METHOD_ORDER


def collect(folders: list[Path]) -> dict[str, list[tuple[str, list[float], list[float]]]]:
    """{method: [(setting label, scales, final weights), ...]} over the finished MNIST runs."""
    out: dict[str, list[tuple[str, list[float], list[float]]]] = {}
    for folder in folders:
        for summary_file in sorted(folder.glob("**/summary.json")):
            s = json.loads(summary_file.read_text())
            if s.get("model") != "mnist" or not s.get("final_weights"):
                continue
            cfg = yaml.safe_load((summary_file.parent / "run.yaml").read_text())
            scales_cfg = dict(cfg["config"]["model"].get("scales") or {})
            if "method.weights=baseline" in " ".join(s.get("overrides", [])):
                continue  # tuned fixed weights: not a balancing method
            scales = draw_scales(**scales_cfg)
            weights = [float(s["final_weights"][f"term_{c}"]) for c in range(len(scales))]
            data = cfg["config"]["data"].get("subset") or s["data"]  # t10k: data=mnist with subset=t10k
            label = f"{data}, {scales_cfg.get('kind', 'uniform')}"
            out.setdefault(str(s["method"]), []).append((label, scales, weights))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", type=Path, help="folders holding finished MNIST runs")
    ap.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = ap.parse_args(argv)
    runs = collect(args.folders)
    if not runs:
        print(f"error: no finished MNIST runs under {[str(f) for f in args.folders]}", file=sys.stderr)
        return 2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = sorted(runs, key=lambda m: METHOD_ORDER.index(m) if m in METHOD_ORDER else 99)
    fig, axes = plt.subplots(1, len(methods), figsize=(3.2 * len(methods), 3.2), sharey=True, squeeze=False)
    markers = {}
    print("| method | runs | std of log10(w_c s_c / w_0 s_0), c = 1..9 |\n|---|---:|---:|")
    for ax, method in zip(axes[0], methods):
        logs, seen = [], set()
        for label, scales, weights in runs[method]:
            ref = weights[0] * scales[0]
            xs = [scales[c] for c in range(1, len(scales)) if scales[c] > 0]
            ys = [weights[c] * scales[c] / ref for c in range(1, len(scales)) if scales[c] > 0]
            logs += [math.log10(y) for y in ys]
            m = markers.setdefault(label, "os^vD"[len(markers) % 5])
            ax.scatter(xs, ys, s=12, marker=m, alpha=0.6, color=f"C{list(markers).index(label)}",
                       label=None if label in seen else label)
            seen.add(label)
        mean = sum(logs) / len(logs)
        std = math.sqrt(sum((v - mean) ** 2 for v in logs) / max(len(logs) - 1, 1))
        print(f"| {method} | {len(runs[method])} | {std:.2f} |")
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{method}\nspread {std:.2f} decades", fontsize=9)
        ax.set_xlabel("scale s_c")
    axes[0][0].set_ylabel("w_c s_c / (w_0 s_0)  (1 = balanced)")
    axes[0][-1].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
