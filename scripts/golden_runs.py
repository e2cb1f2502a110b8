#!/usr/bin/env python
"""Golden runs: a fingerprint of the final checkpoint of a tiny run of every model under three methods.

A refactor that must not change behaviour is checked by running this before
and after it: every model (mnist, pix2pix, cyclegan, srgan) under ``fixed``,
``softadapt_loss_weighted`` and ``mtadam``, a few steps on the CPU with one
thread, and the SHA-256 of the final checkpoint's model, method and
discriminator-optimiser tensors (the bytes of every tensor, in key order).
Equal fingerprints mean bit-identical training.

    python scripts/golden_runs.py --write results/golden_runs.json   # before
    python scripts/golden_runs.py --check results/golden_runs.json   # after: exit 1 on any difference
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

MODELS = {
    "mnist": ["model=mnist", "data.train_per_class=8", "trainer.batch_size=16"],
    "pix2pix": ["model=pix2pix", "data.image_size=32", "data.n_train=6", "data.n_val=2", "data.n_test=2",
                "model.ngf=8", "model.ndf=8", "trainer.batch_size=2", "trainer.eval_batch_size=2"],
    "cyclegan": ["model=cyclegan", "data.image_size=32", "data.n_train=6", "data.n_val=2", "data.n_test=2",
                 "model.ngf=8", "model.ndf=8", "model.n_blocks=1", "trainer.batch_size=2",
                 "trainer.eval_batch_size=2"],
    "srgan": ["model=srgan", "experiment=srgan_quick", "data.crop_size=16", "data.n_train=6", "data.n_val=2",
              "data.n_test=2", "model.n_blocks=1", "model.n_features=8", "model.ndf=8", "model.d_fc_features=16",
              "trainer.batch_size=2", "trainer.eval_batch_size=1"],
}
METHODS = ["fixed", "softadapt_loss_weighted", "mtadam"]
COMMON = ["device=cpu", "device.threads=1", "trainer.progress=false", "trainer.max_steps=6", "trainer.log_every=2",
          "trainer.eval_every=null", "trainer.image_every=null", "trainer.checkpoint_every=null", "eval.fid=false",
          "method.update_every=2"]


def _hash(obj, h) -> None:
    if torch.is_tensor(obj):
        t = obj.detach().cpu().contiguous().reshape(-1)
        h.update(f"{t.dtype}{tuple(obj.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, dict):
        for k in sorted(obj, key=str):
            h.update(str(k).encode())
            _hash(obj[k], h)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _hash(v, h)
    else:
        h.update(repr(obj).encode())


def fingerprint(ckpt: Path) -> str:
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    h = hashlib.sha256()
    for key in ("model", "method", "aux_optimizers", "step"):
        _hash(state.get(key), h)
    return h.hexdigest()


def run_all(mtbench: str) -> dict[str, str]:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model, over in MODELS.items():
            for method in METHODS:
                d = Path(tmp) / f"{model}_{method}"
                common = [c for c in COMMON if method.startswith("softadapt") or not c.startswith("method.")]
                args = [mtbench, "train", *over, f"method={method}", *common, f"hydra.run.dir={d}"]
                subprocess.run(args, check=True, capture_output=True, text=True)
                out[f"{model}/{method}"] = fingerprint(d / "checkpoints" / "last.pt")
                print(f"{model}/{method}: {out[f'{model}/{method}'][:16]}", file=sys.stderr)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", type=Path)
    group.add_argument("--check", type=Path)
    ap.add_argument("--mtbench", default=str(Path(sys.executable).parent / "mtbench"))
    args = ap.parse_args()
    got = run_all(args.mtbench)
    if args.write:
        args.write.write_text(json.dumps(got, indent=2) + "\n")
        return 0
    want = json.loads(args.check.read_text())
    bad = [k for k in want if got.get(k) != want[k]]
    for k in want:
        print(f"{k:36s} {'identical' if k not in bad else 'DIFFERENT'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
