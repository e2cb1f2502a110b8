"""mtbench tune: Hyperband over the fixed weights with Optuna, the baseline file, shared storage."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from conftest import compose_cfg
from mtbench.tune import at_bounds, format_record, make_storage, search_space, top_rung, tune
from mtbench.utils import ConfigError

TINY = ["data.train_per_class=5", "data.val_per_class=10", "trainer.batch_size=10",
        "trainer.eval_batch_size=500", "device=cpu"]


def test_search_space_is_log_range_around_the_defaults_with_the_first_term_fixed():
    ranges, fixed = search_space(["a", "b", "c"], {"a": 1.0, "b": 100.0, "c": 0.006}, None, 100.0)
    assert fixed == {"a": 1.0}
    assert ranges["b"] == pytest.approx((1.0, 10000.0)) and ranges["c"] == pytest.approx((6e-5, 0.6))
    with pytest.raises(ConfigError, match=r"unknown terms \['z'\]"):
        search_space(["a"], {"a": 1.0}, ["z"], 100.0)


def test_tune_prunes_writes_the_baseline_and_fixed_uses_it(tmp_path, run_train):
    bl = tmp_path / "baselines"
    cfg = compose_cfg(["tune.n_trials=9", "tune.min_resource=2", "tune.max_resource=18",
                       f"tune.storage={tmp_path / 'study.journal'}", f"baselines_dir={bl}", *TINY],
                      config_name="tune")
    record = tune(cfg, out=tmp_path / "tune_out")
    counts = record["trials"]
    assert counts["total"] == 9 and counts["pruned"] >= 1 and counts["complete"] >= 1
    # full_budget: the trials whose objective was reported at max_resource; the top rung (18 = 2 * 3**2) never prunes
    import optuna

    trials = optuna.load_study(study_name="mnist-mnist5k", storage=make_storage(tmp_path / "study.journal")).trials
    reached = [tr for tr in trials if 18 in tr.intermediate_values]
    assert counts["full_budget"] == len(reached) == counts["complete"] >= 1
    assert all(tr.state.name == "COMPLETE" for tr in reached)
    assert all(max(tr.intermediate_values) < 18 for tr in trials if tr.state.name == "PRUNED")
    assert f"{len(reached)} ran the full budget" in format_record(record)
    data = yaml.safe_load((bl / "mnist-mnist5k.yaml").read_text())
    assert data["weights"]["term_0"] == 1.0  # the reference term stays at its default
    for c in range(1, 10):
        assert 1 / 100 <= data["weights"][f"term_{c}"] <= 100
    assert data["budget"] == {"resource": "steps", "min_resource": 2, "max_resource": 18,
                              "reduction_factor": 3, "steps_per_unit": 1}
    assert data["trials"]["pruned"] == counts["pruned"] and "mtbench tune" in data["command"]
    assert data["trials"]["full_budget"] == counts["full_budget"]
    assert 0 <= data["val_score"] <= 1 and "acc" in data["test_metrics"]
    # method.weights=baseline trains with exactly those weights, and the summary compares with it
    summary, _ = run_train(["method.weights=baseline", f"baselines_dir={bl}", "trainer.max_steps=2", *TINY])
    assert summary["final_weights"] == pytest.approx(data["weights"])
    cmp = summary["baseline"]
    assert cmp["exists"] and cmp["baseline"] == data["test_metrics"]["acc"]
    assert cmp["delta"] == pytest.approx(summary["metrics"]["acc"] - data["test_metrics"]["acc"])


def test_no_baseline_is_reported_with_how_to_make_one(run_train, tmp_path):
    summary, _ = run_train(["trainer.max_steps=2", f"baselines_dir={tmp_path}", *TINY])
    assert not summary["baseline"]["exists"]
    assert "mtbench tune model=mnist data=mnist5k" in summary["baseline"]["hint"]


def test_tune_refuses_to_replace_another_studys_baseline(tmp_path):
    bl = tmp_path / "bl"
    bl.mkdir()
    (bl / "mnist-mnist5k.yaml").write_text("weights: {term_0: 1.0}\nstudy: {name: other, storage: x}\n")
    cfg = compose_cfg(["tune.n_trials=1", f"baselines_dir={bl}", *TINY], config_name="tune")
    with pytest.raises(ConfigError, match="another study"):
        tune(cfg, out=tmp_path / "o")
    assert "other" in (bl / "mnist-mnist5k.yaml").read_text()


@pytest.mark.parametrize(("override", "message"), [
    ("tune.min_resource=0", "tune.min_resource must be an integer >= 1"),
    ("tune.max_resource=1", r"tune.max_resource \(1\) must be >= tune.min_resource"),
    ("tune.sampler=grid", "tune.sampler must be tpe or random"),
    ("tune.n_startup_trials=-1", "tune.n_startup_trials must be an integer >= 0, got -1"),
    ("tune.n_startup_trials=2.5", "tune.n_startup_trials must be an integer >= 0, got 2.5"),
    ("method=mtadam", "tunes the fixed weights"),
])
def test_bad_tune_settings(tmp_path, override, message):
    cfg = compose_cfg([override, f"baselines_dir={tmp_path}", *TINY], config_name="tune")
    with pytest.raises(ConfigError, match=message):
        tune(cfg, out=tmp_path / "o")


@pytest.mark.slow
def test_two_concurrent_workers_share_one_study_and_lose_no_trial(tmp_path):
    import optuna

    storage = tmp_path / "shared.journal"
    common = ["tune", "tune.n_trials=3", "tune.min_resource=2", "tune.max_resource=6", "tune.final_run=false",
              f"tune.storage={storage}", f"baselines_dir={tmp_path / 'bl'}", *TINY]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # the default run dirs: both workers start in the same second, each gets its own folder
    procs = [subprocess.Popen([sys.executable, "-m", "mtbench.cli", *common, f"tune.worker={k}"], cwd=tmp_path,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in (0, 1)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err
    # each folder is named <start time>_w<worker>; the two start times may differ by a second either way
    run_dirs = list((tmp_path / "runs" / "tune" / "mnist-mnist5k").iterdir())
    assert sorted(d.name[-3:] for d in run_dirs) == ["_w0", "_w1"]
    assert all(len(list(d.glob("trial_*"))) == 3 for d in run_dirs)  # each worker ran 3 trials
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    study = optuna.load_study(study_name="mnist-mnist5k", storage=JournalStorage(JournalFileBackend(str(storage))))
    states = [t.state for t in study.trials]
    assert len(states) == 6
    assert all(s in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for s in states)
    assert len({t.number for t in study.trials}) == 6
    data = yaml.safe_load((tmp_path / "bl" / "mnist-mnist5k.yaml").read_text())
    assert data["trials"]["total"] == 6


def test_a_new_study_first_evaluates_the_default_weights(tmp_path):
    """enqueue_defaults: trial 0 is the defaults (all 1 for MNIST); off, trial 0 is a sampled point."""
    params = {}
    for flag in ("true", "false"):
        journal = tmp_path / f"{flag}.journal"
        cfg = compose_cfg(["tune.n_trials=1", "tune.min_resource=2", "tune.max_resource=2", "tune.final_run=false",
                           f"tune.enqueue_defaults={flag}", f"tune.storage={journal}",
                           f"baselines_dir={tmp_path / flag}", *TINY], config_name="tune")
        record = tune(cfg, out=tmp_path / f"out_{flag}")
        params[flag] = record["weights"]
        if flag == "true":
            assert record["at_bound"] == {}  # the defaults lie in the middle of their log ranges
        assert record["search"]["enqueue_defaults"] == (flag == "true")
    assert params["true"] == {f"term_{c}": 1.0 for c in range(10)}
    assert all(params["false"][f"term_{c}"] != 1.0 for c in range(1, 10))


def test_top_rung_follows_optunas_bracket_count():
    assert top_rung(2, 18, 3) == 18 and top_rung(50, 450, 3) == 450
    assert top_rung(66, 600, 3) == 594  # reproduce_gans.sh's pix2pix budget: 66 * 9, reported at step 594
    assert top_rung(2, 2, 3) == 2 and top_rung(2, 5, 3) == 2 and top_rung(1, 16, 2) == 16


def test_n_startup_trials_reaches_the_tpe_sampler(tmp_path, monkeypatch):
    import optuna

    made = []

    class Spy(optuna.samplers.TPESampler):
        def __init__(self, **kwargs):
            made.append(kwargs)
            super().__init__(**kwargs)

    monkeypatch.setattr(optuna.samplers, "TPESampler", Spy)
    cfg = compose_cfg(["tune.n_trials=1", "tune.min_resource=2", "tune.max_resource=2", "tune.final_run=false",
                       "tune.n_startup_trials=3", f"tune.storage={tmp_path / 's.journal'}",
                       f"baselines_dir={tmp_path / 'bl'}", *TINY], config_name="tune")
    record = tune(cfg, out=tmp_path / "o")
    assert [m["n_startup_trials"] for m in made] == [3]
    assert record["search"]["n_startup_trials"] == 3
    assert compose_cfg([], config_name="tune").tune.n_startup_trials == 5  # the default


def test_at_bounds_flags_weights_near_an_end_of_the_log_range_only():
    ranges = {"a": (0.01, 100.0), "b": (0.01, 100.0)}
    frac = lambda p: 10 ** (4 * p - 2)  # noqa: E731 - position p in [0, 1] of the log range -> weight
    assert at_bounds({"a": 100.0, "b": 0.01}, ranges) == {"a": "upper", "b": "lower"}
    assert at_bounds({"a": frac(0.96), "b": frac(0.04)}, ranges) == {"a": "upper", "b": "lower"}
    assert at_bounds({"a": frac(0.94), "b": frac(0.06)}, ranges) == {}
    assert at_bounds({"a": 1.0, "b": 1.0}, ranges) == {}


def test_a_best_weight_at_a_bound_is_warned_about_and_recorded(tmp_path, caplog):
    import optuna

    journal = tmp_path / "s.journal"
    study = optuna.create_study(study_name="mnist-mnist5k", storage=make_storage(journal), direction="maximize")
    at_edge = {f"term_{c}": 1.0 for c in range(1, 10)} | {"term_1": 100.0, "term_2": 0.01, "term_3": 50.0}
    study.enqueue_trial(at_edge)  # the only trial, so the best one
    cfg = compose_cfg(["tune.n_trials=1", "tune.min_resource=2", "tune.max_resource=2", "tune.final_run=false",
                       f"tune.storage={journal}", f"baselines_dir={tmp_path / 'bl'}", *TINY], config_name="tune")
    with caplog.at_level("WARNING", logger="mtbench.tune"):
        record = tune(cfg, out=tmp_path / "o")
    assert record["weights"]["term_1"] == 100.0
    assert record["at_bound"] == {"term_1": "upper", "term_2": "lower"}  # 50 lies at 92% of the log range
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("term_1 = 100" in m and "upper bound 100" in m for m in warned)
    assert any("term_2 = 0.01" in m and "lower bound 0.01" in m for m in warned)
    assert not any("term_3" in m for m in warned)
    saved = yaml.safe_load((tmp_path / "bl" / "mnist-mnist5k.yaml").read_text())
    assert saved["at_bound"] == {"term_1": "upper", "term_2": "lower"}
    assert "term_1 at the upper bound" in format_record(record)


def test_a_rerun_that_continues_a_study_draws_new_weights(tmp_path):
    """Two runs of one trial each on one study (random draws, no enqueued defaults): the second continues the
    study with a seed offset by the trial already there, so it does not train the first run's weights again."""
    from mtbench.tune import sampler_seed

    common = ["tune.n_trials=1", "tune.min_resource=2", "tune.max_resource=2", "tune.final_run=false",
              "tune.enqueue_defaults=false", f"tune.storage={tmp_path / 's.journal'}",
              f"baselines_dir={tmp_path / 'bl'}", *TINY]
    import optuna

    for k in range(2):
        tune(compose_cfg(common, config_name="tune"), out=tmp_path / f"o{k}")
    storage = make_storage(str(tmp_path / "s.journal"))
    (name,) = optuna.get_all_study_names(storage=storage)
    study = optuna.load_study(study_name=name, storage=storage)
    first, second = (t.params for t in study.get_trials())
    assert set(first) == set(second) and all(first[k] != second[k] for k in first)
    assert sampler_seed(0, 0, 0) == 0 and sampler_seed(2, 1, 0) == 2001  # a new study: seed * 1000 + worker
    assert sampler_seed(0, 0, 1) != sampler_seed(0, 1, 0) and sampler_seed(0, 0, 3) != sampler_seed(0, 0, 0)


