"""Honest CV, checked the strongest way: wild prices planted on the rows a fold is scored on change none of that
fold's predictions (nor its model's test predictions), for every learner and every component fit in the folds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from amzkit.core.io import id_hash
from amzkit.core.schema import get_schema
from amzkit.ml import trees
from amzkit.ml.base import RunInputs
from amzkit.ml.combiners import METHODS
from amzkit.ml.cv import fit_fold
from amzkit.ml.folds import make_folds
from amzkit.ml.learners import make_learner
from amzkit.ml.pseudo import PseudoLabels
from amzkit.ml.transforms import TopKCorrTransform
from amzkit.ml.trees import LightGBMLearner
from amzkit.stages.ensemble import ensemble
from amzkit.testing import planted_price_world, write_embedding_run

N_TRAIN, N_TEST, N_FOLDS = 240, 40, 4
SCORED = 0  # the fold whose labels are planted
FOLDS = make_folds(np.ones(N_TRAIN), N_FOLDS, 0, "kfold")  # labels ignored: the folds do not move with them
TREES = {"num_threads": 1, "params": {"learning_rate": 0.1, "num_leaves": 7, "min_data_in_leaf": 5}}


def planted_inputs(work: Path, wild: bool) -> RunInputs:
    """planted_price_world's rows with its embedding as 01 run 'planted'; `wild`: the scored fold's prices
    replaced by prices from 1 to 160,000 that no text or embedding tells."""
    world = planted_price_world(N_TRAIN, N_TEST, seed=0)
    data = world["data"]
    if wild:
        scored = FOLDS == SCORED
        data["train"].loc[scored, "price"] = np.exp(np.random.default_rng(7).uniform(0, 12, scored.sum()))
    write_embedding_run(work, "planted", {
        "train": (world["embedding"][:N_TRAIN], data["train"]["sample_id"].to_numpy()),
        "test": (world["embedding"][N_TRAIN:], data["test"]["sample_id"].to_numpy())})
    return RunInputs(data, get_schema("amazon2025"), work, seed=0)


def scored_fold_predictions(work: Path, learner, wild: bool) -> tuple[np.ndarray, np.ndarray]:
    """(the scored fold's predictions, its model's test predictions) of `learner` prepared on planted_inputs."""
    result = fit_fold(learner.prepare(planted_inputs(work, wild)), FOLDS, int(np.unique(FOLDS)[SCORED]))
    return np.asarray(result["valid"]), np.asarray(result["test"])


def assert_blind_to_the_scored_labels(tmp_path: Path, make) -> None:
    plain = scored_fold_predictions(tmp_path / "plain", make(), wild=False)
    wild = scored_fold_predictions(tmp_path / "wild", make(), wild=True)
    np.testing.assert_array_equal(plain[0], wild[0], err_msg="the scored fold's predictions read its labels")
    np.testing.assert_array_equal(plain[1], wild[1], err_msg="the fold model's test predictions read its labels")


LABEL_FREE = ["quantity", "text_stats", "keywords", "brand", "dimensions", "premium_value", "materials",
              "interactions", "pack_totals"]
LIGHTGBM_CASES = {
    "label-free groups": {"features": LABEL_FREE},
    "tfidf": {"features": ["text_stats", "tfidf"], "tfidf_dim": 8},
    "twin_price": {"features": ["text_stats", "twin_price"]},
    "brand_price+material_price": {"features": ["text_stats", "brand_price", "material_price"]},
    "ridge_oof": {"features": ["text_stats", "ridge_oof"]},
    "neighbour_unit": {"features": ["text_stats", "neighbour_unit"]},
    "embedding whole": {"features": ["text_stats"], "embeddings": ["planted"]},
    "embedding pca": {"features": ["text_stats"], "embeddings": ["planted:pca:4"]},
    "embedding topk_corr": {"features": ["text_stats"], "embeddings": ["planted:topk_corr:4"]},
    "embedding knn": {"features": ["text_stats"], "embeddings": ["planted:knn:5"]},
    "bags, no refit, a larger holdout": {"features": ["text_stats", "brand_price"], "bags": 2, "refit": False,
                                         "valid_fraction": 0.3},
}


@pytest.mark.parametrize("case", list(LIGHTGBM_CASES))
def test_lightgbm_and_each_fold_fitted_group_never_read_the_scored_folds_labels(tmp_path, case):
    assert_blind_to_the_scored_labels(tmp_path, lambda: LightGBMLearner(**TREES, **LIGHTGBM_CASES[case]))


OTHER_LEARNERS = {
    "xgboost": {"features": ["text_stats", "brand_price"], "embeddings": ["planted:pca:4"], "num_threads": 1,
                "params": {"n_estimators": 60, "max_depth": 3}},
    "catboost": {"features": ["text_stats", "brand_price"], "embeddings": ["planted:pca:4"], "num_threads": 1,
                 "params": {"iterations": 60, "depth": 3}},
    "ridge_tfidf": {},
    "knn": {"embedding": "planted", "k": 5},
    "mlp": {"features": ["text_stats", "brand_price"], "embeddings": ["planted:pca:4"], "num_threads": 1,
            "epochs": 3, "device": "cpu", "refit": True},
    "mlp, 2 bags": {"features": ["text_stats", "brand_price"], "embeddings": ["planted:pca:4"], "num_threads": 1,
                    "epochs": 3, "device": "cpu", "refit": True, "bags": 2},
    "sparse_mlp": {"features": ["text_stats", "brand_price"], "views": ["name_words", "name_chars", "text_words"],
                   "num_threads": 1, "epochs": 3, "device": "cpu", "hidden": [16, 8], "bags": 2},
}


@pytest.mark.parametrize("name", list(OTHER_LEARNERS))
def test_every_other_learner_never_reads_the_scored_folds_labels(tmp_path, name):
    learner = name.split(",")[0]
    if learner in ("xgboost", "catboost", "mlp", "sparse_mlp"):
        pytest.importorskip({"mlp": "torch", "sparse_mlp": "torch"}.get(learner, learner))
    assert_blind_to_the_scored_labels(tmp_path, lambda: make_learner(learner, **OTHER_LEARNERS[name]))


class _LeakyTopK(TopKCorrTransform):
    """Picks its dimensions on every train row, the scored fold's included: what the check must catch."""

    def fit(self, rows, y):
        inputs = self.inputs
        return super().fit(np.arange(inputs.n_train), inputs.y)


