"""03_train: shared folds, nothing fit outside the training fold, presets, runs that can be trusted."""

from __future__ import annotations

import json
import types
import warnings

import lightgbm as lgb
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from amzkit.core.metric import constant_oof, smape
from amzkit.core.schema import get_schema
from amzkit.embed.runs import load_embeddings
from amzkit.ml.cv import cross_validate
from amzkit.ml.featureset import FeatureSet, parse_embedding_spec
from amzkit.ml.folds import make_folds, shared_folds
from amzkit.ml.presets import PRESETS
from amzkit.ml.pseudo import pseudo_labels
from amzkit.ml.runs import PROGRESS_DIR, TEST_FOLD_PRED_FILE, unfinished_runs
from amzkit.ml.transforms import FoldTransform, KnnTargetTransform, PcaTransform, TopKCorrTransform
from amzkit.ml.trees import LightGBMLearner
from amzkit.stages import train as train_module
from amzkit.stages.train import fold_fits_summary, train_run
from amzkit.stages.train_plots import plot_importance, plot_oof
from amzkit.testing import feature_learner, synthetic_inputs, write_embedding_run

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
    config = LightGBMLearner(preset="seed", num_threads=3).config()["params"]
    assert {k: config[k] for k in roadmap if k != "n_jobs"} == {k: v for k, v in roadmap.items() if k != "n_jobs"}
    assert config["num_threads"] == 3 and "n_jobs" not in config  # threads are the kit's decision (core.threads)
    assert PRESETS["default"]["target"] == "log1p" and PRESETS["default"]["params"]["objective"] == "l1"


def test_embedding_specs_parse_and_typos_are_refused():
    assert parse_embedding_spec("minilm") == ("minilm", "all", 0)
    assert parse_embedding_spec("fashion-siglip:topk_corr:50") == ("fashion-siglip", "topk_corr", 50)
    assert parse_embedding_spec("x:pca:8") == ("x", "pca", 8)
    for bad in ("x:topk:5", "x:pca:", "x:pca:0", "x:pca:8:1"):
        with pytest.raises(ValueError, match="topk_corr"):
            parse_embedding_spec(bad)


def test_a_model_given_where_its_run_belongs_is_told_the_run_name(tmp_path):
    """A user who ran 01 with -p model local-dir:<folder> and passed the same text to 03's embeddings (or 02's runs,
    or the knn learner's embedding) was told only how specs are written, or that it is no plain name: the run's
    name (the folder's) is what 02-05 take."""
    folder = tmp_path / "models" / "my clip"  # not on disk: a Kaggle input path is named by the same rule
    for given, run in ((f"local-dir:{folder}", "my-clip"), (f"local-dir-text:{folder}", "my-clip-text"),
                       ("hf-hub:Marqo/marqo-fashionSigLIP", "fashion-siglip")):
        with pytest.raises(ValueError, match=f"its run is named '{run}'.*write '{run}:pca:16'"):
            parse_embedding_spec(f"{given}:pca:16")
        with pytest.raises(ValueError, match=f"its run is named '{run}'.*write '{run}'"):
            parse_embedding_spec(given)
        with pytest.raises(ValueError, match=f"its run is named '{run}'"):
            load_embeddings(tmp_path, given, "train", [1, 2])


class _LeakyTopK(TopKCorrTransform):
    """What a careless pipeline does: select dimensions on every train row, validation rows included."""

    def __init__(self, name, matrix, k, y_all):
        super().__init__(name, matrix, k)
        self.y_all = y_all

    def fit(self, rows, y):
        return super().fit(np.arange(len(self.y_all)), self.y_all)


def _cv(features, y, folds, groups=None):
    return smape(y, cross_validate(feature_learner(features, y, groups=groups, params=FAST), folds)["oof"])


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
    # plain folds with no notion of products (inner early-stopping rows are plain rows too) vs grouped folds
    leaky_score, honest_score = _cv(features, price, plain), _cv(features, price, grouped, product)
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


def test_importance_names_each_features_group_and_the_plot_sums_them(synthetic):
    """Label-free, fold-fit and embedding columns each carry the group (or embedding spec) that made them."""
    data, work = synthetic
    train_run(data, "amazon2025", work, "grouped", ["text_stats", "tfidf"], ["planted", "planted:pca:4"],
              lgb_params=FAST, tfidf_dim=8)
    table = pd.read_csv(work / "03_train" / "grouped" / "feature_importance.csv")
    groups = table.set_index("feature")["group"]
    assert groups["planted_7"] == "planted" and groups["planted_pc0"] == "planted:pca:4"
    assert groups["tfidf_0"] == "tfidf" and groups["upper_ratio"] == "text_stats"
    assert table.groupby("group").size().to_dict() == {"planted": 32, "planted:pca:4": 4, "tfidf": 8,
                                                        "text_stats": (groups == "text_stats").sum()}
    fig = plot_importance(work, "grouped")
    shares = fig.axes[1].patches
    assert len(shares) == 4 and sum(bar.get_width() for bar in shares) == pytest.approx(1.0)
    top = max(shares, key=lambda bar: bar.get_width())
    labels = [t.get_text() for t in fig.axes[1].get_yticklabels()]
    assert labels[shares.index(top)] == "planted (32)"  # the planted signal's group holds most of the gain


def test_a_view_asking_more_dimensions_than_its_run_has_says_what_it_keeps(synthetic):
    """'planted:pca:64' of a 32-d run kept 32 components without a word (runs.csv and metrics say pca:64)."""
    data, work = synthetic
    with pytest.warns(UserWarning, match=r"'planted:pca:64': run 'planted' has 32 dimensions, so this view keeps "
                                         r"32, not 64.*'planted:pca:32'"):
        train_run(data, "amazon2025", work, "wide", ["quantity"], ["planted:pca:64"], lgb_params=FAST)
    table = pd.read_csv(work / "03_train" / "wide" / "feature_importance.csv")
    assert (table["group"] == "planted:pca:64").sum() == 32
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_run(data, "amazon2025", work, "fits", ["quantity"], ["planted:topk_corr:32"], lgb_params=FAST)
    assert not [w for w in caught if "dimensions, so this view keeps" in str(w.message)]  # within the run's size


def test_a_first_run_that_fails_leaves_no_folds_to_be_bound_by(synthetic):
    """A typo (an embedding run 01 never made) must not fix n_folds 5 for the corrected run after it."""
    data, work = synthetic
    with pytest.raises(FileNotFoundError, match="no embedding run 'plantd'"):
        train_run(data, "amazon2025", work, "typo", ["quantity"], ["plantd"], lgb_params=FAST)
    assert not (work / "03_train" / "folds.csv").exists()
    m = train_run(data, "amazon2025", work, "three", ["quantity"], ["planted"], lgb_params=FAST, n_folds=3)
    assert m["n_folds"] == 3 and (work / "03_train" / "folds.csv").is_file()
    with pytest.raises(FileNotFoundError, match="no embedding run 'plantd'"):  # folds kept: checked, not remade
        train_run(data, "amazon2025", work, "typo", ["quantity"], ["plantd"], lgb_params=FAST, n_folds=3)


def test_folds_of_other_train_rows_say_how_the_rows_differ(synthetic):
    data, work = synthetic
    train_run(data, "amazon2025", work, "a", ["quantity"], [], lgb_params=FAST)
    shuffled = {**data, "train": data["train"].iloc[::-1].reset_index(drop=True)}
    with pytest.raises(ValueError, match=r"the same ids in another row order\): put train.csv's rows back"):
        train_run(shuffled, "amazon2025", work, "b", ["quantity"], [], lgb_params=FAST)
    fewer = {**data, "train": data["train"].iloc[:-3].reset_index(drop=True)}
    with pytest.raises(ValueError, match="0 ids added, 3 gone\\): use a new work_dir"):
        train_run(fewer, "amazon2025", work, "b", ["quantity"], [], lgb_params=FAST)


def test_a_whole_embedding_run_with_no_row_embedded_is_refused_by_name(synthetic):
    """An image run kept with images_offline_ok and no picture: its columns would be all NaN, silently."""
    data, work = synthetic
    empty = np.full((500, 4), np.nan, np.float32)
    write_embedding_run(work, "nopics", {"train": (empty, data["train"]["sample_id"].to_numpy()),
                                         "test": (np.full((100, 4), np.nan, np.float32),
                                                  data["test"]["sample_id"].to_numpy())})
    with pytest.raises(ValueError, match="embedding run 'nopics': 0 of this fold's 500 training rows have it"):
        train_run(data, "amazon2025", work, "x", ["quantity"], ["nopics"], lgb_params=FAST)


def test_a_pca_view_wider_than_a_folds_rows_says_so_not_that_01_embedded_nothing():
    """Every row has the embedding: the fold is what is too small for 'run:pca:64', so the fix is a smaller N."""
    matrix = np.random.default_rng(0).normal(size=(60, 100)).astype(np.float32)
    with pytest.raises(ValueError, match=r"'minilm:pca:64' needs 64 training rows to fit on, and this fold has 48: "
                                         r"pass a smaller size \(e.g. 'minilm:pca:24'\)") as caught:
        PcaTransform("minilm", matrix, 64).fit(np.arange(48), np.ones(48))
    assert "01 fetched" not in str(caught.value)


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
    cross_validate(feature_learner(features, y, params=FAST), folds)
    for fold, rows in enumerate(seen):
        assert rows == set(np.flatnonzero(folds != fold).tolist())


