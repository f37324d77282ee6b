"""Brand/material price encodings fit inside the folds, and the label-free premium/material/interaction groups."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from amzkit.core.metric import smape
from amzkit.core.schema import load_split
from amzkit.ml.cv import cross_validate
from amzkit.ml.encodings import VocabularyPriceTransform, brand_price_transform, material_price_transform
from amzkit.ml.featureset import FeatureSet
from amzkit.ml.folds import make_folds
from amzkit.testing import feature_learner
from amzkit.text.features import FEATURE_GROUPS, build_features
from amzkit.text.vocab import brand_tokens, material_tokens

FAST = {"learning_rate": 0.1, "num_leaves": 15, "min_data_in_leaf": 10}


class _ReadsOwnLabel(VocabularyPriceTransform):
    """What a careless encoding does: training rows read the table fit on every training row, themselves included."""

    def fit(self, rows, y):
        super().fit(rows, y)
        self.train_values_[rows] = self._encode(np.asarray(rows), self.value_, self.support_)
        return self


def _check_training_rows_blind_to_their_product(cls) -> None:
    """Each product listed twice, its brand its own, its price unlike any other: training rows must see nothing."""
    rng = np.random.default_rng(0)
    products = 200
    product = np.repeat(np.arange(products), 2)
    tokens = [[f"brand{p}", f"brand{p} line"] for p in product] + [["brand0"], ["brand1"]]  # two test rows
    price = np.repeat(np.exp(rng.uniform(0, 8, products)), 2)
    groups = np.concatenate([product, [products, products + 1]])
    transform = cls("brand", tokens, min_count=1, smoothing=10, groups=groups).fit(np.arange(400), price)
    training = transform.transform(np.arange(400))
    assert np.isnan(training).all(), "a training row read its own label or its copy's"
    test = transform.transform(np.array([400, 401]))
    prior = np.log1p(price).mean()
    expected = (2 * np.log1p(price[[0, 2]]) + 10 * prior) / 12
    np.testing.assert_allclose(test[:, 0], expected, rtol=1e-5)  # other rows read the pair's price
    np.testing.assert_allclose(test[:, 2], [2, 2])


def _check_no_correlation_with_own_label(cls) -> None:
    """Shared brands, prices independent of brand: a training row's value must say nothing about its own price."""
    rng = np.random.default_rng(1)
    tokens = [[f"b{i % 100}"] for i in range(800)]
    y = np.exp(rng.normal(3, 1, 800))
    values = cls("brand", tokens, min_count=3, smoothing=10).fit(np.arange(800), y).transform(np.arange(800))
    known = np.isfinite(values[:, 0])
    assert known.mean() > 0.95
    own = np.corrcoef(values[known, 0], np.log1p(y[known]))[0, 1]
    assert abs(own) < 0.15, "a row's own label leaked into its value"


def test_training_rows_never_read_their_own_label_nor_a_copys():
    _check_training_rows_blind_to_their_product(VocabularyPriceTransform)
    _check_no_correlation_with_own_label(VocabularyPriceTransform)


def test_the_checks_have_teeth_a_transform_reading_its_own_label_fails_them():
    with pytest.raises(AssertionError, match="own label or its copy"):
        _check_training_rows_blind_to_their_product(_ReadsOwnLabel)
    with pytest.raises(AssertionError, match="own label leaked"):
        _check_no_correlation_with_own_label(_ReadsOwnLabel)


def test_without_groups_a_copy_in_another_inner_fold_would_be_read():
    product = np.repeat(np.arange(200), 2)
    tokens = [[f"brand{p}"] for p in product]
    price = np.repeat(np.exp(np.random.default_rng(2).uniform(0, 8, 200)), 2)
    ungrouped = VocabularyPriceTransform("b", tokens, min_count=1).fit(np.arange(400), price)
    assert np.isfinite(ungrouped.transform(np.arange(400))[:, 0]).mean() > 0.5, "why groups are needed"


