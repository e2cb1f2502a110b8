"""Fault injection: kills, a second process, a full disk, bad images, NaN, crafted run dirs (issue 11).

Each test injects one fault into a real (tiny, CPU) run and checks that nothing
trained or recorded is lost and that the user gets one clear line. The
numbered items of the issue are named in the test names' docstrings.
results/reliability.md lists the cases with the commands.
"""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import compose_cfg, load_ckpt
from mtbench.errors import ConfigError, DataError, NonFiniteLossError
from mtbench.models.mnist import MNISTModel
from mtbench.rundir import lock_run_dir
from mtbench.train import train
from mtbench.training.checkpoint import first_bad_value

pytestmark = pytest.mark.usefixtures("one_thread")

MTBENCH = [sys.executable, "-m", "mtbench.cli"]
MNIST = ["data.train_per_class=10", "trainer.batch_size=25", "trainer.eval_batch_size=500", "trainer.progress=false",
         "device=cpu", "device.threads=1"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def cli(args: list[str], cwd: Path, timeout: float = 240, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*MTBENCH, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=ENV, **kw)


def one_error_line(r: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def files_of(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file() and p.name not in (".lock", "train.log")}


def params(ckpt: dict) -> dict[str, torch.Tensor]:
    return {k: v for k, v in ckpt["model"].items() if isinstance(v, torch.Tensor)}


# ------------------------------------------------------------------ SIGKILL, then resume (items 4, 5)


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before the fault: {proc.stderr.read()}")
        time.sleep(0.02)
    raise AssertionError("timed out waiting for the run")


#: a training process whose checkpoint writes stop half-way (after some bytes, before the rename)
_SLOW_SAVE = """
import sys, time
import mtbench.utils as u
real = u.atomic_writer
from contextlib import contextmanager
@contextmanager
def slow(path, mode="wb"):
    with real(path, mode) as f:
        yield f
        if str(path).endswith("last.pt"):
            f.flush(); time.sleep(600)   # killed here: a half-written last.pt.<random>.tmp
u.atomic_writer = slow
from mtbench.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _lines(path: Path) -> int:
    try:
        return len(path.read_text().splitlines())
    except OSError:
        return 0


@pytest.mark.slow
def test_sigkill_at_random_moments_and_mid_checkpoint_then_resume_ends_bit_identical(tmp_path):
    """Items 4 and 5: killed anywhere (while writing a checkpoint too), the run resumes from its last checkpoint,
    removes the killed writes' temp files, and ends with exactly the parameters and metrics of an
    uninterrupted run."""
    args = ["train", *MNIST, "trainer.max_steps=120", "trainer.checkpoint_every=10", "trainer.log_every=2",
            "method=softadapt", "seed=5"]
    ref = cli([*args, "hydra.run.dir=ref"], tmp_path)
    assert ref.returncode == 0, ref.stderr
    run, rng = tmp_path / "run", random.Random(0)

    # 1. SIGKILL while the first checkpoint is half written
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_SAVE, *args, "hydra.run.dir=run"], cwd=tmp_path, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: any(run.glob("checkpoints/last.pt.*.tmp")), proc)
    proc.kill()
    proc.communicate()
    assert not (run / "checkpoints/last.pt").exists()

    # 2. then SIGKILL at random moments of training (by the progress in metrics.jsonl) until a start finishes
    attempts = 0
    while not (run / "summary.json").exists():
        attempts += 1
        assert attempts <= 10, "the run never finished"
        resume = ["resume=true"] if (run / "checkpoints/last.pt").exists() else []
        metrics = run / "metrics.jsonl"
        target = _lines(metrics) + rng.randint(3, 30)
        proc = subprocess.Popen([*MTBENCH, *args, "hydra.run.dir=run", *resume], cwd=tmp_path, env=ENV,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while proc.poll() is None and _lines(metrics) < target and time.time() < deadline:
            time.sleep(0.01)
        proc.kill()
        _, err = proc.communicate()
        assert "Traceback" not in err, err
    assert attempts >= 2
    assert not list(run.rglob("*.tmp"))  # the killed writes' temp files were removed on the next start
    assert list(run.glob("abandoned_*/metrics.jsonl"))  # the run killed before its first checkpoint, set aside
    got, want = params(load_ckpt(run)), params(load_ckpt(tmp_path / "ref"))
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    s_ref, s_run = (json.loads((d / "summary.json").read_text()) for d in (tmp_path / "ref", run))
    assert s_run["metrics"] == s_ref["metrics"] and s_run["steps"] == 120


# ------------------------------------------------------------------ one process per run dir (item 6)


def test_a_second_run_in_a_locked_run_dir_is_refused_naming_the_holder_and_writes_nothing(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    with lock_run_dir(out):
        with pytest.raises(ConfigError, match=rf"run dir .*r is in use by another mtbench process "
                                              rf"\(pid {os.getpid()}\)"):
            train(compose_cfg([*MNIST, "trainer.max_steps=2"]), out=out)
        assert [p.name for p in out.iterdir()] == [".lock"]
    s = train(compose_cfg([*MNIST, "trainer.max_steps=2"]), out=out)  # released: it goes ahead
    assert s["steps"] == 2


_HOLD = """
import sys, time
from pathlib import Path
from mtbench.rundir import lock_run_dir
with lock_run_dir(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_two_processes_on_one_run_dir_the_second_gets_one_line_with_the_pid(tmp_path):
    (tmp_path / "r").mkdir()
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path / "r")], stdout=subprocess.PIPE, text=True,
                              env=ENV)
    try:
        assert holder.stdout.readline().strip() == "locked"
        r = cli(["train", *MNIST, "trainer.max_steps=2", "hydra.run.dir=r"], tmp_path)
        line = one_error_line(r)
        assert f"(pid {holder.pid})" in line and "r is in use" in line
        assert not (tmp_path / "r" / "metrics.jsonl").exists() and not (tmp_path / "r" / "run.yaml").exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_symlinked_lock_file_is_not_followed(tmp_path):
    out, target = tmp_path / "r", tmp_path / "elsewhere"
    out.mkdir()
    target.write_text("keep")
    (out / ".lock").symlink_to(target)
    with pytest.raises(ConfigError, match="cannot use run dir"):
        train(compose_cfg([*MNIST, "trainer.max_steps=2"]), out=out)
    assert target.read_text() == "keep"


