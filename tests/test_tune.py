"""Optuna tuning: the saved preset reproduces the study's best in train_run, the base is trial 0, studies resume."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from amzkit.ml.presets import preset_path, resolve_preset, save_preset
from amzkit.stages import tune
from amzkit.stages.ensemble import ensemble
from amzkit.stages.train import train_run
from amzkit.stages.tune import candidate_preset, tune_preset, tuning_paths
from amzkit.testing import write_embedding_run

# A deliberately weak base (tiny trees, slow learning, few rounds): tuning has room to beat it.
WEAK_BASE = {"target": "log1p", "n_estimators": 200, "early_stopping_rounds": 20, "params": {
    "objective": "l1", "learning_rate": 0.01, "num_leaves": 3, "min_data_in_leaf": 60, "feature_fraction": 0.5,
    "bagging_fraction": 0.8, "bagging_freq": 1, "verbose": -1}}
FEATURES, EMBEDDINGS = ["text_stats", "tfidf"], ["planted:pca:4"]


def synthetic_competition(tmp_path):
    """300 labelled + 60 test rows (2025 schema) and an embedding run with one dimension carrying the price."""
    rng = np.random.default_rng(5)
    n_train, n_test = 300, 60
    ids = rng.permutation(np.arange(50_000, 50_000 + n_train + n_test))
    price = np.exp(rng.normal(2.7, 0.8, n_train + n_test))
    text = [f"Item Name: Product {i} pack of {1 + i % 6}\nValue: {p:.1f}\nUnit: Ounce" for i, p in enumerate(price)]
    train = pd.DataFrame({"sample_id": ids[:n_train], "catalog_content": text[:n_train], "image_link": "",
                          "price": price[:n_train]})
    test = pd.DataFrame({"sample_id": ids[n_train:], "catalog_content": text[n_train:], "image_link": ""})
    emb = rng.normal(size=(n_train + n_test, 12)).astype(np.float32)
    emb[:, 3] = np.log1p(price) + rng.normal(0, 0.3, n_train + n_test)
    write_embedding_run(tmp_path, "planted", {"train": (emb[:n_train], ids[:n_train]),
                                             "test": (emb[n_train:], ids[n_train:])})
    return {"train": train, "test": test}, tmp_path


@pytest.fixture()
def synthetic(tmp_path):
    return synthetic_competition(tmp_path)


def _tune(data, work, name="tuned", n_trials=4, **kwargs):
    kwargs = {"base_preset": WEAK_BASE, "num_threads": 1, "tfidf_dim": 8, "progress": False, "timeout_minutes": None,
              **kwargs}
    return tune_preset(data, "amazon2025", work, name, FEATURES, EMBEDDINGS, n_trials=n_trials, **kwargs)


def test_tuned_preset_reproduces_the_study_best_and_trial_0_is_the_base(synthetic):
    data, work = synthetic
    summary = _tune(data, work)
    assert summary["n_trials"] == 4 and summary["n_complete"] + summary["n_pruned"] == 4
    assert summary["best_trial"] != 0, "the weak base should be beaten: the round trip must check a tuned preset"
    assert summary["best_smape"] < summary["base_smape"]
    for key in ("preset_path", "study_path", "trials_path", "plot_path"):
        assert summary[key].is_file() and summary[key] == tuning_paths(work, "tuned")[key.removesuffix("_path")]

    tuned = train_run(data, "amazon2025", work, "with_tuned", FEATURES, EMBEDDINGS, preset="tuned",
                      num_threads=1, tfidf_dim=8)
    assert tuned["cv_smape"] == pytest.approx(summary["best_smape"], abs=1e-9)
    assert resolve_preset("tuned", work)["params"]["num_leaves"] == summary["best_params"]["num_leaves"] != 3

    save_preset(work, "weak", WEAK_BASE)
    base = train_run(data, "amazon2025", work, "with_base", FEATURES, EMBEDDINGS, preset="weak",
                     num_threads=1, tfidf_dim=8)
    assert base["cv_smape"] == pytest.approx(summary["base_smape"], abs=1e-9)

    trials = pd.read_csv(summary["trials_path"])
    assert trials["number"].tolist() == [0, 1, 2, 3] and trials["base"].tolist() == [True, False, False, False]
    assert trials.loc[0, "smape"] == pytest.approx(summary["base_smape"], abs=1e-12)
    assert trials.loc[0, "num_leaves"] == 3 and np.isnan(trials.loc[0, "lambda_l1"]), "the base row shows the base"
    info = pd.read_json(summary["preset_path"], typ="series")["info"]
    assert info["folds_sha256"] == tuned["folds_sha256"] and info["base_smape"] == summary["base_smape"]
    assert info["features"] == FEATURES and info["embeddings"] == EMBEDDINGS


def test_a_study_resumes_under_its_name_and_refuses_another_setup(synthetic):
    data, work = synthetic
    first = _tune(data, work, n_trials=2)
    again = _tune(data, work, n_trials=2)
    assert (first["n_trials"], again["n_trials"]) == (2, 4)
    trials = pd.read_csv(again["trials_path"])
    assert trials["number"].tolist() == [0, 1, 2, 3] and trials["base"].sum() == 1
    assert trials.loc[0, "smape"] == pytest.approx(first["base_smape"], abs=1e-12)
    assert trials.loc[1, "learning_rate"] not in trials.loc[2:, "learning_rate"].tolist(), "resumed trials redraw"
    assert again["best_smape"] <= first["best_smape"]
    with pytest.raises(ValueError, match="another setup"):
        tune_preset(data, "amazon2025", work, "tuned", ["text_stats"], EMBEDDINGS, base_preset=WEAK_BASE,
                    n_trials=1, num_threads=1, tfidf_dim=8, progress=False)


def test_the_median_pruner_stops_weak_trials_after_a_fold(synthetic, monkeypatch):
    data, work = synthetic
    monkeypatch.setattr(tune, "PRUNER_STARTUP_TRIALS", 2)
    summary = _tune(data, work, n_trials=8)
    trials = pd.read_csv(summary["trials_path"])
    pruned = trials[trials["state"] == "pruned"]
    assert summary["n_pruned"] == len(pruned) >= 1
    assert (pruned["folds_run"] < 5).all() and pruned["smape"].isna().all()
    assert (trials.loc[trials["state"] == "complete", "folds_run"] == 5).all()


def test_missing_optuna_says_how_to_install_it(synthetic, monkeypatch):
    data, work = synthetic
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ImportError, match=r'pip install "amzkit\[tune\]"'):
        _tune(data, work)


def test_bad_built_in_and_self_referencing_names_are_refused(synthetic):
    data, work = synthetic
    with pytest.raises(ValueError, match="built in"):
        _tune(data, work, name="default")
    with pytest.raises(ValueError, match="preset name"):
        _tune(data, work, name="../escape")
    save_preset(work, "mine", WEAK_BASE)
    with pytest.raises(ValueError, match="tune under another name"):
        _tune(data, work, name="mine", base_preset="mine")
    assert not (work / "03_train" / "presets" / "default.study.db").exists()


def test_candidate_preset_replaces_aliases_and_completes_huber_and_bagging():
    base = {"target": "log1p", "n_estimators": 100, "early_stopping_rounds": 10,
            "params": {"objective": "l1", "colsample_bytree": 0.4, "reg_lambda": 2.0, "verbose": -1}}
    preset = candidate_preset(base, {"feature_fraction": 0.7, "lambda_l2": 0.5, "objective": "huber",
                                     "bagging_fraction": 0.9})
    assert preset["params"] == {"verbose": -1, "feature_fraction": 0.7, "lambda_l2": 0.5, "objective": "huber",
                                "alpha": tune.HUBER_ALPHA, "bagging_fraction": 0.9, "bagging_freq": 1}
    assert base["params"]["colsample_bytree"] == 0.4, "the base preset is left as it was"
    assert {k: preset[k] for k in ("target", "n_estimators", "early_stopping_rounds")} == \
        {"target": "log1p", "n_estimators": 100, "early_stopping_rounds": 10}


def test_a_base_bagging_frequency_under_its_alias_is_kept_when_bagging_fraction_is_tuned():
    """LightGBM lets the main name win: a bagging_freq 1 added beside the base's subsample_freq 5 would replace it."""
    base = {"target": "log1p", "n_estimators": 100, "early_stopping_rounds": 10,
            "params": {"objective": "l1", "subsample_freq": 5, "verbose": -1}}
    params = candidate_preset(base, {"bagging_fraction": 0.7})["params"]
    assert params == {"objective": "l1", "subsample_freq": 5, "verbose": -1, "bagging_fraction": 0.7}
    assert candidate_preset({**base, "params": {"subsample_freq": 0}}, {"bagging_fraction": 0.7})["params"] == \
        {"subsample_freq": 0, "bagging_fraction": 0.7, "bagging_freq": 1}, "off (0): switched on, as before"


