"""FID/KID of a model's generated images on an evaluation split, as the runner computes them.

``eval.fid``: ``auto`` computes FID when the FID Inception weights are found
locally (``eval.fid_weights``, pytorch-fid's file in the torch hub cache, or
the file ``mtbench weights fid`` converts) and says why it did not otherwise; ``true`` requires them (offline without them: the error of
:func:`mtbench.metrics.fid.load_inception`, raised after the run is saved, so
``mtbench eval run=<dir> eval.fid_weights=<path>`` can add FID later);
``false`` never computes it.

The real split's Inception statistics are cached on disk
(``eval.fid_cache``), keyed by the data config, the split, its files (paths,
sizes, mtimes where the dataset lists them) and the Inception settings.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

log = logging.getLogger("mtbench.fid")


def fid_mode(eval_cfg) -> str:
    mode = str(eval_cfg.get("fid", "auto")).lower() if eval_cfg is not None else "false"
    if mode not in ("auto", "true", "false"):
        raise ValueError(f"eval.fid must be auto, true or false, got {mode!r}")
    return mode


def weights_available(eval_cfg) -> bool:
    from mtbench.metrics.fid_weights import find_fid_weights

    found = find_fid_weights(eval_cfg.get("fid_weights") if eval_cfg is not None else None)
    return found is not None and found.is_file()


def fid_active(eval_cfg, model) -> bool:
    """Whether this run reports FID (so that FID, lower is better, is its primary metric)."""
    if not getattr(model, "supports_fid", False):
        return False
    mode = fid_mode(eval_cfg)
    return mode == "true" or (mode == "auto" and weights_available(eval_cfg))


def _data_id(data_cfg: Any, split_name: str, ds: Dataset) -> str:
    from mtbench.metrics.fid import files_fingerprint

    parts = {"data": data_cfg, "split": split_name, "n": len(ds)}  # type: ignore[arg-type]
    for attr in ("paths", "paths_a", "paths_b", "A_paths", "B_paths"):
        files = getattr(ds, attr, None)
        if files:
            parts[attr] = files_fingerprint(files)
    return json.dumps(parts, sort_keys=True, default=str)


class FIDComputer:
    """Loads Inception once; ``compute(model, loader, data_id) -> {fid, kid, kid_std, fid_images}``."""

    def __init__(self, eval_cfg, device: torch.device) -> None:
        from mtbench.metrics.fid import RealStatsCache, load_inception

        self.inception = load_inception(eval_cfg.get("fid_weights"), device=device,
                                        download=fid_mode(eval_cfg) == "true")
        self.cache = RealStatsCache(eval_cfg.get("fid_cache") or "runs/.fid_cache")
        self.batch_size = int(eval_cfg.get("fid_batch_size", 50))

    @torch.no_grad()
    def compute(self, model, loader: DataLoader, data_cfg: Any, split_name: str) -> dict[str, float]:
        from mtbench.metrics.fid import FIDEvaluator, real_stats_key

        evaluators: dict[str, FIDEvaluator] = {}
        base_id = _data_id(data_cfg, split_name, loader.dataset)
        for batch in loader:
            batch = _to(batch, model.device)
            for suffix, (fake, real) in model.fid_pairs(batch).items():
                if suffix not in evaluators:
                    key = real_stats_key(self.inception, base_id + suffix, image_size=tuple(real.shape[-2:]))
                    evaluators[suffix] = FIDEvaluator(self.inception, self.cache, key, batch_size=self.batch_size)
                ev = evaluators[suffix]
                ev.add(fake=fake, real=real if ev.needs_real else None)
        out: dict[str, float] = {}
        for suffix, ev in evaluators.items():
            for k, v in ev.compute().items():
                out[f"{k}{suffix}"] = v
        if len(evaluators) > 1 and "fid" not in out:  # two directions: fid = their mean
            out["fid"] = sum(out[f"fid{s}"] for s in evaluators) / len(evaluators)
            out["kid"] = sum(out[f"kid{s}"] for s in evaluators) / len(evaluators)
        return out


def _to(batch, device):
    from mtbench.utils import to_device

    return to_device(batch, device)
