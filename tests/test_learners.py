"""More learners for 03_train: kNN on an embedding, ridge on TF-IDF, optional XGBoost / CatBoost; each a run
in the shared folds that 04_ensemble can blend with LightGBM runs."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from amzkit.core.io import rows_sha256
from amzkit.ml.boosters import CATBOOST, booster_params
from amzkit.ml.featureset import FeatureSet
from amzkit.ml.learners import LEARNERS, KnnEmbedding, available_learners, get_learner, importable
from amzkit.ml.runs import run_predictions_sha256
from amzkit.ml.transforms import FoldTransform
from amzkit.ml.trees import XGBoostLearner
from amzkit.stages.ensemble import ensemble
from amzkit.stages.train import train_run
from amzkit.stages.train_plots import plot_importance
from amzkit.testing import feature_learner, synthetic_inputs, write_embedding_run

FAST = {"learning_rate": 0.1, "num_leaves": 15, "min_data_in_leaf": 10}
PRICE_WORDS = {"budget": 3.0, "basic": 8.0, "premium": 40.0, "luxury": 150.0}
FILLER = ["soft", "blue", "steel", "travel", "kitchen", "home", "pack", "classic", "daily", "fresh"]
OPTIONAL = {name: entry.requires[0] for name, entry in LEARNERS.items() if name in ("xgboost", "catboost")}


def learner_run(data, schema, work, run_name, learner, **params):
    """A run of `learner` with its own parameters (what 03 does with -p learner_params)."""
    shared = {"embeddings": [], **{k: params.pop(k) for k in ("n_folds", "features", "tfidf_dim") if k in params}}
    return train_run(data, schema, work, run_name, learner=learner, learner_params=params, **shared)


def prepared_knn(matrix: np.ndarray, work, k: int, n_train: int) -> KnnEmbedding:
    """A knn learner prepared on `matrix` (train rows then test rows) written as an 01 run."""
    ids = np.arange(len(matrix))
    write_embedding_run(work, "e", {"train": (matrix[:n_train], ids[:n_train]),
                                    "test": (matrix[n_train:], ids[n_train:])})
    inputs = synthetic_inputs(np.ones(n_train), len(matrix) - n_train, work)
    return KnnEmbedding(embedding="e", k=k).prepare(inputs)


def world(n_train: int = 500, n_test: int = 100, seed: int = 0) -> dict:
    """A 2025-schema pair whose item names carry a price word, and a planted cluster embedding.

    Rows fall in 25 clusters; a cluster fixes the price level (so neighbours share a price) and the
    embedding is the cluster centre plus noise. Texts name one of four price words plus filler.
    """
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    ids = rng.permutation(np.arange(10_000, 10_000 + n))
    cluster = rng.integers(0, 25, n)
    centres = rng.normal(size=(25, 16)).astype(np.float32)
    embedding = centres[cluster] + rng.normal(0, 0.3, (n, 16)).astype(np.float32)
    level = np.exp(rng.normal(2.5, 1.0, 25))[cluster]
    word = rng.choice(list(PRICE_WORDS), n)
    names = [f"{w} {' '.join(rng.choice(FILLER, 3))} item" for w in word]
    text = [f"Item Name: {name}\nValue: 1.0\nUnit: Count" for name in names]
    train = pd.DataFrame({"sample_id": ids[:n_train], "catalog_content": text[:n_train], "image_link": "",
                          "price": level[:n_train] * np.exp(rng.normal(0, 0.15, n_train))})
    word_price = np.array([PRICE_WORDS[w] for w in word]) * np.exp(rng.normal(0, 0.15, n))
    test = pd.DataFrame({"sample_id": ids[n_train:], "catalog_content": text[n_train:], "image_link": ""})
    return {"data": {"train": train, "test": test}, "embedding": embedding, "word_price": word_price[:n_train]}


@pytest.fixture()
def planted(tmp_path):
    w = world()
    data = w["data"]
    n_train = len(data["train"])
    write_embedding_run(tmp_path, "planted", {
        "train": (w["embedding"][:n_train], data["train"]["sample_id"].to_numpy()),
        "test": (w["embedding"][n_train:], data["test"]["sample_id"].to_numpy())})
    return w, tmp_path


def test_knn_on_a_planted_embedding_beats_the_constant(planted):
    w, work = planted
    m = learner_run(w["data"], "amazon2025", work, "knn", learner="knn", embedding="planted", k=10)
    assert m["learner"] == "knn" and m["embeddings"] == ["planted"] and m["k"] == 10
    assert m["cv_smape"] < 0.5 * m["constant_median_smape"], (m["cv_smape"], m["constant_median_smape"])
    test = pd.read_csv(work / "03_train" / "knn" / "test_pred.csv")
    assert len(test) == 100 and np.isfinite(test["pred"]).all() and (test["pred"] > 0).all()


def test_knn_refuses_without_an_embedding_and_rows_without_one_get_the_median(planted, tmp_path):
    w, work = planted
    with pytest.raises(ValueError, match="embedding="):
        learner_run(w["data"], "amazon2025", work, "knn", learner="knn")
    matrix = w["embedding"].copy()
    matrix[:5] = np.nan  # rows without an embedding
    y = w["data"]["train"]["price"].to_numpy()
    rows = np.arange(5, 400)
    knn = prepared_knn(matrix, tmp_path, 5, 500).fit(np.arange(0, 400), y[:400])
    pred = knn.predict(np.arange(0, 10))
    np.testing.assert_allclose(pred[:5], np.expm1(np.median(np.log1p(y[:400]))))
    assert np.isfinite(pred).all()
    assert len(knn.y_log_) == len(rows)  # rows without an embedding are never neighbours
    with pytest.raises(ValueError, match="k 395 is not below the 395 training rows of a fold with an embedding"):
        prepared_knn(matrix, tmp_path, 395, 500).fit(np.arange(0, 400), y[:400])


def test_knn_with_too_large_a_k_suggests_one_the_fold_can_give(tmp_path):
    """With the default k 20 on a fold of 16 rows it said 'pass a k well below it, e.g. "k": 20'."""
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(20, 4)).astype(np.float32)
    y = np.exp(rng.normal(2, 1, 20))
    with pytest.raises(ValueError, match=r'k 20 is not below the 16 training rows .*"k": 3\}'):
        prepared_knn(matrix, tmp_path, 20, 20).fit(np.arange(16), y[:16])


def test_knn_with_k_1_on_training_rows_returns_their_own_target(tmp_path):
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(50, 8)).astype(np.float32)
    y = np.exp(rng.normal(2, 1, 50))
    rows = np.arange(50)
    np.testing.assert_allclose(prepared_knn(matrix, tmp_path, 1, 50).fit(rows, y).predict(rows), y, rtol=1e-5)


def test_knn_neighbours_count_by_their_sample_weight(tmp_path):
    matrix = np.array([[0.0], [0.1], [0.2], [5.0]], dtype=np.float32)  # rows 0 and 1 are row 2's two neighbours
    y = np.array([10.0, 100.0, 1.0, 1.0])
    knn = prepared_knn(matrix, tmp_path, 2, 3)
    train = np.array([0, 1, 3])  # row 3 is far from row 2: not a neighbour
    plain = knn.fit(train, y[train]).predict(np.array([2]))
    assert plain[0] == pytest.approx(np.expm1((np.log1p(10) + np.log1p(100)) / 2))
    weighted = knn.fit(train, y[train], weight=np.array([1.0, 1e-6, 1.0])).predict(np.array([2]))
    assert weighted[0] == pytest.approx(10.0, rel=1e-4), "a pseudo-label of weight ~0 barely counts"


def test_knn_on_a_one_column_run_finds_neighbours_by_value(tmp_path):
    """A one-column run (laion-aesthetic) has no direction: cosine would see only its sign."""
    rng = np.random.default_rng(1)
    score = rng.uniform(-3, 3, (400, 1)).astype(np.float32)
    y = np.exp(2.0 + score[:, 0])  # price follows the score, on both sides of zero
    knn = prepared_knn(score, tmp_path, 5, 400).fit(np.arange(300), y[:300])
    pred = knn.predict(np.arange(300, 400))
    assert np.corrcoef(np.log(pred), np.log(y[300:]))[0, 1] > 0.95


def test_ridge_tfidf_on_price_words_beats_the_constant(tmp_path):
    w = world(seed=1)
    data = {"train": w["data"]["train"].assign(price=w["word_price"]), "test": w["data"]["test"]}
    m = learner_run(data, "amazon2025", tmp_path, "ridge", learner="ridge_tfidf", alpha=0.3)
    assert m["learner"] == "ridge_tfidf" and m["features"] == ["text"]
    assert m["cv_smape"] < 0.5 * m["constant_median_smape"], (m["cv_smape"], m["constant_median_smape"])


def test_learner_runs_share_folds_with_lightgbm_runs_and_blend(planted):
    w, work = planted
    data = w["data"]
    lgbm = train_run(data, "amazon2025", work, "lgbm", ["text_stats"], ["planted"], lgb_params=FAST, num_threads=1)
    ridge = learner_run(data, "amazon2025", work, "ridge", learner="ridge_tfidf")
    knn = learner_run(data, "amazon2025", work, "knn", learner="knn", embedding="planted")
    assert lgbm["folds_sha256"] == ridge["folds_sha256"] == knn["folds_sha256"]
    runs_log = pd.read_csv(work / "runs.csv")
    assert runs_log["run"].tolist() == ["lgbm", "ridge", "knn"]
    assert runs_log["learner"].tolist() == ["lightgbm", "ridge_tfidf", "knn"]
    assert json.loads(runs_log["embeddings"][2]) == ["planted"]
    m = ensemble(work, [])
    assert m["runs"] == ["knn", "lgbm", "ridge"]
    assert m["cv_smape"] <= m["best_single_smape"] + 1.0
    # what 05 checks: the test rows every run predicted, and each run's predictions as 04 blended them
    made_for = rows_sha256(data["test"], "sample_id")
    assert lgbm["test_rows_sha256"] == ridge["test_rows_sha256"] == m["test_rows_sha256"] == made_for
    trained_on = rows_sha256(data["train"], "sample_id")
    assert lgbm["train_rows_sha256"] == ridge["train_rows_sha256"] == m["train_rows_sha256"] == trained_on
    assert m["run_predictions_sha256"] == {name: run_predictions_sha256(work, name) for name in m["runs"]}
    with pytest.raises(ValueError, match="share folds") as err:
        learner_run(data, "amazon2025", work, "other", learner="ridge_tfidf", n_folds=3)
    assert "Rerun with -p n_folds 5, or use another work_dir" in str(err.value)
    assert "sha256" not in str(err.value)  # the settings, not folds.json's digest of the folds


def test_unknown_and_missing_optional_learners_are_explained(tmp_path, monkeypatch):
    assert {"lightgbm", "ridge_tfidf", "knn", "xgboost", "catboost", "mlp", "finetune"} <= set(LEARNERS)
    assert {"lightgbm", "ridge_tfidf", "knn"} <= set(available_learners())
    with pytest.raises(ValueError, match="unknown learner 'xgb'"):
        get_learner("xgb")
    monkeypatch.setitem(sys.modules, "xgboost", None)  # as if not installed
    assert not importable("xgboost") and "xgboost" not in available_learners()
    with pytest.raises(ImportError, match="pip install xgboost"):
        learner_run(world()["data"], "amazon2025", tmp_path, "xgboost", learner="xgboost")


# --- XGBoost / CatBoost: the wrappers against stand-in modules, the real thing when installed ----------------

class _StandIn:
    """Records what the wrapper passes; predicts the training mean (of log1p target)."""

    seen: list[dict] = []

    def __init__(self, learning_rate=None, **kwargs):  # a named keyword, as the libraries' constructors have
        self.kwargs = {**kwargs, "learning_rate": learning_rate}

    def fit(self, x, y, eval_set=None, **kwargs):
        _StandIn.seen.append({"kwargs": self.kwargs, "fit": kwargs, "n_fit": len(x), "eval_set": eval_set})
        self.best_iteration = self.tree_count_ = 10
        self.n_features_ = x.shape[1]
        self.feature_importances_ = np.zeros(x.shape[1])
        self.mean_ = float(np.mean(y))
        return self

    def predict(self, x, **kwargs):
        return np.full(len(x), self.mean_)

    def save_model(self, path):
        Path(path).write_text(json.dumps({"mean": self.mean_}))

    def get_best_iteration(self):
        return 9

    def get_feature_importance(self):
        return np.zeros(self.n_features_)


@pytest.mark.parametrize("name, module, attr", [("xgboost", "xgboost", "XGBRegressor"),
                                                ("catboost", "catboost", "CatBoostRegressor")])
def test_tree_wrappers_hold_out_training_rows_for_early_stopping(monkeypatch, tmp_path, name, module, attr):
    fake = types.ModuleType(module)
    setattr(fake, attr, _StandIn)
    monkeypatch.setitem(sys.modules, module, fake)
    _StandIn.seen = []
    w = world()
    m = learner_run(w["data"], "amazon2025", tmp_path, name, learner=name, features=["text_stats"],
                    params={"learning_rate": 0.2})
    assert m["learner"] == name and m["features"] == ["text_stats"] and m["n_features"] > 0
    assert len(_StandIn.seen) == 10  # per fold: early stopping on held-out training rows, then the refit
    folds = pd.read_csv(tmp_path / "03_train" / "folds.csv")["fold"].to_numpy()
    for fold in range(5):
        stopping, refit = _StandIn.seen[2 * fold], _StandIn.seen[2 * fold + 1]
        eval_set = stopping["eval_set"][0] if isinstance(stopping["eval_set"], list) else stopping["eval_set"]
        training = int((folds != fold).sum())
        assert stopping["n_fit"] + len(eval_set[0]) == training  # the training folds, split for early stopping
        assert 0.05 * training <= len(eval_set[0]) <= 0.15 * training
        assert refit["eval_set"] is None and refit["n_fit"] == training
    call = _StandIn.seen[0]
    assert call["kwargs"]["learning_rate"] == 0.2  # user params override the defaults
    loss = "objective" if name == "xgboost" else "loss_function"
    assert call["kwargs"][loss] in ("reg:absoluteerror", "MAE")
    # the importance table and plot say what the library measured: CatBoost's default is no split gain
    table = pd.read_csv(tmp_path / "03_train" / name / "feature_importance.csv")
    kind = {"xgboost": "gain", "catboost": "prediction_values_change"}[name]
    assert list(table.columns) == ["feature", kind, "group"] and len(table) == m["n_features"]
    fig = plot_importance(tmp_path, name)
    assert fig.axes[0].get_xlabel() == f"{kind.replace('_', ' ')} (mean over folds)"


def test_tree_wrapper_fits_per_fold_transforms_on_training_rows_only():
    seen = []

    class Spy(FoldTransform):
        names = ["spy"]

        def fit(self, rows, y):
            seen.append(rows.copy())
            return self

        def transform(self, rows):
            return np.zeros((len(rows), 1), np.float32)

    class Recorder(XGBoostLearner):
        def _estimator(self):
            return _StandIn

        def _train(self, x, y, weight, x_valid, y_valid, rounds, seed):
            return types.SimpleNamespace(predict=lambda x: np.zeros(len(x)))

    features = FeatureSet(np.zeros((120, 1), np.float32), ["zero"], [], [Spy()], n_train=100)
    rows = np.arange(0, 80)
    pseudo = np.arange(100, 110)  # labelled test rows train the model but never the fold transforms
    feature_learner(features, np.ones(100), learner=Recorder, refit=False).fit(np.concatenate([rows, pseudo]),
                                                                             np.ones(90))
    assert len(seen) == 1 and np.array_equal(seen[0], rows)


@pytest.mark.parametrize("name", sorted(OPTIONAL))
def test_installed_tree_learners_beat_the_constant(tmp_path, name):
    pytest.importorskip(OPTIONAL[name], reason=f"{name} not installed (optional: pip install {name})")
    w = world()
    data = {"train": w["data"]["train"].assign(price=w["word_price"]), "test": w["data"]["test"]}
    small = {"n_estimators": 300} if name == "xgboost" else {"iterations": 300}
    m = learner_run(data, "amazon2025", tmp_path, name, learner=name, features=["keywords", "tfidf"],
                    tfidf_dim=16, params=small)
    assert m["cv_smape"] < 0.7 * m["constant_median_smape"]
    table = pd.read_csv(tmp_path / "03_train" / name / "feature_importance.csv")
    assert table.columns[1] == {"xgboost": "gain", "catboost": "prediction_values_change"}[name]
    assert table.iloc[:, 1].max() > 0  # the models split on something


def planted_feature_set(n_train: int = 400, n_test: int = 50, seed: int = 0) -> tuple[FeatureSet, np.ndarray]:
    """Eight numeric columns, two of which set the price (log-linear) with noise: a tree learner's toy problem."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_train + n_test, 8)).astype(np.float32)
    y = np.exp(2.0 + 0.8 * x[:n_train, 0] - 0.5 * x[:n_train, 1] + rng.normal(0, 0.3, n_train))
    return FeatureSet(x, [f"c{i}" for i in range(8)], [], [], n_train=n_train), y


