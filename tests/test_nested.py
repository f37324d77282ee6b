"""Tests for amzkit.ml.nested: nested cross-fitting, and picking a method without the fold that is scored."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from amzkit.core.metric import smape
from amzkit.ml.folds import inner_folds
from amzkit.ml.nested import choose_inside, cross_fit, inner_score


@dataclass
class Inputs:
    columns: np.ndarray  # (n, k): each "method" predicts one fixed column
    target: np.ndarray


class Column:
    """A method that predicts a fixed column times the mean ratio target/column of the rows it was fit on."""

    fits: list[frozenset] = []  # rows of every fit, shared by every copy

    def __init__(self, j: int):
        self.j = j

    def fit(self, inputs: Inputs, rows: np.ndarray) -> Column:
        Column.fits.append(frozenset(rows.tolist()))
        self.scale_ = float(np.exp(np.mean(np.log(inputs.target[rows] / inputs.columns[rows, self.j]))))
        return self

    def predict(self, inputs: Inputs, rows: np.ndarray) -> np.ndarray:
        return self.scale_ * inputs.columns[rows, self.j]


def noise_world(seed: int, n_rows: int = 300, n_methods: int = 20, n_folds: int = 5):
    """Methods that are equally good in truth (the same noise level), so any winner is luck."""
    rng = np.random.default_rng(seed)
    target = np.exp(rng.normal(3.0, 1.0, n_rows))
    columns = target[:, None] * np.exp(rng.normal(0.0, 0.5, (n_rows, n_methods)))
    folds = rng.permutation(np.arange(n_rows) % n_folds)
    return Inputs(columns, target), folds, {f"m{j}": Column(j) for j in range(n_methods)}


def test_cross_fit_predicts_each_fold_from_the_other_folds_and_leaves_other_rows_nan() -> None:
    inputs, folds, combiners = noise_world(0)
    rows = np.flatnonzero(folds != 4)
    Column.fits = []
    nested, fitted = cross_fit(combiners["m0"], inputs, folds, rows)
    assert np.isnan(nested[folds == 4]).all() and np.isfinite(nested[rows]).all()
    assert len(fitted) == 4
    for fold, fit_rows in zip(range(4), Column.fits, strict=True):
        assert fit_rows == frozenset(np.flatnonzero((folds != 4) & (folds != fold)).tolist())


def test_a_folds_pick_does_not_depend_on_that_folds_target() -> None:
    inputs, folds, combiners = noise_world(1)
    nested = {name: cross_fit(c, inputs, folds)[0] for name, c in combiners.items()}
    _, picked, scores = choose_inside(combiners, nested, inputs, folds)
    # scramble fold 0's prices: its own pick and inner scores stay; the other folds' picks may move
    scrambled = Inputs(inputs.columns, inputs.target.copy())
    scrambled.target[folds == 0] = np.random.default_rng(9).permutation(scrambled.target[folds == 0]) * 3.0
    _, picked_after, scores_after = choose_inside(combiners, nested, scrambled, folds)
    assert picked_after[0] == picked[0] and scores_after[0] == scores[0]
    assert scores_after[1:] != scores[1:]
    # and no fit made while picking for fold 0 saw fold 0's rows
    Column.fits = []
    choose_inside({"m0": combiners["m0"]}, {"m0": nested["m0"]}, inputs, folds)
    fold0 = frozenset(np.flatnonzero(folds == 0).tolist())
    assert not any(fit & fold0 for fit in Column.fits[:4])


def test_picking_inside_is_not_flattered_by_luck_where_the_min_of_nested_scores_is() -> None:
    gains_min, gains_inside = [], []
    for seed in range(8):
        inputs, folds, combiners = noise_world(seed)
        nested = {name: cross_fit(c, inputs, folds)[0] for name, c in combiners.items()}
        scores = {name: smape(inputs.target, pred) for name, pred in nested.items()}
        typical = float(np.mean(list(scores.values())))  # every method is equally good in truth
        inside, _, _ = choose_inside(combiners, nested, inputs, folds)
        gains_min.append(typical - min(scores.values()))
        gains_inside.append(typical - smape(inputs.target, inside))
    assert np.mean(gains_min) > 2.0  # the luckiest of 20 equal methods looks better than it is
    assert abs(np.mean(gains_inside)) < 0.5 * np.mean(gains_min)


def test_a_real_winner_is_picked_in_every_fold() -> None:
    inputs, folds, combiners = noise_world(2)
    inputs.columns[:, 3] = inputs.target * np.exp(np.random.default_rng(5).normal(0.0, 0.1, len(folds)))
    nested = {name: cross_fit(c, inputs, folds)[0] for name, c in combiners.items()}
    pred, picked, _ = choose_inside(combiners, nested, inputs, folds)
    assert picked == ["m3"] * 5
    np.testing.assert_allclose(pred, nested["m3"], rtol=1e-12)


class Memoriser:
    """A method that overfits all the way: the prices of the rows it was fit on, a bad guess (1.0) for others."""

    def fit(self, inputs: Inputs, rows: np.ndarray) -> Memoriser:
        self.known_ = dict(zip(rows.tolist(), inputs.target[rows], strict=True))
        return self

    def predict(self, inputs: Inputs, rows: np.ndarray) -> np.ndarray:
        return np.array([self.known_.get(row, 1.0) for row in rows.tolist()])


def test_with_two_folds_the_pick_is_scored_on_halves_of_the_other_fold_never_in_sample() -> None:
    inputs, folds, combiners = noise_world(3, n_folds=2)
    combiners = {"m0": combiners["m0"], "memoriser": Memoriser()}
    rows = np.flatnonzero(folds == 1)
    assert inner_score(combiners["memoriser"], inputs, folds, rows) > 150  # in-sample it would score 0
    halves = folds.copy()
    halves[rows] = inner_folds(rows, 2, 0)
    expected = smape(inputs.target[rows], cross_fit(combiners["m0"], inputs, halves, rows)[0][rows])
    assert inner_score(combiners["m0"], inputs, folds, rows) == pytest.approx(expected, rel=1e-12)
    nested = {name: cross_fit(c, inputs, folds)[0] for name, c in combiners.items()}
    pred, picked, _ = choose_inside(combiners, nested, inputs, folds)
    assert picked == ["m0", "m0"] and np.isfinite(pred).all()


class CopyMemoriser:
    """A method that knows the price of every product it was fit on (any copy of it), a bad guess (1.0) for others."""

    def __init__(self, groups: np.ndarray):
        self.groups = groups

    def fit(self, inputs: Inputs, rows: np.ndarray) -> CopyMemoriser:
        self.known_ = dict(zip(self.groups[rows].tolist(), inputs.target[rows], strict=True))
        return self

    def predict(self, inputs: Inputs, rows: np.ndarray) -> np.ndarray:
        return np.array([self.known_.get(group, 1.0) for group in self.groups[rows].tolist()])


def test_with_two_folds_and_product_groups_the_halves_keep_a_products_copies_together() -> None:
    # copies of a product (same price) sit in one outer fold, as 03's group folds put them; halves drawn row by
    # row put copies on both sides, so a method that memorises products scored well inside and was picked
    inputs, _, combiners = noise_world(4, n_rows=300, n_folds=2)
    groups = np.repeat(np.arange(50), 6)  # 50 products, 6 copies each, one price each
    inputs.target = inputs.target[groups * 6]
    folds = np.random.default_rng(1).permutation(np.arange(50) % 2)[groups]
    rows = np.flatnonzero(folds == 1)
    memoriser = CopyMemoriser(groups)
    combiners = {"m0": combiners["m0"], "memoriser": memoriser}
    assert inner_score(memoriser, inputs, folds, rows) < 0.5 * inner_score(combiners["m0"], inputs, folds, rows)
    assert inner_score(memoriser, inputs, folds, rows, groups=groups) > 150  # as on the outer fold it predicts
    nested = {name: cross_fit(c, inputs, folds)[0] for name, c in combiners.items()}
    assert smape(inputs.target, nested["memoriser"]) > 150
    assert choose_inside(combiners, nested, inputs, folds)[1] == ["memoriser", "memoriser"]  # row-by-row halves
    assert choose_inside(combiners, nested, inputs, folds, groups)[1] == ["m0", "m0"]
    one_group = np.zeros(len(folds), dtype=int)  # fewer than two groups: halves row by row, never one empty half
    assert inner_score(combiners["m0"], inputs, folds, rows, groups=one_group) == inner_score(
        combiners["m0"], inputs, folds, rows)
