"""02_correlate: the roadmap's number, its permutation null, and probes that measure extractable signal."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from amzkit.ml.stats import pearson_columns
from amzkit.stages.correlate import analyse_embedding, null_max_abs_corr, verdict


def _prices(rng, n):
    return np.exp(rng.normal(2.7, 0.9, n))


def _named(ids) -> list[str]:
    """A catalog text per row naming a product of its own (03's default group folds need 5 products or more)."""
    return [f"Item Name: thing {i}" for i in ids]


def test_pearson_columns_matches_numpy_and_handles_constant_columns():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 4)).astype(np.float32)
    x[:, 3] = 1.0
    y = rng.normal(size=500)
    corr = pearson_columns(x, y)
    for j in range(3):
        assert corr[j] == pytest.approx(np.corrcoef(x[:, j], y)[0, 1], abs=1e-5)
    assert corr[3] == 0.0


def test_roadmap_verdict_table():
    assert verdict(0.1089)[0] == "STRONG" and verdict(0.03)[0] == "MODERATE" and verdict(0.0089)[0] == "WEAK"
    assert verdict(0.05)[0] == "MODERATE" and verdict(0.02)[0] == "WEAK"  # bounds are exclusive, as written


def test_planted_signal_is_strong_and_probes_beat_the_constant():
    rng = np.random.default_rng(1)
    n, d = 4000, 64
    price = _prices(rng, n)
    x = rng.normal(size=(n, d)).astype(np.float32)
    x[:, :3] += np.log1p(price)[:, None] * np.array([1.0, -0.7, 0.5], dtype=np.float32)
    result = analyse_embedding(x, np.ones(n, bool), price, n_permutations=10, knn_max_queries=2000)
    assert result["verdict"] == "STRONG" and result["clears_null"]
    assert set(result["top_dims"][:3]) == {0, 1, 2}
    assert result["ridge_smape"] < result["constant_smape"] - 10
    assert result["knn_smape"] < result["knn_constant_smape"] - 5


def test_the_probe_plot_labels_its_bars_and_keeps_its_legend_off_them(tmp_path):
    from amzkit.stages.correlate_plots import plot_probes

    rng = np.random.default_rng(3)
    n = 600
    price = _prices(rng, n)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    x[:, 0] += np.log1p(price)
    result = analyse_embedding(x, np.ones(n, bool), price, baseline=rng.normal(size=(n, 4)), n_permutations=5)
    ax = plot_probes({"planted": result}, tmp_path / "probes.png").axes[0]
    labels = [text.get_text() for text in ax.texts]
    assert f"{result['ridge_smape']:.1f}" in labels and f"{result['baseline_plus_smape']:.1f}" in labels
    assert ax.get_legend().get_bbox_to_anchor().y0 < ax.get_window_extent().y0  # below the axes


def test_the_probe_plot_without_a_baseline_draws_no_added_value_bars_nor_their_legend(tmp_path):
    # with baseline_features and baseline_runs empty the legend named "text features + embedding", bars never drawn
    from amzkit.stages.correlate_plots import plot_probes

    rng = np.random.default_rng(3)
    price = _prices(rng, 300)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    result = analyse_embedding(x, np.ones(300, bool), price, baseline=None, n_permutations=3)
    ax = plot_probes({"a": result, "b": result}, tmp_path / "probes.png").axes[0]
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["constant median (its rows)", "ridge", "kNN"]
    assert "" not in [text.get_text() for text in ax.texts] and len(ax.patches) == 4


def test_added_value_is_positive_for_signal_beyond_the_baseline():
    rng = np.random.default_rng(6)
    n = 3000
    price = _prices(rng, n)
    log_price = np.log1p(price)
    hidden = log_price - 0.5 * log_price.mean() + rng.normal(0, 0.3, n)
    baseline = (0.5 * log_price + rng.normal(0, 0.5, n))[:, None].astype(np.float32)
    x = np.column_stack([hidden, rng.normal(size=(n, 15))]).astype(np.float32)
    result = analyse_embedding(x, np.ones(n, bool), price, baseline=baseline, n_permutations=5)
    assert result["added_value_gain"] > 3
    assert result["next_step"].startswith("03_train")


def test_pure_noise_is_weak_inside_its_null_and_adds_nothing():
    rng = np.random.default_rng(2)
    n, d = 20_000, 768
    price = _prices(rng, n)
    baseline = np.column_stack([np.log1p(price) + rng.normal(0, 0.8, n), rng.normal(size=n)]).astype(np.float32)
    x = rng.normal(size=(n, d)).astype(np.float32)
    result = analyse_embedding(x, np.ones(n, bool), price, baseline=baseline, n_permutations=20,
                               knn_max_queries=5000, seed=3)
    assert result["max_abs_corr"] > 0.02, "noise alone passes the roadmap's 0.02 bar at this size..."
    assert result["roadmap_verdict"] != "WEAK"
    assert not result["clears_null"] and result["verdict"] == "WEAK", "...the null catches it"
    assert result["ridge_smape"] > result["constant_smape"] - 0.5
    assert result["knn_smape"] > result["knn_constant_smape"] - 1.0
    assert abs(result["added_value_gain"]) < 0.5
    assert result["next_step"].startswith("alternatives")