def test_bagged_lightgbm_averages_one_model_per_successive_seed():
    features, y = planted_feature_set()
    rows, test_rows = np.arange(300), np.arange(300, 450)
    bagged = feature_learner(features, y, bags=3, params=FAST).fit(rows, y[rows])
    single = feature_learner(features, y, params=FAST).fit(rows, y[rows])
    assert [int(model.params["seed"]) for model in bagged.model_] == [42, 43, 44]
    x = features.matrix(test_rows)
    raw = [model.predict(x) for model in bagged.model_]
    assert min(np.abs(a - b).max() for i, a in enumerate(raw) for b in raw[i + 1:]) > 1e-3  # the seeds differ
    np.testing.assert_allclose(bagged.predict(test_rows), np.expm1(np.mean(raw, axis=0)), rtol=1e-6)
    # bag 0 is the unbagged model: bags=1 (the default) gives the numbers it always gave
    np.testing.assert_allclose(single.predict(test_rows), np.expm1(raw[0]), rtol=1e-6)
    importance = bagged.feature_importance()
    np.testing.assert_allclose(importance.to_numpy(),
                               np.mean([m.feature_importance("gain") for m in bagged.model_], axis=0))


def test_bags_move_a_users_explicit_lightgbm_seeds():
    # LightGBM lets bagging_seed / feature_fraction_seed override `seed`: left as given, every bag would draw the
    # same rows and columns (identical models when nothing else is random)
    features, y = planted_feature_set()
    rows, test_rows = np.arange(300), np.arange(300, 450)
    params = {**FAST, "bagging_fraction": 0.7, "bagging_freq": 1, "feature_fraction": 0.6, "bagging_seed": 7,
              "feature_fraction_seed": 9}
    bagged = feature_learner(features, y, bags=2, params=params).fit(rows, y[rows])
    assert [int(m.params["bagging_seed"]) for m in bagged.model_] == [7, 8]
    assert [int(m.params["feature_fraction_seed"]) for m in bagged.model_] == [9, 10]
    x = features.matrix(test_rows)
    first, second = (model.predict(x) for model in bagged.model_)
    assert np.abs(first - second).max() > 1e-3
    # bag 0 keeps the user's seeds exactly: bags=1 gives the model the same params always gave
    single = feature_learner(features, y, params=params).fit(rows, y[rows])
    np.testing.assert_allclose(single.predict(test_rows), np.expm1(first), rtol=1e-6)


