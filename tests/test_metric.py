"""Tests for amzkit.metric: SMAPE (percent), MAPE vs sklearn, the 2023 score, input checks, properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import mean_absolute_percentage_error

from amzkit.core.metric import (
    METRICS,
    constant_baseline,
    mape,
    other_scores,
    score_2023,
    smape,
    smape_by_target_bin,
    smape_per_row,
)

# Prices: zero or a realistic positive range (far from float underflow / overflow).
PRICE = st.one_of(st.just(0.0), st.floats(min_value=1e-3, max_value=1e6))
PAIRS = st.integers(min_value=1, max_value=30).flatmap(
    lambda n: st.tuples(st.lists(PRICE, min_size=n, max_size=n), st.lists(PRICE, min_size=n, max_size=n))
)


# --------------------------------------------------------------------------------------------------
# Known values
# --------------------------------------------------------------------------------------------------


def test_smape_organisers_example_in_percent() -> None:
    # |120 - 100| / ((100 + 120) / 2) = 20 / 110
    assert smape([100.0], [120.0]) == pytest.approx(100 * 20 / 110, rel=1e-12)
    assert smape([100.0], [120.0]) == pytest.approx(18.181818181818, abs=1e-9)


def test_both_zero_rows_count_zero_and_weigh_in_the_mean() -> None:
    assert smape([0.0], [0.0]) == 0.0
    # rows: 0/0 -> 0, 100 vs 120 -> 18.18.., 0 vs 5 -> 200 (the maximum), 10 vs 10 -> 0
    actual, predicted = [0.0, 100.0, 0.0, 10.0], [0.0, 120.0, 5.0, 10.0]
    per_row = smape_per_row(actual, predicted)
    np.testing.assert_allclose(per_row, [0.0, 2000 / 110, 200.0, 0.0], rtol=1e-12)
    assert smape(actual, predicted) == pytest.approx((2000 / 110 + 200.0) / 4, rel=1e-12)
    assert np.isfinite(per_row).all()


def test_mape_matches_sklearn_including_zero_actuals() -> None:
    rng = np.random.default_rng(3)
    actual = np.exp(rng.normal(2, 1, 200))
    predicted = actual * np.exp(rng.normal(0, 0.4, 200))
    expected = mean_absolute_percentage_error(actual, predicted)
    assert mape(actual, predicted) == pytest.approx(expected, rel=1e-12)
    actual[:3] = 0.0  # sklearn's eps guard: huge but finite terms
    expected = mean_absolute_percentage_error(actual, predicted)
    assert expected > 1e10
    assert mape(actual, predicted) == pytest.approx(expected, rel=1e-12)


def test_score_2023_is_100_times_one_minus_mape_clipped_at_zero() -> None:
    assert score_2023([100.0, 200.0], [110.0, 180.0]) == pytest.approx(100 * (1 - 0.1), rel=1e-12)
    assert score_2023([5.0, 7.0], [5.0, 7.0]) == 100.0
    # MAPE 3.0 (predicting 4x) would give -200 without the clip
    assert mape([10.0], [40.0]) == pytest.approx(3.0)
    assert score_2023([10.0], [40.0]) == 0.0


@pytest.mark.parametrize(
    ("actual", "predicted", "match"),
    [
        ([1.0, 2.0], [1.0], "2 values"),
        ([], [], "zero rows"),
        ([1.0, np.nan], [1.0, 2.0], "finite"),
        ([1.0, 2.0], [1.0, np.inf], "finite"),
        ([1.0, -np.inf], [1.0, 2.0], "finite"),
    ],
)
@pytest.mark.parametrize("fn", [smape, smape_per_row, mape, score_2023])
def test_bad_inputs_raise(fn, actual, predicted, match) -> None:
    with pytest.raises(ValueError, match=match):
        fn(actual, predicted)


def test_metrics_table_and_constant_baseline() -> None:
    assert set(METRICS) == {"smape", "score2023", "mape"}
    assert METRICS["mape"].fn is mape and METRICS["mape"].higher_is_better is False
    assert METRICS["smape"].fn is smape and METRICS["smape"].higher_is_better is False
    assert METRICS["score2023"].fn is score_2023 and METRICS["score2023"].higher_is_better is True
    train = np.array([1.0, 3.0, 10.0, 50.0, 1000.0])
    base = constant_baseline(train)
    np.testing.assert_array_equal(base, np.full(5, 10.0))
    np.testing.assert_array_equal(constant_baseline(train, n_rows=3), [10.0, 10.0, 10.0])
    # the median, not the mean: it is SMAPE-friendlier on skewed prices
    assert smape(train, base) < smape(train, np.full(5, train.mean()))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_smape_of_huge_finite_values_is_finite_and_correct() -> None:
    # |1.5e308 - 1e308| / ((1.5e308 + 1e308) / 2) = 0.5 / 1.25 = 40 %; the sum overflows to inf -> 0.0
    assert smape([1.5e308], [1e308]) == pytest.approx(40.0)


# --------------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(PAIRS)
def test_smape_symmetric_and_bounded(pair) -> None:
    a, f = pair
    value = smape(a, f)
    assert value == smape(f, a)
    assert 0.0 <= value <= 200.0
    rows = smape_per_row(a, f)
    assert ((rows >= 0) & (rows <= 200)).all()


@settings(max_examples=150, deadline=None)
@given(PAIRS, st.floats(min_value=1e-3, max_value=1e3))
def test_smape_scale_invariant(pair, k) -> None:
    a, f = np.asarray(pair[0]), np.asarray(pair[1])
    assert smape(k * a, k * f) == pytest.approx(smape(a, f), rel=1e-9, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(st.lists(PRICE, min_size=1, max_size=30))
def test_smape_of_perfect_prediction_is_zero(a) -> None:
    assert smape(a, a) == 0.0
    assert score_2023([x + 1.0 for x in a], [x + 1.0 for x in a]) == 100.0


def test_other_scores_add_the_editions_own_metrics_to_a_smape_line() -> None:
    values = {"cv_smape": 40.0, "cv_score2023": 0.0, "cv_mape": 1.79}
    assert other_scores(values, ("smape",), "cv_", "CV") == ""
    assert other_scores(values, ("smape", "score2023", "mape"), "cv_", "CV") == (
        "; CV 2023 score max(0, 100(1-MAPE)) 0.000 (higher is better); CV MAPE 1.790 (lower is better)")
    assert other_scores({"test_mape": 0.5}, ("smape", "score2023", "mape"), "test_", "test") == (
        "; test MAPE 0.500 (lower is better)")


def test_smape_by_target_bin_finds_where_the_errors_lie():
    """Predictions right everywhere but on the dearest tenth: that bin holds all the error, in order of actual."""
    actual = np.arange(1.0, 101.0)[::-1]  # rows in any order: the bins follow the actual values
    predicted = np.where(actual > 90, actual / 2, actual)
    table = smape_by_target_bin(actual, predicted)
    assert table["rows"].tolist() == [10] * 10 and table["low"].tolist() == list(np.arange(1.0, 101.0, 10))
    assert (table["smape"].iloc[:9] == 0).all() and table["smape"].iloc[9] == pytest.approx(200 / 3)
    assert table["share_of_error"].tolist() == [0.0] * 9 + [1.0]
    assert table["median_pred"].iloc[9] == pytest.approx(np.median(np.arange(91.0, 101.0)) / 2)
    ties = smape_by_target_bin([5, 5, 5, 5, 9], [5, 5, 5, 5, 9], n_bins=4)  # equal values are never split
    assert table["rows"].sum() == 100 and ties["rows"].tolist() == [4, 1] and (ties["smape"] == 0).all()


def test_the_unchecked_formula_gives_nan_not_a_perfect_zero_for_a_nan_value() -> None:
    """smape_terms (used unchecked by 04's grid searches) scored a NaN cell 0, a perfect row: an argmin over
    candidates would pick the broken one. NaN must stay NaN there (smape itself refuses it)."""
    from amzkit.core.metric import smape_terms

    terms = smape_terms(np.array([np.nan, 10.0, 0.0]), np.array([5.0, np.nan, 0.0]))
    assert np.isnan(terms[0]) and np.isnan(terms[1]) and terms[2] == 0.0