def test_null_is_stable_and_grows_with_dimension():
    rng = np.random.default_rng(4)
    y = rng.normal(size=3000)
    small = null_max_abs_corr(rng.normal(size=(3000, 8)), y, n_permutations=30)
    large = null_max_abs_corr(rng.normal(size=(3000, 512)), y, n_permutations=30)
    assert np.median(large) > np.median(small) * 1.5


def _clears_grouped_null(seed: int, slope: float, spread_within: float) -> bool:
    """200 products x 3 copies sharing a 32-dim embedding; log price = slope x dim 0 + product noise, plus
    `spread_within` of noise between the copies (pack sizes under one name): does max |corr| clear its p95 null?"""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(200), 3)
    per_product = rng.normal(size=(200, 32))
    x = per_product[groups].astype(np.float32)
    y = (slope * per_product[:, 0] + rng.normal(size=200))[groups] + spread_within * rng.normal(size=len(groups))
    observed = np.abs(pearson_columns(x, y)).max()
    return bool(observed > np.percentile(null_max_abs_corr(x, y, 20, seed + 1, groups), 95))


def test_a_grouped_null_with_copies_priced_apart_is_the_noise_floor_not_above_it():
    noise = np.mean([_clears_grouped_null(seed, 0.0, 3.0) for seed in range(100)])
    signal = np.mean([_clears_grouped_null(seed, 0.25, 3.0) for seed in range(100)])
    assert 0.02 <= noise <= 0.2, "noise clears a p95 null of 20 shuffles about 5-10% of the time"
    assert signal >= 0.1, "the null of product means alone held this signal back nearly always (0.5%)"


@pytest.mark.parametrize("not_finite", [False, True], ids=["failed rows", "ok rows holding nan/inf"])
def test_excluded_rows_are_counted_not_used(not_finite):
    """Rows 01 failed are left out; so is a row marked ok that holds NaN or inf (03 reads it as missing; 02 fed it
    to the ridge probe: LinAlgError: Eigenvalues did not converge)."""
    rng = np.random.default_rng(5)
    price = _prices(rng, 600)
    x = np.log1p(price)[:, None].astype(np.float32) + rng.normal(0, 0.1, (600, 3)).astype(np.float32)
    ok = np.ones(600, bool)
    ok[:50] = False
    x[:50] = np.nan
    if not_finite:
        x[50, 1], x[51, 2] = np.nan, np.inf  # marked ok, yet not a vector
    result = analyse_embedding(x, ok, price, n_permutations=5)
    excluded = 52 if not_finite else 50
    assert result["rows_used"] == 600 - excluded and result["rows_excluded"] == excluded
    assert np.isfinite(result["ridge_smape"]) and result["max_abs_corr_log1p"] > 0.9


def test_correlate_refuses_a_run_computed_for_other_rows(tmp_path):
    from amzkit.core.io import id_hash, read_json, write_json, write_npy
    from amzkit.stages.correlate import correlate

    run = tmp_path / "01_extract" / "fake"
    ids = np.arange(100)
    write_npy(run / "train.npy", np.zeros((100, 2), np.float32))
    write_npy(run / "train_ok.npy", np.ones(100, bool))
    write_json(run / "manifest.json", {"splits": {"train": {"id_sha256": id_hash(ids)}}})
    write_json(run / "metrics.json", {})
    train = pd.DataFrame({"sample_id": ids[::-1], "catalog_content": _named(ids[::-1]), "image_link": "",
                          "price": np.linspace(1.0, 50.0, 100)})
    with pytest.raises(ValueError, match="row order"):
        correlate(train, "amazon2025", tmp_path, ["fake"], baseline_features=[])

    rng = np.random.default_rng(0)
    good = tmp_path / "01_extract" / "good"  # made from this CSV
    write_npy(good / "train.npy", rng.normal(size=(100, 4)).astype(np.float32))
    write_npy(good / "train_ok.npy", np.ones(100, bool))
    write_json(good / "manifest.json", {"splits": {"train": {"id_sha256": id_hash(ids[::-1])}}})
    write_json(good / "metrics.json", {})
    results = correlate(train, "amazon2025", tmp_path, [], baseline_features=[], n_permutations=5)
    assert list(results) == ["good"], "02's default (every run) skips the stale one"
    skipped = read_json(tmp_path / "02_correlate" / "metrics.json")["skipped"]
    assert list(skipped) == ["fake"] and "row order" in skipped["fake"]
    # one run named as a plain string, as the notebook's -p runs good reads: that run, not its letters
    assert list(correlate(train, "amazon2025", tmp_path, "good", baseline_features=[], n_permutations=5)) == ["good"]