def test_the_runs_lgb_params_stay_fixed_while_tuning_and_the_run_reproduces_the_study(synthetic):
    data, work = synthetic
    fixed = {"num_leaves": 7, "min_child_samples": 25,  # an alias of min_data_in_leaf: it replaces the base's key
             "bagging_freq": 0}  # kept, though bagging_fraction is searched
    summary = _tune(data, work, lgb_params=fixed)
    preset = resolve_preset("tuned", work)
    assert preset["params"]["num_leaves"] == 7 and preset["params"]["min_child_samples"] == 25
    assert preset["params"]["bagging_freq"] == 0
    assert "min_data_in_leaf" not in preset["params"]
    space = pd.read_json(summary["preset_path"], typ="series")["info"]["search_space"]
    assert "num_leaves" not in space and "min_data_in_leaf" not in space and "lambda_l1" in space, (
        "what the run fixes is not searched")
    run = train_run(data, "amazon2025", work, "tuned_fixed", FEATURES, EMBEDDINGS, preset="tuned", lgb_params=fixed,
                    num_threads=1, tfidf_dim=8)
    assert run["cv_smape"] == pytest.approx(summary["best_smape"], abs=1e-9), "the run trains what the study scored"
    every = {key: 1 for key in tune.SEARCH_SPACE} | {"objective": "l1", "learning_rate": 0.05}
    with pytest.raises(ValueError, match="fix every parameter the search would tune"):
        _tune(data, work, name="nothing_left", lgb_params=every)


