"""Tests for amzkit.ensemble: weight fitting, blending, run compatibility and the nested (honest) score."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from amzkit.ensemble import blend, ensemble, fit_weights
from amzkit.io import id_hash
from amzkit.metric import smape

N_ROWS, N_FOLDS, N_TEST = 2000, 5, 300


def world(seed: int = 0) -> dict:
    """A known lognormal target, its folds and test ids (the shared 'truth' every fake run predicts)."""
    rng = np.random.default_rng(seed)
    return {
        "ids": np.arange(10_000, 10_000 + N_ROWS),
        "target": np.exp(rng.normal(3.0, 1.0, N_ROWS)),
        "folds": rng.permutation(np.arange(N_ROWS) % N_FOLDS),
        "test_ids": np.arange(50_000, 50_000 + N_TEST),
        "test_target": np.exp(rng.normal(3.0, 1.0, N_TEST)),
    }


def noisy(values: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    return values * np.exp(np.random.default_rng(seed).normal(0.0, sigma, len(values)))


def make_run(work: Path, name: str, w: dict, oof_pred: np.ndarray, test_pred: np.ndarray, *,
             ids=None, folds=None) -> Path:
    """A finished 03_train run folder as amzkit.train writes it (metrics.json, oof.csv, test_pred.csv)."""
    ids = w["ids"] if ids is None else ids
    folds = w["folds"] if folds is None else folds
    run_dir = work / "03_train" / name
    run_dir.mkdir(parents=True)
    pd.DataFrame({"id": ids, "fold": folds, "target": w["target"], "pred": oof_pred}).to_csv(
        run_dir / "oof.csv", index=False)
    pd.DataFrame({"id": w["test_ids"], "pred": test_pred}).to_csv(run_dir / "test_pred.csv", index=False)
    metrics = {"run": name, "train_ids_sha256": id_hash(ids), "folds_sha256": id_hash(folds),
               "cv_smape": smape(w["target"], oof_pred), "constant_median_smape": 50.0 + len(name)}
    (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    return run_dir


def noisy_run(work: Path, name: str, w: dict, sigma: float, seed: int) -> None:
    make_run(work, name, w, noisy(w["target"], sigma, seed), noisy(w["test_target"], sigma, seed + 1000))


# --------------------------------------------------------------------------------------------------
# fit_weights and blend
# --------------------------------------------------------------------------------------------------


def test_blend_is_weighted_geometric_mean() -> None:
    preds = np.array([[2.0, 8.0], [1.0, 100.0]])
    np.testing.assert_allclose(blend(np.log(preds), np.array([0.5, 0.5])), [4.0, 10.0], rtol=1e-12)
    np.testing.assert_allclose(blend(np.log(preds), np.array([1.0, 0.0])), [2.0, 1.0], rtol=1e-12)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_weights_non_negative_sum_to_one_and_never_worse_than_a_single_column(k: int) -> None:
    w = world(1)
    log_preds = np.column_stack([np.log(noisy(w["target"], 0.2 + 0.15 * i, seed=i)) for i in range(k)])
    weights = fit_weights(log_preds, w["target"])
    assert weights.shape == (k,)
    assert (weights >= 0).all()
    assert weights.sum() == pytest.approx(1.0, abs=1e-9)
    # every single column is a candidate, so the fitted blend cannot lose to the best one in-sample
    blended = smape(w["target"], blend(log_preds, weights))
    singles = [smape(w["target"], np.exp(log_preds[:, i])) for i in range(k)]
    assert blended <= min(singles) + 1e-9
    if k > 1:
        assert blended < min(singles) - 0.5  # independent errors: a real gain


def test_strongly_better_column_gets_most_weight() -> None:
    w = world(2)
    log_preds = np.column_stack([np.log(noisy(w["target"], 0.8, 1)), np.log(noisy(w["target"], 0.05, 2))])
    weights = fit_weights(log_preds, w["target"])
    assert weights[1] >= 0.85 and weights[0] <= 0.15


# --------------------------------------------------------------------------------------------------
# ensemble() over run folders
# --------------------------------------------------------------------------------------------------


def test_two_independent_noisy_runs_blend_beats_both(tmp_path: Path) -> None:
    w = world(0)
    noisy_run(tmp_path, "a", w, 0.3, seed=11)
    noisy_run(tmp_path, "b", w, 0.3, seed=22)
    m = ensemble(tmp_path, ["a", "b"])
    assert m["blend_smape_nested"] < min(m["run_smape"].values()) - 3.0  # ~23.5 -> ~16.6 for sigma 0.3
    assert m["cv_smape"] == m["blend_smape_nested"]
    assert m["weights"]["a"] == pytest.approx(0.5, abs=0.1)
    assert m["weights"]["b"] == pytest.approx(0.5, abs=0.1)
    assert sum(m["weights"].values()) == pytest.approx(1.0, abs=1e-9)
    assert len(m["nested_weights"]) == N_FOLDS
    assert all(min(nw) >= 0 and sum(nw) == pytest.approx(1.0, abs=1e-9) for nw in m["nested_weights"])
    assert m["constant_median_smape"] == pytest.approx(51.0)

    # files written: the nested OOF predictions (scored as reported), test predictions with the full weights
    oof = pd.read_csv(tmp_path / "04_ensemble" / "oof.csv")
    assert oof["id"].tolist() == w["ids"].tolist() and oof["fold"].tolist() == w["folds"].tolist()
    assert smape(oof["target"], oof["pred"]) == pytest.approx(m["blend_smape_nested"], rel=1e-6)
    test = pd.read_csv(tmp_path / "04_ensemble" / "test_pred.csv")
    run_tests = [pd.read_csv(tmp_path / "03_train" / r / "test_pred.csv")["pred"].to_numpy() for r in "ab"]
    expected = np.exp(m["weights"]["a"] * np.log(run_tests[0]) + m["weights"]["b"] * np.log(run_tests[1]))
    assert test["id"].tolist() == w["test_ids"].tolist()
    np.testing.assert_allclose(test["pred"], expected, rtol=1e-9)
    on_disk = json.loads((tmp_path / "04_ensemble" / "metrics.json").read_text())
    assert on_disk["blend_smape_nested"] == pytest.approx(m["blend_smape_nested"])


def test_identical_runs_claim_no_gain(tmp_path: Path) -> None:
    w = world(3)
    oof, test = noisy(w["target"], 0.4, 5), noisy(w["test_target"], 0.4, 6)
    make_run(tmp_path, "one", w, oof, test)
    make_run(tmp_path, "copy", w, oof, test)
    m = ensemble(tmp_path, ["one", "copy"])
    single = m["run_smape"]["one"]
    assert m["run_smape"]["copy"] == single
    assert abs(m["blend_smape_nested"] - single) <= 1e-9
    assert abs(m["blend_smape_in_sample"] - single) <= 1e-9


def test_strongly_better_run_gets_most_weight(tmp_path: Path) -> None:
    w = world(4)
    noisy_run(tmp_path, "weak", w, 0.9, seed=1)
    noisy_run(tmp_path, "strong", w, 0.1, seed=2)
    m = ensemble(tmp_path, [])  # empty: every finished run, sorted by name
    assert m["runs"] == ["strong", "weak"]
    assert m["best_single_run"] == "strong"
    assert m["weights"]["strong"] >= 0.85
    assert m["blend_smape_nested"] <= m["best_single_smape"] + 0.5


def test_runs_with_different_folds_are_refused(tmp_path: Path) -> None:
    w = world(5)
    noisy_run(tmp_path, "a", w, 0.3, seed=1)
    make_run(tmp_path, "b", w, noisy(w["target"], 0.3, 2), noisy(w["test_target"], 0.3, 3),
             folds=np.roll(w["folds"], 1))
    with pytest.raises(ValueError, match="folds"):
        ensemble(tmp_path, ["a", "b"])
    assert not (tmp_path / "04_ensemble").exists()


def test_runs_with_different_train_ids_are_refused(tmp_path: Path) -> None:
    w = world(6)
    noisy_run(tmp_path, "a", w, 0.3, seed=1)
    make_run(tmp_path, "b", w, noisy(w["target"], 0.3, 2), noisy(w["test_target"], 0.3, 3), ids=w["ids"] + 1)
    with pytest.raises(ValueError, match="different rows"):
        ensemble(tmp_path, ["a", "b"])
    assert not (tmp_path / "04_ensemble").exists()


def test_no_runs_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="03_train"):
        ensemble(tmp_path, [])


@pytest.mark.parametrize("seed", [7, 8, 9])
def test_nested_score_on_pure_noise_is_not_better_than_in_sample(tmp_path: Path, seed: int) -> None:
    w = world(seed)
    rng = np.random.default_rng(seed + 100)
    for name in ("n1", "n2", "n3"):  # predictions unrelated to the target
        oof, test = np.exp(rng.normal(3.0, 1.0, N_ROWS)), np.exp(rng.normal(3.0, 1.0, N_TEST))
        make_run(tmp_path, name, w, oof, test)
    m = ensemble(tmp_path, ["n1", "n2", "n3"])
    assert m["blend_smape_in_sample"] <= m["blend_smape_nested"] + 1e-9
    # and strictly worse here: a nested score that reused the full-data weights would equal the in-sample one
    assert m["blend_smape_nested"] > m["blend_smape_in_sample"]
    assert m["blend_smape_in_sample"] <= min(m["run_smape"].values()) + 1e-9
