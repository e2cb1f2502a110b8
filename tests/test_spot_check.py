"""scripts/spot_check.py: a recorded row rerun from its recorded command, metrics compared exactly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import load_script

from mtbench.report.records import append_rows, run_row

spot = load_script("spot_check")


def test_only_mtbench_train_with_overrides_is_accepted_and_the_folder_keys_are_left_out():
    assert spot.parse_command("mtbench train method=fixed seed=0 hydra.run.dir=runs/x resume=true data.root=a/b") == [
        "method=fixed", "seed=0", "data.root=a/b"]
    for bad in ("python evil.py", "mtbench tune model=mnist", "mtbench train seed=0;rm -rf /", "mtbench train 'a b'",
                "mtbench train $(id)=1", "mtbench train --cfg job", "mtbench train hydra/launcher=submitit_slurm"):
        with pytest.raises(ValueError):
            spot.parse_command(bad)


@pytest.mark.slow
def test_a_recorded_run_reruns_identically_and_a_changed_metric_is_reported(tmp_path):
    mtbench = Path(sys.executable).parent / "mtbench"
    run = tmp_path / "run"
    cmd = [str(mtbench), "train", "data.train_per_class=5", "data.val_per_class=10", "trainer.batch_size=10",
           "trainer.max_steps=6", "trainer.progress=false", "device=cpu", "device.threads=1",
           "device.deterministic=true", f"hydra.run.dir={run}"]
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    csv_path = tmp_path / "per_seed.csv"
    append_rows(csv_path, [run_row(run, "fixed", base=tmp_path)])
    out = tmp_path / "checks.md"
    args = [str(csv_path), "fixed", "0", "--mtbench", str(mtbench), "--runs", str(tmp_path / "again"), "--out", str(out)]
    assert spot.main(args) == 0
    assert "| fixed | 0 |" in out.read_text() and "identical (every metric bit for bit)" in out.read_text()
    text = csv_path.read_text()
    header, row = text.splitlines()[:2]
    acc = header.split(",").index("metric.acc")
    cells = row.split(",")
    cells[acc] = "0.123"
    csv_path.write_text(header + "\n" + ",".join(cells) + "\n")
    assert spot.main(args) == 1
    assert "differs: acc 0.123 ->" in out.read_text().splitlines()[-1]
    assert spot.main([str(csv_path), "fixed", "7", "--mtbench", str(mtbench)]) == 2  # no such row
