"""Hyperband over the fixed weights: the tuned baseline of the MTAdam paper.

The MTAdam paper (arXiv:2006.14683) compares MTAdam with fixed loss weights
tuned by Hyperband (Li et al. 2018, arXiv:1603.06560) to optimise FID. ``mtbench
tune`` does this with Optuna: a study with a ``HyperbandPruner`` (min and max
resource in steps or epochs, reduction factor eta), a seeded TPE (its first
``n_startup_trials`` trials random) or random sampler, and the objective (the
model's primary metric on the validation split: FID for the GANs once
computed, accuracy for MNIST) reported after every ``min_resource`` so that
Hyperband prunes at its rungs. Only validation metrics are read: every
evaluation of a trial (periodic and final) is on the validation split.

Hyperband's rungs are at ``min_resource * eta**k``; the top one,
``min_resource * eta**(n_brackets - 1)`` with ``n_brackets =
floor(log_eta(max_resource / min_resource)) + 1``, has no higher rung to
promote to, so a trial that reaches it is never pruned: it trains to
``max_resource`` and completes. A trial "ran the full budget" when its
objective was reported at ``max_resource`` (it trained every unit of the
budget, whether it then completed or, in a study made before this rule, was
pruned there); the baseline file counts them as ``trials.full_budget``.

Search space: the weight of every term is log-uniform over
[default / range_factor, default * range_factor]; the terms in
``tune.fixed_terms`` (default: the first term, the reference scale) stay at
their default. With ``tune.enqueue_defaults`` (on by default) the first trial
of a new study evaluates the default weights themselves (in an older study
without them, the next trial; a failed or interrupted one is retried), so the
tuned baseline is never worse on validation than the defaults it is compared with.
A tuned weight within 5% of either end of its range (in log scale, as a
fraction of the range's log width) is logged as a warning and recorded as
``at_bound: {term: lower|upper}``: the optimum may lie outside the range.

Storage: an Optuna journal file (``runs/tune/<model>-<data>/study.journal``)
by default, or ``tune.storage=<journal path or database URL>``; several
workers (``tune.worker=k``) on several machines share one study through it
(mtbench/tune_storage.py: workers opening a new database together, and
heartbeats that let live workers retry a dead worker's trial).

The best weights go to ``<baselines_dir>/<model>-<data>.yaml`` with the
validation score, the test metrics of a full-budget run with those weights
(``tune.final_run``), the budget, the trial counts and the command.
``tune.n_trials=0`` runs no trial: it writes the baseline (and the final run)
from the study as it stands, e.g. after an interrupt during the final run.

Faults lose nothing. SIGINT/SIGTERM end tune as
:class:`~mtbench.errors.RunInterrupted` (the command line prints one line
with the command that continues the study and exits 128 + the signal): the
trial in training writes its checkpoint, is FAIL in the study and marked
``interrupted``. Every run first FAILs the RUNNING trials left by a dead
worker process of this host, then enqueues again the interrupted trials
(each time) and the other failed enqueued trials (once), then the default
weights unless a trial already has them (:func:`prepare_queue`); its sampler's
seed is offset by the trials already in the study (:func:`sampler_seed`), so it
draws new weights instead of replaying the first run's draws. Each trial
trains in its own ``trial_<number>`` folder and the final run in
``final_best_weights``, created atomically (``_2``, ``_3``... when another
run shares the output folder). A storage Optuna cannot open, a journal that
is not one, or a baseline file that cannot be read or written is one
:class:`ConfigError` line before any trial; a journal's last record cut short
by a killed writer is set aside (:func:`check_journal`).
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import math
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any

import yaml
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from mtbench import validate
from mtbench.baseline import baseline_path
from mtbench.errors import NonFiniteLossError, RunInterrupted
from mtbench.experiment import build_experiment
from mtbench.train import train
from mtbench.tune_storage import Heartbeat, hide_password, make_storage
from mtbench.tune_storage import first_line as _first_line
from mtbench.tune_storage import fresh_path as _fresh_path
from mtbench.utils import ConfigError, atomic_write_text

log = logging.getLogger("mtbench.tune")


def _validate(t: DictConfig) -> None:
    def int_at_least(key: str, low: int) -> None:
        validate.int_at_least(f"tune.{key}", t.get(key), low, error=ConfigError)

    int_at_least("n_trials", 0)
    int_at_least("min_resource", 1)
    int_at_least("max_resource", 1)
    int_at_least("reduction_factor", 2)
    int_at_least("worker", 0)
    int_at_least("n_startup_trials", 0)
    for key in ("heartbeat_interval", "grace_period"):
        if t.get(key) is not None:
            int_at_least(key, 1)
    if t.max_resource < t.min_resource:
        raise ConfigError(f"tune.max_resource ({t.max_resource}) must be >= tune.min_resource ({t.min_resource})")
    if t.resource not in ("steps", "epochs"):
        raise ConfigError(f"tune.resource must be steps or epochs, got {t.resource!r}")
    if t.sampler not in ("tpe", "random"):
        raise ConfigError(f"tune.sampler must be tpe or random, got {t.sampler!r}")
    if not isinstance(t.range_factor, (int, float)) or t.range_factor <= 1:
        raise ConfigError(f"tune.range_factor must be a number > 1, got {t.range_factor!r}")


def search_space(term_names: list[str], defaults: dict[str, float], fixed_terms, factor: float):
    """{term: (low, high)} for the tuned terms and {term: value} for the fixed ones."""
    fixed_terms = list(term_names[:1] if fixed_terms is None else fixed_terms)
    unknown = sorted(set(fixed_terms) - set(term_names))
    if unknown:
        raise ConfigError(f"tune.fixed_terms names unknown terms {unknown}; the terms are {term_names}")
    fixed = {n: defaults[n] for n in term_names if n in fixed_terms or defaults[n] <= 0}
    ranges = {n: (defaults[n] / factor, defaults[n] * factor) for n in term_names if n not in fixed}
    if not ranges:
        raise ConfigError("every term is fixed: nothing to tune (check tune.fixed_terms)")
    return ranges, fixed


#: a tuned weight this close to an end of its range (fraction of the log width) is "at the bound"
EDGE_MARGIN = 0.05


def at_bounds(weights: dict[str, float], ranges: dict[str, tuple[float, float]],
              margin: float = EDGE_MARGIN) -> dict[str, str]:
    """{term: "lower" or "upper"} for the tuned weights within ``margin`` of an end of their log range."""
    found = {}
    for name, (low, high) in ranges.items():
        pos = (math.log(weights[name]) - math.log(low)) / (math.log(high) - math.log(low))
        if pos <= margin or pos >= 1 - margin:
            found[name] = "lower" if pos <= margin else "upper"
    return found


def top_rung(min_resource: int, max_resource: int, eta: int) -> int:
    """Hyperband's highest rung (Optuna's bracket count formula): no trial reaching it is pruned."""
    n_brackets = math.floor(math.log(max_resource / min_resource, eta)) + 1
    return min_resource * eta ** (n_brackets - 1)


def _counts(study, max_resource: int) -> dict[str, int]:
    """Trial states, and ``full_budget``: the trials whose objective was reported at max_resource."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    full = sum(1 for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
               and t.last_step is not None and t.last_step >= max_resource)
    return {"complete": states.count(TrialState.COMPLETE), "pruned": states.count(TrialState.PRUNED),
            "failed": states.count(TrialState.FAIL), "total": len(states), "full_budget": full}


