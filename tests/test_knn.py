"""The one kNN (amzkit.ml.knn) and the one constant baseline (amzkit.core.metric): what every user of them shares."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from amzkit.core.metric import constant_fold_smape, constant_oof, smape
from amzkit.ml.cv import cross_validate
from amzkit.ml.folds import make_folds
from amzkit.ml.knn import NeighbourSpace, knn_mean, unit_rows
from amzkit.ml.learners import KnnEmbedding
from amzkit.ml.transforms import KnnTargetTransform
from amzkit.stages.correlate import knn_probe
from amzkit.testing import synthetic_inputs, write_embedding_run


def test_nearest_is_brute_force_cosine_on_standardised_columns():
    rng = np.random.default_rng(0)
    reference, queries = rng.normal(size=(300, 6)), rng.normal(size=(40, 6))
    space = NeighbourSpace(block_rows=7).fit(reference)
    index, similarity = space.nearest(space.rows(queries), space.rows(reference), k=5)
    z_ref = (reference - reference.mean(0)) / reference.std(0)
    z_q = (queries - reference.mean(0)) / reference.std(0)
    cosine = unit_rows(z_q) @ unit_rows(z_ref).T
    expected = np.sort(np.argsort(-cosine, axis=1)[:, :5], axis=1)
    np.testing.assert_array_equal(np.sort(index, axis=1), expected)
    np.testing.assert_allclose(np.sort(similarity, axis=1), np.sort(-np.sort(-cosine, axis=1)[:, :5], axis=1),
                               rtol=1e-5)


def test_a_one_column_input_finds_neighbours_by_value_not_by_sign():
    values = np.array([[-3.0], [-1.0], [0.5], [2.0], [2.1]], dtype=np.float32)
    space = NeighbourSpace().fit(values)
    index, _ = space.nearest(space.rows(np.array([[2.05], [-2.9]], dtype=np.float32)), space.rows(values), k=2)
    assert set(index[0]) == {3, 4} and set(index[1]) == {0, 1}
    # cosine on one column sees only the sign: -3 and -1 would be as near to -2.9 as any negative value


def test_k_is_capped_at_the_reference_size_and_an_empty_reference_is_refused():
    space = NeighbourSpace().fit(np.eye(3, dtype=np.float32))
    index, _ = space.nearest(space.rows(np.eye(3, dtype=np.float32)), space.rows(np.eye(3, dtype=np.float32)), 10)
    assert index.shape == (3, 3)
    with pytest.raises(ValueError, match="no reference rows"):
        space.nearest(space.rows(np.eye(3, dtype=np.float32)), np.empty((0, 3), np.float32), 2)
    with pytest.raises(ValueError, match="non-empty"):
        NeighbourSpace().fit(np.empty((0, 3)))


def test_the_probe_the_learner_and_the_fold_feature_share_one_neighbour_search(tmp_path):
    """02's probe, the knn learner and the run:knn:K feature give the same neighbour means on the same rows."""
    rng = np.random.default_rng(3)
    n = 240
    matrix = rng.normal(size=(n, 8)).astype(np.float32)
    y = np.exp(2 + matrix[:, 0] + rng.normal(0, 0.1, n))
    folds = make_folds(y, 4, seed=0, strategy="kfold")
    probe, _ = knn_probe(matrix, np.log1p(y), folds, k=7, max_queries=n)
    ids = np.arange(n)
    write_embedding_run(tmp_path, "e", {"train": (matrix, ids), "test": (matrix[:0], ids[:0])})
    learner = KnnEmbedding(embedding="e", k=7).prepare(synthetic_inputs(y, 0, tmp_path))
    oof = cross_validate(learner, folds, progress=False)["oof"]
    np.testing.assert_allclose(np.log1p(oof), probe, rtol=1e-5)
    for fold in range(4):
        train, valid = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
        feature = KnnTargetTransform("e", matrix, 7).fit(train, y[train]).transform(valid)[:, 0]
        np.testing.assert_allclose(feature, probe[valid], rtol=1e-5)
        space = NeighbourSpace().fit(matrix[train])
        direct = knn_mean(space, space.rows(matrix[valid]), space.rows(matrix[train]), np.log1p(y[train]), 7)
        np.testing.assert_allclose(direct, probe[valid], rtol=1e-5)


def test_the_neighbour_price_feature_of_a_one_column_run_follows_its_value():
    """`laion-aesthetic:knn:K`: a one-column run's neighbours are the nearest scores."""
    rng = np.random.default_rng(4)
    score = rng.uniform(-3, 3, (500, 1)).astype(np.float32)
    y = np.exp(2 + score[:, 0])
    transform = KnnTargetTransform("laion-aesthetic", score, 10).fit(np.arange(400), y[:400])
    feature = transform.transform(np.arange(400, 500))[:, 0]
    assert np.corrcoef(feature, np.log1p(y[400:]))[0, 1] > 0.95


def test_the_constant_baseline_predicts_each_fold_by_the_other_folds_median():
    y = np.array([1.0, 2.0, 3.0, 10.0, 20.0, 30.0])
    folds = np.array([0, 0, 0, 1, 1, 1])
    np.testing.assert_allclose(constant_oof(y, folds), [20, 20, 20, 2, 2, 2])
    scores = constant_fold_smape(y, folds)
    assert scores == pytest.approx([smape(y[:3], [20] * 3), smape(y[3:], [2] * 3)])


def test_a_runs_constant_median_is_the_shared_baseline(tmp_path):
    from amzkit.stages.train import train_run

    rng = np.random.default_rng(5)
    n = 300
    text = [f"Item Name: thing {i}\nValue: 1.0\nUnit: Count" for i in range(n + 20)]
    data = {"train": pd.DataFrame({"sample_id": np.arange(n), "catalog_content": text[:n], "image_link": "",
                                   "price": np.exp(rng.normal(2.5, 0.7, n))}),
            "test": pd.DataFrame({"sample_id": np.arange(n, n + 20), "catalog_content": text[n:], "image_link": ""})}
    metrics = train_run(data, "amazon2025", tmp_path, "ridge", learner="ridge_tfidf", embeddings=[])
    folds = pd.read_csv(tmp_path / "03_train" / "folds.csv")["fold"].to_numpy()
    y = data["train"]["price"].to_numpy()
    assert metrics["constant_median_smape"] == pytest.approx(np.mean(constant_fold_smape(y, folds)))


@pytest.mark.parametrize("k, words", [("20", r"got '20' \(a string: write it without quotes"), (0, "got 0$"),
                                      (2.5, "got 2.5$"), (True, "got True$")])
def test_a_k_that_is_no_whole_number_of_neighbours_is_refused_saying_why(tmp_path, k, words):
    with pytest.raises(ValueError, match=r"needs k, a whole number of neighbours >= 1, " + words):
        KnnEmbedding(embedding="e", k=k).prepare(synthetic_inputs(np.ones(10), 0, tmp_path))


@pytest.mark.parametrize("block_rows", [0, 2.5, "512"])
def test_knn_block_rows_must_be_a_whole_number(tmp_path, block_rows):
    # 0 ended in range()'s "arg 3 must not be zero" deep in the search
    with pytest.raises(ValueError, match=r"block_rows must be a whole number >= 1"):
        KnnEmbedding(embedding="e", k=5, block_rows=block_rows).prepare(synthetic_inputs(np.ones(10), 0, tmp_path))