def test_per_group_models_join_the_same_folds(synthetic):
    data, work = synthetic
    metrics = train_run(data, "amazon2025", work, "grouped", ["text_stats", "quantity"], ["planted"],
                        group_by="unit_family", lgb_params=FAST)
    assert metrics["group_by"] == "unit_family" and np.isfinite(metrics["cv_smape"])
    assert all("group_models" in fit for fit in metrics["fold_fits"])  # 0 counts too: the user is told so
    assert "group_by 'unit_family': " in fold_fits_summary(metrics)
    with pytest.raises(ValueError, match="group_by"):
        train_run(data, "amazon2025", work, "bad", ["text_stats"], [], group_by="nope")


def test_neighbour_price_features_never_read_a_rows_own_label():
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


def test_a_python_caller_giving_one_embedding_as_text_gets_that_run_not_its_letters(synthetic):
    """train_run(..., embeddings="planted") was list("planted"): runs 'p', 'l', ... refused by name."""
    data, work = synthetic
    metrics = train_run(data, "amazon2025", work, "one", "quantity", "planted", lgb_params=FAST)
    assert metrics["features"] == ["quantity"] and metrics["embeddings"] == ["planted"]


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


def test_a_saved_preset_edited_with_a_key_no_preset_has_is_refused_naming_it(tmp_path):
    # a hand-edited saved preset's misplaced key (a LightGBM param beside "params", a misspelt rounds key) was
    # dropped silently: the run trained without it and recorded the preset as given
    from amzkit.ml.presets import preset_path, resolve_preset, save_preset

    save_preset(tmp_path, "edited", PRESETS["default"], info={"note": "by hand"})
    path = preset_path(tmp_path, "edited")
    assert resolve_preset("edited", tmp_path) == PRESETS["default"], "save_preset's own info is no preset key"
    path.write_text(json.dumps({**json.loads(path.read_text()), "num_leaves": 127}))
    with pytest.raises(ValueError, match=r"edited.*unknown \['num_leaves'\]"):
        resolve_preset("edited", tmp_path)


def test_a_presets_round_counts_and_params_are_checked_before_lightgbm_sees_them():
    # "4000" or a params list passed the check and failed later inside LightGBM, far from the preset that held it
    from amzkit.ml.presets import check_preset

    base = json.loads(json.dumps(PRESETS["default"]))
    assert check_preset({**base, "n_estimators": 4000.0})["n_estimators"] == 4000  # a JSON edit's float
    for key, value in (("n_estimators", "4000"), ("n_estimators", 0), ("early_stopping_rounds", 2.5),
                       ("early_stopping_rounds", True), ("n_estimators", float("inf"))):
        with pytest.raises(ValueError, match=f"mine: {key} must be a whole number of rounds >= 1"):
            check_preset({**base, key: value}, "mine")
    with pytest.raises(ValueError, match="mine: params must be a dict"):
        check_preset({**base, "params": [["objective", "l1"]]}, "mine")


# --- pseudo-labels ---------------------------------------------------------------------------------------

class _SpyLearner(LightGBMLearner):
    """Records what each fold trains and watches (early stopping) on."""

    calls: list = []

    def _fit_rows(self, rows, x, y, weight):
        type(self).calls.append({"rows": np.asarray(rows), "weight": weight, "y": np.asarray(y),
                                 "watch": np.asarray(rows)[self._watch_rows(rows)]})
        return super()._fit_rows(rows, x, y, weight)


def test_pseudo_rows_train_but_never_validate_and_carry_their_folds_own_labels(synthetic):
    data, work = synthetic
    train_run(data, "amazon2025", work, "source", ["text_stats"], ["planted"], lgb_params=FAST)
    fold_pred = pd.read_csv(work / "03_train" / "source" / TEST_FOLD_PRED_FILE)
    assert list(fold_pred.columns) == ["id"] + [f"fold{f}" for f in range(5)]
    schema = get_schema("amazon2025")
    folds = shared_folds(work, data["train"], schema, 5, 42, "group")
    pseudo = pseudo_labels(work, "source", folds, data["test"]["sample_id"].to_numpy(),
                           data["train"]["sample_id"].to_numpy(), fraction=0.3, weight=0.4)
    assert len(pseudo.rows) == 30 and pseudo.rows.min() >= 500
    spread = np.log(fold_pred[[f"fold{f}" for f in range(5)]].to_numpy()).std(axis=1)
    assert spread[pseudo.rows - 500].max() <= np.sort(spread)[29] + 1e-12  # the most confident 30%
    from amzkit.ml.base import RunInputs

    learner = _SpyLearner(features=["text_stats"], embeddings=["planted"], params=FAST, num_threads=1)
    learner.prepare(RunInputs(data, schema, work))
    _SpyLearner.calls = []
    result = cross_validate(learner, folds, pseudo=pseudo)
    for fold, call in enumerate(_SpyLearner.calls):
        training = set(np.flatnonzero(folds != fold).tolist())
        assert set(call["rows"][call["rows"] < 500].tolist()) == training, "real rows: this fold's training rows"
        assert set(call["rows"][call["rows"] >= 500].tolist()) == set(pseudo.rows.tolist())
        assert set(call["watch"].tolist()) <= training, "early stopping watches training rows only"
        pseudo_part = call["rows"] >= 500
        assert np.allclose(call["weight"][pseudo_part], 0.4) and np.allclose(call["weight"][~pseudo_part], 1)
        source_fold = fold_pred[f"fold{fold}"].to_numpy()[call["rows"][pseudo_part] - 500]
        assert np.allclose(call["y"][pseudo_part], source_fold), "fold f learns from the fold-f model"
    assert not np.isnan(result["oof"]).any() and len(result["oof"]) == 500


def test_a_pseudo_label_source_without_metrics_is_named_not_a_raw_file_error(synthetic):
    """A source run stopped while saving (its fold predictions written, metrics.json not) raised FileNotFoundError."""
    data, work = synthetic
    train_run(data, "amazon2025", work, "source", ["text_stats"], ["planted"], lgb_params=FAST)
    (work / "03_train" / "source" / "metrics.json").unlink()
    folds = shared_folds(work, data["train"], get_schema("amazon2025"), 5, 42, "group")
    with pytest.raises(ValueError, match=r"pseudo-label source 'source' has not finished.*metrics\.json.*rerun 03"):
        pseudo_labels(work, "source", folds, data["test"]["sample_id"].to_numpy(),
                      data["train"]["sample_id"].to_numpy(), fraction=0.3, weight=0.4)


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
    # pseudo-labels may shrink predictions toward the median, but nothing honest beats the median on noise
    assert info["cv_smape_with"] > metrics["constant_median_smape"] - 1.0, (info, metrics["constant_median_smape"])


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
    before = (work / "03_train" / "source" / "oof.csv").read_bytes()
    with pytest.raises(ValueError, match=r"pseudo_label_run 'source' is this run: .* -p run_name source_pseudo"):
        train_run(data, "amazon2025", work, "source", ["text_stats"], [], pseudo_label_run="source")
    assert (work / "03_train" / "source" / "oof.csv").read_bytes() == before, "the run is left as it was"


def test_pseudo_labels_refuse_a_source_of_other_train_rows_in_folds_numbered_alike(synthetic):
    """kfold's fold numbers depend on the row count and seed alone: train.csv's rows reordered and folds.csv made
    anew give the same folds_sha256, while the source's fold-0 model trained on rows this run scores in fold 0."""
    data, work = synthetic
    train_run(data, "amazon2025", work, "source", ["text_stats"], [], lgb_params=FAST, fold_strategy="kfold")
    shuffled = {"train": data["train"].sample(frac=1, random_state=0).reset_index(drop=True), "test": data["test"]}
    for name in ("folds.csv", "folds.json"):  # what the error on the reordered rows tempts a user into
        (work / "03_train" / name).unlink()
    with pytest.raises(ValueError, match="pseudo-label source 'source' was trained on other train rows"):
        train_run(shuffled, "amazon2025", work, "pseudo", ["text_stats"], [], lgb_params=FAST, fold_strategy="kfold",
                  pseudo_label_run="source")
    assert not (work / "03_train" / "pseudo").exists()