@pytest.mark.parametrize("name, module, attr, seed_key", [("xgboost", "xgboost", "XGBRegressor", "random_state"),
                                                          ("catboost", "catboost", "CatBoostRegressor", "random_seed")])
def test_bagged_tree_wrappers_stop_early_and_refit_once_per_seed(monkeypatch, tmp_path, name, module, attr, seed_key):
    fake = types.ModuleType(module)
    setattr(fake, attr, _StandIn)
    monkeypatch.setitem(sys.modules, module, fake)
    _StandIn.seen = []
    learner_run(world()["data"], "amazon2025", tmp_path, name, learner=name, features=["text_stats"], bags=2)
    assert len(_StandIn.seen) == 5 * 2 * 2  # per fold, per seed: early stopping, then the refit
    folds = pd.read_csv(tmp_path / "03_train" / "folds.csv")["fold"].to_numpy()
    for fold in range(5):
        calls = _StandIn.seen[4 * fold: 4 * fold + 4]
        assert [call["kwargs"][seed_key] for call in calls] == [42, 42, 43, 43]
        assert [call["eval_set"] is None for call in calls] == [False, True, False, True]
        assert calls[1]["n_fit"] == calls[3]["n_fit"] == int((folds != fold).sum())  # training rows only


def test_bagged_runs_keep_every_model_and_record_bags(planted):
    w, work = planted
    m = learner_run(w["data"], "amazon2025", work, "bagged", learner="lightgbm", features=["keywords"], bags=2,
                    params=FAST)
    assert m["bags"] == 2  # in the metrics, and in the fingerprint a resumed run must match
    models = work / "03_train" / "bagged" / "models"
    assert sorted(p.name for p in models.iterdir()) == sorted(
        [f"fold{k}.txt" for k in range(5)] + [f"fold{k}_bag1.txt" for k in range(5)])
    learner_run(w["data"], "amazon2025", work, "bagged", learner="lightgbm", features=["keywords"], bags=1,
                params=FAST)  # the same run again with one model per fold: no bag-1 models of the old one stay
    assert sorted(p.name for p in models.iterdir()) == [f"fold{k}.txt" for k in range(5)]