def test_the_roadmaps_seed_preset_tunes_and_trains_as_a_dict(synthetic):
    data, work = synthetic
    summary = _tune(data, work, name="from_seed", n_trials=1, base_preset="seed")
    assert summary["n_complete"] == 1, "its n_jobs gives way to the run's num_threads, as when trained by name"
    copy = resolve_preset("seed")
    run = train_run(data, "amazon2025", work, "seed_dict", FEATURES, EMBEDDINGS, preset=copy, num_threads=1,
                    tfidf_dim=8)
    assert run["params"]["num_threads"] == 1 and "n_jobs" not in run["params"]


def test_a_study_refuses_to_go_on_after_the_prices_changed(synthetic):
    data, work = synthetic
    _tune(data, work, n_trials=1)
    clipped = {**data, "train": data["train"].assign(price=data["train"]["price"].clip(upper=30.0))}
    with pytest.raises(ValueError, match="another setup") as err:
        _tune(clipped, work, n_trials=1)
    assert "train.csv / test.csv cells, or 01_extract's runs, changed since the study began" in str(err.value)


def test_a_study_whose_trials_all_failed_takes_the_corrected_setup(synthetic):
    """A bad lgb_params value fails only in the first trial, after the study file saved its setup: the corrected
    call was then refused as 'a study of another setup' though nothing had been scored under the old one."""
    data, work = synthetic
    with pytest.raises(Exception):  # noqa: B017 - LightGBM's own error for a learning rate of 0
        _tune(data, work, n_trials=1, lgb_params={"learning_rate": 0.0})
    assert _tune(data, work, n_trials=1, lgb_params={"learning_rate": 0.1})["n_complete"] == 1
    with pytest.raises(ValueError, match="another setup"):  # once a trial is scored, the setup is the study's
        _tune(data, work, n_trials=1, lgb_params={"learning_rate": 0.2})