def test_real_minilm_text_embeddings_of_2023_rows_beat_the_constant(shared_data):
    from amzkit.core.schema import load_split, row_text
    from amzkit.embed.factory import create_embedder

    train = load_split(shared_data / "amz23_dev.csv", "amazon2023", "train")
    _, embedder = create_embedder("minilm", batch_size=64, device="cpu")
    embeddings, ok = embedder.fit().transform(row_text(train, "amazon2023").tolist())
    assert ok.all() and embeddings.shape == (len(train), 384)
    result = analyse_embedding(embeddings, ok, train["PRODUCT_LENGTH"].to_numpy(), n_permutations=10)
    assert result["ridge_smape"] < result["constant_smape"] - 1, (result["ridge_smape"], result["constant_smape"])
    assert result["clears_null"]


def test_knn_probe_on_a_one_column_run_uses_nearest_values_not_cosine():
    from amzkit.stages.correlate import knn_probe, make_probe_folds

    rng = np.random.default_rng(0)
    score = rng.normal(size=(600, 1)).astype(np.float32)  # e.g. an aesthetic score that sets the price
    y_log = 2.0 + score[:, 0]
    oof, queried = knn_probe(score, y_log, make_probe_folds(600, 5, 0), k=5)
    assert queried.all()
    assert np.corrcoef(oof, y_log)[0, 1] > 0.95  # cosine on one column would see only the sign


def _word_price_world(tmp_path, n: int = 1500, brands: int = 30):
    """Rows whose price is set by a brand word in the text, and a fake 01 run that is that brand one-hot."""
    from amzkit.core.io import id_hash, write_json, write_npy

    rng = np.random.default_rng(3)
    brand = rng.integers(0, brands, n)
    brand_price = np.exp(rng.normal(2.5, 1.0, brands))
    price = brand_price[brand] * np.exp(rng.normal(0, 0.1, n))
    filler = [" ".join(rng.choice(["soft", "blue", "pack", "new", "large", "gift"], 4)) for _ in range(n)]
    texts = [f"Item Name: {f} brand{b}word {f}" for b, f in zip(brand, filler, strict=True)]
    ids = np.arange(n)
    train = pd.DataFrame({"sample_id": ids, "catalog_content": texts, "image_link": "", "price": price})
    run = tmp_path / "01_extract" / "brandhot"
    write_npy(run / "train.npy", np.eye(brands, dtype=np.float32)[brand])
    write_npy(run / "train_ok.npy", np.ones(n, bool))
    write_json(run / "manifest.json", {"splits": {"train": {"id_sha256": id_hash(ids)}}})
    write_json(run / "metrics.json", {})
    return train


def test_a_tfidf_baseline_already_holds_what_the_text_says(tmp_path):
    from amzkit.stages.correlate import D, correlate

    train = _word_price_world(tmp_path)
    weak = correlate(train, "amazon2025", tmp_path, ["brandhot"], baseline_features=["text_stats"],
                     n_permutations=2)["brandhot"]
    assert weak["added_value_gain"] > 20 and weak["next_step"].startswith("03_train")
    # with the text's TF-IDF in the baseline (02's default, as 03's default features have it), most of what the
    # brand one-hot says is already there: its added value falls from ~48 to ~2 SMAPE points
    strong = correlate(train, "amazon2025", tmp_path, ["brandhot"], baseline_features=["text_stats", "tfidf"],
                       n_permutations=2)["brandhot"]
    assert strong["baseline_smape"] < weak["baseline_smape"] - 20
    assert strong["added_value_gain"] < weak["added_value_gain"] / 5
    assert "tfidf" in D.baseline_features


def test_02_baseline_is_03s_default_label_free_features():
    from amzkit.ml.featureset import FOLD_FEATURE_GROUPS
    from amzkit.stages import correlate, train

    label_free = [g for g in train.D.features if g not in FOLD_FEATURE_GROUPS or g == "tfidf"]
    assert list(correlate.D.baseline_features) == label_free


def test_a_baseline_group_fit_on_labels_is_refused(tmp_path):
    from amzkit.stages.correlate import correlate

    train = _word_price_world(tmp_path, n=200)
    with pytest.raises(ValueError, match=r"baseline_features \['ridge_oof'\]: the baseline takes label-free groups"):
        correlate(train, "amazon2025", tmp_path, ["brandhot"], baseline_features=["text_stats", "ridge_oof"])