class _LeakyLearner(LightGBMLearner):
    def prepare(self, inputs):
        super().prepare(inputs)
        matrix = inputs.embedding("planted")[0]
        leaky = _LeakyTopK("planted", matrix, 4)
        leaky.inputs = inputs
        self.features_.transforms.append(leaky)
        return self


def test_the_check_catches_a_component_fit_on_the_scored_folds_labels(tmp_path):
    with pytest.raises(AssertionError, match="read its labels"):
        assert_blind_to_the_scored_labels(tmp_path, lambda: _LeakyLearner(**TREES, features=["text_stats"]))


def test_finetune_never_reads_the_scored_folds_labels(tmp_path):
    pytest.importorskip("transformers")
    from amzkit.testing import save_random_bert
    from amzkit.text.format import model_texts

    world = planted_price_world(N_TRAIN, N_TEST, seed=0)["data"]
    texts = model_texts(pd.concat([world["train"], world["test"]]), get_schema("amazon2025"))
    bert = save_random_bert(tmp_path / "bert", texts)
    params = {"model": f"local-dir:{bert}", "lr": 2e-3, "epochs": 1, "refit": True, "num_threads": 1,
              "progress": False, "max_len": 32, "device": "cpu"}
    assert_blind_to_the_scored_labels(tmp_path, lambda: make_learner("finetune", **params))