class _ModelWriter:
    """A fitted model's save_model: records the file name it was given; `fail` writes half a file, then fails."""

    def __init__(self, fail: bool = False):
        self.fail, self.names = fail, []

    def save_model(self, filename: str) -> None:
        self.names.append(Path(filename).name)
        Path(filename).write_text("half a mod")
        if self.fail:
            raise OSError(28, "No space left on device")


@pytest.mark.parametrize("learner", ["lightgbm", "xgboost", "catboost"])
def test_a_fold_model_whose_write_fails_leaves_the_previous_model_whole(tmp_path, learner):
    cls = LEARNERS[learner].load()
    suffix = cls.model_suffix
    (tmp_path / f"fold0{suffix}").write_text("the whole previous model")
    model = cls()
    model.model_ = [_ModelWriter(fail=True)]
    with pytest.raises(OSError, match="No space left"):
        model.save_fold(tmp_path, 0)
    assert (tmp_path / f"fold0{suffix}").read_text() == "the whole previous model"
    assert not (tmp_path / f".fold0{suffix}").exists(), "the half-written file is removed, not left in the outputs"
    writer = _ModelWriter()
    model.model_ = [writer]
    model.save_fold(tmp_path, 0)
    assert writer.names[0].endswith(suffix)  # XGBoost chooses JSON by the name's suffix
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [f"fold0{suffix}"]
    assert (tmp_path / f"fold0{suffix}").read_text() == "half a mod"