def test_copies_of_a_product_share_a_probe_fold_so_they_do_not_fake_a_signal():
    # 150 products listed 4 times each, a random price per product and an embedding that only says which product:
    # with copies on both sides of a probe fold, kNN "predicts" each price from its copy
    rng = np.random.default_rng(3)
    product = np.repeat(np.arange(150), 4)
    x = (rng.normal(size=(150, 32)) + 0.05 * rng.normal(size=(600, 32)).reshape(150, 4, 32).mean(1))[product]
    x = x + 0.05 * rng.normal(size=x.shape)
    price = np.exp(rng.normal(3, 1, 150))[product]
    names = np.array([f"product {p}" for p in product])
    from amzkit.stages.correlate import make_probe_folds

    folds = make_probe_folds(600, 5, 0, names)
    assert all(len(set(folds[product == p])) == 1 for p in range(150))
    ok = np.ones(600, bool)
    random_folds = analyse_embedding(x, ok, price, n_permutations=5, knn_k=3)
    grouped = analyse_embedding(x, ok, price, groups=names, n_permutations=5, knn_k=3)
    assert random_folds["knn_smape"] < 0.5 * random_folds["constant_smape"]  # the copies' flattery
    assert grouped["knn_smape"] > 0.85 * grouped["constant_smape"]  # no signal, as there is none


def test_noise_does_not_clear_the_null_when_products_are_listed_several_times():
    # copies share an embedding and a price: a row-by-row shuffle's null was too narrow for them
    product = np.repeat(np.arange(300), 4)
    names = np.array([f"p{p}" for p in product])
    cleared = {"rows": 0, "products": 0}
    for seed in range(12):
        x = np.random.default_rng(seed).normal(size=(300, 32))[product]
        y = np.exp(np.random.default_rng(100 + seed).normal(3, 1, 300))[product]
        observed = np.abs(np.corrcoef(x.T, y)[-1, :-1]).max()
        cleared["rows"] += observed > np.percentile(null_max_abs_corr(x, y, 20, seed), 95)
        cleared["products"] += observed > np.percentile(null_max_abs_corr(x, y, 20, seed, names), 95)
    assert cleared["rows"] >= 9 and cleared["products"] <= 3, cleared  # noise should clear it ~1 time in 20


def test_the_best_probe_is_the_largest_gain_over_its_own_rows_constant_not_the_lowest_smape():
    # an image run with pictures for the cheapest rows only: low SMAPE, no signal (it was plotted as "best")
    from amzkit.stages.correlate_plots import best_probe_run

    results = {"cheap-rows-image": {"ridge_smape": 45.8, "constant_smape": 45.5},
               "minilm": {"ridge_smape": 66.0, "constant_smape": 73.2}}
    assert best_probe_run(results) == "minilm"


def test_the_verdict_reads_log1p_prices_so_one_outlier_does_not_hide_a_signal() -> None:
    """On raw prices one listing at 100,000 sets both the max |corr| and the width of its null."""
    rng = np.random.default_rng(0)
    n, d = 600, 32
    price = np.exp(rng.normal(2.5, 0.8, n))
    price[7] = 1e5
    x = rng.normal(size=(n, d)).astype(np.float32)
    x[:, 0] = (np.log1p(price) - 2.5) * 0.3 + rng.normal(0, 1, n)
    result = analyse_embedding(x, np.ones(n, bool), price, n_permutations=20)
    raw_null = np.percentile(null_max_abs_corr(x, price, n_permutations=20), 95)
    assert result["max_abs_corr"] < raw_null  # the raw price's view: under its null
    assert result["max_abs_corr_log1p"] > result["null_p95_log1p"] and result["clears_null"]
    assert result["verdict"] == "STRONG"


def test_correlate_says_which_run_it_is_on(tmp_path, capsys):
    """Each run of 75k rows takes minutes (null, ridge, kNN and added-value probes): the cell names each as it goes."""
    from amzkit.core.io import id_hash, write_json, write_npy
    from amzkit.stages.correlate import correlate

    rng = np.random.default_rng(0)
    ids = np.arange(200)
    for name, dim in (("first", 4), ("second", 6)):
        write_npy(tmp_path / "01_extract" / name / "train.npy", rng.normal(size=(200, dim)).astype(np.float32))
        write_npy(tmp_path / "01_extract" / name / "train_ok.npy", np.ones(200, bool))
        write_json(tmp_path / "01_extract" / name / "manifest.json", {"splits": {"train": {"id_sha256": id_hash(ids)}}})
        write_json(tmp_path / "01_extract" / name / "metrics.json", {})
    train = pd.DataFrame({"sample_id": ids, "catalog_content": _named(ids), "image_link": "",
                          "price": _prices(rng, 200)})
    correlate(train, "amazon2025", tmp_path, [], baseline_features=[], n_permutations=3)
    out = capsys.readouterr().out
    assert "run 'first' (1/2): 200 rows x 4 dims" in out and "run 'second' (2/2): 200 rows x 6 dims" in out


def _write_run(work, name, ids, embeddings, ok=None, manifest_extra=None):
    """A 01_extract run of `embeddings` for the rows `ids` (every row ok unless `ok` says otherwise)."""
    from amzkit.core.io import id_hash, write_json, write_npy

    run = work / "01_extract" / name
    write_npy(run / "train.npy", np.asarray(embeddings, np.float32))
    write_npy(run / "train_ok.npy", np.ones(len(ids), bool) if ok is None else ok)
    write_json(run / "manifest.json", {"splits": {"train": {"id_sha256": id_hash(ids)}}, **(manifest_extra or {})})
    write_json(run / "metrics.json", {})