def test_the_study_scores_the_runs_own_bags_and_params(synthetic):
    data, work = synthetic
    own = {"bags": 2, "params": {"num_leaves": 7}}
    summary = _tune(data, work, n_trials=3, lgb_params=own["params"], learner_settings={"bags": 2})
    info = pd.read_json(summary["preset_path"], typ="series")["info"]
    assert info["learner"] == {"group_by": "", "bags": 2} and "num_leaves" not in info["search_space"]
    run = train_run(data, "amazon2025", work, "tuned_bags", FEATURES, EMBEDDINGS, preset="tuned", learner_params=own,
                    num_threads=1, tfidf_dim=8)
    assert run["cv_smape"] == pytest.approx(summary["best_smape"], abs=1e-9), "the run trains what the study scored"
    with pytest.raises(ValueError, match="not LightGBMLearner settings"):
        _tune(data, work, name="other", learner_settings={"bag": 2})
    # a LightGBMLearner setting the study takes as its own argument: the run's, not "not LightGBMLearner settings"
    with pytest.raises(ValueError, match=r"learner_params sets \['group_by'\].*-p group_by <value>"):
        _tune(data, work, name="other", learner_settings={"group_by": "unit_family"})


def test_03_checks_its_learner_params_before_it_spends_the_tuning_budget(synthetic, tmp_path):
    from amzkit.app import runners
    from amzkit.app.parameters import check_parameters, stage_parameters

    data, work = synthetic
    (tmp_path / "data").mkdir()
    for split, frame in data.items():
        frame.to_csv(tmp_path / "data" / f"{split}.csv", index=False)
    values = {**stage_parameters("03_train"), "data_dir": str(tmp_path / "data"), "work_dir": str(work),
              "run_name": "typo", "features": FEATURES, "embeddings": EMBEDDINGS, "tune_trials": 2,
              "learner_params": {"bag": 3}}
    ctx = runners.setup(check_parameters(values, "03_train"), "03_train")
    with pytest.raises((TypeError, ValueError), match="bag"):
        runners.run_train(ctx)
    assert not tuning_paths(work, "tuned-typo")["study"].exists(), "no trial ran"


@pytest.mark.parametrize("key", ["num_leave", "n_estimators"])
def test_a_search_space_key_the_search_cannot_tune_is_refused_before_the_study_exists(synthetic, key):
    data, work = synthetic
    with pytest.raises(ValueError, match=f"search_space names \\['{key}'\\]"):
        _tune(data, work, n_trials=1, search_space={key: ("int", 2, 9, False)})
    assert not tuning_paths(work, "tuned")["study"].exists()
    assert _tune(data, work, n_trials=1, search_space={"num_leaves": ("int", 2, 9, False)})["n_trials"] == 1


@pytest.mark.parametrize("spec, words", [(("int", 9, 2, False), "needs numbers low <= high"),
                                         (("integer", 2, 9, False), "kind 'integer' is not"),
                                         (("int", 2, 9), r"\('int', 2, 9\) is not"),
                                         (("float", 0.0, 1.0, True), r"low > 0 \(log scale\)"),
                                         (("categorical", "l1", None, False), "choices in a list")])
def test_a_search_space_entry_optuna_cannot_draw_is_refused_before_the_study_exists(synthetic, spec, words):
    """Refused inside the first trial, the study file would hold it: the corrected call was 'another setup'."""
    data, work = synthetic
    with pytest.raises(ValueError, match=f"search_space 'num_leaves': .*{words}"):
        _tune(data, work, n_trials=1, search_space={"num_leaves": spec})
    assert not tuning_paths(work, "tuned")["study"].exists()


def test_a_tune_that_fails_before_its_first_trial_leaves_no_folds(synthetic):
    data, work = synthetic
    with pytest.raises(FileNotFoundError, match="no embedding run 'plantd'"):
        tune_preset(data, "amazon2025", work, "t", FEATURES, ["plantd"], n_trials=2, timeout_minutes=None,
                    n_folds=3, progress=False)
    assert not (work / "03_train" / "folds.csv").exists()  # a 03 with n_folds 5 after it is not refused


