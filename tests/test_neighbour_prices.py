"""The `neighbour_unit` fold group (ml.neighbour_prices): near listings' price per unit, learnt inside the folds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from amzkit.core.metric import smape
from amzkit.ml import neighbour_prices
from amzkit.ml.featureset import all_feature_groups
from amzkit.ml.neighbour_prices import NeighbourUnitPriceTransform, cached_nearest_train_rows, nearest_train_rows
from amzkit.stages.train import train_run

SYLLABLES = ["zor", "blax", "quen", "dril", "vosk", "mirt", "plon", "gath", "swee", "tulk", "brin", "kesh"]


def _world(n_products: int, copies: int = 4, seed: int = 0):
    """Products named by a made-up word (rare n-grams) + common filler; each product's listings share its price
    per unit and differ in size, stated as a total quantity (log1p) beside the text."""
    rng = np.random.default_rng(seed)
    words = [SYLLABLES[i % 12] + SYLLABLES[(i // 12) % 12] + SYLLABLES[(i // 144) % 12] + "x"
             for i in rng.permutation(12 ** 3)[:n_products]]
    unit_price = np.exp(rng.normal(1.5, 1.0, n_products))  # prices above 1: log1p close to log
    product = np.repeat(np.arange(n_products), copies)
    size = rng.choice([1.0, 2.0, 6.0, 12.0, 24.0], len(product))
    texts = [f"{words[p]} {' '.join(rng.choice(['soft', 'home', 'daily', 'fresh'], 3))} {s:g} ounce"
             for p, s in zip(product, size, strict=True)]
    price = unit_price[product] * size * np.exp(rng.normal(0, 0.05, len(product)))
    return texts, price, np.log1p(size), product


def _transform(texts, n_train, total_log, groups=None, k=3):
    return NeighbourUnitPriceTransform({"text": nearest_train_rows(texts, n_train)}, total_log, k=k, groups=groups)


def test_the_search_finds_a_listings_twin_among_train_rows_only_and_never_itself():
    texts, _, _, product = _world(60, copies=2)
    n_train = 80  # the last 40 rows play the test rows
    index, similarity = nearest_train_rows(texts, n_train, n_candidates=5)
    assert index.shape == (120, 5)
    assert (index < n_train).all()
    assert not (index == np.arange(120)[:, None]).any()
    found = index >= 0
    assert np.all(np.diff(np.where(found, similarity, -np.inf), axis=1)[found[:, 1:]] <= 0)  # best first
    # each train row's copy (same made-up word) is its nearest train row
    twins = [row for row in range(n_train) if (product[:n_train] == product[row]).sum() == 2]
    assert all(product[index[row, 0]] == product[row] for row in twins)


def test_the_column_learns_the_price_per_unit_of_unseen_rows():
    texts, price, total_log, product = _world(80)
    n = len(texts)
    rng = np.random.default_rng(1)
    is_valid = rng.random(n) < 0.2
    train, valid = np.flatnonzero(~is_valid), np.flatnonzero(is_valid)
    transform = _transform(texts, n, total_log).fit(train, price[train])
    pred = np.expm1(transform.transform(valid)[:, 0])
    assert smape(price[valid], pred) < 0.3 * smape(price[valid], np.full(len(valid), np.median(price[train])))


def test_a_training_rows_value_never_depends_on_its_own_label():
    texts, price, total_log, product = _world(50)
    n = len(texts)
    train = np.arange(160)
    before = _transform(texts, n, total_log, groups=product).fit(train, price[train])
    changed = price[train].copy()
    changed[7] *= 1000.0
    after = _transform(texts, n, total_log, groups=product).fit(train, changed)
    assert np.array_equal(before.transform(np.array([7])), after.transform(np.array([7])))
    moved = ~np.isclose(before.transform(np.arange(n)), after.transform(np.arange(n)))[:, 0]
    assert moved.any() and not moved[product == product[7]].any()  # a copy of row 7 never reads its label


def test_copies_of_a_product_never_feed_each_others_value():
    """Copies share a price level the text does not tell: with groups a copy's value cannot read its twins'
    labels, so it sits much farther from its own label than without them (where it leaks)."""
    texts, price, total_log, product = _world(60, copies=3, seed=2)
    rows = np.arange(len(texts))
    leaky = _transform(texts, len(texts), total_log).fit(rows, price)
    honest = _transform(texts, len(texts), total_log, groups=product).fit(rows, price)
    target = np.log1p(price)
    leaky_error = np.nanmean(np.abs(leaky.transform(rows)[:, 0] - target))
    honest_error = np.nanmean(np.abs(honest.transform(rows)[:, 0] - target))
    assert honest_error > 2 * leaky_error


def test_rows_without_a_total_or_without_a_neighbour_get_nan():
    texts, price, total_log, _ = _world(30)
    total_log = total_log.copy()
    total_log[[0, 5]] = np.nan  # no known total: no value, and no price per unit to lend
    texts[9] = "%%%%"  # shares no n-gram with any row
    n = len(texts)
    transform = _transform(texts, n, total_log).fit(np.arange(n), price)
    values = transform.transform(np.arange(n))[:, 0]
    assert np.isnan(values[[0, 5, 9]]).all()
    assert np.isfinite(np.delete(values, [0, 5, 9])).mean() > 0.9


def test_the_search_is_kept_in_the_work_folder_and_redone_when_the_texts_change(tmp_path, monkeypatch):
    texts, _, _, _ = _world(20)
    first = cached_nearest_train_rows(texts, 60, tmp_path, "name")
    assert len(list((tmp_path / "03_train").rglob("*.npz"))) == 1

    def no_search(*args, **kwargs):
        raise AssertionError("searched again")
    monkeypatch.setattr(neighbour_prices, "nearest_train_rows", no_search)
    again = cached_nearest_train_rows(texts, 60, tmp_path, "name")
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(first, again, strict=True))
    with pytest.raises(AssertionError, match="searched again"):
        cached_nearest_train_rows([*texts[:-1], "another listing"], 60, tmp_path, "name")
    monkeypatch.setattr(neighbour_prices, "MIN_COMMON_ROWS", 10)  # another pruning: another search
    with pytest.raises(AssertionError, match="searched again"):
        cached_nearest_train_rows(texts, 60, tmp_path, "name")
    monkeypatch.undo()
    monkeypatch.setattr(neighbour_prices, "nearest_train_rows", no_search)
    monkeypatch.setattr(neighbour_prices, "name_vectorizer",  # other n-grams: another search
                        lambda: TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=2))
    with pytest.raises(AssertionError, match="searched again"):
        cached_nearest_train_rows(texts, 60, tmp_path, "name")


def test_a_new_search_removes_the_views_searches_of_other_texts_only(tmp_path, monkeypatch):
    # each change of the texts wrote another ~77 MB file (150,000 rows) and the old ones stayed for ever
    texts, _, _, _ = _world(20)
    edited = [*texts[:-1], "another listing"]
    folder = tmp_path / "03_train" / "neighbours"
    cached_nearest_train_rows(texts, 60, tmp_path, "name")
    cached_nearest_train_rows(texts, 60, tmp_path, "text")
    (old_name,), (text_view,) = folder.glob("name_*.npz"), folder.glob("text_*.npz")
    others = [folder / "name_notes.npz", folder / f".{old_name.name}.x1y2.tmp",
              folder / "names_0123456789abcdef0123.npz"]
    for path in others:  # not a kept search of this view: a user's file, a writer's temporary file, another view
        path.write_bytes(b"kept")
    real_search = neighbour_prices.nearest_train_rows

    def search_while_a_twin_run_finishes(*args, **kwargs):
        monkeypatch.setattr(neighbour_prices, "nearest_train_rows", real_search)
        cached_nearest_train_rows(edited, 60, tmp_path, "name")  # a concurrent run of the same texts writes first
        return real_search(*args, **kwargs)
    monkeypatch.setattr(neighbour_prices, "nearest_train_rows", search_while_a_twin_run_finishes)
    new = cached_nearest_train_rows(edited, 60, tmp_path, "name")
    kept = list(folder.glob(f"name_{'?' * 20}.npz"))
    assert not old_name.exists() and len(kept) == 1, kept
    new_name = kept[0]
    assert text_view.is_file() and all(path.read_bytes() == b"kept" for path in others)
    with np.load(new_name) as saved:  # the twin run's file (same texts, same name) is kept, whole
        assert np.array_equal(saved["index"], new[0])


def test_a_run_with_the_group_trains_and_the_group_is_listed(tmp_path):
    assert "neighbour_unit" in all_feature_groups()
    texts, price, _, _ = _world(40, copies=3)
    catalog = [f"Item Name: {t}\nValue: {t.split()[-2]}\nUnit: Ounce" for t in texts]
    train = pd.DataFrame({"sample_id": np.arange(120), "catalog_content": catalog, "image_link": "",
                          "price": price})
    test = train.drop(columns="price").assign(sample_id=np.arange(1000, 1120))
    metrics = train_run({"train": train, "test": test}, "amazon2025", tmp_path, "nb",
                        ["pack_totals", "neighbour_unit"], [], learner="lightgbm", progress=False)
    assert np.isfinite(metrics["cv_smape"])
    importance = pd.read_csv(tmp_path / "03_train" / "nb" / "feature_importance.csv")
    assert {"neighbour_name_unit_log_price", "neighbour_text_unit_log_price"} <= set(importance.iloc[:, 0])
    assert len(list((tmp_path / "03_train" / "neighbours").glob("*.npz"))) == 2  # the search, kept for later runs


def test_the_search_in_many_blocks_on_several_threads_gives_the_one_block_answer(monkeypatch):
    texts, _, _, _ = _world(50)
    whole = nearest_train_rows(texts, 150, n_candidates=8)
    monkeypatch.setattr(neighbour_prices, "QUERY_BLOCK", 7)
    monkeypatch.setattr(neighbour_prices, "allowed_cores", lambda: 3)
    blocked = nearest_train_rows(texts, 150, n_candidates=8)
    assert np.array_equal(whole[0], blocked[0]) and np.array_equal(whole[1], blocked[1], equal_nan=True)


@pytest.mark.parametrize("damage", ["cut short", "empty", "other arrays"])
def test_an_unreadable_kept_search_is_searched_again(tmp_path, damage, capsys):
    """A kept search cut short or garbled (a copied work folder, a full disk) is redone, not a bare zipfile error."""
    texts, _, _, _ = _world(20)
    first = cached_nearest_train_rows(texts, 60, tmp_path, "name")
    path = next((tmp_path / "03_train" / "neighbours").glob("*.npz"))
    if damage == "cut short":
        path.write_bytes(path.read_bytes()[:300])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        np.savez(path, index=np.zeros((3, 2), dtype=np.int32), similarity=np.zeros((3, 2), dtype=np.float32))
    again = cached_nearest_train_rows(texts, 60, tmp_path, "name")
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(first, again, strict=True))
    assert str(path) in capsys.readouterr().out
    with np.load(path) as saved:  # the file is whole again
        assert np.array_equal(saved["index"], first[0])
