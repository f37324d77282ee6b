"""Tests for amzkit.ml.ridge.GcvRidge: alpha by generalised cross-validation, also with more columns than rows."""

from __future__ import annotations

import numpy as np
import pytest

from amzkit.ml.ridge import RIDGE_ALPHAS, GcvRidge


def brute_force_gcv(x: np.ndarray, y: np.ndarray, alpha: float) -> float:
    """n RSS / (n - trace H)^2 from the explicit hat matrix of ridge on standardised columns plus an intercept."""
    n = len(y)
    scale = x.std(axis=0)
    xs = (x - x.mean(axis=0)) / np.where(scale == 0, 1.0, scale)
    hat = np.full((n, n), 1.0 / n) + xs @ np.linalg.solve(xs.T @ xs + alpha * np.eye(x.shape[1]), xs.T)
    residual = y - hat @ y
    return n * float(residual @ residual) / (n - np.trace(hat)) ** 2


@pytest.mark.parametrize(("n_rows", "n_columns"), [(60, 6), (40, 90)])
def test_gcv_scores_are_the_explicit_hat_matrix_ones(n_rows: int, n_columns: int) -> None:
    rng = np.random.default_rng(n_columns)
    x = rng.normal(size=(n_rows, n_columns))
    y = 2.0 + x[:, 0] + rng.normal(size=n_rows)
    model = GcvRidge().fit(x, y)
    for alpha, score in zip(RIDGE_ALPHAS, model.gcv_scores_, strict=True):
        if alpha >= 1.0:  # below that, the explicit float64 inverse of a near-singular matrix is the less exact one
            assert score == pytest.approx(brute_force_gcv(x, y, alpha), rel=1e-3)


@pytest.mark.parametrize("signal", [0.0, 0.5])
def test_more_columns_than_rows_does_not_pick_an_alpha_that_fits_the_noise(signal: float) -> None:
    # 480 rows x 768 columns (a small 02 probe fold of a 768-d embedding): the old GCV's RSS cancelled to ~0 at
    # tiny alpha, so it chose alpha 0.01 and predicted fresh rows 3x worse than the mean did
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2480, 768)).astype(np.float32)
    y = 3.0 + signal * x[:, 0] + rng.normal(size=2480)
    model = GcvRidge().fit(x[:480], y[:480])
    test_mse = np.mean((model.predict(x[480:]) - y[480:]) ** 2)
    constant_mse = np.mean((y[:480].mean() - y[480:]) ** 2)
    assert model.alpha_ >= 1000
    assert test_mse <= 1.01 * constant_mse


def test_well_posed_fits_keep_their_alpha_and_solve_the_normal_equations() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, 8))
    y = 1.0 + x @ rng.normal(size=8) + rng.normal(size=500)
    model = GcvRidge().fit(x, y)
    scale = x.std(axis=0)
    xs = (x - x.mean(axis=0)) / scale
    expected = np.linalg.solve(xs.T @ xs + model.alpha_ * np.eye(8), xs.T @ (y - y.mean()))
    np.testing.assert_allclose(model.coef_, expected, rtol=1e-4, atol=1e-5)
    assert model.alpha_ == pytest.approx(RIDGE_ALPHAS[int(np.argmin([brute_force_gcv(x, y, a) for a in RIDGE_ALPHAS]))])