def test_the_tuning_plot_keeps_a_failed_trial_from_flattening_the_others(tmp_path):
    from amzkit.stages.tune import plot_tuning

    paths = tuning_paths(tmp_path, "tuned")
    paths["trials"].parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"number": [0, 1, 2, 3, 4], "state": ["complete", "complete", "complete", "pruned", "complete"],
                  "smape": [40.0, 39.5, 75.9, np.nan, 39.1], "fold_mean_smape": [40.0, 39.5, 75.9, 41.0, 39.1],
                  "base": [True, False, False, False, False]}).to_csv(paths["trials"], index=False)
    ax = plot_tuning(tmp_path, "tuned").axes[0]
    low, high = ax.get_ylim()
    assert 39.1 > low and 41.0 < high < 75.9  # the trials near the best fill the axis; the failed one is marked
    assert any("above the axis (1: worse than" in t.get_text() for t in ax.get_legend().get_texts())
    assert ax.get_title() == "tuned: best 39.100 in 5 trials"


def test_total_trials_counts_the_study_in_all_and_a_finished_budget_runs_none_again(synthetic, monkeypatch):
    data, work = synthetic
    first = _tune(data, work, n_trials=2, total_trials=True)
    again = _tune(data, work, n_trials=2, total_trials=True)
    assert (first["n_new"], again["n_new"], again["n_trials"]) == (2, 0, 2)
    assert again["best_smape"] == first["best_smape"]
    assert _tune(data, work, n_trials=3, total_trials=True)["n_new"] == 1  # a larger count tunes on
    # a session whose time budget ran out after one trial (optimize returns early): the same budget runs none again
    import optuna

    real_optimize = optuna.study.Study.optimize
    monkeypatch.setattr(optuna.study.Study, "optimize",
                        lambda self, func, n_trials=None, **kw: real_optimize(self, func, n_trials=1, **kw))
    assert _tune(data, work, "timed", n_trials=3, total_trials=True)["n_new"] == 1
    monkeypatch.undo()
    assert _tune(data, work, "timed", n_trials=3, total_trials=True)["n_new"] == 0
    assert _tune(data, work, "timed", n_trials=3, total_trials=True, timeout_minutes=60)["n_new"] == 2


def test_03_run_again_after_a_stop_in_its_folds_resumes_them_without_tuning_again(synthetic, tmp_path, monkeypatch,
                                                                                  capsys):
    from amzkit.app import runners
    from amzkit.app.parameters import check_parameters, stage_parameters
    from amzkit.stages import train as train_stage

    data, work = synthetic
    (tmp_path / "data").mkdir()
    for split, frame in data.items():
        frame.to_csv(tmp_path / "data" / f"{split}.csv", index=False)
    values = {**stage_parameters("03_train"), "data_dir": str(tmp_path / "data"), "work_dir": str(work),
              "run_name": "t", "features": FEATURES, "embeddings": EMBEDDINGS, "tune_trials": 2, "tfidf_dim": 8,
              "num_threads": 1, "preset": "default"}
    real_cv = train_stage.cross_validate

    def stopped_after_two_folds(*args, fold_done, **kwargs):
        def done(step, state):
            fold_done(step, state)
            if step == 1:
                raise RuntimeError("the Kaggle session ended")
        return real_cv(*args, fold_done=done, **kwargs)

    monkeypatch.setattr(train_stage, "cross_validate", stopped_after_two_folds)
    with pytest.raises(RuntimeError, match="session ended"):
        runners.run_train(runners.setup(check_parameters(values, "03_train"), "03_train"))
    monkeypatch.undo()
    capsys.readouterr()
    runners.run_train(runners.setup(check_parameters(values, "03_train"), "03_train"))
    said = capsys.readouterr().out
    assert "t: resuming after 2 finished folds" in said and "no trial run again" in said
    assert len(pd.read_csv(tuning_paths(work, "tuned-t")["trials"])) == 2


def test_a_study_refuses_to_go_on_after_its_feature_columns_changed(synthetic, monkeypatch):
    """Image files replaced under the same names change no CSV cell and no 01 manifest, only the columns."""
    data, work = synthetic
    _tune(data, work, n_trials=1)
    monkeypatch.setattr(tune, "static_features_digest", lambda learner: "other pictures")
    with pytest.raises(ValueError, match="another setup.*feature columns changed"):
        _tune(data, work, n_trials=1)