# ------------------------------------------------------------------ dead runs and temp files (item 5)


def test_fresh_run_sets_a_dead_runs_files_aside_and_removes_killed_temp_files(tmp_path):
    out = tmp_path / "r"
    (out / "checkpoints").mkdir(parents=True)
    (out / "metrics.jsonl").write_text('{"step": 7, "dead": true}\n')
    (out / "events.out.tfevents.1.host.1.0").write_bytes(b"dead events")
    (out / "checkpoints" / "last.pt.k3j2.tmp").write_bytes(b"half a checkpoint")
    train(compose_cfg([*MNIST, "trainer.max_steps=2", "trainer.log_every=1"]), out=out)
    [aside] = list(out.glob("abandoned_*"))
    assert (aside / "metrics.jsonl").read_text() == '{"step": 7, "dead": true}\n'
    assert (aside / "events.out.tfevents.1.host.1.0").read_bytes() == b"dead events"
    steps = [json.loads(ln)["step"] for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps[:2] == [1, 2] and "dead" not in (out / "metrics.jsonl").read_text()
    assert not list(out.rglob("*.tmp"))


# ------------------------------------------------------------------ save first, check first (items 1, 4)


def test_a_failing_final_evaluation_loses_nothing_and_resume_finishes_the_run(tmp_path, monkeypatch):
    """Item 1 (checkpoint before the final evaluation) and item 4 (a finished but unevaluated run resumes to its
    summary), with the same metrics as a run that was never stopped."""
    base = [*MNIST, "trainer.max_steps=6", "trainer.checkpoint_every=null", "method=mtadam"]
    want = train(compose_cfg(base), out=tmp_path / "ref")
    real = MNISTModel.evaluate

    def broken(self, loader):
        raise DataError("the test split went away")

    monkeypatch.setattr(MNISTModel, "evaluate", broken)
    with pytest.raises(DataError, match="went away"):
        train(compose_cfg(base), out=tmp_path / "r")
    ckpt = load_ckpt(tmp_path / "r")
    assert ckpt["finished"] and ckpt["step"] == 6 and not (tmp_path / "r" / "summary.json").exists()
    monkeypatch.setattr(MNISTModel, "evaluate", real)
    got = train(compose_cfg([*base, "resume=true"]), out=tmp_path / "r")
    assert got["metrics"] == want["metrics"] and got["steps"] == 6
    assert all(torch.equal(a, b) for a, b in zip(params(load_ckpt(tmp_path / "r")).values(),
                                                  params(load_ckpt(tmp_path / "ref")).values()))


def _aligned_folder(root: Path, n: dict[str, int]) -> Path:
    """A pix2pix A|B folder dataset of tiny random pairs (64x32 PNGs)."""
    g = torch.Generator().manual_seed(0)
    for split, count in n.items():
        (root / split).mkdir(parents=True)
        for i in range(count):
            arr = torch.randint(0, 256, (32, 64, 3), generator=g, dtype=torch.uint8).numpy()
            Image.fromarray(arr).save(root / split / f"{i}.png")
    return root


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


P2P = ["model=pix2pix", "data=facades", "data.load_size=32", "data.crop_size=32", "model.ngf=8", "model.ndf=8",
       "trainer.batch_size=2", "trainer.eval_batch_size=2", "trainer.image_every=null", "eval.fid=false",
       "trainer.progress=false", "device=cpu"]


def _count_steps(monkeypatch, cls) -> dict[str, int]:
    real, count = cls.training_step, {"n": 0}

    def step(self, batch, method):
        count["n"] += 1
        return real(self, batch, method)

    monkeypatch.setattr(cls, "training_step", step)
    return count


@pytest.mark.parametrize("split", ["val", "test"])
def test_a_truncated_eval_image_fails_the_run_before_training(tmp_path, monkeypatch, split):
    """Item 1: the header is whole (the dataset opens), the pixels are not: found before the first step."""
    from mtbench.models.pix2pix import Pix2PixModel

    root = _aligned_folder(tmp_path / "d", {"train": 4, "val": 2, "test": 2})
    _truncate(root / split / "1.png")
    steps = _count_steps(monkeypatch, Pix2PixModel)
    with pytest.raises(DataError, match=rf"{split}/1\.png: image file is truncated"):
        train(compose_cfg([*P2P, f"data.root={root}", "trainer.max_steps=1000"]), out=tmp_path / "r")
    assert steps["n"] == 0


def test_a_truncated_train_image_is_one_line_naming_it(tmp_path):
    root = _aligned_folder(tmp_path / "d", {"train": 4, "val": 2, "test": 2})
    _truncate(root / "train" / "2.png")
    r = cli(["train", *P2P, f"data.root={root}", "trainer.max_steps=4", "hydra.run.dir=r"], tmp_path)
    assert "train/2.png" in one_error_line(r)


def test_sr_without_eval_folders_fails_before_training(tmp_path, monkeypatch):
    (tmp_path / "hr").mkdir()
    for i in range(2):
        Image.fromarray(torch.randint(0, 256, (48, 48, 3), dtype=torch.uint8).numpy()).save(tmp_path / f"hr/{i}.png")
    over = ["model=srgan", "data=sr_folder", f"data.train_root={tmp_path / 'hr'}", "data.eval_roots=[]",
            "data.crop_size=32", "model.perceptual=false", "model.n_blocks=1", "model.n_features=8", "model.ndf=8",
            "model.d_fc_features=8", "trainer.batch_size=2", "trainer.max_steps=1000", "trainer.progress=false",
            "device=cpu"]
    from mtbench.models.srgan import SRGANModel

    steps = _count_steps(monkeypatch, SRGANModel)
    with pytest.raises(DataError, match="neither a test nor a val split"):
        train(compose_cfg(over), out=tmp_path / "r")
    assert steps["n"] == 0


# ------------------------------------------------------------------ NaN under both policies (items 2, 3)

TINY_GAN = {
    "pix2pix": ["model=pix2pix", "data.image_size=32", "data.n_train=4", "data.n_val=2", "data.n_test=2",
                "model.ngf=8", "model.ndf=8", "eval.fid=false"],
    "cyclegan": ["model=cyclegan", "data.image_size=32", "data.n_train=4", "data.n_val=2", "data.n_test=2",
                 "model.ngf=8", "model.ndf=8", "model.n_blocks=1", "model.pool_size=4", "eval.fid=false"],
}


def _state(model, method) -> dict[str, torch.Tensor]:
    """Every tensor a step can change: the model's (pools included), the method's and D's optimiser state."""
    import copy

    flat: dict[str, torch.Tensor] = {}

    def walk(node, name):
        if isinstance(node, torch.Tensor):
            flat[name] = node.detach().clone()
        elif isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{name}.{k}")
        elif isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                walk(v, f"{name}[{i}]")
        else:
            flat[name] = copy.deepcopy(node)

    walk(model.state_dict(), "model")
    walk(method.state_dict(), "method")
    walk({k: o.state_dict() for k, o in model.aux_optimizers().items()}, "aux")
    return flat


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    return a == b


@pytest.mark.parametrize("name", ["pix2pix", "cyclegan"])
def test_skip_undoes_the_whole_gan_step_discriminator_pools_and_batch_norm_included(name):
    """Item 2: under nan_policy=skip a NaN batch changes nothing: not D (which steps before the generator's terms
    exist in pix2pix), not batch norm's running statistics, not CycleGAN's pools, not any optimiser."""
    from torch.utils.data import DataLoader

    from conftest import build_from_config
    from mtbench.training.skip import StepUndo, all_finite

    model, method, data = build_from_config([*TINY_GAN[name], "method=softadapt"])
    loader = iter(DataLoader(data.train, batch_size=2))
    model.training_step(next(loader), method)  # optimiser states and pools exist
    undo = StepUndo(model, method, model.aux_optimizers())
    before = _state(model, method)
    undo.take()
    bad = {k: v.clone() for k, v in next(loader).items()}
    bad["A"][0, 0, 0, 0] = float("nan")
    logs = model.training_step(bad, method)
    assert not all_finite(logs)
    during = _state(model, method)
    changed = [k for k in before if not _same(before[k], during.get(k))]
    assert any(k.startswith("aux") for k in changed) or any(".D" in k for k in changed), changed  # D did move
    undo.restore()
    after = _state(model, method)
    assert after.keys() == before.keys()
    assert [k for k in before if not _same(before[k], after[k])] == []


def _nan_terms_at(steps: set[int] | None):
    """MNISTModel.terms with term_3 NaN at the given training steps (all steps when None)."""
    original, count = MNISTModel.terms, {"n": 0}

    def terms(self, *a, **k):
        t = original(self, *a, **k)
        count["n"] += 1
        if steps is None or count["n"] in steps:
            t["term_3"] = t["term_3"] * float("nan")
        return t

    return terms


def test_a_run_whose_steps_are_all_skipped_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(MNISTModel, "terms", _nan_terms_at(None))
    with pytest.raises(NonFiniteLossError, match=r"trainer\.max_skipped=0\.1"):
        train(compose_cfg([*MNIST, "trainer.max_steps=20", "trainer.nan_policy=skip"]), out=tmp_path / "r")
    assert not (tmp_path / "r" / "summary.json").exists()


def test_skipped_steps_are_counted_once_and_survive_a_resume(tmp_path, monkeypatch):
    from conftest import train_with_signal_at

    monkeypatch.setattr(MNISTModel, "terms", _nan_terms_at({2, 5}))
    base = [*MNIST, "trainer.max_steps=8", "trainer.nan_policy=skip", "trainer.max_skipped=0.5",
            "trainer.checkpoint_every=null"]
    train_with_signal_at(MNISTModel, compose_cfg(base), tmp_path / "r", stop_step=3)
    s = train(compose_cfg([*base, "resume=true"]), out=tmp_path / "r")
    assert s["skipped_nonfinite_steps"] == 2


def test_raise_policy_on_a_gan_names_the_term_and_the_step(tmp_path, monkeypatch):
    from mtbench.models.pix2pix import Pix2PixModel

    real, count = Pix2PixModel.training_step, {"n": 0}

    def step(self, batch, method):
        count["n"] += 1
        if count["n"] == 3:
            batch = {**batch, "B": batch["B"] * float("nan")}
        return real(self, batch, method)

    monkeypatch.setattr(Pix2PixModel, "training_step", step)
    over = [*TINY_GAN["pix2pix"], "trainer.max_steps=4", "trainer.log_every=4", "trainer.progress=false",
            "device=cpu", "trainer.batch_size=2"]
    with pytest.raises(NonFiniteLossError, match=r"is nan at step 3"):
        train(compose_cfg(over), out=tmp_path / "r")


def test_a_checkpoint_is_never_written_with_a_nan_parameter(tmp_path, monkeypatch):
    """Item 3: the losses are finite at the checkpoint step, but a parameter is NaN: the last good checkpoint
    stays, and the error names the parameter."""
    real, count = MNISTModel.training_step, {"n": 0}

    def step(self, batch, method):
        logs = real(self, batch, method)
        count["n"] += 1
        if count["n"] == 8:
            with torch.no_grad():
                next(self.parameters()).view(-1)[0] = float("nan")
        return logs

    monkeypatch.setattr(MNISTModel, "training_step", step)
    with pytest.raises(NonFiniteLossError, match=r"model\.net\..*weight holds nan at step 8"):
        train(compose_cfg([*MNIST, "trainer.max_steps=12", "trainer.checkpoint_every=4", "trainer.log_every=4"]),
              out=tmp_path / "r")
    assert load_ckpt(tmp_path / "r")["step"] == 4


def test_first_bad_value_flags_nan_inf_and_float32_overflow_only():
    ok = {"a": torch.ones(3), "b": torch.tensor([3e38], dtype=torch.float64), "n": torch.tensor([7])}
    assert first_bad_value(ok) is None
    assert first_bad_value({**ok, "c": {"d": torch.tensor([1e39], dtype=torch.float64)}}) == ("c.d", 1e39)
    assert first_bad_value({**ok, "e": [torch.tensor([1.0, -float("inf")])]})[0] == "e[0]"
    name, value = first_bad_value({"f": torch.tensor([float("nan")])})
    assert name == "f" and value != value


# ------------------------------------------------------------------ the named run, unchanged settings (items 7, 8)


def test_resume_refuses_changed_training_settings_listing_them(tmp_path):
    base = [*MNIST, "trainer.max_steps=4"]
    from conftest import train_with_signal_at

    train_with_signal_at(MNISTModel, compose_cfg(base), tmp_path / "r", stop_step=2)
    before = files_of(tmp_path / "r")
    with pytest.raises(ConfigError, match=r"trainer\.batch_size: 25 -> 10; trainer\.shuffle: True -> False"):
        train(compose_cfg([*base, "trainer.batch_size=10", "trainer.shuffle=false", "resume=true"]),
              out=tmp_path / "r")
    assert files_of(tmp_path / "r") == before
    s = train(compose_cfg([*base, "trainer.log_every=1", "resume=true"]), out=tmp_path / "r")  # display only: ok
    assert s["steps"] == 4


def test_resume_of_a_named_run_dir_never_continues_a_sibling(tmp_path):
    from conftest import train_with_signal_at

    runs = tmp_path / "runs"
    train_with_signal_at(MNISTModel, compose_cfg([*MNIST, "trainer.max_steps=4"]), runs / "a_s0", stop_step=2)
    before = files_of(runs / "a_s0")
    r = cli(["train", *MNIST, "trainer.max_steps=4", "resume=true", "hydra.run.dir=runs/b_s0"], tmp_path)
    line = one_error_line(r)
    assert "no checkpoint (checkpoints/last.pt) in " in line and line.endswith("runs/b_s0"), line
    assert files_of(runs / "a_s0") == before


def test_a_refused_run_leaves_the_run_dir_as_it_was(tmp_path):
    """Item 8: Hydra used to rewrite .hydra/*.yaml (and the run's record) before the refusal."""
    run = tmp_path / "r"
    for name, text in {".hydra/config.yaml": "seed: 0\n", ".hydra/overrides.yaml": "- seed=0\n",
                       ".hydra/hydra.yaml": "hydra: {}\n", "run.yaml": "overrides: []\n",
                       "summary.json": "{}\n", "checkpoints/last.pt": "a checkpoint"}.items():
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text(text)
    before = files_of(run)
    r = cli(["train", *MNIST, "trainer.max_steps=2", "seed=3", "hydra.run.dir=r"], tmp_path)
    assert "already holds a run" in one_error_line(r)
    assert files_of(run) == before


# ------------------------------------------------------------------ bad input is one line (item 15)


def test_a_bad_seed_is_one_line(tmp_path):
    from mtbench.experiment import check_seed

    r = cli(["train", "seed=abc", "hydra.run.dir=r"], tmp_path)
    assert one_error_line(r) == "error: seed must be an integer >= 0, got 'abc'"
    for value in (1.5, -1, True, None):
        with pytest.raises(ConfigError, match=rf"^seed must be an integer >= 0, got {value!r}$"):
            check_seed(value)
    assert check_seed(7) == 7


def test_an_output_folder_that_cannot_be_created_is_one_line(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    r = cli(["train", "trainer.max_steps=1", "hydra.run.dir=file/run"], tmp_path)
    assert "file is not a folder" in one_error_line(r)
    if os.geteuid() != 0:  # root may write anywhere
        (tmp_path / "ro").mkdir(mode=0o555)
        r = cli(["train", "trainer.max_steps=1", "hydra.run.dir=ro/run"], tmp_path)
        assert "no permission" in one_error_line(r)


def test_a_quoted_value_keeps_its_closing_quote():
    from mtbench.cli import explain

    assert explain(ConfigError("trainer.eval_split must be 'auto', got 'vall'")).endswith("got 'vall'")
    assert explain(KeyError("missing key 'x'")) == "missing key 'x'"


def _no_big_files() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))