@pytest.mark.parametrize("edit", ["train_prices", "test_text"])
def test_pseudo_labels_refuse_a_source_made_from_other_rows_with_the_same_ids(synthetic, edit):
    """Only the source's ids and folds were checked: train.csv's prices (or test.csv's text) edited under the same ids,
    a pseudo-label run took the labels of the source's models of the old rows without a word, and 04 and 05 then
    took the run as one of the new rows."""
    data, work = synthetic
    train_run(data, "amazon2025", work, "source", ["text_stats"], [], lgb_params=FAST, num_threads=1)
    edited = {split: frame.copy() for split, frame in data.items()}
    if edit == "train_prices":
        edited["train"]["price"] = edited["train"]["price"] * 2
    else:
        edited["test"]["catalog_content"] = edited["test"]["catalog_content"] + " Bullet Point 1: new words"
    with pytest.raises(ValueError, match=f"pseudo-label source 'source' was made from other {edit.split('_')[0]} "
                                         "rows with the same ids"):
        train_run(edited, "amazon2025", work, "pseudo", ["text_stats"], [], lgb_params=FAST, num_threads=1,
                  pseudo_label_run="source")
    assert not (work / "03_train" / "pseudo").exists()
    same = {split: frame.copy() for split, frame in data.items()}
    metrics = train_run(same, "amazon2025", work, "pseudo", ["text_stats"], [], lgb_params=FAST, num_threads=1,
                        pseudo_label_run="source")
    assert metrics["pseudo_label"]["source"] == "source", "the rows it was made from: accepted"


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


# --- honest early stopping, resume, the runs log ------------------------------------------------------------

def _scored_fold_early_stopping(features: FeatureSet, y: np.ndarray, folds: np.ndarray, params: dict) -> float:
    """What the kit must never do: choose the number of trees on the very fold that is then scored."""
    oof = np.empty(len(y))
    for fold in np.unique(folds):
        train, valid = folds != fold, folds == fold
        train_set = lgb.Dataset(features.static[:len(y)][train], np.log1p(y[train]))
        valid_set = lgb.Dataset(features.static[:len(y)][valid], np.log1p(y[valid]), reference=train_set)
        booster = lgb.train({**PRESETS["default"]["params"], **params, "seed": 0, "num_threads": 1}, train_set,
                            num_boost_round=2000, valid_sets=[valid_set],
                            callbacks=[lgb.early_stopping(200, verbose=False)])
        oof[valid] = np.expm1(booster.predict(features.static[:len(y)][valid], num_iteration=booster.best_iteration))
    return smape(y, oof)


def test_no_cv_score_is_chosen_on_its_own_fold():
    """Pure-noise prices, small folds, a learner whose trees swing: choosing the number of trees on the scored fold
    fakes a gain over the constant median; the kit's CV (early stopping inside the training rows) shows none."""
    swingy = {"learning_rate": 0.2, "num_leaves": 4, "min_data_in_leaf": 5, "bagging_fraction": 0.3, "bagging_freq": 1}
    gaps = []
    for seed in range(6):  # six small data sets: the verdict rests on their mean, not on one draw
        rng = np.random.default_rng(seed)
        y = np.exp(rng.normal(2.7, 0.8, 150))
        features = FeatureSet(rng.normal(size=(150, 20)).astype(np.float32), [f"noise{i}" for i in range(20)], [],
                              n_train=150)
        folds = make_folds(y, 5, seed=0, strategy="kfold")
        constant = smape(y, constant_oof(y, folds))
        flattered = _scored_fold_early_stopping(features, y, folds, swingy)
        honest = smape(y, cross_validate(feature_learner(features, y, params=swingy), folds, progress=False)["oof"])
        gaps.append((flattered - constant, honest - constant))
    flattered_gap, honest_gap = np.mean(gaps, axis=0)
    assert flattered_gap < -1.0, gaps  # the plant works: stopping on the scored fold flatters the score
    assert honest_gap > -0.5, gaps  # the kit's CV claims no gain on noise


class _Interrupt(RuntimeError):
    pass


class _DiesOnFold(LightGBMLearner):
    """Killed (like a Kaggle session) when it starts fitting its `die_at`-th fold."""

    die_at = 3

    def fit(self, rows, y, weight=None):
        type(self).fits = getattr(type(self), "fits", 0) + 1
        if type(self).fits == type(self).die_at:
            raise _Interrupt("session killed")
        return super().fit(rows, y, weight)


def test_a_killed_run_resumes_at_its_first_unfinished_fold_with_the_same_result(synthetic, tmp_path,
                                                                                 monkeypatch):
    data, work = synthetic
    whole = train_run(data, "amazon2025", work, "whole", ["text_stats"], ["planted"], lgb_params=FAST, num_threads=1)
    killed = _DiesOnFold(features=["text_stats"], embeddings=["planted"], params=FAST, num_threads=1)
    _DiesOnFold.fits = 0
    slow = types.SimpleNamespace(now=0.0)

    def slow_clock() -> float:  # the killed session's clock: every reading 1,000 s after the last
        slow.now += 1000.0
        return slow.now

    with pytest.raises(_Interrupt), monkeypatch.context() as patch:
        patch.setattr(train_module, "time", types.SimpleNamespace(perf_counter=slow_clock))  # train.py's only
        train_run(data, "amazon2025", work, "resumed", learner=killed)
    kept = json.loads((work / "03_train" / "resumed" / "progress" / "progress.json").read_text())
    _DiesOnFold.fits, _DiesOnFold.die_at = 0, 99
    resumed = train_run(data, "amazon2025", work, "resumed", learner=killed)
    # its seconds count the killed session's kept folds too, not only the resumed part (runs.csv compares runs)
    assert kept["seconds"] >= 2000 and resumed["seconds"] >= kept["seconds"]
    assert _DiesOnFold.fits == 3, "folds 0 and 1 were kept, folds 2..4 ran"
    oof = [pd.read_csv(work / "03_train" / name / "oof.csv")["pred"].to_numpy() for name in ("whole", "resumed")]
    np.testing.assert_allclose(oof[0], oof[1], rtol=1e-12)
    assert resumed["cv_smape"] == pytest.approx(whole["cv_smape"], rel=1e-12)
    assert not (work / "03_train" / "resumed" / "progress").exists(), "a finished run keeps no progress folder"
    # what early stopping chose in each fold, the kept folds' included
    assert resumed["fold_fits"] == whole["fold_fits"]
    assert len(whole["fold_fits"]) == 5
    assert all(1 <= fit["trees"][0] < PRESETS["default"]["n_estimators"] for fit in whole["fold_fits"])
    assert len({fit["trees"][0] for fit in whole["fold_fits"]}) > 1, "each fold's own choice, not one number"


_KILLED = {"features": ["text_stats"], "embeddings": ["planted"], "params": FAST, "num_threads": 1}


def _kill(data, work, name: str, **settings) -> None:
    """Run `name` (the _KILLED learner with `settings`) until it is killed as it starts its third fold."""
    _DiesOnFold.fits, _DiesOnFold.die_at = 0, 3
    with pytest.raises(_Interrupt):
        train_run(data, "amazon2025", work, name, learner=_DiesOnFold(**{**_KILLED, **settings}))


def _rerun(data, work, name: str, **settings) -> dict:
    """Run `name` again to the end; `_DiesOnFold.fits` then counts the folds it fitted."""
    _DiesOnFold.fits, _DiesOnFold.die_at = 0, 99
    return train_run(data, "amazon2025", work, name, learner=_DiesOnFold(**{**_KILLED, **settings}))


def test_kept_folds_of_another_setup_are_not_reused(synthetic):
    data, work = synthetic
    _kill(data, work, "changed")
    _rerun(data, work, "changed", features=["quantity"])
    assert _DiesOnFold.fits == 5, "another feature list: every fold runs again"


@pytest.mark.parametrize("change", [
    {"refit": False}, {"valid_fraction": 0.3}, {"group_by": "n_bullets"},
    {"preset": {**PRESETS["default"], "n_estimators": 50}}, {"preset": {**PRESETS["default"], "target": "raw"}},
], ids=["refit", "valid_fraction", "group_by", "preset_rounds", "preset_target"])
def test_a_setting_that_changes_the_model_does_not_resume_kept_folds(synthetic, change):
    data, work = synthetic
    _kill(data, work, "setting")
    metrics = _rerun(data, work, "setting", **change)
    assert _DiesOnFold.fits >= 5, f"{change}: every fold runs again"
    key = next(iter(change))
    recorded = metrics["preset_config"] if key == "preset" else metrics["settings"]
    want = {k: v for k, v in change[key].items() if k != "params"} if key == "preset" else change
    assert {k: recorded[k] for k in want} == want, "metrics record the setting"


def test_kept_folds_are_not_reused_when_the_csv_text_or_01s_outputs_change(synthetic, capsys):
    # the fingerprint held the ids and prices only: a run killed, its text edited (same ids, same prices) and
    # rerun resumed 2 folds fitted on the old text, silently mixing them into the new run
    data, work = synthetic
    edited = {split: frame.copy() for split, frame in data.items()}
    edited["train"]["catalog_content"] = edited["train"]["catalog_content"] + " Bullet Point 1: new words here"
    _kill(data, work, "text")
    _rerun(edited, work, "text")
    assert _DiesOnFold.fits == 5 and "resuming" not in capsys.readouterr().out, "edited text: every fold again"
    edited["test"]["catalog_content"] = edited["test"]["catalog_content"].str.upper()
    _kill(edited, work, "test_text")
    _rerun({**edited, "test": data["test"]}, work, "test_text")
    assert _DiesOnFold.fits == 5, "edited test text: every fold again (its test predictions came from the old text)"
    _kill(data, work, "embedded")
    manifest = work / "01_extract" / "planted" / "manifest.json"
    manifest.write_text(manifest.read_text().replace("{", '{"rewritten": 1, ', 1))  # 01 wrote its run again
    _rerun(data, work, "embedded")
    assert _DiesOnFold.fits == 5, "01 wrote the embeddings again: every fold again"
    _kill(data, work, "same")
    _rerun({split: frame.copy() for split, frame in data.items()}, work, "same")
    assert _DiesOnFold.fits == 3, "the same inputs (another copy of them) still resume"


