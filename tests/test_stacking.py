"""The `ridge_oof` fold group (ml.stacking): TF-IDF ridge predictions as columns, learnt inside the folds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from amzkit.core.metric import smape
from amzkit.ml.featureset import FOLD_FEATURE_GROUPS, all_feature_groups
from amzkit.ml.stacking import RidgeOofTransform, RidgeView, name_vectorizer, text_vectorizer
from amzkit.stages.train import train_run
from amzkit.testing import PRICE_WORDS, planted_price_world

WORDS = list(PRICE_WORDS)


def _world(n: int, seed: int = 0, copies: int = 1):
    """Texts whose log price is planted by one price word (+ filler), each product `copies` times over."""
    rng = np.random.default_rng(seed)
    word = rng.integers(0, len(WORDS), n)
    filler = [" ".join(rng.choice(["soft", "blue", "kitchen", "home", "fresh", "daily"], 3)) for _ in range(n)]
    texts = [f"{WORDS[w]} {f} item number{i}" for i, (w, f) in enumerate(zip(word, filler, strict=True))]
    price = np.array([PRICE_WORDS[WORDS[w]] for w in word]) * np.exp(rng.normal(0, 0.1, n))
    return np.repeat(texts, copies).tolist(), np.repeat(price, copies), np.repeat(np.arange(n), copies)


def test_ridge_columns_learn_a_planted_signal_on_unseen_rows():
    texts, price, _ = _world(300)
    train, valid = np.arange(240), np.arange(240, 300)
    transform = RidgeOofTransform({"text": RidgeView(texts, text_vectorizer)}).fit(train, price[train])
    pred = np.expm1(transform.transform(valid)[:, 0])
    assert smape(price[valid], pred) < 0.5 * smape(price[valid], np.full(60, np.median(price[train])))


def test_a_training_rows_value_never_depends_on_its_own_label():
    """Change one training row's label: its own column value stays, while the unseen rows' values move."""
    texts, price, groups = _world(200)
    train, valid = np.arange(160), np.arange(160, 200)
    views = {"text": RidgeView(texts, text_vectorizer), "name": RidgeView(texts, name_vectorizer)}
    before = RidgeOofTransform(views, groups=groups).fit(train, price[train])
    changed = price[train].copy()
    changed[7] *= 1000.0
    after = RidgeOofTransform(views, groups=groups).fit(train, changed)
    assert np.array_equal(before.transform(np.array([7])), after.transform(np.array([7])))
    assert not np.allclose(before.transform(valid), after.transform(valid))


def test_copies_of_a_product_never_feed_each_others_value():
    """Each product three times with one price, partly unreadable from its text: grouped inner folds keep a copy's
    label out of its twin's value; without groups the copies leak and the values sit far closer to the labels."""
    texts, price, groups = _world(150, seed=1, copies=3)
    rows = np.arange(len(texts))
    rng = np.random.default_rng(2)
    price = price * np.exp(rng.normal(0, 0.5, 150)).repeat(3)  # a product's own price level, shared by its copies
    leaky = RidgeOofTransform({"t": RidgeView(texts, text_vectorizer)}).fit(rows, price)
    honest = RidgeOofTransform({"t": RidgeView(texts, text_vectorizer)}, groups=groups).fit(rows, price)
    leaky_error = np.abs(leaky.transform(rows)[:, 0] - np.log1p(price)).mean()
    honest_error = np.abs(honest.transform(rows)[:, 0] - np.log1p(price)).mean()
    assert honest_error > 1.5 * leaky_error


def test_an_offset_view_learns_the_price_per_unit_and_skips_rows_without_a_quantity():
    texts, unit_price, _ = _world(300, seed=3)
    rng = np.random.default_rng(4)
    quantity = rng.choice([1.0, 6.0, 24.0], 300)
    price = unit_price * quantity
    offset = np.log1p(quantity)
    offset[:10] = np.nan
    train, valid = np.arange(10, 240), np.arange(240, 300)
    # the quantity is absent from the text: only the offset can carry it
    transform = RidgeOofTransform({"unit": RidgeView(texts, text_vectorizer, offset=offset)}).fit(
        np.arange(240), price[:240])
    assert np.isnan(transform.transform(np.arange(10))).all()
    pred = np.expm1(transform.transform(valid)[:, 0])
    plain = RidgeOofTransform({"text": RidgeView(texts, text_vectorizer)}).fit(train, price[train])
    assert smape(price[valid], pred) < 0.6 * smape(price[valid], np.expm1(plain.transform(valid)[:, 0]))


def test_too_few_rows_or_terms_leave_nan_columns_instead_of_failing():
    texts = ["a", "b", "c", "d"]
    transform = RidgeOofTransform({"name": RidgeView(texts, name_vectorizer)}).fit(np.arange(3), np.ones(3))
    assert np.isnan(transform.transform(np.arange(4))).all()