def test_a_run_with_a_preset_tuned_on_its_folds_says_its_cv_is_optimistic_and_04_says_so_too(synthetic):
    data, work = synthetic
    _tune(data, work, n_trials=2)
    tuned = train_run(data, "amazon2025", work, "with_tuned", FEATURES, EMBEDDINGS, preset="tuned",
                      num_threads=1, tfidf_dim=8)
    assert "'tuned' was tuned on these folds" in tuned["cv_optimistic"]
    save_preset(work, "weak", WEAK_BASE)  # saved by hand: chosen on no folds
    base = train_run(data, "amazon2025", work, "with_base", FEATURES, EMBEDDINGS, preset="weak",
                     num_threads=1, tfidf_dim=8)
    assert "cv_optimistic" not in base
    assert "cv_optimistic" not in train_run(data, "amazon2025", work, "plain", FEATURES, EMBEDDINGS,
                                            num_threads=1, tfidf_dim=8)
    blended = ensemble(work, ["with_tuned", "with_base"])
    assert list(blended["optimistic_runs"]) == ["with_tuned"]


def test_a_preset_tuned_on_the_same_rows_in_other_folds_is_still_marked_optimistic(synthetic, tmp_path):
    """Copied into a work folder of other folds (another seed) over the same train rows: every row it is scored on
    was scored in the study that chose it, so its CV is as optimistic; 03 and 04 must say so."""
    data, work = synthetic
    _tune(data, work, n_trials=2)
    elsewhere = tmp_path / "other_folds"
    preset_path(elsewhere, "tuned").parent.mkdir(parents=True)
    preset_path(elsewhere, "tuned").write_bytes(preset_path(work, "tuned").read_bytes())
    (elsewhere / "01_extract").symlink_to(work / "01_extract")
    other = train_run(data, "amazon2025", elsewhere, "with_tuned", FEATURES, EMBEDDINGS, preset="tuned", seed=7,
                      num_threads=1, tfidf_dim=8)
    info = pd.read_json(preset_path(work, "tuned"), typ="series")["info"]
    assert other["folds_sha256"] != info["folds_sha256"] and other["train_ids_sha256"] == info["train_ids_sha256"]
    assert "'tuned' was tuned on these train rows (in other folds of them)" in other["cv_optimistic"]
    assert list(ensemble(elsewhere, ["with_tuned"])["optimistic_runs"]) == ["with_tuned"]


def test_a_preset_tuned_on_other_rows_with_the_same_fold_numbers_is_not_marked_optimistic(synthetic, tmp_path):
    # folds_sha256 digests the fold numbers alone: kfold folds of as many rows with the same seed are the same
    # numbers for any rows, so a preset copied from a work folder of other rows read as tuned on these folds
    data, work = synthetic
    _tune(data, work, n_trials=1, fold_strategy="kfold")
    rng = np.random.default_rng(8)
    other = {"train": data["train"].assign(sample_id=data["train"]["sample_id"] + 100_000,
                                           price=rng.permutation(data["train"]["price"].to_numpy())),
             "test": data["test"].assign(sample_id=data["test"]["sample_id"] + 100_000)}
    elsewhere = tmp_path / "other_rows"
    preset_path(elsewhere, "tuned").parent.mkdir(parents=True)
    preset_path(elsewhere, "tuned").write_bytes(preset_path(work, "tuned").read_bytes())
    run = train_run(other, "amazon2025", elsewhere, "with_tuned", FEATURES, [], preset="tuned",
                    fold_strategy="kfold", num_threads=1, tfidf_dim=8)
    info = pd.read_json(preset_path(work, "tuned"), typ="series")["info"]
    assert run["folds_sha256"] == info["folds_sha256"] and run["train_ids_sha256"] != info["train_ids_sha256"]
    assert "cv_optimistic" not in run


def _finished_notebook_run(data, work, tmp_path) -> dict:
    """03's notebook parameters of a run "t" on `data` (written as CSVs), trained once through the notebook's
    runner: what a rerun with tune_trials starts from."""
    from amzkit.app import runners
    from amzkit.app.parameters import check_parameters, stage_parameters

    (tmp_path / "data").mkdir()
    for split, frame in data.items():
        frame.to_csv(tmp_path / "data" / f"{split}.csv", index=False)
    values = {**stage_parameters("03_train"), "data_dir": str(tmp_path / "data"), "work_dir": str(work),
              "run_name": "t", "features": FEATURES, "embeddings": EMBEDDINGS, "tfidf_dim": 8, "num_threads": 1}
    runners.run_train(runners.setup(check_parameters(values, "03_train"), "03_train"))
    return values