def test_a_kill_while_saving_leaves_an_unfinished_run_that_04_and_05_refuse(synthetic, monkeypatch, capsys):
    # save_run replaced oof.csv, then test_pred.csv, then metrics.json: a kill between them left new OOF beside
    # old test predictions and old metrics, and 04/05 used them without a word
    from amzkit.ml import runs as runs_module
    from amzkit.stages.ensemble import ensemble
    from amzkit.stages.submit import source_predictions
    from amzkit.testing import kill_after_writing

    data, work = synthetic
    train_run(data, "amazon2025", work, "saved", ["text_stats"], ["planted"], lgb_params=FAST, num_threads=1)
    kill_after_writing(monkeypatch, runs_module, "oof.csv", _Interrupt("session killed while saving"))
    with pytest.raises(_Interrupt):
        train_run(data, "amazon2025", work, "saved", ["quantity"], ["planted"], lgb_params=FAST, num_threads=1)
    monkeypatch.undo()
    run_dir = work / "03_train" / "saved"
    assert (run_dir / "oof.csv").is_file() and not (run_dir / "metrics.json").exists()
    with pytest.raises(FileNotFoundError, match="run 'saved' has not finished.*rerun 03_train"):
        ensemble(work, ["saved"])
    with pytest.raises(FileNotFoundError, match="'saved' did not finish.*no metrics.json"):
        source_predictions(work, "saved")
    train_run(data, "amazon2025", work, "other", ["text_stats"], ["planted"], lgb_params=FAST, num_threads=1)
    capsys.readouterr()
    metrics = ensemble(work, [])
    assert metrics["runs"] == ["other"]
    assert "saved: never finished: left out" in capsys.readouterr().out


def test_a_rerun_killed_in_its_first_fold_is_named_by_04_as_stopped(synthetic, capsys):
    """A rerun of a finished run name with another setup, killed before it kept a fold, left no progress folder: 04
    blended the old run without the note it gives one fold later ("a rerun was stopped")."""
    from amzkit.ml.runs import unfinished_runs
    from amzkit.stages.ensemble import ensemble

    data, work = synthetic
    train_run(data, "amazon2025", work, "rerun", ["text_stats"], ["planted"], lgb_params=FAST, num_threads=1)
    _DiesOnFold.fits, _DiesOnFold.die_at = 0, 1
    with pytest.raises(_Interrupt):
        train_run(data, "amazon2025", work, "rerun", learner=_DiesOnFold(**{**_KILLED, "features": ["quantity"]}))
    assert "rerun was stopped" in unfinished_runs(work).get("rerun", "")
    capsys.readouterr()
    ensemble(work, ["rerun"])
    assert "rerun: a rerun was stopped" in capsys.readouterr().out
    _DiesOnFold.fits, _DiesOnFold.die_at = 0, 1
    with pytest.raises(_Interrupt):
        train_run(data, "amazon2025", work, "first", learner=_DiesOnFold(**_KILLED))
    assert unfinished_runs(work).get("first") == "never finished: left out"
    _rerun(data, work, "rerun", features=["quantity"])
    assert "rerun" not in unfinished_runs(work)


class _DiesInPrepare(LightGBMLearner):
    """Killed (like a Kaggle session) while it builds its features, before any fold."""

    def prepare(self, inputs):
        raise _Interrupt("session killed in prepare")


def test_a_rerun_killed_while_preparing_is_named_by_04_as_stopped(synthetic, capsys):
    """A rerun of a finished run name with another setup, killed while its learner prepared (features, embeddings:
    minutes for a big run), left no progress folder: 04 and 05 used the old run without a word, as before 03 kept
    the folder from the first fold."""
    from amzkit.ml.runs import unfinished_runs
    from amzkit.stages.ensemble import ensemble

    data, work = synthetic
    train_run(data, "amazon2025", work, "rerun", ["text_stats"], ["planted"], lgb_params=FAST, num_threads=1)
    with pytest.raises(_Interrupt):
        train_run(data, "amazon2025", work, "rerun", learner=_DiesInPrepare(**{**_KILLED, "features": ["quantity"]}))
    assert "rerun was stopped" in unfinished_runs(work).get("rerun", "")
    capsys.readouterr()
    ensemble(work, ["rerun"])
    assert "rerun: a rerun was stopped" in capsys.readouterr().out
    with pytest.raises(_Interrupt):  # a new name killed there left nothing 04 could use, nor has to name
        train_run(data, "amazon2025", work, "first", learner=_DiesInPrepare(**_KILLED))
    assert "first" not in unfinished_runs(work)
    _rerun(data, work, "rerun", features=["quantity"])
    assert "rerun" not in unfinished_runs(work) and _DiesOnFold.fits == 5


@pytest.mark.parametrize("split", ["train", "test"])
def test_04_refuses_a_column_read_from_csvs_edited_under_the_same_ids_since_its_runs(synthetic, split):
    """04 checked a calibrate_by / meta_features column only for the runs' ids: read from a CSV edited since 03 (same
    ids, other text), it grouped or fed the runs' rows by values they were not made from, as the README says it
    refuses."""
    from types import SimpleNamespace

    from amzkit.app.runners import Context, run_ensemble

    data, work = synthetic
    train_run(data, "amazon2025", work, "base", ["text_stats"], ["planted"], lgb_params=FAST, num_threads=1)
    edited = {name: frame.copy() for name, frame in data.items()}
    edited[split]["catalog_content"] = edited[split]["catalog_content"].str.replace("Unit: Count", "Unit: Ounce")
    params = SimpleNamespace(runs=["base"], method="blend", meta="ridge", calibrate_by="unit_family",
                             meta_features=[], factor_min=0.7, factor_max=1.3, min_group_rows=50)
    with pytest.raises(ValueError, match=f"calibrate_by / meta_features columns were read from a {split}.csv whose "
                                         "rows differ from those the 03 runs were made from"):
        run_ensemble(Context("04_ensemble", params, get_schema("amazon2025"), work, data=edited))
    assert not (work / "04_ensemble" / "metrics.json").exists()
    same = {name: frame.copy() for name, frame in data.items()}
    assert run_ensemble(Context("04_ensemble", params, get_schema("amazon2025"), work, data=same))["runs"] == ["base"]


def test_a_kill_after_the_importance_table_leaves_no_finished_old_run_beside_it(synthetic, monkeypatch):
    """feature_importance.csv was written before save_run removed the old metrics.json: killed in between, the old
    finished run stood with the new run's importance table (and plot)."""
    from amzkit.stages import train as train_module
    from amzkit.testing import kill_after_writing

    data, work = synthetic
    train_run(data, "amazon2025", work, "saved", ["text_stats"], ["planted"], lgb_params=FAST, num_threads=1)
    kill_after_writing(monkeypatch, train_module, "feature_importance.csv", _Interrupt("killed"))
    with pytest.raises(_Interrupt):
        train_run(data, "amazon2025", work, "saved", ["quantity"], ["planted"], lgb_params=FAST, num_threads=1)
    assert not (work / "03_train" / "saved" / "metrics.json").exists()


def test_a_kill_between_the_two_fold_files_never_leaves_folds_without_their_settings(synthetic, monkeypatch):
    # folds.csv was written before folds.json: killed in between, folds.json was never written, and a later run
    # asking for other folds (seed 7, kfold) was given the old ones while its metrics said seed 7, kfold
    import amzkit.ml.folds as folds_module

    data, work = synthetic
    writes = []

    def second_write_dies(real):
        def write(*args, **kwargs):
            if writes:
                raise _Interrupt("session killed between the fold files")
            writes.append(real(*args, **kwargs))
        return write

    with monkeypatch.context() as patch:
        for name in ("write_csv", "write_json"):
            patch.setattr(folds_module, name, second_write_dies(getattr(folds_module, name)))
        with pytest.raises(_Interrupt):
            folds_module.shared_folds(work, data["train"], get_schema("amazon2025"), 5, 42, "group")
    folder = work / "03_train"
    assert not (folder / "folds.csv").exists() or (folder / "folds.json").exists()
    folds = folds_module.shared_folds(work, data["train"], get_schema("amazon2025"), 4, 7, "kfold")
    assert len(np.unique(folds)) == 4 and json.loads((folder / "folds.json").read_text())["seed"] == 7