@pytest.mark.parametrize("bags", [0, -1, 2.5, True, "2.5e0", "three", 51])  # "3" is taken as 3
def test_bags_must_be_a_whole_number_of_models(tmp_path, bags):
    with pytest.raises(ValueError, match="bags must be a whole number from 1 to 50"):
        learner_run(world(n_train=60, n_test=5)["data"], "amazon2025", tmp_path, "bad", learner="lightgbm",
                    features=["keywords"], bags=bags)


@pytest.mark.parametrize("refit", ["false", "true", 0, None])
def test_refit_must_be_true_or_false(tmp_path, refit):
    with pytest.raises(ValueError, match="refit must be true or false"):
        learner_run(world(n_train=60, n_test=5)["data"], "amazon2025", tmp_path, "bad", learner="lightgbm",
                    features=["keywords"], refit=refit)


@pytest.mark.parametrize("valid_fraction", [0.6, 0.9, -0.1, True, "6e-1", "tenth"])  # text: a bare TypeError before
def test_tree_learners_refuse_a_holdout_share_they_cannot_give(tmp_path, valid_fraction):
    # the holdout is one of round(1/valid_fraction) inner folds, so every share above 1/2 used to become 1/2
    with pytest.raises(ValueError, match=r"valid_fraction must be in \[0, 0.5\].*0.4 -> 1/2"):
        learner_run(world(n_train=60, n_test=5)["data"], "amazon2025", tmp_path, "bad", learner="lightgbm",
                    features=["keywords"], valid_fraction=valid_fraction)


def test_tree_learners_hold_out_one_of_round_1_over_f_inner_folds():
    features, y = planted_feature_set()
    for valid_fraction, share in [(0.1, 1 / 10), (0.3, 1 / 3), (0.5, 1 / 2)]:
        learner = feature_learner(features, y, valid_fraction=valid_fraction)
        watch = learner._watch_rows(np.arange(400))
        assert watch.mean() == pytest.approx(share, abs=0.02)


class _CatStandIn(_StandIn):
    """A stand-in whose constructor names CatBoost's spellings of the defaults' keys, and their aliases."""

    def __init__(self, iterations=None, n_estimators=None, depth=None, max_depth=None, learning_rate=None,
                 od_wait=None, early_stopping_rounds=None, random_seed=None, random_state=None, **kwargs):
        named = {k: v for k, v in locals().items() if k not in ("self", "kwargs", "__class__") and v is not None}
        super().__init__(**{k: v for k, v in {**kwargs, **named}.items() if k != "learning_rate"},
                         learning_rate=learning_rate)


@pytest.mark.parametrize("params, match", [
    ({"learnin_rate": 0.1}, r"'learnin_rate' is not a xgboost parameter; did you mean 'learning_rate'"),
    ({"seed": 7}, r"params 'seed' is set by the run's seed"),  # XGBoost lets it win: every bag one seed
    ({"nthread": 8}, r"params 'nthread' is set by the learner's num_threads"),
    ("max_depth=3", r"params must be a dict of xgboost parameters"),
])
def test_xgboost_params_are_checked_before_any_fold(monkeypatch, tmp_path, params, match):
    fake = types.ModuleType("xgboost")
    fake.XGBRegressor = _StandIn
    monkeypatch.setitem(sys.modules, "xgboost", fake)
    _StandIn.seen = []
    with pytest.raises(ValueError, match=match):
        learner_run(world()["data"], "amazon2025", tmp_path, "x", learner="xgboost", params=params)
    assert _StandIn.seen == []  # refused before a model was fit