def test_a_finished_03_run_killed_while_tuned_again_is_named_by_04_as_stopped(synthetic, tmp_path, monkeypatch):
    """A finished run trained again with tune_trials, killed in its tuning (tune_minutes is 30 by default), left no
    kept-folds folder: 04 and 05 used the old run without the note a kill in its features or folds gives."""
    from amzkit.app import runners
    from amzkit.app.parameters import check_parameters
    from amzkit.ml.runs import unfinished_runs

    data, work = synthetic
    values = _finished_notebook_run(data, work, tmp_path)

    def killed(*args, **kwargs):
        raise RuntimeError("the Kaggle session ended")

    monkeypatch.setattr(runners, "tune_preset", killed)
    for name in ("t", "new"):
        with pytest.raises(RuntimeError, match="session ended"):
            runners.run_train(runners.setup(check_parameters({**values, "run_name": name, "tune_trials": 2},
                                                             "03_train"), "03_train"))
    assert "rerun was stopped" in unfinished_runs(work).get("t", "")
    assert "new" not in unfinished_runs(work), "nothing of a new name exists for 04 to use or name"


def test_a_study_refuses_to_go_on_under_other_library_versions(synthetic, monkeypatch):
    """The study's setup recorded no library versions: resumed after an upgrade (a Kaggle image update between
    sessions), it ranked trials scored under two LightGBM / scikit-learn / numpy versions without a word."""
    import optuna

    data, work = synthetic
    _tune(data, work, n_trials=1)
    storage = f"sqlite:///{tuning_paths(work, 'tuned')['study'].resolve()}"
    saved = optuna.load_study(study_name="tuned", storage=storage).user_attrs["setup"]
    assert saved["libraries"] == tune.library_versions(tune.STUDY_LIBRARIES)
    real = tune.library_versions
    monkeypatch.setattr(tune, "library_versions", lambda names: {**real(names), "lightgbm": "0.0.1"})
    with pytest.raises(ValueError, match=r"another setup.*lightgbm \S+ -> 0\.0\.1.*scored under the old versions"):
        _tune(data, work, n_trials=1)
    monkeypatch.undo()
    study = optuna.load_study(study_name="tuned", storage=storage)  # a study saved before the versions were
    study.set_user_attr("setup", {k: v for k, v in saved.items() if k != "libraries"})  # is not refused, and
    assert _tune(data, work, n_trials=1)["n_trials"] == 2                                # records them from now on
    assert optuna.load_study(study_name="tuned", storage=storage).user_attrs["setup"] == saved


def test_a_finished_03_run_whose_tuning_is_refused_keeps_no_rerun_mark(synthetic, tmp_path, monkeypatch):
    """Tuned again, a finished run whose study was refused ("a study of another setup", before any of the run's files
    changed) kept the rerun mark: 04 and 05 said "a rerun was stopped" of a run nothing was replacing."""
    from amzkit.app import runners
    from amzkit.app.parameters import check_parameters
    from amzkit.ml.runs import unfinished_runs

    data, work = synthetic
    values = _finished_notebook_run(data, work, tmp_path)

    def refused(*args, **kwargs):
        raise ValueError("tuned-t.study.db is a study of another setup")

    monkeypatch.setattr(runners, "tune_preset", refused)
    with pytest.raises(ValueError, match="another setup"):
        runners.run_train(runners.setup(check_parameters({**values, "tune_trials": 2}, "03_train"), "03_train"))
    assert "t" not in unfinished_runs(work)
    monkeypatch.setattr(runners, "tune_preset", lambda *args, **kwargs: {"best_smape": 1.0, "base_smape": 1.0,
                                                                         "n_trials": 2, "n_pruned": 0, "n_new": 2})
    with pytest.raises(ValueError, match="unknown preset .tuned-t."):  # tuned, then refused in train_run
        runners.run_train(runners.setup(check_parameters({**values, "tune_trials": 2}, "03_train"), "03_train"))
    assert "t" not in unfinished_runs(work)