def test_a_killed_pseudo_label_run_resumes_both_passes(synthetic):
    # the pass without pseudo-labels kept nothing: a run killed in its pseudo-labelled pass fitted all 5 folds
    # without them again on every restart
    data, work = synthetic
    train_run(data, "amazon2025", work, "source", ["text_stats"], ["planted"], lgb_params=FAST, num_threads=1)
    whole = train_run(data, "amazon2025", work, "pseudo_whole", ["text_stats"], ["planted"], lgb_params=FAST,
                      num_threads=1, pseudo_label_run="source")
    _DiesOnFold.fits, _DiesOnFold.die_at = 0, 5 + 3  # 5 folds without pseudo-labels, then the third with them
    with pytest.raises(_Interrupt):
        train_run(data, "amazon2025", work, "pseudo", learner=_DiesOnFold(**_KILLED), pseudo_label_run="source")
    _DiesOnFold.fits, _DiesOnFold.die_at = 0, 99
    resumed = train_run(data, "amazon2025", work, "pseudo", learner=_DiesOnFold(**_KILLED), pseudo_label_run="source")
    assert _DiesOnFold.fits == 3, "only the 3 unfinished folds with pseudo-labels are fitted again"
    assert resumed["cv_smape"] == pytest.approx(whole["cv_smape"], rel=1e-12)
    assert resumed["pseudo_label"]["cv_smape_without"] == pytest.approx(whole["pseudo_label"]["cv_smape_without"],
                                                                        rel=1e-12)
    assert not (work / "03_train" / "pseudo" / "progress_without_pseudo").exists(), "kept folds go when it finishes"