def test_catboost_takes_other_spellings_of_its_defaults_and_keeps_fold_models(monkeypatch, tmp_path):
    fake = types.ModuleType("catboost")
    fake.CatBoostRegressor = _CatStandIn
    monkeypatch.setitem(sys.modules, "catboost", fake)
    _StandIn.seen = []
    m = learner_run(world()["data"], "amazon2025", tmp_path, "cat", learner="catboost", features=["text_stats"],
                    params={"n_estimators": 50, "max_depth": 4, "early_stopping_rounds": 20})
    stopping, refit = _StandIn.seen[0]["kwargs"], _StandIn.seen[1]["kwargs"]
    assert (stopping["iterations"], stopping["depth"], stopping["od_wait"]) == (50, 4, 20)
    assert not {"n_estimators", "max_depth", "early_stopping_rounds"} & set(stopping)  # one spelling each
    assert refit["iterations"] == 10 and "od_wait" not in refit  # the refit grows what early stopping kept
    assert m["params"]["iterations"] == 50 and m["params"]["loss_function"] == "MAE"  # as trained, in metrics
    models = tmp_path / "03_train" / "cat" / "models"
    assert sorted(p.name for p in models.iterdir()) == [f"fold{k}.cbm" for k in range(5)]
    with pytest.raises(ValueError, match="params give 'iterations' twice"):
        learner_run(world()["data"], "amazon2025", tmp_path, "cat2", learner="catboost",
                    params={"n_estimators": 50, "iterations": 60})
    with pytest.raises(ValueError, match="params 'random_state' is set by the run's seed"):
        learner_run(world()["data"], "amazon2025", tmp_path, "cat3", learner="catboost", params={"random_state": 1})


@pytest.mark.parametrize("name", sorted(OPTIONAL))
def test_installed_tree_learners_check_params_and_save_models_that_reload(tmp_path, name):
    module = pytest.importorskip(OPTIONAL[name], reason=f"{name} not installed (optional: pip install {name})")
    w = world()
    with pytest.raises(ValueError, match="did you mean 'max_depth'|did you mean 'depth'"):
        learner_run(w["data"], "amazon2025", tmp_path, "bad", learner=name, params={"max_dept": 3})
    m = learner_run(w["data"], "amazon2025", tmp_path, name, learner=name, features=["keywords"],
                    params={"n_estimators": 40, "max_depth": 3})
    assert m["params"]["max_depth" if name == "xgboost" else "depth"] == 3
    (saved,) = (tmp_path / "03_train" / name / "models").glob("fold0.*")
    model = module.XGBRegressor() if name == "xgboost" else module.CatBoostRegressor()
    model.load_model(str(saved))
    assert np.isfinite(model.predict(np.zeros((2, m["n_features"]), np.float32))).all()


def test_xgboost_booster_parameters_taken_through_kwargs_are_accepted():
    """dart's rate_drop / skip_drop are no constructor keywords of XGBRegressor, yet XGBoost uses them."""
    from amzkit.ml.boosters import XGBOOST, booster_params

    class Regressor:
        def __init__(self, booster=None, learning_rate=None, **kwargs):
            pass

    dart = {"booster": "dart", "rate_drop": 0.1, "skip_drop": 0.5, "sample_type": "weighted", "eta": 0.1}
    assert booster_params(XGBOOST, dart, Regressor) == {"booster": "dart", "rate_drop": 0.1, "skip_drop": 0.5,
                                                        "sample_type": "weighted", "learning_rate": 0.1}


def test_xgboost_params_are_checked_by_xgboosts_own_validation():
    """The table of booster keys XGBRegressor takes through **kwargs went stale: huber_slope (used by one objective
    only) passed and was ignored with a warning in the log, while sparse_threshold, a parameter XGBoost uses, was
    refused. XGBoost itself now says which it would not use with the run's settings, and which values it refuses."""
    xgb = pytest.importorskip("xgboost")
    from amzkit.ml.boosters import XGBOOST, booster_params

    assert booster_params(XGBOOST, {"sparse_threshold": 0.1, "eta": 0.1}, xgb.XGBRegressor) == {
        "sparse_threshold": 0.1, "learning_rate": 0.1}
    huber = {"objective": "reg:pseudohubererror", "huber_slope": 2.0}
    assert booster_params(XGBOOST, huber, xgb.XGBRegressor) == huber
    with pytest.raises(ValueError, match=r"xgboost would not use params \['huber_slope'\] with these settings"):
        booster_params(XGBOOST, {"huber_slope": 2.0}, xgb.XGBRegressor)
    with pytest.raises(ValueError, match="XGBoost refuses these params: value 2 for Parameter subsample"):
        booster_params(XGBOOST, {"subsample": 2}, xgb.XGBRegressor)


def test_prepare_with_a_built_feature_set_keeps_group_by_and_checks_the_holdout():
    # prepare_with (a benchmark's or tuner's feature set) set group_of_ to None: group_by silently trained one model
    features, y = planted_feature_set()
    features.static[:, 7] = np.arange(len(features.static)) % 2  # two groups of 200 training rows each
    learner = feature_learner(features, y, group_by="c7", params=FAST).fit(np.arange(400), y)
    assert learner.fit_report()["group_models"] == 2
    with pytest.raises(ValueError, match="group_by 'nope' is not a feature column"):
        feature_learner(features, y, group_by="nope")
    with pytest.raises(ValueError, match=r"valid_fraction must be in \[0, 0.5\]"):
        feature_learner(features, y, valid_fraction=0.9)


