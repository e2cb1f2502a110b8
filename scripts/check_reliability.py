"""Bad input and crafted files, as a user meets them: does every case end in one clear line, with nothing lost?

Runs each case below as a real ``mtbench`` command in a scratch folder and
classifies what happened:

* ``clear error``: exit status != 0, one ``error: ...`` line on stderr, no traceback;
* ``traceback``: a Python traceback (or Hydra's "Error executing job") reached the user;
* ``wrong``: it exited 0 where it should have refused, or printed more than one line;
* ``data lost``: a file that existed before the command (a finished run, a baseline)
  changed or disappeared.

``--code DIR`` runs the cases against another checkout's package (e.g. a
``git worktree`` of an older commit), which gives the "before" column of
results/reliability.md. Kills, concurrency and NaN are in tests/test_faults.py.

    python scripts/check_reliability.py [--code DIR] [--out FILE.md] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

MNIST = ["data.train_per_class=5", "trainer.batch_size=25", "trainer.eval_batch_size=500", "trainer.progress=false",
         "device=cpu", "device.threads=1", "trainer.max_steps=4"]


@dataclass
class Case:
    name: str
    args: list[str]  # after `mtbench`
    setup: Callable[[Path], None] = lambda ws: None
    expect_ok: bool = False  # the command should succeed
    limit_file_size: int | None = None
    may_change: tuple[str, ...] = ()  # files the command may rewrite (then ``keeps`` says what must stay)
    keeps: Callable[[Path], list[str]] = lambda ws: []  # what was lost, checked after the command


def _finished_run(ws: Path, name: str = "run") -> None:
    shutil.copytree(ws.parent / "_base" / "run", ws / name, symlinks=True)


def _with_yaml(text: str) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        _finished_run(ws)
        (ws / "run" / "run.yaml").write_text(text)
        shutil.rmtree(ws / "run" / ".hydra", ignore_errors=True)
    return setup


def _baseline(text: str) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        (ws / "bl").mkdir()
        (ws / "bl" / "mnist-mnist5k.yaml").write_text(text)
    return setup


def _file(name: str, data: bytes) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        (ws / name).parent.mkdir(parents=True, exist_ok=True)
        (ws / name).write_bytes(data)
    return setup


def _unfinished_sibling(ws: Path) -> None:
    """runs/a_s0: a run of seed 0 whose summary is missing (it looks unfinished), beside the named runs/b_s0."""
    _finished_run(ws, "runs/a_s0")
    (ws / "runs/a_s0/summary.json").unlink()


def _same_metrics(ws: Path) -> list[str]:
    import json

    base = json.loads((ws.parent / "_base/run/summary.json").read_text())["metrics"]
    now = json.loads((ws / "run/summary.json").read_text())["metrics"]
    return [] if now == base else ["the run's test metrics in summary.json were replaced"]


def _pix2pix_folder(ws: Path, truncate: str | None = None) -> None:
    for split, n in {"train": 4, "val": 2, "test": 2}.items():
        (ws / "d" / split).mkdir(parents=True)
        for i in range(n):
            Image.effect_noise((64, 32), 60).convert("RGB").save(ws / "d" / split / f"{i}.png")
    if truncate:
        p = ws / "d" / truncate
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _crafted_tar(ws: Path) -> None:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("../evil.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    (ws / "facades.tar.gz").write_bytes(buf.getvalue())


P2P = ["model=pix2pix", "data=facades", "data.root=d", "data.load_size=32", "data.crop_size=32", "model.ngf=8",
       "model.ndf=8", "trainer.batch_size=2", "eval.fid=false", "trainer.progress=false", "device=cpu",
       "trainer.max_steps=300"]

CASES = [
    Case("seed not a number", ["train", *MNIST, "seed=abc"]),
    Case("seed a fraction", ["train", *MNIST, "seed=1.5"]),
    Case("batch size 0", ["train", *MNIST, "trainer.batch_size=0"]),
    Case("unknown nan policy", ["train", *MNIST, "trainer.nan_policy=ignore"]),
    Case("misspelled trainer key", ["train", *MNIST, "+trainer.eval_splt=val"]),
    Case("SoftAdapt window 0", ["train", *MNIST, "method=softadapt", "method.window=0"]),
    Case("learning rate 0", ["train", *MNIST, "model.optim.lr=0"]),
    Case("CUDA without a GPU", ["train", *MNIST, "device=cuda"]),
    Case("run dir under a file", ["train", *MNIST, "hydra.run.dir=afile/run"], _file("afile", b"x")),
    Case("missing dataset folder", ["train", *P2P, "data.root=nope"]),
    Case("truncated test image", ["train", *P2P], lambda ws: _pix2pix_folder(ws, "test/1.png")),
    Case("truncated val image", ["train", *P2P], lambda ws: _pix2pix_folder(ws, "val/0.png")),
    Case("corrupt baseline file", ["train", *MNIST, "method.weights=baseline", "baselines_dir=bl"],
         _baseline("weights: [1, 2\n")),
    Case("all-zero baseline weights", ["train", *MNIST, "method.weights=baseline", "baselines_dir=bl"],
         _baseline("weights: {" + ", ".join(f"term_{c}: 0" for c in range(10)) + "}\nval_score: 0.5\n")),
    Case("fresh run into a finished run", ["train", *MNIST, "seed=3", "hydra.run.dir=run"], _finished_run),
    Case("resume with another batch size", ["train", *MNIST, "trainer.batch_size=10", "trainer.max_steps=8",
                                            "resume=true", "hydra.run.dir=run"], _finished_run),
    Case("resume a named dir without checkpoint", ["train", *MNIST, "trainer.max_steps=8", "resume=true",
                                                   "hydra.run.dir=runs/b_s0"], _unfinished_sibling),
    Case("resume from a corrupt checkpoint", ["train", *MNIST, "trainer.max_steps=8", "resume=true",
                                              "hydra.run.dir=run"],
         lambda ws: (_finished_run(ws), (ws / "run/checkpoints/last.pt").write_bytes(b"garbage"))),
    Case("lock file is a link", ["train", *MNIST, "hydra.run.dir=r"],
         lambda ws: (_file("keep.txt", b"keep")(ws), (ws / "r").mkdir(), (ws / "r/.lock").symlink_to(ws / "keep.txt"))),
    Case("full disk (file size limit)", ["train", *MNIST, "trainer.checkpoint_every=2", "hydra.run.dir=r"],
         limit_file_size=20_000),
    Case("eval of a missing run", ["eval", "run=nope"]),
    Case("eval: run.yaml not YAML", ["eval", "run=run"], _with_yaml("overrides: [unclosed\n")),
    Case("eval: run.yaml names os.system", ["eval", "run=run"],
         _with_yaml("overrides: ['model._target_=os.system', '+model.command=touch PWNED']\n")),
    Case("eval on val keeps the test metrics", ["eval", "run=run", "eval_split=val"], _finished_run, expect_ok=True,
         may_change=("run/summary.json",), keeps=_same_metrics),
    Case("report of a missing folder", ["report", "nope"]),
    Case("report: corrupt summary.json", ["report", "run", "--out", "rep"],
         lambda ws: (_finished_run(ws), (ws / "run/summary.json").write_text("{not json"))),
    Case("report: dangling report.md link", ["report", "run", "--out", "rep"],
         lambda ws: (_finished_run(ws), (ws / "rep").mkdir(), (ws / "rep/report.md").symlink_to(ws / "outside.md"))),
    Case("tune storage is a folder", ["tune", *MNIST, "tune.storage=adir", "tune.n_trials=1"],
         lambda ws: (ws / "adir").mkdir()),
    Case("tune journal is garbage", ["tune", *MNIST, "tune.storage=j.log", "tune.n_trials=1"],
         _file("j.log", os.urandom(300))),
    Case("tune storage URL scheme", ["tune", *MNIST, "tune.storage=foo://x/y", "tune.n_trials=1"]),
    Case("fid of missing folders", ["fid", "nope_a", "nope_b"]),
    Case("download: tar member ../evil.txt", ["download-crafted"], _crafted_tar),
]


#: `python -m mtbench.data.download pix2pix facades --root root` with the network replaced by a local crafted
#: archive (the current module's _fetch; an older module's torchvision download_and_extract_archive)
_DOWNLOAD_CRAFTED = """
import shutil, sys
import mtbench.data.download as d
if hasattr(d, "_fetch"):
    d._fetch = lambda url, dest, *a, **k: shutil.copy("facades.tar.gz", dest)
    flags = ["--trust-unpinned"]