def test_a_fixed_lightgbm_param_yaml_reads_as_text_is_tuned_with_as_its_number(synthetic):
    """lgb_params {min_data_in_leaf: 2e1} from papermill's -y / -f or a build's params file (YAML 1.1 keeps it as the
    text '2e1'): the run takes it as 20, but the study passed the text to LightGBM and its first trial failed
    ('should be of type int, got "2e1"')."""
    data, work = synthetic
    summary = _tune(data, work, n_trials=1, lgb_params={"min_data_in_leaf": "2e1"})
    assert summary["n_complete"] == 1
    assert resolve_preset("tuned", work)["params"]["min_data_in_leaf"] == 20


def test_a_study_that_runs_no_trial_is_used_under_other_library_versions(synthetic, monkeypatch):
    """A 03 rerun whose study has its tune_trials (a rerun after a kill in the folds) was refused after a library
    upgrade as 'a study of another setup', though no trial would be scored, under two versions or any: the user was
    told to delete hours of tuning. It runs none and keeps the preset with the versions it was tuned under; a
    larger budget, which would score trials under the new versions, is still refused."""
    import json

    data, work = synthetic
    tuned = _tune(data, work, n_trials=2, total_trials=True)
    versions = tune.library_versions(tune.STUDY_LIBRARIES)
    real = tune.library_versions
    monkeypatch.setattr(tune, "library_versions", lambda names: {**real(names), "lightgbm": "0.0.1"})
    again = _tune(data, work, n_trials=2, total_trials=True)
    assert again["n_new"] == 0 and again["best_smape"] == tuned["best_smape"]
    assert json.loads(tuning_paths(work, "tuned")["preset"].read_text())["info"]["libraries"] == versions
    with pytest.raises(ValueError, match=r"another setup.*lightgbm \S+ -> 0\.0\.1"):
        _tune(data, work, n_trials=3, total_trials=True)


def test_a_study_saved_with_exponent_text_in_lgb_params_goes_on(synthetic):
    """Before 03's study took an lgb_params value YAML 1.1 keeps as text (lambda_l2: 1e-3 under papermill's -y) as
    its number, the study recorded the text in its setup's base, and its trials scored (LightGBM parses a float
    param's text): resumed by a newer kit, which records the number, it was refused as 'a study of another setup'
    ('base' differs), telling the user to delete it, though the same value was tuned with."""
    import optuna

    data, work = synthetic
    _tune(data, work, n_trials=1, lgb_params={"lambda_l2": "1e-3"})
    storage = f"sqlite:///{tuning_paths(work, 'tuned')['study'].resolve()}"
    study = optuna.load_study(study_name="tuned", storage=storage)
    saved = study.user_attrs["setup"]
    assert saved["base"]["params"]["lambda_l2"] == 0.001
    old = {**saved, "base": {**saved["base"], "params": {**saved["base"]["params"], "lambda_l2": "1e-3"}}}
    study.set_user_attr("setup", old)  # as the kit before 59dadbf saved it
    assert _tune(data, work, n_trials=1, lgb_params={"lambda_l2": "1e-3"})["n_trials"] == 2
    with pytest.raises(ValueError, match=r"another setup \(\['base'\]"):  # another value is still another setup
        _tune(data, work, n_trials=1, lgb_params={"lambda_l2": "1e-2"})


def test_a_study_goes_on_when_a_fixed_lightgbm_param_is_the_same_number_quoted(synthetic):
    """lgb_params {min_data_in_leaf: 20}, then '20' quoted (a params file written by hand, or -p lgb_params
    '{"min_data_in_leaf": "20"}'): LightGBM reads both as 20, yet the study was refused as 'of another setup'
    ('base' differs) and the user told to delete it. A study saved with the text goes on with the number too."""
    data, work = synthetic
    _tune(data, work, n_trials=1, lgb_params={"min_data_in_leaf": 20})
    assert _tune(data, work, n_trials=1, lgb_params={"min_data_in_leaf": "20"})["n_trials"] == 2
    saved = {"base": {"params": {"min_data_in_leaf": "20", "learning_rate": "0.1"}}}
    assert tune._setup_differences(saved, {"base": {"params": {"min_data_in_leaf": 20, "learning_rate": 0.1}}}) == {}
    with pytest.raises(ValueError, match=r"another setup \(\['base'\]"):  # another value is still another setup
        _tune(data, work, n_trials=1, lgb_params={"min_data_in_leaf": "21"})