def test_a_full_disk_is_one_line_and_keeps_the_last_good_checkpoint(tmp_path):
    """The MNIST checkpoint (~200 kB) cannot be written under a 20 kB file size limit: one line naming it, no
    temp file, no partial checkpoint; the logs written before are whole."""
    r = subprocess.run([*MTBENCH, "train", *MNIST, "trainer.max_steps=4", "trainer.log_every=2",
                        "trainer.checkpoint_every=2", "hydra.run.dir=r"], cwd=tmp_path, capture_output=True,
                       text=True, env=ENV, timeout=240, preexec_fn=_no_big_files)
    line = one_error_line(r)
    assert "file size limit exceeded while writing " in line and "r/checkpoints/last.pt" in line, line
    assert not (tmp_path / "r/checkpoints/last.pt").exists() and not list(tmp_path.rglob("*.tmp"))
    assert [json.loads(ln)["step"] for ln in (tmp_path / "r/metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_a_second_signal_stops_at_once_as_one_interrupt_not_a_traceback(tmp_path, monkeypatch):
    from mtbench.errors import RunInterrupted

    real, count = MNISTModel.training_step, {"n": 0}

    def step(self, batch, method):
        count["n"] += 1
        if count["n"] == 6:
            os.kill(os.getpid(), signal.SIGTERM)  # finish the step and checkpoint ...
            os.kill(os.getpid(), signal.SIGINT)  # ... no: stop now
        return real(self, batch, method)

    monkeypatch.setattr(MNISTModel, "training_step", step)
    with pytest.raises(RunInterrupted) as info:
        train(compose_cfg([*MNIST, "trainer.max_steps=20", "trainer.checkpoint_every=4"]), out=tmp_path / "r")
    assert info.value.path is None and info.value.signum == signal.SIGINT
    assert "without a new checkpoint" in info.value.hint and "resume=true" in info.value.hint
    assert load_ckpt(tmp_path / "r")["step"] == 4  # the last periodic checkpoint, untouched