def test_a_pseudo_labelled_run_starts_over_when_its_sources_labels_changed(synthetic):
    """The kept folds' fingerprint held the pseudo source's name, row count, weight and widest spread, not its labels:
    a source trained again to other predictions with the same widest spread (here the calmer half of the chosen rows
    moved, every fold model's alike) resumed folds fitted on the old labels beside new ones."""
    data, work = synthetic
    train_run(data, "amazon2025", work, "source", ["text_stats"], ["planted"], lgb_params=FAST, num_threads=1)
    _DiesOnFold.fits, _DiesOnFold.die_at = 0, 5 + 3  # 5 folds without pseudo-labels, then the third with them
    with pytest.raises(_Interrupt):
        train_run(data, "amazon2025", work, "pseudo", learner=_DiesOnFold(**_KILLED), pseudo_label_run="source")
    path = work / "03_train" / "source" / TEST_FOLD_PRED_FILE
    table = pd.read_csv(path, dtype={"id": str})
    columns = [c for c in table if c.startswith("fold")]
    spread = np.log(table[columns].to_numpy()).std(axis=1)
    calm = np.argsort(spread, kind="stable")[: len(table) // 4]  # the half of the chosen rows that agree most
    table.loc[calm, columns] = table.loc[calm, columns] * 1.25  # other labels; the same rows and widest spread
    table.to_csv(path, index=False)
    fresh = train_run(data, "amazon2025", work, "pseudo_fresh", ["text_stats"], ["planted"], lgb_params=FAST,
                      num_threads=1, pseudo_label_run="source")
    _DiesOnFold.fits, _DiesOnFold.die_at = 0, 99
    resumed = train_run(data, "amazon2025", work, "pseudo", learner=_DiesOnFold(**_KILLED), pseudo_label_run="source")
    assert _DiesOnFold.fits == 5, "the pass without pseudo-labels resumes, the one with them starts over"
    assert resumed["cv_smape"] == pytest.approx(fresh["cv_smape"], rel=1e-12)

def test_a_resumed_run_reports_only_its_own_folds_feature_importance(synthetic):
    data, work = synthetic
    other = {**FAST, "num_leaves": 4, "min_data_in_leaf": 40}
    clean = train_run(data, "amazon2025", work, "importance_clean", ["text_stats"], ["planted"], lgb_params=other,
                      num_threads=1)
    _kill(data, work, "importance")  # setup A killed, then setup B killed, then B resumed
    _kill(data, work, "importance", params=other)
    resumed = _rerun(data, work, "importance", params=other)
    assert _DiesOnFold.fits == 3 and resumed["cv_smape"] == pytest.approx(clean["cv_smape"], rel=1e-12)
    tables = [pd.read_csv(work / "03_train" / name / "feature_importance.csv") for name in ("importance_clean",
                                                                                           "importance")]
    pd.testing.assert_frame_equal(tables[1], tables[0])


def test_the_thread_count_alone_resumes_kept_folds_with_the_same_result(synthetic):
    data, work = synthetic
    whole = train_run(data, "amazon2025", work, "threads_whole", ["text_stats"], ["planted"], lgb_params=FAST,
                      num_threads=2)
    _kill(data, work, "threads")
    resumed = _rerun(data, work, "threads", num_threads=2)
    assert _DiesOnFold.fits == 3, "deterministic LightGBM: another thread count keeps the finished folds"
    assert resumed["cv_smape"] == pytest.approx(whole["cv_smape"], rel=1e-12)


@pytest.mark.parametrize(("params", "words"), [
    ({"min_data_in_leef": 400}, ["no parameter 'min_data_in_leef'", "did you mean min_data_in_leaf"]),
    ({"num_iterations": 3000}, ["amzkit sets ['num_iterations']", "n_estimators"]),
    ({"n_estimators": 3000}, ["amzkit sets ['n_estimators']", "n_estimators"]),
    ({"early_stopping_rounds": 10}, ["early_stopping_rounds instead"]),
    ({"random_state": 1}, ["the run's seed parameter"]),
    ({"nthread": 4}, ["the run's num_threads parameter"]),
    ({"force_row_wise": True}, ["leave it out"]),
])
def test_misspelt_or_kit_owned_lightgbm_params_are_refused(synthetic, params, words):
    data, work = synthetic
    with pytest.raises(ValueError) as err:
        train_run(data, "amazon2025", work, "refused", ["text_stats"], [], lgb_params=params, num_threads=1)
    for word in words:
        assert word in str(err.value), str(err.value)
    if "nthread" not in params:  # a preset's thread count gives way to the run's (the roadmap's n_jobs: -1)
        bad_preset = {**PRESETS["default"], "params": {**PRESETS["default"]["params"], **params}}
        with pytest.raises(ValueError, match=r"preset \(dict\)'s params"):
            train_run(data, "amazon2025", work, "refused", ["text_stats"], [], preset=bad_preset, num_threads=1)
    assert not (work / "03_train" / "refused").exists(), "refused before any fold ran"


def test_an_lgb_params_alias_replaces_the_presets_key():
    params = LightGBMLearner(params={"min_child_samples": 50, "sub_feature": 0.3}, num_threads=1).config()["params"]
    assert params["min_child_samples"] == 50 and params["sub_feature"] == 0.3
    assert "min_data_in_leaf" not in params and "feature_fraction" not in params, "LightGBM would take the preset's"


def test_rerunning_a_run_name_keeps_one_row_in_the_runs_log(synthetic):
    data, work = synthetic
    for _ in range(3):
        train_run(data, "amazon2025", work, "again", ["text_stats"], [], lgb_params=FAST, num_threads=1)
    train_run(data, "amazon2025", work, "other", ["quantity"], [], lgb_params=FAST, num_threads=1)
    assert pd.read_csv(work / "runs.csv")["run"].tolist() == ["again", "other"]


def test_run_parameters_reach_the_learners_that_take_them(synthetic):
    from amzkit.stages.train import build_learner

    lgbm = build_learner("lightgbm", {}, features=["quantity"], embeddings=["planted"], lgb_params={"num_leaves": 7})
    assert lgbm.features == ["quantity"] and lgbm.params == {"num_leaves": 7}
    ridge = build_learner("ridge_tfidf", {"alpha": 0.5})  # the default features and embeddings: not its inputs
    assert ridge.get_params()["alpha"] == 0.5
    with pytest.raises(ValueError, match="lgb_params apply to learner 'lightgbm'"):
        build_learner("ridge_tfidf", {}, lgb_params={"num_leaves": 7})
    with pytest.raises(ValueError, match="group_by applies to the tree learners"):
        build_learner("knn", {"embedding": "planted"}, group_by="unit_family")
    with pytest.raises(ValueError, match=r"learner 'ridge_tfidf'.*its parameters are \['alpha'"):
        build_learner("ridge_tfidf", {"alpah": 0.5})


@pytest.mark.parametrize("given", [{"preset": "huber"}, {"lgb_params": {"num_leaves": 7}},
                                   {"learner_params": {"bags": 3}}, {"group_by": "n_bullets"},
                                   {"features": ["quantity"]}])
def test_run_settings_beside_a_learner_object_are_refused_not_dropped(synthetic, given):
    # train_run(learner=LightGBMLearner(), preset="huber") trained the object's default preset and said nothing
    data, work = synthetic
    key = next(iter(given))
    with pytest.raises(ValueError, match=rf"\['{key}'\].*learner object"):
        train_run(data, "amazon2025", work, "object", learner=LightGBMLearner(num_threads=1, params=FAST), **given)


def test_a_lightgbm_setting_given_twice_with_two_values_is_refused_naming_both():
    # -p preset huber -p learner_params '{"preset": "seed"}' trained 'seed' silently; the same LightGBM param in
    # lgb_params and learner_params' params under two names was left to LightGBM, whose main name won either way
    from amzkit.stages.train import build_learner

    with pytest.raises(ValueError, match=r"preset.*'huber'.*'seed'"):
        build_learner("lightgbm", {"preset": "seed"}, preset="huber")
    with pytest.raises(ValueError, match=r"min_data_in_leaf"):
        build_learner("lightgbm", {"params": {"min_child_samples": 50}}, lgb_params={"min_data_in_leaf": 5})
    same = build_learner("lightgbm", {"preset": "huber", "params": {"num_leaves": 7}}, preset="huber",
                         lgb_params={"num_leaves": 7, "lambda_l1": 1.0})
    assert same.preset == "huber" and same.params == {"num_leaves": 7, "lambda_l1": 1.0}
    assert build_learner("lightgbm", {"preset": "seed"}).preset == "seed", "-p preset left at its default"


def test_model_inputs_set_for_a_learner_that_takes_none_are_refused_not_dropped():
    """-p learner ridge_tfidf -p embeddings '["fashion-siglip"]' trained ridge on the text alone, and its CV said the
    image run added nothing."""
    from amzkit.stages.train import build_learner

    with pytest.raises(ValueError, match=r"learner 'ridge_tfidf' takes no embeddings: -p embeddings \['planted'\]"):
        build_learner("ridge_tfidf", {}, embeddings=["planted"])
    with pytest.raises(ValueError, match=r"takes no features or tfidf_dim.*-p features '\[\]'"):
        build_learner("ridge_tfidf", {}, features=["quantity"], tfidf_dim=128)
    with pytest.raises(ValueError, match=r"learner 'knn' takes no embeddings.*learner_params"):
        build_learner("knn", {"embedding": "planted"}, embeddings=["planted"])
    # the defaults (03's notebook passes them to every learner) and empty lists say nothing the learner drops
    assert build_learner("ridge_tfidf", {}).get_params()["alpha"] == 1.0
    assert build_learner("knn", {"embedding": "planted"}, features=[], embeddings=[]).embedding == "planted"


def test_a_run_name_is_a_plain_name(synthetic):
    data, work = synthetic
    for bad in ("../x", "/tmp/x", "", "a/b", ".hidden"):
        with pytest.raises(ValueError, match="plain name"):
            train_run(data, "amazon2025", work, bad, ["text_stats"], [])
    assert not (work.parent / "x").exists()


@pytest.mark.parametrize("name", ["presets", "folds.csv", "folds.json", "image_features", "neighbours", "04_ensemble",
                                  "Presets"])
def test_a_run_name_that_is_one_of_03s_own_files_is_refused(synthetic, name):
    """A run named as a file or folder 03 keeps in 03_train/ shared it: `presets` made its metrics.json a saved preset
    'metrics', `folds.csv` failed with a bare NotADirectoryError after the whole preparation; `04_ensemble` is what
    05's source and `lb` take for 04's blend (Presets is presets on a case-insensitive disk)."""
    from amzkit.app.kaggle import check_stage_params

    data, work = synthetic
    with pytest.raises(ValueError, match=r"run_name.*is a reserved name \(03_train keeps"):
        train_run(data, "amazon2025", work, name, ["text_stats"], [], lgb_params=FAST, num_threads=1)
    with pytest.raises(ValueError, match=r"run_name.*is a reserved name \(03_train keeps"):  # the notebook's guard
        check_stage_params("03_train", {"run_name": name})
    assert not (work / "03_train").exists()
    assert check_stage_params("03_train", {"run_name": "presets2"}) == {"run_name": "presets2"}

def test_early_stopping_rows_are_whole_products_of_the_training_rows():
    y = np.exp(np.random.default_rng(0).normal(2.7, 0.8, 400))
    groups = np.repeat(np.arange(100), 4)
    features = FeatureSet(np.zeros((400, 1), np.float32), ["zero"], [], n_train=400)
    learner = feature_learner(features, y, groups=groups, params=FAST)
    rows = np.arange(0, 400, 2)  # a training fold
    watch = rows[learner._watch_rows(rows)]
    assert 0.05 * len(rows) < len(watch) < 0.2 * len(rows)
    held = set(groups[watch].tolist())
    assert not held & set(groups[np.setdiff1d(rows, watch)].tolist()), "a product is watched whole or not at all"
    assert synthetic_inputs(y).n_train == 400


def test_fold_fits_summary_says_what_each_fold_chose():
    trees = {"fold_fits": [{"trees": [120, 140]}, {"trees": [300]}, {}]}
    assert fold_fits_summary(trees) == "trees per fold model: 120 to 300 (mean 187) over 2 folds"
    steps = {"fold_fits": [{"best_step": 40, "holdout_smape": 31.234, "fp16_skipped_batches": 0},
                           {"best_step": 55, "holdout_smape": 29.5, "fp16_skipped_batches": 3,
                            "fp16_skipped_steps": 2}]}
    assert fold_fits_summary(steps) == ("early stopping kept step 40, 55 of the folds (holdout SMAPE 31.23, 29.50); "
                                        "3 fp16-overflow micro-batches skipped; 2 optimizer steps skipped by the "
                                        "fp16 GradScaler (gradients not finite)")
    nets = [{"best_step": 40, "holdout_smape": 31.234}, {"best_step": 0, "holdout_smape": 70.0}]
    bagged = {"fold_fits": [{**nets[0], "bag_fits": nets}, {"best_step": 55, "holdout_smape": 29.5}]}
    assert fold_fits_summary(bagged).startswith(  # a bagged mlp fold: every net's choice, and one untrained warns
        "early stopping kept step 40/0, 55 of the folds (holdout SMAPE 31.23/70.00, 29.50); WARNING: 1 of 2 folds")
    grouped = {"group_by": "unit_family", "fold_fits": [{"trees": [100], "group_models": 1},
                                                        {"trees": [100], "group_models": 2}]}
    assert fold_fits_summary(grouped).endswith(
        "; group_by 'unit_family': 1 to 2 group(s) per fold had the 200 training rows for a model of their own, the "
        "other rows used the pooled model")
    pooled = {"group_by": "PRODUCT_TYPE_ID", "fold_fits": [{"trees": [100], "group_models": 0}]}
    assert fold_fits_summary(pooled).endswith("no group had 200 training rows, so every row used the pooled model "
                                              "(as without it)")
    assert fold_fits_summary({"fold_fits": [{"best_step": None, "steps": 9}]}) == ""
    assert fold_fits_summary({}) == ""
    untrained = {"fold_fits": [{"best_step": 0, "holdout_smape": 73.5}, {"best_step": 3, "holdout_smape": 70.1}]}
    assert fold_fits_summary(untrained).endswith(
        "; WARNING: 1 of 2 folds kept step 0, the model before any training step (about the constant's score): give "
        "it more epochs, or a lower lr")


def test_an_older_progress_file_without_fit_reports_still_resumes(synthetic):
    data, work = synthetic
    _kill(data, work, "older")
    marker = work / "03_train" / "older" / "progress" / "progress.json"
    saved = json.loads(marker.read_text())
    del saved["fit_reports"]  # written by a kit from before fold_fits
    marker.write_text(json.dumps(saved))
    resumed = _rerun(data, work, "older")
    assert _DiesOnFold.fits == 3, "the two kept folds were reused"
    assert resumed["fold_fits"][:2] == [{}, {}] and all(fit["trees"] for fit in resumed["fold_fits"][2:])


def test_kept_folds_of_another_amzkit_build_are_not_reused(synthetic, monkeypatch):
    # a Kaggle session given a new wheel between a kill and the rerun: its code may compute folds differently
    import amzkit

    data, work = synthetic
    _kill(data, work, "build")
    monkeypatch.setattr(amzkit, "__version__", amzkit.__version__ + "+9")
    _rerun(data, work, "build")
    assert _DiesOnFold.fits == 5, "another build: every fold runs again"


def test_kept_folds_of_another_setup_are_said_to_be_discarded(synthetic, capsys):
    data, work = synthetic
    _kill(data, work, "discarded")
    capsys.readouterr()
    _rerun(data, work, "discarded", features=["quantity"])
    out = capsys.readouterr().out
    assert "the 2 folds kept in" in out and "another setup" in out and "starting over" in out


def test_rows_without_a_product_name_are_not_one_product_in_the_grouped_folds(tmp_path):
    # 30% of rows without "Item Name:" all landed in one fold (1,506 rows against 484 in a review)
    from amzkit.core.schema import get_schema
    from amzkit.ml.folds import shared_folds

    rng = np.random.default_rng(5)
    names = [f"Item Name: product {i}\nValue: 1.0\nUnit: Count" for i in range(140)] + [
        f"Bullet Point 1: thing {i}\nValue: 2.0\nUnit: Count" for i in range(60)]  # listings without a name
    train = pd.DataFrame({"sample_id": [str(i) for i in range(200)], "catalog_content": names, "image_link": "",
                          "price": np.exp(rng.normal(2.5, 1, 200))})
    folds = shared_folds(tmp_path, train, get_schema("amazon2025"), 5, 0, "group")
    assert max(np.bincount(folds)) <= 45, np.bincount(folds)  # 40 a fold, not 60 unnamed rows in one


def test_copies_of_one_unnamed_listing_still_share_a_fold():
    from amzkit.core.schema import get_schema
    from amzkit.text.names import product_groups

    text = [f"Bullet Point 1: steel kettle model {i % 10}\nValue: 1.0\nUnit: Count" for i in range(40)]
    frame = pd.DataFrame({"sample_id": [str(i) for i in range(40)], "catalog_content": text + [], "image_link": ""})
    frame.loc[39, "catalog_content"] = ""
    groups = product_groups(frame, get_schema("amazon2025"))
    assert len(set(groups[:39])) == 10 and groups[39] not in set(groups[:39])  # an empty row is its own group


def test_plot_cells_run_before_the_train_cell_say_to_train_first(synthetic, tmp_path):
    data, work = synthetic
    for plot in (plot_importance, plot_oof):  # it said "this learner reports no feature importance" / raw oof.csv
        with pytest.raises(FileNotFoundError, match=r"no 03_train run 'not_yet' .*: run the train cell \(03\) first"):
            plot(work, "not_yet")
    train_run(data, "amazon2025", work, "ridge_plots", learner="ridge_tfidf")
    fig = plot_oof(work, "ridge_plots")
    assert plot_importance(work, "ridge_plots") is None
    scatter, tenths = fig.axes  # beside the scatter and its median per tenth: SMAPE per tenth of the actual values
    assert len(scatter.lines[0].get_xdata()) == 10 and len(tenths.patches) == 10
    assert (work / "03_train" / "ridge_plots" / "oof_scatter.png").stat().st_size > 0


def test_the_runs_table_gives_each_runs_paired_gap_to_the_best(synthetic, tmp_path):
    from amzkit.ml.runs import runs_leaderboard

    data, work = synthetic
    train_run(data, "amazon2025", work, "trees", ["text_stats"], ["planted"], lgb_params=FAST, num_threads=1)
    train_run(data, "amazon2025", work, "ridge_gap", learner="ridge_tfidf")
    table = runs_leaderboard(work).set_index("run")
    best = table.index[0]
    folds = {name: np.array(json.loads((work / "03_train" / name / "metrics.json").read_text())["fold_smape"])
             for name in table.index}
    for name in table.index:
        gaps = folds[name] - folds[best]
        assert table.loc[name, "vs_best"] == pytest.approx(gaps.mean())
        assert table.loc[name, "vs_best_se"] == pytest.approx(gaps.std(ddof=1) / np.sqrt(len(gaps)))
    assert table.loc[best, "vs_best"] == 0


def test_a_learner_made_in_python_uses_03s_default_features():
    """LightGBMLearner() and make_learner('mlp') trained a shorter, weaker list than 03's documented default."""
    from amzkit.ml.learners import make_learner
    from amzkit.stages.train import PARAMETERS

    default = PARAMETERS["features"].default
    assert "ridge_oof" in default and "pack_totals" in default
    assert list(LightGBMLearner().features) == default == list(make_learner("mlp").features)


def test_a_group_or_embedding_listed_twice_is_refused_by_name(synthetic):
    """They crashed inside pandas ("Grouper for 'unit' not 1-dimensional") or LightGBM ("appears more than once")."""
    data, work = synthetic
    with pytest.raises(ValueError, match=r"feature group 'quantity' is listed more than once in -p features"):
        train_run(data, "amazon2025", work, "twice", ["quantity", "text_stats", "quantity"], [], lgb_params=FAST)
    with pytest.raises(ValueError, match=r"embedding 'planted:pca:4' is listed more than once in -p embeddings"):
        train_run(data, "amazon2025", work, "twice", ["quantity"], ["planted:pca:4", "planted:pca:4"],
                  lgb_params=FAST)
    with pytest.raises(ValueError, match=r"'planted:pca:4' and 'planted:pca:8' both make column 'planted_pc0'"):
        train_run(data, "amazon2025", work, "twice", ["quantity"], ["planted:pca:4", "planted:pca:8"],
                  lgb_params=FAST)


def test_a_column_made_twice_under_one_label_is_refused():
    # a feature group and an 01 run of the same name make the same columns under one label: LightGBM refused them
    # late, XGBoost trained on both
    from amzkit.ml.featureset import _check_distinct_columns

    _check_distinct_columns(["tfidf_0", "tfidf_1"], ["tfidf", "tfidf"])
    with pytest.raises(ValueError, match=r"'tfidf' \(twice: a feature group and an 01 run.*column 'tfidf_0'"):
        _check_distinct_columns(["tfidf_0", "tfidf_1", "tfidf_0"], ["tfidf", "tfidf", "tfidf"])


def test_a_lightgbm_value_out_of_range_is_named_with_the_lgb_params_given(synthetic):
    """It ended in LightGBM's raw "Check failed: (learning_rate) > (0.0) at config_auto.cpp"."""
    data, work = synthetic
    with pytest.raises(ValueError, match=r"LightGBM refused to train: .*learning_rate.*-p lgb_params "
                                         r"\{\"learning_rate\": -1\} \(preset 'default'\)"):
        train_run(data, "amazon2025", work, "bad_rate", ["quantity"], [], lgb_params={"learning_rate": -1})


def test_a_knn_view_with_k_not_below_the_rows_it_searches_is_refused(synthetic):
    """'run:knn:1000' on a few hundred training rows was a constant column, accepted without a word."""
    data, work = synthetic
    with pytest.raises(ValueError, match=r"embedding view 'planted:knn:1000': k is not below the \d+ embedded "
                                         r"training rows an inner fold searches.*e.g. 'planted:knn:20'"):
        train_run(data, "amazon2025", work, "wide_knn", ["quantity"], ["planted:knn:1000"], lgb_params=FAST)


def test_a_lightgbm_error_that_is_no_range_check_is_raised_as_lightgbm_gave_it(synthetic, monkeypatch):
    import lightgbm as lgb

    def no_gpu(*args, **kwargs):
        raise lgb.basic.LightGBMError("GPU Tree Learner was not enabled in this build")

    monkeypatch.setattr(lgb, "train", no_gpu)
    data, work = synthetic
    with pytest.raises(lgb.basic.LightGBMError, match="GPU Tree Learner was not enabled"):
        train_run(data, "amazon2025", work, "no_gpu", ["quantity"], [], lgb_params=FAST)


def test_a_stopped_run_starts_over_when_its_local_images_changed_since(tmp_path, capsys):
    """No manifest covers image groups read from local files: the kept folds must still not join a run whose
    image columns differ (the same names, other pictures)."""
    from PIL import Image

    from amzkit.testing import counting_fits

    rng = np.random.default_rng(0)
    n_train, n_test = 120, 20
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    sizes = rng.integers(20, 90, size=(n_train + n_test, 2))
    names = [f"img{i}.png" for i in range(n_train + n_test)]

    def draw(scale: int) -> None:
        for name, (w, h) in zip(names, sizes * scale, strict=True):
            Image.new("RGB", (int(w), int(h)), (200, 30, 30)).save(data_dir / name)

    text = [f"Item Name: Product {i}\nValue: 1.0\nUnit: Count" for i in range(n_train + n_test)]
    data = {"train": pd.DataFrame({"sample_id": np.arange(n_train), "catalog_content": text[:n_train],
                                   "image_link": names[:n_train], "price": np.exp(rng.normal(2.5, 0.7, n_train))}),
            "test": pd.DataFrame({"sample_id": np.arange(n_train, n_train + n_test), "catalog_content": text[n_train:],
                                  "image_link": names[n_train:]})}
    settings = {"features": ["text_stats", "image_meta"], "embeddings": [], "num_threads": 1,
                "params": {"learning_rate": 0.1, "num_leaves": 7, "min_data_in_leaf": 10}}
    draw(1)
    with pytest.raises(KeyboardInterrupt):
        train_run(data, "amazon2025", tmp_path / "work", "img",
                  learner=counting_fits(LightGBMLearner, kill_at=3)(**settings), data_dir=data_dir, progress=False)
    draw(3)  # the pictures replaced under the same names
    capsys.readouterr()
    resumed = counting_fits(LightGBMLearner)(**settings)
    train_run(data, "amazon2025", tmp_path / "work", "img", learner=resumed, data_dir=data_dir, progress=False)
    assert "starting over" in capsys.readouterr().out and resumed.fits == 5
    fresh = train_run(data, "amazon2025", tmp_path / "work", "fresh", learner=LightGBMLearner(**settings),
                      data_dir=data_dir, progress=False)
    resumed_metrics = train_module.read_json(tmp_path / "work" / "03_train" / "img" / "metrics.json")
    assert resumed_metrics["cv_smape"] == fresh["cv_smape"]


def test_a_run_stopped_while_saving_its_replacement_leaves_neither_its_old_row_nor_its_old_plots(synthetic,
                                                                                              monkeypatch):
    from amzkit.ml import runs

    data, work = synthetic
    train_run(data, "amazon2025", work, "r", ["text_stats"], [], lgb_params=FAST, num_threads=1)
    train_run(data, "amazon2025", work, "other", ["quantity"], [], lgb_params=FAST, num_threads=1)
    plt.close(plot_oof(work, "r"))
    plt.close(plot_importance(work, "r"))
    run_dir = work / "03_train" / "r"
    assert all((run_dir / name).is_file() for name in runs.RUN_PLOTS)

    def stopped(path, obj):
        raise KeyboardInterrupt("the session ended while the run was saved")

    monkeypatch.setattr(runs, "write_json", stopped)
    with pytest.raises(KeyboardInterrupt):  # the same name retrained as another learner: no importance, new OOF
        train_run(data, "amazon2025", work, "r", learner="ridge_tfidf")
    monkeypatch.undo()
    assert (run_dir / "oof.csv").is_file() and not (run_dir / "metrics.json").exists()
    assert pd.read_csv(work / "runs.csv")["run"].tolist() == ["other"], "the old CV beside the new OOF"
    assert not any((run_dir / name).exists() for name in runs.RUN_PLOTS), "plots of the run that is gone"
    train_run(data, "amazon2025", work, "r", learner="ridge_tfidf")
    assert pd.read_csv(work / "runs.csv").set_index("run").loc["r", "learner"] == "ridge_tfidf"


def test_kept_folds_are_not_reused_under_another_version_of_a_fold_library(synthetic, monkeypatch):
    """A killed Kaggle session rerun on a newer image (its "latest environment") must not mix folds that two
    LightGBM (or scikit-learn, torch, ...) versions fitted."""
    from amzkit.stages import train as train_module
    data, work = synthetic
    _kill(data, work, "upgraded")
    versions = train_module.library_versions()
    monkeypatch.setattr(train_module, "library_versions", lambda: {**versions, "lightgbm": "99.0.0"})
    _rerun(data, work, "upgraded")
    assert _DiesOnFold.fits == 5, "another LightGBM: every fold runs again"
    assert versions["lightgbm"] is not None and versions["numpy"] is not None


def test_the_runs_table_keeps_run_names_that_read_as_numbers(tmp_path):
    """Runs named 01 and 02 were read back as 1 and 2: wrong names, and no metrics.json found for vs_best."""
    from amzkit.core.io import write_json
    from amzkit.ml.runs import runs_leaderboard, write_runs_log_row

    for name, scores in (("01", [50.0, 52.0, 51.0]), ("1e3", [51.0, 53.0, 53.0])):
        metrics = {"run": name, "cv_smape": float(np.mean(scores)), "fold_smape": scores}
        write_json(tmp_path / "03_train" / name / "metrics.json", metrics)
        write_runs_log_row(tmp_path, name, metrics)
    table = runs_leaderboard(tmp_path)
    assert table["run"].tolist() == ["01", "1e3"]
    assert table["vs_best"].tolist() == pytest.approx([0.0, 4 / 3])
    assert table["cv_smape"].tolist() == pytest.approx([51.0, 157 / 3])


@pytest.mark.parametrize("bad", [np.nan, np.inf, 0.0, -3.0])
def test_a_run_whose_test_predictions_are_not_positive_prices_is_not_saved(tmp_path, bad):
    """save_run checked only the OOF predictions: a (custom) learner's NaN, infinite or non-positive test
    predictions were saved as a finished run, and 05 then refused 'N NaN price values' without naming the run."""
    from amzkit.core.schema import get_schema
    from amzkit.ml.runs import save_run

    data = _frame(20, 6, np.random.default_rng(0))
    folds = np.arange(20) % 2
    oof, test_pred = np.full(20, 10.0), np.full(6, 12.0)
    test_pred[3] = bad
    with pytest.raises(ValueError, match=r"run custom: 1 test predictions .*test rows \[4\]"):
        save_run(tmp_path, "custom", get_schema("amazon2025"), data["train"], data["test"], folds, oof, test_pred, {})
    assert not (tmp_path / "03_train" / "custom").exists()


def test_a_fold_importance_a_kill_left_before_its_progress_record_is_replaced_on_resume(synthetic, monkeypatch):
    """Killed between writing importance2.csv and the progress record, the run resumed at fold 2 and fit it again,
    but kept the killed fit's importance2.csv: the run's importance then came from another fit than its
    predictions (a fit that is not bit for bit the same: a GPU, CatBoost's GPU training)."""
    from amzkit.testing import kill_after_writing

    data, work = synthetic
    whole = train_run(data, "amazon2025", work, "whole", learner=LightGBMLearner(**_KILLED))
    kill_after_writing(monkeypatch, train_module, "importance2.csv", _Interrupt("session killed"))
    with pytest.raises(_Interrupt):
        train_run(data, "amazon2025", work, "resumed", learner=LightGBMLearner(**_KILLED))
    monkeypatch.undo()
    kept = work / "03_train" / "resumed" / "progress"
    assert json.loads((kept / "progress.json").read_text())["folds_done"] == 2
    stale = pd.read_csv(kept / "importance2.csv")
    stale.iloc[:, 1] = 1e9  # what another fit of fold 2 left
    stale.to_csv(kept / "importance2.csv", index=False)
    _DiesOnFold.fits, _DiesOnFold.die_at = 0, 2  # fold 2 fit again and kept, then killed in fold 3
    with pytest.raises(_Interrupt):
        train_run(data, "amazon2025", work, "resumed", learner=_DiesOnFold(**_KILLED))
    assert pd.read_csv(kept / "importance2.csv").iloc[:, 1].max() < 1e9, "fold 2's importance is its new fit's"
    resumed = _rerun(data, work, "resumed")
    assert _DiesOnFold.fits == 2 and resumed["cv_smape"] == pytest.approx(whole["cv_smape"], rel=1e-12)
    importance = [pd.read_csv(work / "03_train" / name / "feature_importance.csv") for name in ("whole", "resumed")]
    pd.testing.assert_frame_equal(importance[0], importance[1])


def test_a_rerun_refused_before_it_changed_anything_leaves_no_rerun_mark(synthetic):
    """A finished run trained again with a misspelt 01 run (refused while its learner prepared) or a missing
    pseudo_label_run kept the rerun mark, though none of its files had changed: 04 and 05 then said "a rerun was
    stopped" of a run nothing was replacing. A mark a stopped rerun left before stays."""
    from amzkit.ml.runs import unfinished_runs

    data, work = synthetic
    train_run(data, "amazon2025", work, "rerun", ["text_stats"], ["planted"], lgb_params=FAST, num_threads=1)
    with pytest.raises(FileNotFoundError, match="plantd"):
        train_run(data, "amazon2025", work, "rerun", ["text_stats"], ["plantd"], lgb_params=FAST, num_threads=1)
    assert "rerun" not in unfinished_runs(work)
    with pytest.raises(ValueError, match="nosuch"):
        train_run(data, "amazon2025", work, "rerun", ["text_stats"], ["planted"], lgb_params=FAST, num_threads=1,
                  pseudo_label_run="nosuch")
    assert "rerun" not in unfinished_runs(work)
    with pytest.raises(_Interrupt):  # stopped in its features: the mark stays, and so after a refusal later
        train_run(data, "amazon2025", work, "rerun", learner=_DiesInPrepare(**{**_KILLED, "features": ["quantity"]}))
    with pytest.raises(FileNotFoundError, match="plantd"):
        train_run(data, "amazon2025", work, "rerun", ["text_stats"], ["plantd"], lgb_params=FAST, num_threads=1)
    assert "rerun was stopped" in unfinished_runs(work).get("rerun", "")


def test_a_rerun_of_a_finished_run_keeps_it_when_nothing_changed_and_trains_it_again_otherwise(synthetic, capsys):
    """A finished run rerun under its name with the same setup (Run All in a Kaggle session after 04 was edited)
    was trained again from its first fold (real 2025 rows: 204 s, then 166 s again) for the same predictions: it
    is kept, as 01 keeps its finished shards; another setup trains it again, saying so."""
    data, work = synthetic
    run_dir = work / "03_train" / "again"
    first = train_run(data, "amazon2025", work, "again", ["text_stats"], [], lgb_params=FAST, num_threads=1,
                      progress=False)
    oof_written = (run_dir / "oof.csv").stat().st_mtime_ns
    capsys.readouterr()
    kept = train_run(data, "amazon2025", work, "again", ["text_stats"], [], lgb_params=FAST, num_threads=1,
                     progress=False)
    out = capsys.readouterr().out
    assert "again: this run name has finished before with this setup" in out and "kept as it is" in out
    assert kept == first and (run_dir / "oof.csv").stat().st_mtime_ns == oof_written
    assert not (run_dir / PROGRESS_DIR).exists() and "again" not in unfinished_runs(work)  # no rerun mark left
    changed = train_run(data, "amazon2025", work, "again", ["text_stats"], [], lgb_params={**FAST, "num_leaves": 7},
                        num_threads=1, progress=False)
    out = capsys.readouterr().out
    assert "finished before with another setup: it is trained again from its first fold and replaced" in out
    assert changed["fingerprint"] != first["fingerprint"]
    assert (run_dir / "oof.csv").stat().st_mtime_ns != oof_written
    train_run(data, "amazon2025", work, "new", ["text_stats"], [], lgb_params=FAST, num_threads=1, progress=False)
    assert "finished before" not in capsys.readouterr().out