@pytest.mark.parametrize("name, module, attr", [("xgboost", "xgboost", "XGBRegressor"),
                                                ("catboost", "catboost", "CatBoostRegressor")])
def test_booster_params_changed_after_prepare_are_the_ones_trained(monkeypatch, name, module, attr):
    # as LightGBM's set_params(preset=...) for a tuner: params_ was read once in prepare, so every trial of a
    # hand-written XGBoost / CatBoost search trained the first params
    fake = types.ModuleType(module)
    setattr(fake, attr, _StandIn)
    monkeypatch.setitem(sys.modules, module, fake)
    features, y = planted_feature_set()
    learner = feature_learner(features, y, learner=LEARNERS[name].load(), params={"learning_rate": 0.2})
    _StandIn.seen = []
    learner.set_params(params={"learning_rate": 0.01}).fit(np.arange(300), y[:300])
    assert [call["kwargs"]["learning_rate"] for call in _StandIn.seen] == [0.01, 0.01]
    assert learner.describe()["params"]["learning_rate"] == 0.01
    with pytest.raises(ValueError, match="'learnin_rate' is not a"):
        learner.set_params(params={"learnin_rate": 0.1})


@pytest.mark.parametrize("use_best_model", [True, False])
def test_catboost_use_best_model_is_the_kits_own(use_best_model):
    # True crashed the refit (no eval_set there: "To employ param {'use_best_model': True} provide non-empty
    # 'eval_set'"); False was overridden by the early-stopping fit's use_best_model=True
    with pytest.raises(ValueError, match="params 'use_best_model' is set by the kit"):
        booster_params(CATBOOST, {"use_best_model": use_best_model}, _CatStandIn)


def test_a_tree_learner_measures_the_free_cores_once_per_prepare(tmp_path, monkeypatch):
    # the settings check resolved num_threads=0 too, so prepare sampled the machine's load (a quarter second
    # each) three times instead of once
    from amzkit.core import threads
    from amzkit.ml.trees import LightGBMLearner

    samples = []
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: samples.append(1) or 0.0)
    rng = np.random.default_rng(0)
    features = FeatureSet(rng.normal(size=(30, 3)).astype(np.float32), ["a", "b", "c"], [], [], n_train=24)
    learner = LightGBMLearner(num_threads=0).prepare_with(synthetic_inputs(rng.uniform(1, 9, 24), 6), features)
    assert len(samples) == 1 and learner.threads_ >= 1
    with pytest.raises(ValueError, match="num_threads must be 0"):
        LightGBMLearner(num_threads=-1).prepare_with(synthetic_inputs(rng.uniform(1, 9, 24), 6), features)


def test_a_learner_number_yaml_reads_as_text_is_taken_as_the_number():
    """papermill's -y / -f (YAML 1.1) read `learner_params: {alpha: 1e-3}` as the text '1e-3': sklearn's Ridge
    stopped at fit with InvalidParameterError, the torch learners with 'must be a number'."""
    import yaml
    from papermill.iorw import NoDatesSafeLoader

    from amzkit.stages.train import build_learner

    given = yaml.load("learner_params: {alpha: 1e-3, max_features: 1e3}", Loader=NoDatesSafeLoader)
    assert given["learner_params"] == {"alpha": "1e-3", "max_features": "1e3"}  # what papermill injects
    ridge = build_learner("ridge_tfidf", given["learner_params"], embeddings=[], features=[])
    assert (ridge.alpha, ridge.max_features) == (0.001, 1000) and type(ridge.max_features) is int
    knn = build_learner("knn", {"embedding": "1e1", "k": "2e1"}, embeddings=[], features=[])
    assert (knn.embedding, knn.k) == ("1e1", 20)  # a text parameter keeps its text
    assert build_learner("knn", {"embedding": "e", "k": "2.5"}, embeddings=[], features=[]).k == "2.5"
    if importable("torch") and importable("transformers"):
        tuned = build_learner("finetune", {"lr": "2e-5", "epochs": "1.5"}, embeddings=[], features=[])
        assert (tuned.lr, tuned.epochs) == (2e-5, 1.5)


def test_a_tree_learners_library_number_yaml_reads_as_text_is_taken_as_the_number():
    """`lgb_params: {num_leaves: 1e1}` (LightGBM: 'should be of type int, got "1e1"') or CatBoost's
    `params: {learning_rate: 1e-3}` ("Can't parse parameter") stopped at fit: YAML 1.1 keeps both as text."""
    import yaml
    from papermill.iorw import NoDatesSafeLoader

    from amzkit.stages.train import build_learner

    given = yaml.load("lgb_params: {num_leaves: 1e1, learning_rate: 1.0e-2, metric: l1, subsample_freq: '1'}",
                      Loader=NoDatesSafeLoader)["lgb_params"]
    assert given["num_leaves"] == "1e1"  # what papermill injects
    params = build_learner("lightgbm", {}, lgb_params=given).params
    assert params == {"num_leaves": 10, "learning_rate": 0.01, "metric": "l1", "subsample_freq": 1}
    assert type(params["num_leaves"]) is int
    if importable("catboost"):
        own = build_learner("catboost", {"params": {"learning_rate": "1e-3", "loss_function": "RMSE"}},
                            embeddings=[]).params
        assert own == {"learning_rate": 0.001, "loss_function": "RMSE"}