def _ensemble_runs(work: Path, wild: bool) -> dict[str, np.ndarray]:
    """Three fake 03 runs (fixed predictions) whose oof.csv carries the scored fold's wild prices when `wild`; 04's
    nested predictions of the scored fold per method, and those its cv_smape scores ('best', picked inside)."""
    rng = np.random.default_rng(0)
    n, n_test = 600, 50
    ids, test_ids = np.arange(1000, 1000 + n), np.arange(5000, 5000 + n_test)
    folds = rng.permutation(np.arange(n) % 5)
    target = np.exp(rng.normal(3.0, 1.0, n))
    if wild:
        target[folds == SCORED] = np.exp(np.random.default_rng(7).uniform(0, 12, (folds == SCORED).sum()))
    truth = np.exp(rng.normal(3.0, 1.0, n))  # what the runs predict: fixed, as fold 0's OOF never read fold 0
    for i, name in enumerate(("a", "b", "c")):
        run_dir = work / "03_train" / name
        run_dir.mkdir(parents=True)
        pred = truth * np.exp(rng.normal(0, 0.2 + 0.1 * i, n))
        pd.DataFrame({"id": ids, "fold": folds, "target": target, "pred": pred}).to_csv(run_dir / "oof.csv",
                                                                                         index=False)
        pd.DataFrame({"id": test_ids, "pred": np.exp(rng.normal(3.0, 1.0, n_test))}).to_csv(
            run_dir / "test_pred.csv", index=False)
        metrics = {"run": name, "train_ids_sha256": id_hash(ids), "folds_sha256": id_hash(folds),
                   "constant_median_smape": 50.0}
        (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    all_ids = np.concatenate([ids, test_ids])
    group = pd.Series(np.where(np.arange(n + n_test) % 2, "x", "y"), index=all_ids)
    size = pd.DataFrame({"size": rng.normal(size=n + n_test),  # and a category: the ridge's indicators of it too
                         "brand": pd.Categorical(np.array(list("pqrs"))[np.arange(n + n_test) % 4])}, index=all_ids)
    out = {}
    for meta in ("ridge", "lightgbm"):
        ensemble(work, [], meta=meta, groups=group, meta_features=size, min_group_rows=50)
        methods = pd.read_csv(work / "04_ensemble" / "oof_methods.csv")
        scored = (methods["fold"] == SCORED).to_numpy()
        out |= {f"{meta}: {m}": methods[m].to_numpy()[scored] for m in METHODS}
        out[f"{meta}: best"] = pd.read_csv(work / "04_ensemble" / "oof.csv")["pred"].to_numpy()[scored]
    return out


def test_04s_nested_predictions_of_a_fold_never_read_its_labels(tmp_path):
    """Every method's nested predictions of the scored fold, and the method picked for it, stay the same when
    that fold's prices are wild: weights, meta-models, calibration factors are chosen on the other folds."""
    plain, wild = _ensemble_runs(tmp_path / "plain", False), _ensemble_runs(tmp_path / "wild", True)
    for key, values in plain.items():
        np.testing.assert_array_equal(values, wild[key], err_msg=key)


def test_per_group_models_never_read_the_scored_folds_labels(tmp_path, monkeypatch):
    monkeypatch.setattr(trees, "MIN_GROUP_ROWS", 40)  # the planted rows' groups (brands) are small

    class Checked(LightGBMLearner):
        def fit(self, rows, y, weight=None):
            super().fit(rows, y, weight)
            assert self.group_models_, "no group had a model of its own: the case checks nothing"
            return self

    assert_blind_to_the_scored_labels(tmp_path, lambda: Checked(**TREES, features=["text_stats", "brand"],
                                                                group_by="brand"))


def test_pseudo_labelled_rows_never_carry_the_scored_folds_labels_into_its_fit(tmp_path):
    """Fold f trains on test rows labelled by the source's fold-f model (given here), never on a label of fold f."""
    rows = np.arange(N_TRAIN, N_TRAIN + N_TEST // 2)
    labels = {int(f): np.full(len(rows), 10.0 + f) for f in np.unique(FOLDS)}
    pseudo = PseudoLabels(rows, labels, 0.5, "source", np.zeros(len(rows)))

    def predictions(work, wild):
        learner = LightGBMLearner(**TREES, features=["text_stats", "brand_price", "ridge_oof"])
        result = fit_fold(learner.prepare(planted_inputs(work, wild)), FOLDS, SCORED, pseudo)
        return result["valid"], result["test"]

    plain, wild = predictions(tmp_path / "plain", False), predictions(tmp_path / "wild", True)
    np.testing.assert_array_equal(plain[0], wild[0])
    np.testing.assert_array_equal(plain[1], wild[1])