def test_a_baseline_run_holding_inf_is_read_as_missing_not_a_crash(tmp_path):
    """One inf in a baseline run (baseline_runs) became 3.4e38 (nan_to_num) and 02 stopped: 'metric inputs must be
    finite'; a row holding NaN or inf is missing there, as it is in the runs analysed and to 03."""
    from amzkit.stages.correlate import correlate

    rng = np.random.default_rng(0)
    price, ids = _prices(rng, 600), np.arange(600)
    train = pd.DataFrame({"sample_id": ids, "catalog_content": _named(ids), "image_link": "", "price": price})
    text = np.log1p(price)[:, None] + rng.normal(0, 0.3, (600, 2))
    _write_run(tmp_path, "image", ids, rng.normal(size=(600, 8)))
    _write_run(tmp_path, "text", ids, text)
    clean = correlate(train, "amazon2025", tmp_path, ["image"], baseline_features=[], baseline_runs=["text"],
                      n_permutations=3)["image"]
    text[7, 0] = np.inf
    _write_run(tmp_path, "text", ids, text)
    broken = correlate(train, "amazon2025", tmp_path, ["image"], baseline_features=[], baseline_runs=["text"],
                       n_permutations=3)["image"]
    assert abs(broken["baseline_smape"] - clean["baseline_smape"]) < 0.5 and clean["baseline_smape"] < 30


def test_a_run_whose_rows_hold_nan_is_skipped_for_that_not_for_its_fetching(tmp_path):
    """Every row marked ok but one dimension NaN (a model's overflow, an older merge): 02 blamed 01's fetching and
    pointed at train_fetch.csv, which says every link was fine (and which a text run does not have)."""
    from amzkit.core.io import read_json
    from amzkit.stages.correlate import correlate

    rng = np.random.default_rng(0)
    ids = np.arange(100)
    train = pd.DataFrame({"sample_id": ids, "catalog_content": _named(ids), "image_link": "",
                          "price": _prices(rng, 100)})
    broken = rng.normal(size=(100, 4))
    broken[:, 2] = np.nan
    _write_run(tmp_path, "broken", ids, broken, manifest_extra={"modality": "text"})
    _write_run(tmp_path, "good", ids, rng.normal(size=(100, 4)))
    correlate(train, "amazon2025", tmp_path, [], baseline_features=[], n_permutations=3)
    why = read_json(tmp_path / "02_correlate" / "metrics.json")["skipped"]["broken"]
    assert "train_fetch.csv" not in why and "fetched" not in why
    assert "100 of the 100 rows 01 marked ok hold NaN or inf" in why and "rerun 01" in why.lower()


def test_one_baseline_group_named_as_a_plain_string_is_that_group_not_its_letters(tmp_path):
    """correlate(..., baseline_features="tfidf"), as runs="minilm" already is: one group, not 't', 'f', 'i', ..."""
    from amzkit.stages.correlate import correlate

    rng = np.random.default_rng(0)
    ids = np.arange(100)
    _write_run(tmp_path, "good", ids, rng.normal(size=(100, 4)))
    train = pd.DataFrame({"sample_id": ids, "catalog_content": [f"Item Name: thing {i % 30} pack" for i in ids],
                          "image_link": "", "price": _prices(rng, 100)})
    result = correlate(train, "amazon2025", tmp_path, "good", baseline_features="quantity", n_permutations=3)["good"]
    assert "baseline_smape" in result


def test_a_run_in_baseline_runs_is_judged_against_the_baseline_without_itself(tmp_path):
    """baseline_runs ["minilm"] (as its help suggests) with every run analysed: minilm was scored against a baseline
    that already held it, added nothing, and its row said 'adds little to text features' for the run that carries
    the price (ridge 21 against a constant's 64)."""
    from amzkit.stages.correlate import correlate

    rng = np.random.default_rng(0)
    price, ids = _prices(rng, 600), np.arange(600)
    train = pd.DataFrame({"sample_id": ids, "catalog_content": [f"Item Name: thing {i}" for i in ids],
                          "image_link": "", "price": price})
    _write_run(tmp_path, "minilm", ids, np.log1p(price)[:, None] + rng.normal(0, 0.5, (600, 4)))
    _write_run(tmp_path, "image", ids, rng.normal(size=(600, 8)))
    results = correlate(train, "amazon2025", tmp_path, [], baseline_features=["quantity"], baseline_runs=["minilm"],
                        n_permutations=3)
    assert results["minilm"]["added_value_gain"] > 10
    assert results["minilm"]["next_step"] == "03_train: add it to the text features"
    assert results["minilm"]["baseline_runs"] == [] and results["image"]["baseline_runs"] == ["minilm"]
    assert results["image"]["next_step"] == "alternatives: indistinguishable from noise"
    from amzkit.stages.correlate_plots import plot_probes

    alone = correlate(train, "amazon2025", tmp_path, ["minilm", "image"], baseline_features=[],
                      baseline_runs=["minilm"], n_permutations=3)  # minilm is the whole baseline: it has none
    assert "baseline_smape" not in alone["minilm"] and "baseline_smape" in alone["image"]
    ax = plot_probes(alone, tmp_path / "probes.png").axes[0]
    assert "text features alone (its rows)" in ax.get_legend_handles_labels()[1], "the first run has no baseline"