else:
    from torchvision.datasets.utils import extract_archive
    d.download_and_extract_archive = lambda url, download_root, *a, **k: extract_archive("facades.tar.gz",
                                                                                         download_root)
    flags = []
sys.exit(d.main(["pix2pix", "facades", "--root", "root", *flags]))
"""


def _digest(ws: Path) -> dict[str, str]:
    return {str(p.relative_to(ws)): hashlib.sha256(p.read_bytes()).hexdigest() for p in ws.rglob("*")
            if p.is_file() and not p.is_symlink() and p.name not in (".lock", "train.log")}


def _limit(size: int) -> Callable[[], None]:
    def pre() -> None:
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return pre


def run_case(case: Case, ws: Path, code: Path) -> dict[str, str]:
    ws.mkdir(parents=True)
    case.setup(ws)
    before = _digest(ws)
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    if case.args == ["download-crafted"]:  # the download command, its fetch replaced by the local crafted archive
        cmd = [sys.executable, "-c", _DOWNLOAD_CRAFTED]
    else:
        cmd = [sys.executable, "-m", "mtbench.cli", *case.args]
    r = subprocess.run(cmd, cwd=ws, env=env, capture_output=True, text=True, timeout=600,
                       preexec_fn=_limit(case.limit_file_size) if case.limit_file_size else None)
    after = _digest(ws)
    lost = [k for k in before if after.get(k) != before[k] and k not in case.may_change] + case.keeps(ws)
    if case.name.startswith("download"):
        lost += ["evil.txt outside --root"] if (ws / "evil.txt").exists() or (ws.parent / "evil.txt").exists() else []
    if case.name == "report: dangling report.md link" and (ws / "outside.md").exists():
        lost.append("outside.md written through the link")
    if (ws / "PWNED").exists():
        lost.append("os.system ran")
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith(("[", "WARNING", "mnist-"))]
    tb = "Traceback" in r.stderr or "Error executing job" in r.stderr
    if lost:
        verdict = "data lost"
    elif tb:
        verdict = "traceback"
    elif case.expect_ok:
        verdict = "ok" if r.returncode == 0 else "wrong"
    elif r.returncode == 0:
        verdict = "wrong (exit 0)"
    elif len([ln for ln in lines if ln.startswith("error:")]) == 1:
        verdict = "clear error"
    else:
        verdict = "wrong (not one line)"
    first = next((ln for ln in lines if ln.startswith("error:")), lines[-1] if lines else "")
    shown = ("python -m mtbench.data.download pix2pix facades --root root (fetch: a local crafted archive)"
             if case.args == ["download-crafted"] else "mtbench " + " ".join(case.args))
    return {"case": case.name, "command": shown, "exit": str(r.returncode),
            "verdict": verdict, "line": first[:160].replace("|", "/"), "lost": "; ".join(lost)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--code", type=Path, default=Path(__file__).resolve().parents[1],
                    help="the checkout whose mtbench package runs the cases (default: this one)")
    ap.add_argument("--out", type=Path, help="write the table here (markdown)")
    ap.add_argument("--only", nargs="*", help="run only the cases whose name contains one of these")
    args = ap.parse_args(argv)
    code = args.code.resolve()
    cases = [c for c in CASES if not args.only or any(o in c.name for o in args.only)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="mtbench-reliability-") as tmp:
        base = Path(tmp) / "_base"
        base.mkdir()
        env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1"}
        subprocess.run([sys.executable, "-m", "mtbench.cli", "train", *MNIST, "hydra.run.dir=run"], cwd=base,
                       env=env, check=True, capture_output=True, timeout=600)
        for i, case in enumerate(cases, 1):
            row = run_case(case, Path(tmp) / f"case{i:02d}", code)
            rows.append(row)
            print(f"[{i}/{len(cases)}] {row['verdict']:<20} {case.name}: {row['line']}", file=sys.stderr)
    counts = {v: sum(r["verdict"].startswith(v) for r in rows) for v in ("clear error", "ok", "wrong", "traceback",
                                                                          "data lost")}
    table = ["| case | command | exit | verdict | what the user sees |", "|---|---|---|---|---|"]
    table += [f"| {r['case']} | `{r['command']}` | {r['exit']} | {r['verdict']}"
              f"{' (' + r['lost'] + ')' if r['lost'] else ''} | {r['line']} |" for r in rows]
    summary = (f"{len(rows)} cases: {counts['clear error']} clear errors, {counts['ok']} ok, {counts['wrong']} wrong, "
               f"{counts['traceback']} tracebacks, {counts['data lost']} data lost")
    text = "\n".join([summary, "", *table, ""])
    print(text)
    if args.out:
        args.out.write_text(f"Command: `python scripts/check_reliability.py {' '.join(argv or sys.argv[1:])}`\n\n"
                            + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
