"""03_train: shared folds, nothing fit outside the training fold, presets, runs that can be trusted."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from amzkit.core.metric import smape
from amzkit.testing import write_embedding_run
from amzkit.ml.presets import PRESETS
from amzkit.ml.featureset import FeatureSet, parse_embedding_spec
from amzkit.ml.transforms import FoldTransform, TopKCorrTransform
from amzkit.ml.trees import LightGBMLearner
from amzkit.ml.cv import cross_validate
from amzkit.ml.folds import make_folds
from amzkit.stages.train import train_run

FAST = {"learning_rate": 0.1, "num_leaves": 15, "min_data_in_leaf": 10}


def _frame(n_train, n_test, rng, names=None):
    """A 2025-schema train/test pair with plain catalog text (the content does not matter here)."""
    ids = rng.permutation(np.arange(10_000, 10_000 + n_train + n_test))
    names = names if names is not None else [f"Product {i}" for i in range(n_train + n_test)]
    text = [f"Item Name: {n}\nValue: 1.0\nUnit: Count" for n in names]
    train = pd.DataFrame({"sample_id": ids[:n_train], "catalog_content": text[:n_train],
                          "image_link": "", "price": np.exp(rng.normal(2.7, 0.8, n_train))})
    test = pd.DataFrame({"sample_id": ids[n_train:], "catalog_content": text[n_train:], "image_link": ""})
    return {"train": train, "test": test}


def test_seed_preset_is_the_roadmaps_params_verbatim():
    roadmap = {'objective': 'regression', 'metric': 'mape', 'boosting_type': 'gbdt', 'num_leaves': 63,
               'learning_rate': 0.05, 'feature_fraction': 0.8, 'bagging_fraction': 0.8, 'bagging_freq': 5,
               'verbose': -1, 'n_jobs': -1}
    assert PRESETS["seed"]["params"] == roadmap and PRESETS["seed"]["target"] == "raw"
    config = LightGBMRegressor(preset="seed").config()["params"]
    assert {k: config[k] for k in roadmap} == roadmap
    assert PRESETS["default"]["target"] == "log1p" and PRESETS["default"]["params"]["objective"] == "l1"


def test_embedding_specs_parse_and_typos_are_refused():
    assert parse_embedding_spec("minilm") == ("minilm", "all", 0)
    assert parse_embedding_spec("fashion-siglip:topk_corr:50") == ("fashion-siglip", "topk_corr", 50)
    assert parse_embedding_spec("x:pca:8") == ("x", "pca", 8)
    for bad in ("x:topk:5", "x:pca:", "x:pca:0", "x:pca:8:1"):
        with pytest.raises(ValueError, match="topk_corr"):
            parse_embedding_spec(bad)


class _LeakyTopK(TopKCorrTransform):
    """What a careless pipeline does: select dimensions on every train row, validation rows included."""

    def __init__(self, name, matrix, k, y_all):
        super().__init__(name, matrix, k)
        self.y_all = y_all

    def fit(self, rows, y):
        return super().fit(np.arange(len(self.y_all)), self.y_all)


def _cv(features, y, folds):
    model = LightGBMRegressor(params=FAST, num_threads=1)
    return smape(y, cross_validate(model, features, y, folds)["oof"])


def test_topk_selection_on_pure_noise_does_not_improve_cv_but_a_leaky_one_would():
    rng = np.random.default_rng(0)
    n = 250  # few rows and many noise dimensions: where a leaky selection shows most
    y = np.exp(rng.normal(2.7, 0.8, n))
    signal = (np.log1p(y) + rng.normal(0, 1.5, n))[:, None].astype(np.float32)
    noise = rng.normal(size=(n, 3000)).astype(np.float32)
    folds = make_folds(y, 5, seed=0)
    base = FeatureSet(signal, ["signal"], [], n_train=n)
    honest = FeatureSet(signal, ["signal"], [], [TopKCorrTransform("noise", noise, 50)], n_train=n)
    leaky = FeatureSet(signal, ["signal"], [], [_LeakyTopK("noise", noise, 50, y)], n_train=n)
    without, with_honest, with_leak = _cv(base, y, folds), _cv(honest, y, folds), _cv(leaky, y, folds)
    assert with_honest > without - 1.0, (without, with_honest)
    assert with_leak < without - 3.0, "the guard has teeth: selection fit on all rows fakes a gain"


def test_grouped_folds_keep_copies_of_a_product_together_and_score_honestly():
    rng = np.random.default_rng(1)
    products, copies = 150, 4
    product = np.repeat(np.arange(products), copies)
    price = np.exp(rng.normal(2.7, 0.8, products))[product] * np.exp(rng.normal(0, 0.02, len(product)))
    fingerprint = rng.normal(size=(products, 8)).astype(np.float32)[product]  # identifies a product, says no price
    features = FeatureSet(fingerprint, [f"f{i}" for i in range(8)], [], n_train=len(product))
    plain = make_folds(price, 5, seed=0, strategy="kfold")
    grouped = make_folds(price, 5, seed=0, strategy="group", groups=product)
    assert all(len(set(grouped[product == p])) == 1 for p in range(products))
    leaky_score, honest_score = _cv(features, price, plain), _cv(features, price, grouped)
    assert honest_score > leaky_score + 10, (leaky_score, honest_score)


@pytest.fixture()
def synthetic(tmp_path):
    rng = np.random.default_rng(2)
    data = _frame(500, 100, rng)
    y = data["train"]["price"].to_numpy()
    train_emb = rng.normal(size=(500, 32)).astype(np.float32)
    train_emb[:, 7] = np.log1p(y) + rng.normal(0, 0.2, 500)
    test_emb = rng.normal(size=(100, 32)).astype(np.float32)
    write_embedding_run(tmp_path, "planted", {"train": (train_emb, data["train"]["sample_id"].to_numpy()),
                                             "test": (test_emb, data["test"]["sample_id"].to_numpy())})
    return data, tmp_path


def test_planted_signal_is_found_and_ranks_first(synthetic):
    data, work = synthetic
    metrics = train_run(data, "amazon2025", work, "plain", ["text_stats"], ["planted"], lgb_params=FAST)
    top = pd.read_csv(work / "03_train" / "plain" / "feature_importance.csv")["feature"].tolist()
    assert top[0] == "planted_7"
    assert metrics["cv_smape"] < 0.6 * metrics["constant_median_smape"]
    train_run(data, "amazon2025", work, "topk", ["text_stats"], ["planted:topk_corr:3"], lgb_params=FAST)
    top = pd.read_csv(work / "03_train" / "topk" / "feature_importance.csv")["feature"].tolist()
    assert top[0] == "planted_top0"


def test_run_outputs_recompute_and_folds_are_shared(synthetic):
    data, work = synthetic
    first = train_run(data, "amazon2025", work, "a", ["text_stats", "tfidf"], ["planted:pca:4"], lgb_params=FAST,
                      tfidf_dim=8)
    second = train_run(data, "amazon2025", work, "b", ["quantity"], ["planted"], lgb_params=FAST)
    oof = pd.read_csv(work / "03_train" / "a" / "oof.csv")
    assert oof["id"].tolist() == data["train"]["sample_id"].tolist() and oof["pred"].notna().all()
    assert smape(oof["target"], oof["pred"]) == pytest.approx(first["cv_smape"], rel=1e-12)
    assert first["folds_sha256"] == second["folds_sha256"]
    assert len(list((work / "03_train" / "a" / "models").glob("fold*.txt"))) == 5
    runs = pd.read_csv(work / "runs.csv")
    assert runs["run"].tolist() == ["a", "b"] and json.loads(runs["features"][0]) == ["text_stats", "tfidf"]
    with pytest.raises(ValueError, match="share folds"):
        train_run(data, "amazon2025", work, "c", ["quantity"], [], n_folds=3)
    with pytest.raises(ValueError, match="share folds"):
        train_run(data, "amazon2025", work, "c", ["quantity"], [], fold_strategy="kfold")


def test_per_fold_transforms_see_only_training_rows(synthetic):
    data, work = synthetic
    seen = []

    class Spy(FoldTransform):
        names = ["spy"]

        def fit(self, rows, y):
            seen.append(set(rows.tolist()))
            return self

        def transform(self, rows):
            return np.zeros((len(rows), 1), np.float32)

    y = data["train"]["price"].to_numpy()
    folds = make_folds(y, 5, seed=0)
    features = FeatureSet(np.zeros((600, 1), np.float32), ["zero"], [], [Spy()], n_train=500)
    cross_validate(LightGBMRegressor(params=FAST, num_threads=1), features, y, folds)
    for fold, rows in enumerate(seen):
        assert rows == set(np.flatnonzero(folds != fold).tolist())


def test_per_group_models_join_the_same_folds(synthetic):
    data, work = synthetic
    metrics = train_run(data, "amazon2025", work, "grouped", ["text_stats", "quantity"], ["planted"],
                        group_by="unit_family", lgb_params=FAST)
    assert metrics["group_by"] == "unit_family" and np.isfinite(metrics["cv_smape"])
    with pytest.raises(ValueError, match="group_by"):
        train_run(data, "amazon2025", work, "bad", ["text_stats"], [], group_by="nope")


def test_neighbour_price_features_never_read_a_rows_own_label():
    from amzkit.ml.transforms import KnnTargetTransform

    rng = np.random.default_rng(3)
    n = 1000
    y = np.exp(rng.normal(2.7, 0.8, n))
    matrix = rng.normal(size=(n + 100, 16)).astype(np.float32)  # unrelated to price: neighbours carry nothing
    rows = np.arange(800)
    transform = KnnTargetTransform("e", matrix, k=5).fit(rows, y[rows])
    own = transform.transform(rows)[:, 0]
    assert abs(np.corrcoef(own, np.log1p(y[rows]))[0, 1]) < 0.1, "a row's own label leaked into its feature"
    valid = transform.transform(np.arange(800, 1000))[:, 0]
    assert np.isfinite(valid).all() and abs(np.corrcoef(valid, np.log1p(y[800:1000]))[0, 1]) < 0.2

    twins = np.repeat(rng.normal(size=(500, 16)), 2, axis=0).astype(np.float32)  # a product listed twice
    twin_y = np.repeat(np.exp(rng.normal(2.7, 0.8, 500)), 2)
    signal = KnnTargetTransform("t", twins, k=1).fit(np.arange(1000), twin_y)
    assert np.corrcoef(signal.transform(np.arange(1000))[:, 0], np.log1p(twin_y))[0, 1] > 0.5, \
        "with real neighbours (twins) the feature carries their price"
    product = np.repeat(np.arange(500), 2)
    grouped = KnnTargetTransform("t", twins, k=1, groups=product).fit(np.arange(1000), twin_y)
    assert abs(np.corrcoef(grouped.transform(np.arange(1000))[:, 0], np.log1p(twin_y))[0, 1]) < 0.15, \
        "with groups, a training row never sees its own product's copy"


def test_twin_price_group_runs_in_the_folds(synthetic):
    data, work = synthetic
    metrics = train_run(data, "amazon2025", work, "twins", ["text_stats", "twin_price"], [], lgb_params=FAST)
    names = pd.read_csv(work / "03_train" / "twins" / "feature_importance.csv")["feature"].tolist()
    assert {"twin_log_price", "twin_similarity"} <= set(names) and np.isfinite(metrics["cv_smape"])


def test_a_misspelt_feature_group_is_refused_naming_every_group(synthetic):
    data, work = synthetic
    with pytest.raises(ValueError, match=r"unknown feature groups \['tfidff'\].*'tfidf'.*'twin_price'"):
        train_run(data, "amazon2025", work, "typo", ["tfidff"], [])


# --- saved presets ---------------------------------------------------------------------------------------

def test_saved_preset_is_resolved_by_name_and_built_in_names_are_protected(synthetic):
    from amzkit.ml.presets import resolve_preset, save_preset, saved_presets

    data, work = synthetic
    tuned = {**PRESETS["default"], "params": {**PRESETS["default"]["params"], **FAST, "num_leaves": 7}}
    save_preset(work, "my-tuned", tuned, info={"note": "by hand"})
    assert saved_presets(work) == ["my-tuned"]
    assert resolve_preset("my-tuned", work)["params"]["num_leaves"] == 7
    metrics = train_run(data, "amazon2025", work, "with_saved", ["text_stats"], ["planted"], preset="my-tuned")
    assert metrics["params"]["num_leaves"] == 7 and metrics["preset"] == "my-tuned"
    with pytest.raises(ValueError, match="built in"):
        save_preset(work, "default", tuned)
    with pytest.raises(ValueError, match="my-tuned"):  # the error lists the saved ones
        train_run(data, "amazon2025", work, "typo", ["text_stats"], [], preset="my-tunde")
    with pytest.raises(ValueError, match="missing"):
        save_preset(work, "broken", {"params": {}})


# --- pseudo-labels ---------------------------------------------------------------------------------------

class _SpyModel(LightGBMRegressor):
    """Records what each fold trains and validates on."""

    calls: list = []

    def fit(self, x_train, y_train, x_valid, y_valid, feature_names=None, categorical=None, weight=None):
        type(self).calls.append({"n_train": len(x_train), "n_valid": len(x_valid), "weight": weight,
                                 "y_train": np.asarray(y_train)})
        return super().fit(x_train, y_train, x_valid, y_valid, feature_names, categorical, weight)


def test_pseudo_rows_train_but_never_validate_and_carry_their_folds_own_labels(synthetic):
    from amzkit.ml.runs import TEST_FOLD_PRED_FILE
    from amzkit.ml.featureset import assemble_features
    from amzkit.ml.pseudo import pseudo_labels
    from amzkit.ml.folds import shared_folds

    data, work = synthetic
    train_run(data, "amazon2025", work, "source", ["text_stats"], ["planted"], lgb_params=FAST)
    fold_pred = pd.read_csv(work / "03_train" / "source" / TEST_FOLD_PRED_FILE)
    assert list(fold_pred.columns) == ["id"] + [f"fold{f}" for f in range(5)]
    from amzkit.core.schema import get_schema

    schema = get_schema("amazon2025")
    folds = shared_folds(work, data["train"], schema, 5, 42, "stratified")
    pseudo = pseudo_labels(work, "source", folds, data["test"]["sample_id"].to_numpy(), 500, fraction=0.3,
                           weight=0.4)
    assert len(pseudo.rows) == 30 and pseudo.rows.min() >= 500
    spread = np.log(fold_pred[[f"fold{f}" for f in range(5)]].to_numpy()).std(axis=1)
    assert spread[pseudo.rows - 500].max() <= np.sort(spread)[29] + 1e-12  # the most confident 30%
    features = assemble_features(data, schema, work, ["text_stats"], ["planted"])
    y = data["train"]["price"].to_numpy()
    _SpyModel.calls = []
    result = cross_validate(_SpyModel(params=FAST, num_threads=1), features, y, folds, pseudo=pseudo)
    for fold, call in enumerate(_SpyModel.calls):
        n_fold_train, n_valid = int((folds != fold).sum()), int((folds == fold).sum())
        assert call["n_valid"] == n_valid, "a validation fold holds only real train rows"
        assert call["n_train"] == n_fold_train + 30
        assert np.allclose(call["weight"][n_fold_train:], 0.4) and np.allclose(call["weight"][:n_fold_train], 1)
        source_fold = fold_pred[f"fold{fold}"].to_numpy()[pseudo.rows - 500]
        assert np.allclose(call["y_train"][n_fold_train:], source_fold), "fold f learns from the fold-f model"
    assert not np.isnan(result["oof"]).any() and len(result["oof"]) == 500


def test_pseudo_labels_on_pure_noise_show_no_honest_gain(tmp_path):
    rng = np.random.default_rng(5)
    data = _frame(400, 400, rng)  # price is noise: nothing in the text says anything about it
    noise = rng.normal(size=(800, 16)).astype(np.float32)
    ids = {s: data[s]["sample_id"].to_numpy() for s in ("train", "test")}
    write_embedding_run(tmp_path, "noise", {"train": (noise[:400], ids["train"]), "test": (noise[400:], ids["test"])})
    common = {"lgb_params": FAST, "num_threads": 1}
    train_run(data, "amazon2025", tmp_path, "source", ["text_stats"], ["noise"], **common)
    metrics = train_run(data, "amazon2025", tmp_path, "pseudo", ["text_stats"], ["noise"], pseudo_label_run="source",
                        pseudo_label_fraction=1.0, pseudo_label_weight=1.0, **common)
    info = metrics["pseudo_label"]
    assert info["rows"] == 400 and info["cv_smape_with"] == pytest.approx(metrics["cv_smape"])
    assert info["cv_smape_with"] > info["cv_smape_without"] - 1.0, info


def test_pseudo_labels_refuse_a_source_from_other_folds(synthetic, tmp_path):
    data, work = synthetic
    train_run(data, "amazon2025", work, "source", ["text_stats"], [], lgb_params=FAST)
    other = work / "03_train" / "source" / "metrics.json"
    metrics = json.loads(other.read_text())
    other.write_text(json.dumps({**metrics, "folds_sha256": "0" * 64}))
    with pytest.raises(ValueError, match="other folds"):
        train_run(data, "amazon2025", work, "pseudo", ["text_stats"], [], pseudo_label_run="source")
    with pytest.raises(ValueError, match="missing"):
        train_run(data, "amazon2025", work, "pseudo", ["text_stats"], [], pseudo_label_run="nope")


def test_every_feature_group_is_reachable_by_name_from_train_run(synthetic):
    """The groups 03's `features` parameter accepts, text ones end to end (image ones: test_imagefeatures)."""
    from amzkit.ml.featureset import all_feature_groups

    data, work = synthetic
    groups = all_feature_groups()
    assert {"premium_value", "materials", "interactions", "brand_price", "material_price", "twin_price",
            "image_meta", "colour"} <= set(groups)
    text_groups = [g for g in groups if g not in ("image_meta", "colour")]
    metrics = train_run(data, "amazon2025", work, "everything", text_groups, [], lgb_params=FAST, num_threads=1)
    names = pd.read_csv(work / "03_train" / "everything" / "feature_importance.csv")["feature"]
    assert names.is_unique and {"brand_price_mean", "material_price_mean", "premium_net"} <= set(names)
    assert metrics["features"] == text_groups