@pytest.mark.parametrize("where", ["embedding", "baseline"])
def test_one_value_far_out_does_not_overflow_the_linear_probes(where: str) -> None:
    # one value 1e4 standard deviations out in a column carrying the signal: the ridge (or the baseline's) fold
    # without that row predicted log1p prices near 1e4, expm1 overflowed, and 02 stopped: 'inputs must be finite'
    rng = np.random.default_rng(0)
    n = 600
    price = _prices(rng, n)
    x = rng.normal(size=(n, 16)).astype(np.float32)
    x[:, 0] += np.log1p(price)
    baseline = np.column_stack([np.log1p(price) + rng.normal(0, 2, n), rng.normal(size=n)]).astype(np.float32)
    (x if where == "embedding" else baseline)[5, 0] = 1e4
    # seed 0: the probe folds the case was measured in (its noisy baseline beats the constant by tenths)
    result = analyse_embedding(x, np.ones(n, bool), price, baseline=baseline, n_permutations=3, seed=0)
    for key in ("ridge_smape", "baseline_smape", "baseline_plus_smape"):
        assert 0 <= result[key] < result["constant_smape"], (key, result[key])


def test_few_products_with_many_copies_still_get_group_folds_as_03_does() -> None:
    # 7 products for 5 folds: 03's group folds take them (at least one product a fold); 02 used random folds below
    # 2 x n_folds products, so every product's copies sat on both sides of each probe fold
    from amzkit.stages.correlate import make_probe_folds

    product = np.repeat(np.arange(7), 40)
    folds = make_probe_folds(len(product), 5, 0, np.array([f"product {p}" for p in product]))
    assert all(len(set(folds[product == p])) == 1 for p in range(7))
    assert sorted(set(folds)) == [0, 1, 2, 3, 4]
    assert len(set(make_probe_folds(len(product), 8, 0, product))) == 8  # fewer products than folds: random


def test_a_knn_probe_on_a_subset_is_shown_beside_the_constant_of_that_subset(tmp_path) -> None:
    # the kNN probe scores at most knn_max_queries rows, the constant every row: the table and the plot set the kNN
    # SMAPE of 300 rows beside the constant of 1,200 (sampling alone moves that by tenths, the size of a gain's bar)
    from amzkit.stages.correlate import summary_table
    from amzkit.stages.correlate_plots import plot_probes

    rng = np.random.default_rng(4)
    n = 1200
    price = _prices(rng, n)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    x[:, 0] += np.log1p(price)
    result = analyse_embedding(x, np.ones(n, bool), price, n_permutations=3, knn_max_queries=300)
    assert result["knn_constant_smape"] != pytest.approx(result["constant_smape"], abs=0.05)  # other rows
    row = summary_table({"planted": result}, "amazon2023").loc["planted"]
    assert row["kNN rows"] == 300 and row["rows used"] == n
    assert row["constant SMAPE (kNN rows)"] == round(result["knn_constant_smape"], 2)
    ax = plot_probes({"planted": result}, tmp_path / "probes.png").axes[0]
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    over_knn = [segment for collection in ax.collections for segment in collection.get_segments()
                if segment[0][0] > -0.2 and segment[1][0] < 0.2]  # the kNN bar is the middle one, at 0
    assert "constant median (kNN's rows)" in legend
    assert [segment[0][1] for segment in over_knn] == [pytest.approx(result["knn_constant_smape"])]


def test_one_value_far_out_in_a_run_is_warned_of_naming_the_run_column_and_row(tmp_path, capsys) -> None:
    # one value 1e4 sd out in the column carrying the signal sets that column's sd, so the standardised probes see
    # nothing else of it: ridge 50.7 -> 60.4 SMAPE (constant 64.5), kNN likewise, and the run read as noise, silently
    from amzkit.stages.correlate import correlate

    rng = np.random.default_rng(0)
    n = 600
    price, ids = _prices(rng, n), np.arange(1000, 1000 + n)
    x = rng.normal(size=(n, 16)).astype(np.float32)
    x[:, 0] += np.log1p(price)
    heavy = np.exp(rng.normal(0, 1.5, (n, 4))).astype(np.float32)  # heavy-tailed but ordinary columns: no warning
    _write_run(tmp_path, "clean", ids, np.hstack([x, heavy]))
    x[5, 0] = 1e4
    _write_run(tmp_path, "far", ids, x)
    train = pd.DataFrame({"sample_id": ids, "catalog_content": _named(ids), "image_link": "", "price": price})
    results = correlate(train, "amazon2025", tmp_path, ["clean", "far"], baseline_features=[], n_permutations=3)
    assert results["clean"]["one_row_columns"] == []
    [far] = results["far"]["one_row_columns"]
    assert far["column"] == 0 and far["row"] == 5 and far["share"] > 0.99
    warned = [line for line in capsys.readouterr().out.splitlines() if "warning" in line]
    assert len(warned) == 1 and "run 'far'" in warned[0] and "column 0 (id 1005: " in warned[0]