def test_a_lightgbm_param_given_twice_as_one_value_in_two_spellings_is_not_refused():
    """lgb_params {num_leaves: 1e1} from YAML (the text '1e1') beside learner_params' params {num_leaves: 10} is one
    value given twice: it was refused as 'given twice with two values'. Two values are still refused."""
    from amzkit.stages.train import build_learner

    for lgb, own in (("1e1", 10), ("1.0e1", "1e1"), (10, "1e+1")):
        learner = build_learner("lightgbm", {"params": {"num_leaves": own}}, lgb_params={"num_leaves": lgb})
        assert learner.params == {"num_leaves": 10}
    with pytest.raises(ValueError, match=r"given twice with two values \(lgb_params 'num_leaves': '1e1' vs"):
        build_learner("lightgbm", {"params": {"num_leaves": 11}}, lgb_params={"num_leaves": "1e1"})


def test_a_quoted_number_in_a_tree_learners_params_is_that_number():
    """'10' and 10 in lgb_params or a tree learner's params are one value to LightGBM (it reads every param as
    text), yet the kit kept the text: a resumed run's settings (its kept folds' key) differed from the same run
    with 10, so its folds were trained again; lgb_params 10 beside learner_params' params '10' was refused as two
    values; XGBoost's n_estimators '300' and CatBoost's depth '4' stopped at the first fit, after 01 and 02."""
    from amzkit.stages.train import build_learner

    quoted = build_learner("lightgbm", {}, lgb_params={"num_leaves": "10", "learning_rate": "0.05"})
    plain = build_learner("lightgbm", {}, lgb_params={"num_leaves": 10, "learning_rate": 0.05})
    assert quoted.params == plain.params and quoted.config() == plain.config()
    assert type(quoted.params["num_leaves"]) is int
    twice = build_learner("lightgbm", {"params": {"num_leaves": "10"}}, lgb_params={"num_leaves": 10})
    assert twice.params == {"num_leaves": 10}
    with pytest.raises(ValueError, match="given twice with two values"):
        build_learner("lightgbm", {"params": {"num_leaves": "11"}}, lgb_params={"num_leaves": 10})
    assert build_learner("lightgbm", {}, lgb_params={"metric": "l1", "num_leaves": " 1e1 "}).params == {
        "metric": "l1", "num_leaves": 10}  # text that writes no number stays text
    assert build_learner("xgboost", {"params": {"n_estimators": "300", "subsample": ".5"}}).params == {
        "n_estimators": 300, "subsample": 0.5}
    assert build_learner("catboost", {"params": {"depth": "4"}}).params == {"depth": 4}


def test_a_learners_signature_read_from_its_source_is_its_classes():
    """kaggle build reads a torch learner's parameters from its module's source (importing torch takes seconds):
    for every learner that defines its constructor, the same names, kinds, annotations and literal defaults."""
    import inspect

    from amzkit.ml.learners import SourceDefault, _source_init, _source_signature

    read = 0
    for entry in LEARNERS.values():
        module, _, cls = entry.target.partition(":")
        init = _source_init(module, cls)
        if init is None:  # inherits its constructor (xgboost, catboost): learner_signature imports its module
            continue
        source, loaded = _source_signature(init).parameters, inspect.signature(entry.load()).parameters
        assert list(source) == list(loaded), entry.name
        for name, param in source.items():
            assert (param.kind, param.annotation) == (loaded[name].kind, loaded[name].annotation), (entry.name, name)
            assert isinstance(param.default, SourceDefault) or param.default == loaded[name].default, (entry.name, name)
        read += 1
    assert read >= 5  # lightgbm, ridge_tfidf, knn, mlp, finetune


def test_lightgbm_params_left_empty_in_learner_params_are_none_and_text_is_refused_by_name():
    """learner_params `params:` left empty in YAML (null, LightGBMLearner's own default) stopped 03 with "'NoneType'
    object is not iterable", and params written as text with "'str' object has no attribute 'items'"."""
    from amzkit.stages.train import build_learner

    assert build_learner("lightgbm", {"params": None}, lgb_params={"num_leaves": 7}).params == {"num_leaves": 7}
    assert build_learner("lightgbm", {"params": None}).params == {}
    with pytest.raises(ValueError, match=r"learner_params' params must be a dict of LightGBM parameters, e\.g\. "
                                         r"\{\"num_leaves\": 63\}, got 'num_leaves=7'"):
        build_learner("lightgbm", {"params": "num_leaves=7"})


def test_a_single_name_in_learner_params_features_or_embeddings_is_that_name_not_its_letters():
    """learner_params {"embeddings": "minilm"} (one name, as the run's -p embeddings takes it) reached the learner as
    text, read letter by letter: "embedding 'i', 'm' is listed more than once" at build and in 03."""
    from amzkit.stages.train import build_learner

    for learner in ("lightgbm", "mlp"):
        model = build_learner(learner, {"embeddings": "minilm", "features": "quantity"})
        assert list(model.embeddings) == ["minilm"] and list(model.features) == ["quantity"]