def test_ridge_oof_is_a_fold_group_that_train_run_reaches(tmp_path):
    assert "ridge_oof" in FOLD_FEATURE_GROUPS and "ridge_oof" in all_feature_groups()
    world = planted_price_world(n_train=200, n_test=40, seed=5)
    metrics = train_run(world["data"], "amazon2025", tmp_path, "stacked", ["text_stats", "pack_totals", "ridge_oof"],
                        [], lgb_params={"learning_rate": 0.1, "num_leaves": 15, "min_data_in_leaf": 10},
                        num_threads=1, progress=False)
    names = pd.read_csv(tmp_path / "03_train" / "stacked" / "feature_importance.csv").set_index("feature")["gain"]
    stacked = {"ridge_text_log_price", "ridge_name_log_price", "ridge_unit_log_price", "total_items_log"}
    assert stacked <= set(names.index)
    assert names.idxmax() in ("ridge_text_log_price", "ridge_name_log_price", "ridge_unit_log_price")  # each reads
    # the price word in the text (the unit view per its Count Value, which no longer leaves its rows out)
    assert metrics["cv_smape"] < 0.5 * metrics["constant_median_smape"]


@pytest.mark.parametrize("bad", [np.zeros(3), np.zeros(5)])
def test_groups_of_the_wrong_length_are_refused(bad):
    texts, price, _ = _world(4)
    with pytest.raises(ValueError, match="groups has"):
        RidgeOofTransform({"t": RidgeView(texts, text_vectorizer)}, groups=bad).fit(np.arange(4), price)


def test_ridges_fit_in_threads_give_the_values_of_one_thread():
    """The six ridges of a view run in threads (as many as the free cores): the same columns as one thread, bit for
    bit, for the training rows' inner-fold values and the unseen rows, an offset view with skipped rows included."""
    texts, price, groups = _world(300, seed=6, copies=2)
    offset = np.log1p(np.random.default_rng(7).choice([1.0, 6.0, np.nan], len(texts)))
    views = {"text": RidgeView(texts, text_vectorizer), "name": RidgeView(texts, name_vectorizer),
             "unit": RidgeView(texts, text_vectorizer, np.eye(2, dtype=np.float32)[np.arange(len(texts)) % 2],
                               offset)}
    train, rows = np.arange(480), np.arange(len(texts))
    serial = RidgeOofTransform(views, groups=groups, num_threads=1).fit(train, price[train]).transform(rows)
    threaded = RidgeOofTransform(views, groups=groups, num_threads=4).fit(train, price[train]).transform(rows)
    assert np.isfinite(serial).sum() > 0.6 * serial.size
    np.testing.assert_array_equal(threaded, serial)


def _fold_values(transform: RidgeOofTransform, price: np.ndarray, folds: np.ndarray) -> list[np.ndarray]:
    """Each outer fold's columns (the training rows' inner-fold values, then the held rows'), one transform."""
    rows = np.arange(len(price))
    return [np.vstack([transform.fit(rows[folds != k], price[folds != k]).train_values_[rows[folds != k]],
                       transform.transform(rows[folds == k])]) for k in range(3)]


def test_shared_counts_give_the_columns_of_the_vectorizers_fit_in_each_fold():
    """N-grams counted once for all folds (ml.tfidf_counts): every fold's columns as with the fold's own
    TfidfVectorizers, for the three views of the group (the offset view's skipped rows included)."""
    texts, price, groups = _world(240, seed=8)
    offset = np.log1p(np.random.default_rng(9).choice([1.0, 6.0, np.nan], len(texts)))
    views = {"text": RidgeView(texts, text_vectorizer), "name": RidgeView(texts, name_vectorizer),
             "unit": RidgeView(texts, text_vectorizer, np.eye(2, dtype=np.float32)[np.arange(len(texts)) % 2],
                               offset)}
    folds = np.arange(len(texts)) % 3
    shared = _fold_values(RidgeOofTransform(views, groups=groups), price, folds)
    plain = _fold_values(RidgeOofTransform(views, groups=groups, shared_counts=False), price, folds)
    for got, expected in zip(shared, plain, strict=True):
        assert np.isfinite(expected).sum() > 0.6 * expected.size
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_each_text_is_analysed_once_for_all_folds(monkeypatch):
    """03 fits one transform on every fold: the texts' n-grams are counted on the first fit only (once per
    vectorizer), not again for each fold's training rows and the rows it transforms."""
    texts, price, groups = _world(120, seed=10)
    analysed = []
    decode = TfidfVectorizer.decode  # the first step of analysing a text

    def counting(self, text):
        analysed.append(text)
        return decode(self, text)

    monkeypatch.setattr(TfidfVectorizer, "decode", counting)
    views = {"text": RidgeView(texts, text_vectorizer), "name": RidgeView(texts, name_vectorizer)}
    _fold_values(RidgeOofTransform(views, groups=groups), price, np.arange(len(texts)) % 3)
    assert len(analysed) == 3 * len(texts)  # words + chars of the text view, chars of the name view