def test_vocabulary_comes_from_training_rows_only_and_min_count_is_honoured():
    tokens = ([["common"]] * 5 + [["pair"]] * 2 + [["rare"]] * 1  # training rows 0-7
              + [["rare"], ["pair"], ["common"], ["only_valid"]]  # validation rows 8-11
              + [["only_test"]] * 6 + [["only_valid"], ["common", "pair"]])  # test rows 12-19
    y = np.array([10, 20, 30, 40, 50, 100, 200, 5], dtype=float)
    transform = VocabularyPriceTransform("v", tokens, min_count=3, smoothing=2).fit(np.arange(8), y)
    out = transform.transform(np.arange(8, 20))
    assert np.isnan(out[0]).all() and np.isnan(out[1]).all(), "tokens under min_count training rows are unknown"
    assert np.isnan(out[3]).all() and np.isnan(out[4:11]).all(), "tokens never seen in training rows are unknown"
    log_y = np.log1p(y)
    expected = (log_y[:5].sum() + 2 * log_y.mean()) / (5 + 2)
    np.testing.assert_allclose(out[2], [expected, expected, 5], rtol=1e-5)
    np.testing.assert_allclose(out[11], [expected, expected, 5], rtol=1e-5)  # 'pair' (2 rows) stays unknown
    lower = VocabularyPriceTransform("v", tokens, min_count=2, smoothing=2).fit(np.arange(8), y)
    both = lower.transform(np.array([19]))[0]
    pair = (log_y[5:7].sum() + 2 * log_y.mean()) / 4
    np.testing.assert_allclose(both, [(expected + pair) / 2, max(expected, pair), 5], rtol=1e-5)


def _catalog(name: str, extra: str = "", value: str = "16", unit: str = "Ounce") -> str:
    return f"Item Name: {name}\nBullet Point 1: {extra}\nValue: {value}\nUnit: {unit}"


def test_token_extractors_read_brands_from_the_name_and_materials_from_the_text():
    frame25 = pd.DataFrame({"catalog_content": [
        _catalog("The Acme Gourmet Coffee, 12 oz", "Packed in a glass jar with a bamboo lid"),
        _catalog("Zed", "100% cotton"), _catalog("", "")]})
    assert brand_tokens(frame25, "amazon2025") == [["acme", "acme gourmet"], ["zed"], []]
    assert material_tokens(frame25, "amazon2025") == [["bamboo", "glass"], ["cotton"], []]
    frame23 = pd.DataFrame({"TITLE": ["Marks & Spencer Girls' Stainless Steel Bottle"], "BULLET_POINTS": [""],
                            "DESCRIPTION": ["solid oak stand"], "PRODUCT_TYPE_ID": [1]})
    assert brand_tokens(frame23, "amazon2023") == [["marks", "marks spencer"]]
    assert material_tokens(frame23, "amazon2023") == [["stainless_steel", "steel", "wood"]]


