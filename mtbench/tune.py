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
of a new study evaluates the default weights themselves, so the tuned baseline
is never worse on validation than the defaults it is compared with.
A tuned weight within 5% of either end of its range (in log scale, as a
fraction of the range's log width) is logged as a warning and recorded as
``at_bound: {term: lower|upper}``: the optimum may lie outside the range.

Storage: an Optuna journal file (``runs/tune/<model>-<data>/study.journal``)
by default, or ``tune.storage=<journal path or database URL>``; several
workers (``tune.worker=k``) on several machines share one study through it.

The best weights go to ``<baselines_dir>/<model>-<data>.yaml`` with the
validation score, the test metrics of a full-budget run with those weights
(``tune.final_run``), the budget, the trial counts and the command.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import math
import sys
from pathlib import Path
from typing import Any

import yaml
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from mtbench import validate
from mtbench.baseline import baseline_path
from mtbench.errors import NonFiniteLossError
from mtbench.experiment import build_experiment
from mtbench.train import train
from mtbench.utils import ConfigError, atomic_write_text

log = logging.getLogger("mtbench.tune")


def _validate(t: DictConfig) -> None:
    def int_at_least(key: str, low: int) -> None:
        validate.int_at_least(f"tune.{key}", t.get(key), low, error=ConfigError)

    int_at_least("n_trials", 1)
    int_at_least("min_resource", 1)
    int_at_least("max_resource", 1)
    int_at_least("reduction_factor", 2)
    int_at_least("worker", 0)
    int_at_least("n_startup_trials", 0)
    if t.max_resource < t.min_resource:
        raise ConfigError(f"tune.max_resource ({t.max_resource}) must be >= tune.min_resource ({t.min_resource})")
    if t.resource not in ("steps", "epochs"):
        raise ConfigError(f"tune.resource must be steps or epochs, got {t.resource!r}")
    if t.sampler not in ("tpe", "random"):
        raise ConfigError(f"tune.sampler must be tpe or random, got {t.sampler!r}")
    if not isinstance(t.range_factor, (int, float)) or t.range_factor <= 1:
        raise ConfigError(f"tune.range_factor must be a number > 1, got {t.range_factor!r}")


def make_storage(spec: str | Path):
    """A database URL (``sqlite:///...``, ``postgresql://...``) or a journal file path."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    spec = str(spec)
    if "://" in spec:
        return optuna.storages.RDBStorage(spec, engine_kwargs={"connect_args": {"timeout": 60}}
                                          if spec.startswith("sqlite") else {})
    path = Path(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


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


def tune(cfg: DictConfig, out: Path | None = None) -> dict[str, Any]:
    """Run this worker's trials, then write the baseline file from the whole study."""
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
    storage_id = str(Path(storage_spec).resolve()) if "://" not in str(storage_spec) else str(storage_spec)
    if target.exists() and not t.overwrite:
        old = yaml.safe_load(target.read_text()) or {}
        if old.get("study") != {"name": study_name, "storage": storage_id}:
            raise ConfigError(f"{target} holds a baseline from another study ({old.get('study')}); pass "
                              f"tune.overwrite=true to replace it, or set baselines_dir elsewhere")

    # the model's terms, defaults and objective (FID for the GANs when on, as in the paper), the data size:
    # the experiment, built once without a method
    exp = build_experiment(cfg, with_method=False)
    if exp.data.val is None:
        raise ConfigError(f"data {data_name!r} has no validation split to tune on")
    key, higher = exp.objective.primary, exp.objective.higher_is_better
    default_weights = dict(exp.model.default_weights)
    ranges, fixed = search_space(exp.model.term_names, default_weights, t.fixed_terms, float(t.range_factor))
    steps_per_unit = 1 if t.resource == "steps" else exp.steps_per_epoch
    del exp

    sampler_seed = int(t.seed) * 1000 + int(t.worker)
    sampler = (optuna.samplers.TPESampler(seed=sampler_seed, n_startup_trials=t.n_startup_trials)
               if t.sampler == "tpe"
               else optuna.samplers.RandomSampler(seed=sampler_seed))
    pruner = optuna.pruners.HyperbandPruner(min_resource=t.min_resource, max_resource=t.max_resource,
                                            reduction_factor=t.reduction_factor)
    no_prune_from = top_rung(t.min_resource, t.max_resource, t.reduction_factor)
    study = optuna.create_study(study_name=study_name, storage=make_storage(storage_spec), sampler=sampler,
                                pruner=pruner, direction="maximize" if higher else "minimize",
                                load_if_exists=True)

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

        summary = train(trial_cfg(weights, t.max_resource, "val"), out=out / f"trial_{trial.number:04d}",
                        on_eval=on_eval)
        return float(summary["metrics"][key])

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if t.enqueue_defaults and not study.trials:  # a new study starts from the default weights
        study.enqueue_trial({n: float(default_weights[n]) for n in ranges})
    study.optimize(objective, n_trials=t.n_trials, catch=(NonFiniteLossError,),
                   callbacks=[lambda s, tr: log.info("trial %d: %s %s", tr.number, tr.state.name, tr.value)])
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
        "command": " ".join(["mtbench", "tune", *sys.argv[1:]]),
        "created": dt.datetime.now().isoformat(timespec="seconds"),
    }
    if t.final_run:
        final = train(trial_cfg(record["weights"], t.max_resource, "auto"), out=out / "final_best_weights")
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