def _two_runs_one_missing_rows(work, n=400, missing=40, knn_column=False):
    """A train split of n rows (300 products, 100 of them listed twice) and two 01 runs of one embedding: `full`,
    and `gappy`, which lacks `missing` random rows (an image run whose pictures could not be fetched). With
    `knn_column`, column 0 holds each row's train position, so what a probe saw can be traced to the rows."""
    rng = np.random.default_rng(11)
    product = np.concatenate([np.arange(300), np.arange(n - 300)])
    price = np.exp(rng.normal(2.7, 0.9, 300))[product] * np.exp(rng.normal(0, 0.1, n))
    x = rng.normal(size=(n, 8)).astype(np.float32)
    x[:, 1] += np.log1p(price).astype(np.float32)
    if knn_column:
        x[:, 0] = np.arange(n)
    ok = np.ones(n, bool)
    ok[rng.choice(n, missing, replace=False)] = False
    ids = np.arange(5000, 5000 + n)
    _write_run(work, "full", ids, x)
    _write_run(work, "gappy", ids, np.where(ok[:, None], x, np.nan), ok)
    train = pd.DataFrame({"sample_id": ids, "catalog_content": [f"Item Name: product {p}" for p in product],
                          "image_link": "", "price": price})
    return train, x, ok


def test_every_probe_of_every_run_scores_in_the_folds_03_will_train_in(tmp_path) -> None:
    # 02 made its own probe folds (its seed, its grouping) from each run's usable rows: a probe's "this embedding
    # scores X" was measured on another split than the 03 run using it, and a run missing 40 pictures on another
    # split than the run with all rows, so the differences between runs in 02's table were partly split noise
    from amzkit.core.io import id_hash, read_json
    from amzkit.core.schema import get_schema
    from amzkit.ml.folds import shared_folds
    from amzkit.stages.correlate import correlate, ridge_probe, summary_table
    from amzkit.stages.train import D as TRAIN

    train, x, ok = _two_runs_one_missing_rows(tmp_path)
    results = correlate(train, "amazon2025", tmp_path, ["full", "gappy"], baseline_features=[], n_permutations=3)
    assert not (tmp_path / "03_train").exists(), "02 fixes none of 03's settings: 03 makes its folds itself"
    folds = shared_folds(tmp_path, train, get_schema("amazon2025"), TRAIN.n_folds, TRAIN.seed, TRAIN.fold_strategy)
    y_log = np.log1p(train["price"].to_numpy())
    for name, rows in (("full", np.ones(len(ok), bool)), ("gappy", ok)):
        in_03s_folds, _ = ridge_probe(x[rows], y_log[rows], folds[rows])
        np.testing.assert_allclose(results[name]["ridge_oof_log"], in_03s_folds, rtol=1e-6, atol=1e-9)
    assert read_json(tmp_path / "02_correlate" / "metrics.json")["folds"]["folds_sha256"] == id_hash(folds)
    table = summary_table(results, "amazon2025")
    assert table.loc["gappy", ["rows used", "rows left out"]].tolist() == [360, 40]
    assert table.loc["full", ["rows used", "rows left out"]].tolist() == [400, 0]


def test_the_knn_probe_of_a_run_missing_rows_queries_the_same_rows_less_those(tmp_path, monkeypatch) -> None:
    # the kNN probe scores knn_max_queries rows of each run: each run drew its own, so a run missing 40 of 400 rows
    # scored other rows than the full run (about a quarter in common at 100 queries)
    from amzkit.stages import correlate as stage

    train, x, ok = _two_runs_one_missing_rows(tmp_path, knn_column=True)
    queried_rows = []
    real_knn_probe = stage.knn_probe

    def recording(x_run, *args, **kwargs):
        oof, queried = real_knn_probe(x_run, *args, **kwargs)
        queried_rows.append(set(x_run[queried, 0].astype(int)))  # column 0: the train position
        return oof, queried

    monkeypatch.setattr(stage, "knn_probe", recording)
    stage.correlate(train, "amazon2025", tmp_path, ["full", "gappy"], baseline_features=[], n_permutations=3,
                    knn_max_queries=100)
    full, gappy = queried_rows
    assert len(full) == len(gappy) == 100
    assert full - gappy == full - set(np.flatnonzero(ok)), "the full run's queries less the gappy run's missing rows"


