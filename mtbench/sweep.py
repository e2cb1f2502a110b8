"""Multirun bookkeeping: a failed job does not stop the sweep, and the sweep ends with a report.

In a Hydra multirun (``mtbench train -m ...``), an error in one job is
recorded in that job's folder as ``failed.json`` (the one-line error, and the
traceback for unexpected errors) and the launcher goes on with the other
jobs. :class:`SweepReport`, a Hydra callback configured in conf/train.yaml,
prints at the end which jobs finished and which failed, and makes the command
exit with status 1 if any failed. This works for the basic launcher and for
hydra-submitit-launcher (``hydra/launcher=submitit_local`` or
``submitit_slurm``), whose jobs run in other processes or on other machines.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from mtbench.rundir import FAILED, SUMMARY


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def record_failure(message: str, err: BaseException | None = None) -> Path:
    """Write failed.json into this job's output folder."""
    hc = HydraConfig.get()
    out = Path(hc.runtime.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {"error": message, "overrides": list(hc.overrides.task), "job": hc.job.num}
    if err is not None:
        payload["traceback"] = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    (out / FAILED).write_text(json.dumps(payload, indent=2) + "\n")
    return out / FAILED


class SweepReport(Callback):
    """At the end of a multirun: count finished and failed jobs; exit 1 if any failed."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = Path(str(config.hydra.sweep.dir))
        if not sweep.is_dir():
            return
        failed = sorted(sweep.glob(f"*/{FAILED}"))
        done = sorted(sweep.glob(f"*/{SUMMARY}"))
        print(f"sweep {sweep}: {len(done)} job(s) finished, {len(failed)} failed", file=sys.stderr)
        for f in failed:
            msg = json.loads(f.read_text()).get("error", "?")
            print(f"  failed: {f.parent.name}: {msg}", file=sys.stderr)
        if failed:
            raise SystemExit(1)