def test_n_trials_0_writes_the_baseline_and_final_run_from_the_study_as_it_stands(tmp_path):
    """After an interrupt during the final run every trial is recorded: n_trials=0 runs no new trial."""
    import json
    from pathlib import Path

    journal = tmp_path / "s.journal"
    budget = ["tune.min_resource=2", "tune.max_resource=2", *TINY]
    common = [f"tune.storage={journal}", *budget]
    first = tune(compose_cfg(["tune.n_trials=2", "tune.final_run=false", f"baselines_dir={tmp_path / 'a'}",
                              *common], config_name="tune"), out=tmp_path / "o1")
    again = tune(compose_cfg(["tune.n_trials=0", "tune.final_run=true", f"baselines_dir={tmp_path / 'b'}",
                              *common], config_name="tune"), out=tmp_path / "o2")
    assert again["trials"]["total"] == first["trials"]["total"] == 2
    assert again["best_trial"] == first["best_trial"] and again["weights"] == first["weights"]
    final = json.loads((Path(again["final_run"]) / "summary.json").read_text())
    assert final["final_weights"] == pytest.approx(again["weights"]) and "acc" in again["test_metrics"]
    fresh = ["tune.n_trials=0", f"tune.storage={tmp_path / 'new.journal'}", f"baselines_dir={tmp_path / 'c'}",
             *budget]
    with pytest.raises(ConfigError, match=r"no trial of study 'mnist-mnist5k' completed .*raise tune.n_trials"):
        tune(compose_cfg(fresh, config_name="tune"), out=tmp_path / "o3")
    assert not (tmp_path / "c").exists()


def test_an_interrupt_in_the_final_run_names_the_command_that_does_just_the_final_run(monkeypatch):
    from mtbench.tune import _Progress

    monkeypatch.setattr(sys, "argv", ["mtbench tune", "model=mnist", "tune.n_trials=5", "tune.worker=1"])
    progress = _Progress(5)
    progress.study, progress.study_name, progress.storage, progress.phase = object(), "mnist-mnist5k", "s.j", "final"
    assert "`mtbench tune model=mnist tune.worker=1 tune.n_trials=0` does just the final run" in progress.hint()
    progress.phase = "trials"
    assert "tune.n_trials=5 runs just the rest" in progress.hint()