def test_02_probes_in_the_folds_03_already_made_or_refuses_other_settings_as_03_does(tmp_path) -> None:
    # once 03 made the work folder's folds (here: -p n_folds 4 -p seed 7 -p fold_strategy kfold), 02 with the same
    # settings scores in that very file, and with others is refused naming what to pass, as a 03 run would be
    from amzkit.core.schema import get_schema
    from amzkit.ml.folds import shared_folds
    from amzkit.stages.correlate import correlate, ridge_probe

    train, x, ok = _two_runs_one_missing_rows(tmp_path)
    folds = shared_folds(tmp_path, train, get_schema("amazon2025"), 4, 7, "kfold")
    with pytest.raises(ValueError, match=r"02_correlate scores its probes in 03's folds: .*-p n_folds 4.*-p seed 7"):
        correlate(train, "amazon2025", tmp_path, ["gappy"], baseline_features=[], n_permutations=3)
    results = correlate(train, "amazon2025", tmp_path, ["gappy"], baseline_features=[], n_permutations=3,
                        n_folds=4, seed=7, fold_strategy="kfold")
    in_03s_folds, _ = ridge_probe(x[ok], np.log1p(train["price"].to_numpy())[ok], folds[ok])
    np.testing.assert_allclose(results["gappy"]["ridge_oof_log"], in_03s_folds, rtol=1e-6, atol=1e-9)
    assert len(results["gappy"]["gain_tests"]["ridge"]["fold_gains"]) == 4


@pytest.mark.parametrize(("n_folds", "seed", "strategy"), [(5, 42, "group"), (3, 0, "kfold"), (7, 9, "stratified")])
def test_the_folds_to_come_are_exactly_those_03_then_makes_and_nothing_is_written(tmp_path, n_folds, seed,
                                                                                     strategy) -> None:
    from amzkit.core.schema import get_schema
    from amzkit.ml.folds import folds_to_come, shared_folds

    train, _, _ = _two_runs_one_missing_rows(tmp_path)
    schema = get_schema("amazon2025")
    planned, saved = folds_to_come(tmp_path, train, schema, n_folds, seed, strategy)
    assert not saved and not (tmp_path / "03_train").exists()
    np.testing.assert_array_equal(planned, shared_folds(tmp_path, train, schema, n_folds, seed, strategy))
    again, saved = folds_to_come(tmp_path, train, schema, n_folds, seed, strategy)
    assert saved and np.array_equal(again, planned)


def test_a_run_whose_rows_all_lie_in_one_of_03s_folds_is_skipped_saying_so(tmp_path) -> None:
    # 6 rows of one fold: no other fold's rows to train a probe on (02 used to split those 6 rows its own way)
    from amzkit.core.io import read_json
    from amzkit.core.schema import get_schema
    from amzkit.ml.folds import shared_folds
    from amzkit.stages.correlate import correlate

    train, x, _ = _two_runs_one_missing_rows(tmp_path)
    folds = shared_folds(tmp_path / "elsewhere", train, get_schema("amazon2025"), 5, 42, "group")
    few = np.zeros(len(train), bool)
    few[np.flatnonzero(folds == 0)[:6]] = True
    _write_run(tmp_path, "few", train["sample_id"].to_numpy(), np.where(few[:, None], x, np.nan), few)
    correlate(train, "amazon2025", tmp_path, [], baseline_features=[], n_permutations=3)
    skipped = read_json(tmp_path / "02_correlate" / "metrics.json")["skipped"]
    assert list(skipped) == ["few"] and "all lie in one fold" in skipped["few"]


def test_an_image_run_01_did_not_finish_is_named_unfinished_by_02_and_03_not_skipped_silently(tmp_path, capsys):
    """01 killed part way through an image model (shards, no manifest): 02's default runs left it out without a word,
    and 03 said 'no embedding run' with a near name (the text tower's run) and '-p model <run>', which 01 refuses
    for a local model's run (named after its folder)."""
    from amzkit.core.io import read_json, write_json
    from amzkit.embed.runs import load_embeddings
    from amzkit.stages.correlate import correlate

    rng = np.random.default_rng(0)
    ids = np.arange(100)
    train = pd.DataFrame({"sample_id": ids, "catalog_content": [f"Item Name: p{i}" for i in ids], "image_link": "",
                          "price": _prices(rng, 100)})
    _write_run(tmp_path, "my-clip-text", ids, rng.normal(size=(100, 4)))
    write_json(tmp_path / "01_extract" / "my-clip" / "shards" / "test-00000.json", {"model": "my-clip"})
    assert list(correlate(train, "amazon2025", tmp_path, [], baseline_features=[], n_permutations=3)) == [
        "my-clip-text"]
    why = read_json(tmp_path / "02_correlate" / "metrics.json")["skipped"]["my-clip"]
    assert "unfinished" in why and "rerun 01_extract with the model that made it" in why
    assert "run 'my-clip' skipped" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="'my-clip' is unfinished") as refused:
        load_embeddings(tmp_path, "my-clip", "train", ids)
    assert "did you mean" not in str(refused.value)
    with pytest.raises(FileNotFoundError, match=r"no embedding run 'my-clp'.*-p model local-dir:<folder>"):
        load_embeddings(tmp_path, "my-clp", "train", ids)