def _frames25(texts: list[str], n_train: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = pd.DataFrame({"sample_id": np.arange(len(texts)), "catalog_content": texts, "image_link": ""})
    return frame.iloc[:n_train].assign(price=1.0), frame.iloc[n_train:]


def test_premium_value_and_material_flags_fire_on_planted_text():
    texts = [_catalog("Luxury Handmade Genuine Leather Wallet", "18k gold clasp, sterling silver trim"),
             _catalog("Budget Value Pack Generic Spoons (Pack of 50)", "Disposable plastic, gold plated look"),
             _catalog("Plain Mug", "Holds coffee")]
    train, test = _frames25(texts, 2)
    x, x_test = build_features(train, test, "amazon2025", ["premium_value", "materials"])
    x = pd.concat([x, x_test], ignore_index=True)
    for flag in ("prem_luxury", "prem_handmade", "prem_genuine_leather", "prem_gold", "prem_sterling_silver"):
        assert x[flag].tolist() == [1, 0, 0], flag
    for flag in ("val_budget", "val_value_pack", "val_generic", "val_disposable", "val_plated"):
        assert x[flag].tolist() == [0, 1, 0], flag
    assert x["premium_count"].tolist() == [5, 0, 0] and x["value_count"].tolist() == [0, 5, 0]
    assert x["premium_net"].tolist() == [5, -5, 0]
    assert x["premium_in_name"].tolist() == [1, 0, 0] and x["value_in_name"].tolist() == [0, 1, 0]
    assert x["mat_leather"].tolist() == [1, 0, 0] and x["mat_plastic"].tolist() == [0, 1, 0]
    assert x["mat_gold"].tolist() == [1, 1, 0] and x["material_count"].tolist() == [3, 2, 0]


def test_interactions_split_quantity_by_unit_family_and_scale_text_by_category():
    texts = [_catalog("Beans, 2 Pack", value="16", unit="Ounce"), _catalog("Juice", value="2", unit="Liter"),
             _catalog("Pens", value="12", unit="Count"), _catalog("Thing", value="", unit="None")]
    train, test = _frames25(texts, 3)
    x = pd.concat(build_features(train, test, "amazon2025", ["interactions"]), ignore_index=True)
    assert np.isclose(np.expm1(x.loc[0, "qty_weight_log"]), 16) and np.isnan(x.loc[1:, "qty_weight_log"]).all()
    assert np.isclose(np.expm1(x.loc[1, "qty_volume_log"]), 2000 / 29.5735295625)
    assert np.isclose(np.expm1(x.loc[2, "qty_count_log"]), 12) and np.isnan(x["qty_length_log"]).all()
    assert np.isclose(np.expm1(x.loc[0, "qty_times_pack_log"]), 32) and np.isnan(x.loc[3, "qty_times_pack_log"])

    frame = pd.DataFrame({"PRODUCT_ID": range(5), "TITLE": ["a" * 10, "b" * 20, "c" * 30, "Model X100 2023", "d"],
                          "BULLET_POINTS": "", "DESCRIPTION": "", "PRODUCT_TYPE_ID": [1, 1, 1, 2, 2]})
    x = pd.concat(build_features(frame.iloc[:4].assign(PRODUCT_LENGTH=1.0), frame.iloc[4:], "amazon2023",
                                 ["interactions"]), ignore_index=True)
    joins = len(" \n ") * 2  # row_text joins TITLE, BULLET_POINTS and DESCRIPTION
    np.testing.assert_allclose(x["PRODUCT_TYPE_ID_text_ratio"][:3], (np.array([10, 20, 30]) + joins) / (20 + joins))
    assert x["PRODUCT_TYPE_ID_rows"].tolist() == [3, 3, 3, 2, 2]
    assert x.loc[3, "name_digit_share"] == pytest.approx(7 / 15) and x.loc[0, "name_digit_share"] == 0
    assert "qty_weight_log" not in x


def test_new_groups_compute_on_the_real_rows_of_both_schemas(shared_data):
    groups = ["premium_value", "materials", "interactions"]
    dev = load_split(shared_data / "amz23_dev.csv", "amazon2023", "train")
    x23, _ = build_features(dev.iloc[:-50], dev.iloc[-50:], "amazon2023", groups)
    sample = load_split(shared_data / "amz25_sample_test.csv", "amazon2025", "test")
    x25, _ = build_features(sample.iloc[:80].assign(price=1.0), sample.iloc[80:], "amazon2025", groups)
    for x in (x23, x25):
        assert x["premium_count"].sum() > 0 and x["material_count"].sum() > 0
        assert np.isfinite(x["name_digit_share"]).all()
    assert x23["PRODUCT_TYPE_ID_text_ratio"].between(0, 1000).all()
    assert x25[["qty_weight_log", "qty_volume_log"]].notna().sum().min() > 0
    y = dev["PRODUCT_LENGTH"].to_numpy()
    for make in (brand_price_transform, material_price_transform):
        transform = make(dev, "amazon2023", seed=0).fit(np.arange(1500), y[:1500])
        out = transform.transform(np.arange(1716))
        assert out.shape == (1716, 3) and np.isfinite(out[:, 0]).any()


def test_brand_price_lifts_cv_when_brand_sets_the_price():
    rng = np.random.default_rng(4)
    brands, per_brand = 60, 10
    brand = np.repeat(np.arange(brands), per_brand)
    price = np.exp(rng.normal(3, 1, brands))[brand] * np.exp(rng.normal(0, 0.1, len(brand)))
    words = ["Alpha", "Bravo", "Delta", "Echo", "Kilo", "Lima"]
    texts = [_catalog(f"Brand{b} {words[i % 6]} item {i}") for i, b in enumerate(brand)]
    frame = pd.DataFrame({"catalog_content": texts})
    static = rng.normal(size=(len(brand), 2)).astype(np.float32)  # label-free noise
    folds = make_folds(price, 5, seed=0)
    plain = FeatureSet(static, ["n0", "n1"], [], n_train=len(brand))
    encoded = FeatureSet(static, ["n0", "n1"], [], [brand_price_transform(frame, "amazon2025")], n_train=len(brand))
    without = smape(price, cross_validate(feature_learner(plain, price, params=FAST), folds, progress=False)["oof"])
    with_brand = smape(price, cross_validate(feature_learner(encoded, price, params=FAST), folds,
                                             progress=False)["oof"])
    assert with_brand < without - 20, (without, with_brand)


def test_new_groups_are_registered():
    assert {"premium_value", "materials", "interactions", "keywords"} <= set(FEATURE_GROUPS)


def test_fold_columns_never_collide_with_label_free_columns():
    frame = pd.DataFrame({"catalog_content": [_catalog("Acme cotton shirt")] * 3})
    x, _ = build_features(frame.assign(sample_id=range(3), image_link="", price=1.0),
                          frame.assign(sample_id=range(3, 6), image_link="").iloc[:0], "amazon2025",
                          list(FEATURE_GROUPS))
    fold_names = brand_price_transform(frame, "amazon2025").names + material_price_transform(frame, "amazon2025").names
    assert not set(fold_names) & set(x.columns), "LightGBM refuses repeated feature names"