# -- the study's queue: retries and the default weights -------------------------------------------------------

#: trial user attributes: who runs it, why it stopped, which failed trial it repeats
WORKER, INTERRUPTED, RETRY_OF = "worker", "interrupted", "retry_of"


def _read_proc(path: str) -> str | None:
    """A Linux /proc value (the boot id, this process's pid namespace), None elsewhere."""
    try:
        return os.readlink(path) if path.startswith("/proc/self/") else Path(path).read_text().strip()
    except OSError:
        return None


def worker_identity(number: int) -> dict[str, Any]:
    """Who runs a trial: enough to tell later, on the same host, whether that process is still alive."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "worker": number,
            "boot": _read_proc("/proc/sys/kernel/random/boot_id"), "pid_ns": _read_proc("/proc/self/ns/pid")}


def worker_is_dead(worker: Any) -> bool:
    """True only for a worker of this host whose process is gone (another host's cannot be checked)."""
    if not isinstance(worker, dict) or worker.get("host") != socket.gethostname():
        return False
    boot = worker.get("boot")
    if boot and boot != _read_proc("/proc/sys/kernel/random/boot_id"):
        return True  # the machine has restarted since
    if worker.get("pid_ns") != _read_proc("/proc/self/ns/pid"):
        return False  # another container of this host: its pids are not ours to check
    pid = worker.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if pid == os.getpid():  # this process, before its first trial: it runs none of them
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _mark_interrupted(study, trial, why: dict[str, Any]) -> bool:
    """FAIL a RUNNING trial that no process runs any more, recording why (False: it had finished meanwhile)."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    try:  # Optuna has no public call to set another process's trial attribute; its own callbacks do this
        study._storage.set_trial_user_attr(trial._trial_id, INTERRUPTED, why)
        study.tell(trial.number, state=TrialState.FAIL)
    except (UpdateFinishedTrialError, ValueError, RuntimeError):
        return False
    return True


def sampler_seed(seed: int, worker: int, earlier_trials: int) -> int:
    """The sampler's seed: ``seed * 1000 + worker`` for a new study; a run that continues a study with
    ``earlier_trials`` trials offsets it by their count, so that it does not replay the random draws of the
    run that began the study (a rerun after an interrupt would otherwise train those weights again)."""
    return seed * 1000 + worker + 1_000_003 * earlier_trials


def make_sampler(t: DictConfig, earlier_trials: int):
    """TPE (``tune.sampler=tpe``, its first ``n_startup_trials`` drawn at random) or random search, seeded by
    :func:`sampler_seed`."""
    import optuna

    seed = sampler_seed(int(t.seed), int(t.worker), earlier_trials)
    if t.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=t.n_startup_trials)
    return optuna.samplers.RandomSampler(seed=seed)


def fail_orphaned_trials(study) -> list[int]:
    """FAIL the RUNNING trials whose worker process on this host has died (killed, crashed, power cut).

    Optuna's journal storage has no heartbeat, so such a trial would stay RUNNING
    forever and never be retried. Trials of live workers, and of other hosts
    (whose processes cannot be checked), are left alone.
    """
    from optuna.trial import TrialState

    failed = []
    for tr in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        who = tr.user_attrs.get(WORKER)
        if worker_is_dead(who) and _mark_interrupted(study, tr, {"signal": None, "step": None,
                                                           "reason": f"worker pid {who['pid']} died"}):
            log.warning("trial %d was left RUNNING by worker pid %d on this host, which is gone: marked FAIL",
                        tr.number, who["pid"])
            failed.append(tr.number)
    return failed


def _trial_params(tr) -> dict[str, Any]:
    return dict(tr.system_attrs.get("fixed_params") or tr.params)


def _same_params(params: dict[str, Any], wanted: dict[str, float]) -> bool:
    return params.keys() == wanted.keys() and all(
        isinstance(params[n], (int, float)) and math.isclose(params[n], wanted[n], rel_tol=1e-9) for n in wanted)


def _in_space(params: dict[str, Any], ranges: dict[str, tuple[float, float]]) -> bool:
    return params.keys() == ranges.keys() and all(
        isinstance(params[n], (int, float)) and low * (1 - 1e-9) <= params[n] <= high * (1 + 1e-9)
        for n, (low, high) in ranges.items())


def trials_to_retry(trials, ranges: dict[str, tuple[float, float]]) -> list[tuple[int, dict[str, float]]]:
    """(number, params) of the FAILED trials to run again, oldest first.

    A trial stopped by a signal or whose worker died is retried every time (it
    never got to finish); any other failed trial that was enqueued (the default
    weights, a retry) is retried once, so that a trial that fails by itself
    does not repeat forever. Trials already retried, or whose params no longer
    fit the search space (other ranges or fixed terms), are skipped.
    """
    from optuna.trial import TrialState

    retried = {tr.user_attrs.get(RETRY_OF) for tr in trials}
    out = []
    for tr in trials:
        if tr.state != TrialState.FAIL or tr.number in retried:
            continue
        enqueued_first_try = "fixed_params" in tr.system_attrs and RETRY_OF not in tr.user_attrs
        if INTERRUPTED not in tr.user_attrs and not enqueued_first_try:
            continue
        params = _trial_params(tr)
        if _in_space(params, ranges):
            out.append((tr.number, {n: float(params[n]) for n in ranges}))
        else:
            log.info("failed trial %d is not retried: its params %s lie outside this search space", tr.number, params)
    return out


def prepare_queue(study, ranges: dict[str, tuple[float, float]], defaults: dict[str, float] | None) -> None:
    """Before this worker's trials: fail orphaned trials, enqueue the retries, then the default weights.

    ``defaults`` (``tune.enqueue_defaults``) are enqueued unless a trial with
    exactly those params exists (complete, pruned, waiting, running, or failed:
    a failed one is retried by the rule of :func:`trials_to_retry`). Optuna's
    ``enqueue_trial(..., skip_if_exists=True)`` would count a failed trial as
    existing and never retry it. Two workers starting at the same moment may
    both enqueue the same trial (as Optuna's own check may): one extra trial.
    """
    fail_orphaned_trials(study)
    for number, params in trials_to_retry(study.get_trials(deepcopy=False), ranges):
        study.enqueue_trial(params, user_attrs={RETRY_OF: number})
        log.info("failed trial %d is enqueued again", number)
    if defaults is not None:
        wanted = {n: float(defaults[n]) for n in ranges}
        if not any(_same_params(_trial_params(tr), wanted) for tr in study.get_trials(deepcopy=False)):
            study.enqueue_trial(wanted)


# -- interrupts ---------------------------------------------------------------------------------------------------

def _best_or_none(study) -> Any:
    try:
        return study.best_trial
    except ValueError:  # no trial completed yet
        return None


def describe_trial(tr, k: int, n: int, metric: str, resource: str, best) -> str:
    """One line per finished trial: k of this run's n, the study's trial number, its state, value (the last
    reported one for a pruned trial) and weights, and the study's best so far."""
    weights = " ".join(f"{name}={value:.3g}" for name, value in tr.params.items())
    if tr.value is not None:
        outcome = f"{metric} {tr.value:.4g}"
    elif tr.intermediate_values:
        at = max(tr.intermediate_values)
        outcome = f"at {at} {resource}: {metric} {tr.intermediate_values[at]:.4g}"
    else:
        outcome = "no value"
    best_text = f"best so far {metric} {best.value:.4g} (trial {best.number})" if best is not None else "none complete yet"
    return f"trial {k}/{n} (study trial {tr.number}): {tr.state.name} {outcome} | weights {weights} | {best_text}"


class _Progress:
    """Where this tune run is: what an interrupt tells the user to run, and what it cleans up."""

    def __init__(self, n_trials: int) -> None:
        self.command = " ".join(["mtbench", "tune", *sys.argv[1:]])
        self.n_trials, self.finished, self.phase = n_trials, 0, "start"
        self.study: Any = None
        self.study_name, self.storage = "", ""

    def hint(self) -> str:
        rerun = f"rerun the same `{self.command}`"
        if self.study is None:
            return f"no trial had started; {rerun} to tune"
        study = f"study {self.study_name!r} in {self.storage}"
        if self.phase == "final":
            final_only = " ".join(["mtbench", "tune", *(a for a in sys.argv[1:] if not a.startswith(
                ("tune.n_trials=", "+tune.n_trials=", "++tune.n_trials="))), "tune.n_trials=0"])
            return (f"every trial of this run had finished: `{final_only}` does just the final run with the best "
                    f"weights of {study} ({rerun} runs tune.n_trials more trials first)")
        left = self.n_trials - self.finished
        return (f"{rerun} to continue {study}: the interrupted trial is retried from its start "
                f"({self.finished} of this run's {self.n_trials} trials had finished; tune.n_trials={left} "
                f"runs just the rest)")

    def fail_own_running(self) -> None:
        """After an interrupt: a trial of this process still RUNNING (stopped inside Optuna) becomes FAIL."""
        if self.study is None:
            return
        from optuna.trial import TrialState

        for tr in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            who = tr.user_attrs.get(WORKER)
            if isinstance(who, dict) and who.get("pid") == os.getpid() and who.get("host") == socket.gethostname():
                _mark_interrupted(self.study, tr, {"signal": None, "step": None, "reason": "interrupted"})


class _SignalsInterrupt:
    """SIGINT/SIGTERM raise :class:`RunInterrupted` at once while tune is outside a training loop.

    The loop (:meth:`mtbench.training.loop.Runner.fit`) installs its own
    handlers (finish the step, checkpoint, raise RunInterrupted) and puts these
    back when it returns. As there, a second signal raises KeyboardInterrupt.
    """

    def __init__(self, progress: _Progress) -> None:
        self.progress = progress
        self.signum: int | None = None
        self.old: dict[int, Any] = {}

    def _on_signal(self, signum: int, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        log.warning("signal %d received: stopping tune", signum)
        raise RunInterrupted(signum, 0, None)  # no checkpoint: outside training (the hint names the study)

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self.old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    def __exit__(self, *exc) -> None:
        for s, handler in self.old.items():
            signal.signal(s, handler)


class _NoInterruptTraceback(logging.Filter):
    """Optuna logs a failed trial with its traceback; an interrupt is not a bug: its one line is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], (RunInterrupted, KeyboardInterrupt)):
            record.exc_info, record.exc_text = None, None
        return True


def tune(cfg: DictConfig, out: Path | None = None) -> dict[str, Any]:
    """Run this worker's trials, then write the baseline file from the whole study.

    An interrupt (SIGINT/SIGTERM) ends it as :class:`RunInterrupted` whose hint
    says how to continue the study; the interrupted trial is FAIL in the study,
    marked ``interrupted``, and the next run retries it.
    """
    progress = _Progress(int(cfg.tune.n_trials))
    quiet = _NoInterruptTraceback()
    optuna_log = logging.getLogger("optuna.study._optimize")
    optuna_log.addFilter(quiet)
    try:
        with _SignalsInterrupt(progress):
            try:
                return _tune(cfg, out, progress)
            except RunInterrupted as stop:
                progress.fail_own_running()
                raise RunInterrupted(stop.signum, stop.step, stop.path, hint=progress.hint()) from None
    finally:
        optuna_log.removeFilter(quiet)


def check_target(target: Path, study: dict[str, str], overwrite: bool) -> None:
    """Before any trial: the baseline file can be written, and replaces nothing of another study's."""
    if target.is_dir():
        raise ConfigError(f"baseline file {target} is a directory; move it aside or set baselines_dir elsewhere")
    folder = next(p for p in (target.parent, *target.parent.parents) if p.exists())
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"baselines_dir {target.parent} cannot be written ({folder} is "
                          f"{'not a folder' if not folder.is_dir() else 'not writable'}); set baselines_dir to "
                          f"a writable folder")
    if not target.exists() or overwrite:
        return
    try:
        old = yaml.safe_load(target.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        mark = getattr(err, "problem_mark", None)
        why = f"{err.problem} at line {mark.line + 1}" if mark is not None else _first_line(err)
        raise ConfigError(f"cannot read the baseline file {target} ({why}); move it aside, or pass "
                          f"tune.overwrite=true to replace it") from None
    if not isinstance(old, dict):
        raise ConfigError(f"baseline file {target} is not a tune baseline (a {type(old).__name__}, not a mapping); "
                          f"move it aside, or pass tune.overwrite=true to replace it")
    if old.get("study") != study:
        raise ConfigError(f"{target} holds a baseline from another study ({old.get('study')}); pass "
                          f"tune.overwrite=true to replace it, or set baselines_dir elsewhere")


def _tune(cfg: DictConfig, out: Path | None, progress: _Progress) -> dict[str, Any]:
    import optuna

    hc = HydraConfig.get()
    out = Path(out or hc.runtime.output_dir)
    t = cfg.tune
    _validate(t)
    model_name, data_name = hc.runtime.choices.get("model"), hc.runtime.choices.get("data")
    if not str(cfg.method.get("_target_", "")).endswith("fixed.Fixed"):
        raise ConfigError("mtbench tune tunes the fixed weights: leave method=fixed")
    study_name = t.study_name or f"{model_name}-{data_name}"
    storage_spec = t.storage or Path("runs") / "tune" / f"{model_name}-{data_name}" / "study.journal"
    target = baseline_path(model_name, data_name, cfg.get("baselines_dir"))
    storage_id = (str(Path(storage_spec).resolve()) if "://" not in str(storage_spec)
                  else hide_password(str(storage_spec)))
    check_target(target, {"name": study_name, "storage": storage_id}, bool(t.overwrite))
    heartbeat = Heartbeat(t.get("heartbeat_interval"), t.get("grace_period"))
    storage = make_storage(storage_spec, heartbeat=heartbeat)

    # the model's terms, defaults and objective (FID for the GANs when on, as in the paper), the data size:
    # the experiment, built once without a method
    exp = build_experiment(cfg, with_method=False)
    if exp.data.val is None:
        raise ConfigError(f"data {data_name!r} has no validation split to tune on")
    key, higher = exp.objective.primary, exp.objective.higher_is_better
    default_weights = dict(exp.model.default_weights)
    ranges, fixed = search_space(exp.model.term_names, default_weights, t.fixed_terms, float(t.range_factor))
    heartbeat.ranges = ranges  # a stale trial (database storages) is retried only inside this search space
    steps_per_unit = 1 if t.resource == "steps" else exp.steps_per_epoch
    del exp

    pruner = optuna.pruners.HyperbandPruner(min_resource=t.min_resource, max_resource=t.max_resource,
                                            reduction_factor=t.reduction_factor)
    no_prune_from = top_rung(t.min_resource, t.max_resource, t.reduction_factor)
    study = optuna.create_study(study_name=study_name, storage=storage, sampler=optuna.samplers.RandomSampler(),
                                pruner=pruner, direction="maximize" if higher else "minimize",
                                load_if_exists=True)
    study.sampler = make_sampler(t, len(study.get_trials(deepcopy=False)))  # its seed needs the study's trial count
    progress.study, progress.study_name, progress.storage, progress.phase = study, study_name, storage_id, "trials"

    def trial_cfg(weights: dict[str, float], max_units: int, eval_split: str) -> DictConfig:
        c = copy.deepcopy(cfg)
        with open_dict(c):
            c.method.weights = weights
            c.trainer.max_steps = max_units * steps_per_unit
            c.trainer.eval_every = t.min_resource * steps_per_unit
            c.trainer.eval_split = eval_split
            c.trainer.progress = False
            c.trainer.keep_best = False
            c.resume = False
        return c

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr(WORKER, worker_identity(int(t.worker)))
        weights = dict(fixed)
        for name, (low, high) in ranges.items():
            weights[name] = trial.suggest_float(name, low, high, log=True)
        weights = {n: weights[n] for n in list(fixed) + list(ranges)}

        def on_eval(step: int, metrics: dict[str, float]) -> None:
            value = metrics[key]
            units = step // steps_per_unit
            trial.report(value, units)
            # the top rung has no higher rung to promote to: pruning there would only discard a full-budget result
            if units < no_prune_from and trial.should_prune():
                raise optuna.TrialPruned(f"pruned at {units} {t.resource} with {key}={value:.4g}")

        # trial numbers are unique in the study, but two runs may share an output dir: never share a trial dir
        trial_dir = _fresh_path(out / f"trial_{trial.number:04d}", make_dir=True)
        try:
            summary = train(trial_cfg(weights, t.max_resource, "val"), out=trial_dir, on_eval=on_eval)
        except (RunInterrupted, KeyboardInterrupt) as stop:  # KeyboardInterrupt: a second signal, stop at once
            trial.set_user_attr(INTERRUPTED, {"signal": int(getattr(stop, "signum", signal.SIGINT)),
                                              "step": getattr(stop, "step", None), "run_dir": str(trial_dir)})
            raise
        return float(summary["metrics"][key])

    def on_trial_end(study_, tr) -> None:
        progress.finished += 1
        log.info(describe_trial(tr, progress.finished, t.n_trials, key, t.resource, _best_or_none(study_)))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if t.n_trials > 0:  # 0: the baseline (and final run) from the study as it stands
        prepare_queue(study, ranges, default_weights if t.enqueue_defaults else None)
        study.optimize(objective, n_trials=t.n_trials, catch=(NonFiniteLossError,), callbacks=[on_trial_end])
    counts = _counts(study, t.max_resource)
    try:
        best = study.best_trial
    except ValueError:
        raise ConfigError(f"no trial of study {study_name!r} completed ({counts}); raise tune.n_trials") from None
    weights = {**fixed, **{n: float(best.params[n]) for n in ranges}}
    edges = at_bounds(weights, ranges)
    for name, side in edges.items():
        log.warning("tuned weight %s = %.4g is within %d%% of the %s bound %.4g of its log search range; "
                    "the optimum may lie outside it (raise tune.range_factor)", name, weights[name],
                    round(100 * EDGE_MARGIN), side, ranges[name][side == "upper"])
    record: dict[str, Any] = {
        "model": model_name, "data": data_name, "metric": key, "higher_is_better": higher,
        "weights": {n: weights[n] for n in list(fixed) + list(ranges)},
        "val_score": float(best.value), "best_trial": best.number,
        "budget": {"resource": t.resource, "min_resource": t.min_resource, "max_resource": t.max_resource,
                   "reduction_factor": t.reduction_factor, "steps_per_unit": steps_per_unit},
        "trials": counts,
        "at_bound": edges,
        "search": {"range_factor": float(t.range_factor), "fixed_terms": list(fixed), "sampler": t.sampler,
                   "n_startup_trials": t.n_startup_trials, "seed": t.seed,
                   "enqueue_defaults": bool(t.enqueue_defaults)},
        "study": {"name": study_name, "storage": storage_id},
        "command": progress.command,
        "created": dt.datetime.now().isoformat(timespec="seconds"),
    }
    if t.final_run:
        progress.phase = "final"
        final_dir = _fresh_path(out / "final_best_weights", make_dir=True)  # another run may share out
        final = train(trial_cfg(record["weights"], t.max_resource, "auto"), out=final_dir)
        record["test_metrics"] = final["metrics"]
        record["final_run"] = final["run_dir"]
    text = ("# Hyperband-tuned fixed weights (mtbench tune); train with: "
            "mtbench train method=fixed method.weights=baseline\n"
            + yaml.safe_dump(record, sort_keys=False))
    atomic_write_text(text, target)
    record["baseline_file"] = str(target)
    log.info("wrote %s", target)
    return record


def format_record(r: dict[str, Any]) -> str:
    c = r["trials"]
    test = r.get("test_metrics", {}).get(r["metric"])
    return (f"done: {r['model']}-{r['data']} best val {r['metric']} {r['val_score']:.4g}"
            + (f", test {test:.4g}" if test is not None else "")
            + f" | trials {c['total']} ({c['complete']} complete, {c['pruned']} pruned, {c['failed']} failed,"
            f" {c['full_budget']} ran the full budget)"
            + "".join(f" | {n} at the {side} bound" for n, side in r.get("at_bound", {}).items())
            + f" | weights {OmegaConf.to_yaml(OmegaConf.create(r['weights'])).strip().replace(chr(10), ', ')}"
            f" | wrote {r['baseline_file']}")
