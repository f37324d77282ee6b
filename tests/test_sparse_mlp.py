"""sparse_mlp: an MLP whose first layer reads the sparse TF-IDF n-grams (+ numeric feature groups)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")

from amzkit.core.schema import get_schema  # noqa: E402
from amzkit.ml.base import RunInputs  # noqa: E402
from amzkit.ml.cv import cross_validate  # noqa: E402
from amzkit.ml.folds import make_folds  # noqa: E402
from amzkit.ml.learners import make_learner  # noqa: E402
from amzkit.ml.sparse_mlp import SparseMlpLearner  # noqa: E402
from amzkit.ml.torch_settings import check_sparse_mlp_settings  # noqa: E402
from amzkit.stages.train import train_run  # noqa: E402
from amzkit.testing import (  # noqa: E402
    PRICE_WORDS,
    counting_fits,
    golden_copies,
    planted_price_world,
    write_embedding_run,
)

FAST = {"features": [], "num_threads": 1, "device": "cpu", "epochs": 10, "batch_size": 16, "batch_growth": 1.0,
        "lr": 1e-2, "hidden": [32, 16]}


def planted_inputs(work, n_train=400, n_test=80, price=None) -> RunInputs:
    """planted_price_world: the price is told by one word of the item name (10% noise)."""
    data = planted_price_world(n_train, n_test, seed=0)["data"]
    if price is not None:
        data["train"]["price"] = price
    return RunInputs(data, get_schema("amazon2025"), work, seed=0)


@pytest.mark.parametrize("params", [{}, {"binary": True, "views": ["name_words", "name_chars"]},
                                    {"features": ["text_stats", "quantity"]}])
def test_sparse_mlp_learns_a_planted_name_word_signal(tmp_path, params):
    inputs = planted_inputs(tmp_path)
    folds = make_folds(inputs.y, 5, 0, "kfold")
    result = cross_validate(make_learner("sparse_mlp", **{**FAST, **params}).prepare(inputs), folds, progress=False)
    assert np.mean(result["fold_smape"]) < 0.3 * np.mean(result["fold_constant_smape"]), result["fold_smape"]
    assert result["test"].shape == (80,) and np.isfinite(result["test"]).all() and (result["test"] > 0).all()
    report = result["fit_reports"][0]
    assert 1 <= report["epochs"] <= FAST["epochs"] and len(report["holdout_smape"]) == FAST["epochs"]


def embedding_only_world(work, n_train=400, n_test=80) -> dict:
    """planted_price_world with the price words taken out of the text: only the embedding (01 run 'planted',
    e.g. a picture's) tells the price."""
    world = planted_price_world(n_train, n_test, seed=0)
    data = world["data"]
    for split in ("train", "test"):
        texts = data[split]["catalog_content"]
        for word in PRICE_WORDS:
            texts = texts.str.replace(f"Item Name: {word} ", "Item Name: ", regex=False)
        data[split]["catalog_content"] = texts
    write_embedding_run(work, "planted", {
        "train": (world["embedding"][:n_train], data["train"]["sample_id"].to_numpy()),
        "test": (world["embedding"][n_train:], data["test"]["sample_id"].to_numpy())})
    return data


def test_sparse_mlp_reads_01_embedding_runs_beside_the_n_grams(tmp_path):
    """An image model's embedding beside the text's n-grams (public 2025 #14's inputs): a price only the embedding
    tells is learnt with `embeddings`, not without; 03 records the run's embeddings."""
    data = embedding_only_world(tmp_path)
    assert not data["train"]["catalog_content"].str.contains("|".join(PRICE_WORDS)).any()
    inputs = RunInputs(data, get_schema("amazon2025"), tmp_path, seed=0)
    folds = make_folds(inputs.y, 5, 0, "kfold")
    scores = {}
    for embeddings in ([], ["planted"]):
        learner = make_learner("sparse_mlp", **{**FAST, "embeddings": embeddings}).prepare(inputs)
        result = cross_validate(learner, folds, progress=False)
        scores[len(embeddings)] = np.mean(result["fold_smape"]) / np.mean(result["fold_constant_smape"])
    assert scores[1] < 0.3 and scores[0] > 0.7, scores
    metrics = train_run(data, "amazon2025", tmp_path, "s", [], ["planted:pca:4"], learner="sparse_mlp",
                        learner_params={k: v for k, v in FAST.items() if k != "features"}, progress=False)
    assert metrics["embeddings"] == ["planted:pca:4"]
    assert metrics["cv_smape"] < 0.3 * metrics["constant_median_smape"]


class LeakySparseMlp(SparseMlpLearner):
    """Centres its nets on the mean log price of EVERY train row, validation rows included: a leak."""

    def fit(self, rows, y, weight=None):
        super().fit(rows, y, weight)
        for net in self.nets_:
            net.centre = float(np.log1p(self.inputs_.y).mean())
        return self


def fold_zero_oof(work, learner_cls, price) -> np.ndarray:
    inputs = planted_inputs(work, n_train=200, n_test=20, price=price)
    folds = make_folds(np.ones(200), 4, 0, "kfold")  # fixed folds: they must not move with the labels
    learner = learner_cls(**{**FAST, "features": ["text_stats", "brand_price"]}).prepare(inputs)
    return cross_validate(learner, folds, progress=False)["oof"][folds == 0]


def test_sparse_mlp_never_reads_the_label_of_a_row_it_scores(tmp_path):
    """Two copies of one product in fold 0 at an ordinary price, then at a price no other row has: fold 0's
    predictions are the same (brand_price, a target encoding, is fit on the training rows too)."""
    price = planted_price_world(200, 20)["data"]["train"]["price"].to_numpy()
    ordinary, distinctive, _ = golden_copies(price)
    before = fold_zero_oof(tmp_path / "a", SparseMlpLearner, ordinary)
    after = fold_zero_oof(tmp_path / "b", SparseMlpLearner, distinctive)
    np.testing.assert_array_equal(before, after)
    assert (after < 500).all()
    # the check catches a learner that does read them
    leaky = [fold_zero_oof(tmp_path / k, LeakySparseMlp, p) for k, p in (("c", ordinary), ("d", distinctive))]
    assert not np.allclose(*leaky)


def test_a_killed_sparse_mlp_run_resumes_at_fold_3_with_the_same_oof(tmp_path):
    data = planted_inputs(tmp_path, n_train=200, n_test=20).data
    whole = train_run(data, "amazon2025", tmp_path / "whole", "s", ["text_stats"], [], learner="sparse_mlp",
                      learner_params={k: v for k, v in FAST.items() if k != "features"}, progress=False)
    killed = counting_fits(SparseMlpLearner, kill_at=3)(**{**FAST, "features": ["text_stats"]})
    with pytest.raises(KeyboardInterrupt):
        train_run(data, "amazon2025", tmp_path / "killed", "s", learner=killed, progress=False)
    resumed_learner = counting_fits(SparseMlpLearner)(**{**FAST, "features": ["text_stats"]})
    resumed = train_run(data, "amazon2025", tmp_path / "killed", "s", learner=resumed_learner, progress=False)
    assert resumed_learner.fits == 3  # folds 3, 4 and 5 only
    oof = [pd.read_csv(work / "03_train" / "s" / "oof.csv")["pred"].to_numpy() for work in
           (tmp_path / "whole", tmp_path / "killed")]
    np.testing.assert_allclose(oof[0], oof[1], rtol=1e-12)
    assert resumed["cv_smape"] == pytest.approx(whole["cv_smape"], rel=1e-12)
    assert resumed["learner"] == "sparse_mlp" and resumed["features"] == ["text_stats"]


@pytest.mark.parametrize("params, words", [
    ({"views": ["name_word"]}, "views='name_word' is not one of ['name_chars', 'name_words', 'text_words'] (did "
                               "you mean 'name_words'?)"),
    ({"views": []}, "views must list text views"),
    ({"views": ["name_words", "name_words"]}, "views lists a view twice"),
    ({"hidden": []}, "hidden must list positive layer widths, e.g. [512, 128] (at least 1), got []"),
    ({"binary": "false"}, "binary must be true or false"),
    ({"batch_growth": 0.5}, "batch_growth must be a number >= 1"),
    ({"loss": "smape2"}, "loss='smape2' is not one of"),
    ({"bags": 0}, "bags must be a whole number"),
])
def test_settings_sparse_mlp_cannot_train_with_are_refused_before_any_data_and_at_build(params, words):
    """The learner refuses them as it prepares, by the torch-free rules kaggle build checks a 03 kernel with."""
    with pytest.raises(ValueError, match=r"sparse_mlp.*" + re.escape(words)):
        make_learner("sparse_mlp", **params).check_settings()
    with pytest.raises(ValueError, match=re.escape(words)):
        check_sparse_mlp_settings(params)
