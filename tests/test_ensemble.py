"""Tests for amzkit.ensemble: weights, stacking, calibration, run compatibility and the nested (honest) score."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from amzkit.core.io import id_hash, show_ids
from amzkit.core.metric import smape
from amzkit.ml import combiners
from amzkit.ml.combiners import METHODS, Calibrator, blend, fit_factor, fit_weights
from amzkit.stages.ensemble import BEST_INSIDE, OUTPUTS, ensemble
from amzkit.stages.ensemble_inputs import ensemble_columns
from amzkit.stages.ensemble_report import plot_ensemble, submitted_weights, summary_table

N_ROWS, N_FOLDS, N_TEST = 2000, 5, 300


def world(seed: int = 0, n_rows: int = N_ROWS) -> dict:
    """A known lognormal target, its folds and test ids (the shared 'truth' every fake run predicts)."""
    rng = np.random.default_rng(seed)
    return {
        "ids": np.arange(10_000, 10_000 + n_rows),
        "target": np.exp(rng.normal(3.0, 1.0, n_rows)),
        "folds": rng.permutation(np.arange(n_rows) % N_FOLDS),
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
    m = ensemble(tmp_path, ["a", "b"], method="blend")
    assert m["blend_smape_nested"] < min(m["run_smape"].values()) - 3.0  # ~23.5 -> ~16.6 for sigma 0.3
    assert m["method"] == "blend" and m["cv_smape"] == m["blend_smape_nested"]
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
    assert on_disk["runs_requested"] == ["a", "b"]  # named: 05 names no run finished since
    assert ensemble(tmp_path, [], method="blend")["runs_requested"] == []  # all finished runs


def test_a_kill_while_04_writes_leaves_no_old_metrics_beside_new_predictions(tmp_path: Path, monkeypatch) -> None:
    # 04 wrote metrics.json last without removing the old one first: killed after test_pred.csv, the folder held
    # the new ensemble's predictions beside the old one's metrics (05 then reported the old CV)
    import amzkit.stages.ensemble as ensemble_module
    from amzkit.stages.submit import source_predictions
    from amzkit.testing import kill_after_writing

    w = world(0)
    noisy_run(tmp_path, "a", w, 0.3, seed=11)
    noisy_run(tmp_path, "b", w, 0.3, seed=22)
    ensemble(tmp_path, ["a", "b"], method="blend")
    kill_after_writing(monkeypatch, ensemble_module, "test_pred.csv", KeyboardInterrupt("killed while 04 writes"))
    with pytest.raises(KeyboardInterrupt):
        ensemble(tmp_path, ["a"], method="blend")
    assert not (tmp_path / "04_ensemble" / "metrics.json").exists()
    with pytest.raises(FileNotFoundError, match="'04_ensemble' did not finish"):
        source_predictions(tmp_path, "04_ensemble")


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


@pytest.mark.parametrize(("split", "bad"), [("oof", 0.0), ("oof", np.inf), ("test", np.nan), ("test", -2.0)])
def test_a_run_with_a_prediction_that_is_not_a_positive_number_is_refused_by_name(tmp_path: Path, split: str,
                                                                                  bad: float) -> None:
    w = world(6)
    noisy_run(tmp_path, "a", w, 0.3, seed=1)
    run_dir = make_run(tmp_path, "edited", w, noisy(w["target"], 0.3, 2), noisy(w["test_target"], 0.3, 3))
    file_name = "oof.csv" if split == "oof" else "test_pred.csv"
    table = pd.read_csv(run_dir / file_name)
    table.loc[4, "pred"] = bad  # a 0 made the blend search loop for ever; a NaN reached 04's test_pred.csv
    table.to_csv(run_dir / file_name, index=False)
    with pytest.raises(ValueError, match=f"run 'edited': 1 of .* in its {file_name} are not positive numbers "
                                         rf"\(first: id {table['id'][4]}, {bad!r}\)"):  # 0.0, not np.float64(0.0)
        ensemble(tmp_path, ["a", "edited"], method="blend")
    assert not (tmp_path / "04_ensemble" / "metrics.json").exists()


def test_runs_trained_on_other_prices_of_the_same_rows_are_refused(tmp_path: Path) -> None:
    w = world(7)
    noisy_run(tmp_path, "base", w, 0.3, seed=1)
    clipped = {**w, "target": np.minimum(w["target"], 60.0)}  # outliers clipped, one run retrained on it
    make_run(tmp_path, "a_clipped", clipped, noisy(clipped["target"], 0.3, 2), noisy(w["test_target"], 0.3, 3))
    for runs in (["base", "a_clipped"], ["a_clipped", "base"], []):
        with pytest.raises(ValueError, match="different targets for the same rows") as err:
            ensemble(tmp_path, runs)
        assert f"{int((w['target'] > 60).sum())} rows differ" in str(err.value)
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


def test_in_sample_weight_gain_on_pure_noise_is_not_there_nested(tmp_path: Path) -> None:
    """Six runs of pure noise: equal weights need no fitting, so any gain over them is what fitting found.

    In-sample the fitted weights beat equal weights (they were chosen on those rows); nested they do not.
    Averaged over a few worlds so that one lucky split cannot decide the test.
    """
    gains_in_sample, gains_nested = [], []
    for seed in (0, 1, 2, 3):
        w = world(seed, n_rows=400)
        rng = np.random.default_rng(seed + 100)
        work = tmp_path / f"w{seed}"
        for name in [f"noise{i}" for i in range(6)]:
            make_run(work, name, w, np.exp(rng.normal(3.0, 1.0, 400)), np.exp(rng.normal(3.0, 1.0, N_TEST)))
        m = ensemble(work, [], method="blend")
        gains_in_sample.append(m["blend_smape_equal_weights"] - m["blend_smape_in_sample"])
        gains_nested.append(m["blend_smape_equal_weights"] - m["blend_smape_nested"])
        assert m["blend_smape_in_sample"] < m["blend_smape_nested"]
    print(f"gain over equal weights: in-sample {np.mean(gains_in_sample):.2f}, nested {np.mean(gains_nested):.2f}")
    assert np.mean(gains_in_sample) > 0.3  # the fake gain an in-sample report would claim
    assert np.mean(gains_nested) < 0.0  # and the honest number says it is not there


# --------------------------------------------------------------------------------------------------
# calibration
# --------------------------------------------------------------------------------------------------


def test_fit_factor_recovers_a_multiplicative_bias() -> None:
    w = world(10)
    pred = 1.1 * noisy(w["target"], 0.3, 1)
    factor = fit_factor(pred, w["target"])
    assert factor == pytest.approx(1 / 1.1, abs=0.03)
    assert smape(w["target"], factor * pred) < smape(w["target"], pred) - 0.5
    assert fit_factor(pred, w["target"], factor_range=(0.95, 1.05)) == pytest.approx(0.95, abs=1e-3)  # bounded


def test_a_wide_factor_range_is_scored_in_chunks_with_the_same_factor(monkeypatch) -> None:
    """factor_min..factor_max of 0.01..100 on many rows once built the whole rows x grid array (~10 GB on
    75k rows: MemoryError); the grid is scored a bounded number of cells at a time, to the same factor."""
    w = world(10)
    pred = 1.1 * noisy(w["target"], 0.3, 1)
    whole = fit_factor(pred, w["target"], factor_range=(0.5, 2.0))
    monkeypatch.setattr(combiners, "_CHUNK_CELLS", 5 * len(pred))
    assert fit_factor(pred, w["target"], factor_range=(0.5, 2.0)) == whole  # chunked: identical result
    cells = []
    smape_columns = combiners._smape_columns
    monkeypatch.setattr(combiners, "_smape_columns", lambda a, f: cells.append(f.size) or smape_columns(a, f))
    rows = np.resize(w["target"], 5_000)
    monkeypatch.setattr(combiners, "_CHUNK_CELLS", 100_000)
    factor = fit_factor(1.1 * rows, rows, factor_range=(0.01, 100.0), step=0.05)  # 2k factors x 5k rows
    assert factor == pytest.approx(1 / 1.1, abs=1e-3)
    assert len(cells) > 1 and max(cells) <= 100_000


def test_biased_run_is_calibrated_nested_and_the_factor_is_reported(tmp_path: Path) -> None:
    w = world(11)
    make_run(tmp_path, "biased", w, 1.1 * noisy(w["target"], 0.3, 1), 1.1 * noisy(w["test_target"], 0.3, 2))
    m = ensemble(tmp_path, ["biased"], method="blend+calibration")
    assert m["calibration_factor"] == pytest.approx(1 / 1.1, abs=0.03)
    assert all(f == pytest.approx(1 / 1.1, abs=0.03) for f in m["nested_calibration_factors"])
    assert len(m["nested_calibration_factors"]) == N_FOLDS
    assert m["calibrated_smape_nested"] < m["blend_smape_nested"] - 0.5
    assert m["cv_smape"] == m["calibrated_smape_nested"]
    test = pd.read_csv(tmp_path / "04_ensemble" / "test_pred.csv")["pred"].to_numpy()
    raw = pd.read_csv(tmp_path / "03_train" / "biased" / "test_pred.csv")["pred"].to_numpy()
    np.testing.assert_allclose(test, raw * m["calibration_factor"], rtol=1e-9)


def test_per_group_factors_fix_biases_of_opposite_sign(tmp_path: Path) -> None:
    w = world(12)
    rng = np.random.default_rng(0)
    group = rng.choice(np.array(["g", "ml"]), N_ROWS)
    test_group = rng.choice(np.array(["g", "ml"]), N_TEST)
    bias, test_bias = np.where(group == "g", 1.2, 0.85), np.where(test_group == "g", 1.2, 0.85)
    make_run(tmp_path, "r", w, bias * noisy(w["target"], 0.2, 1), test_bias * noisy(w["test_target"], 0.2, 2))
    groups = pd.Series(np.concatenate([group, test_group]), index=np.concatenate([w["ids"], w["test_ids"]]))
    plain = ensemble(tmp_path, ["r"], method="blend+calibration")
    grouped = ensemble(tmp_path, ["r"], method="blend+calibration", groups=groups)
    assert grouped["calibration_group_factors"]["g"] == pytest.approx(1 / 1.2, abs=0.03)
    assert grouped["calibration_group_factors"]["ml"] == pytest.approx(1 / 0.85, abs=0.03)
    assert grouped["calibrated_smape_nested"] < plain["calibrated_smape_nested"] - 2.0
    with pytest.raises(ValueError, match="lacks"):
        ensemble(tmp_path, ["r"], groups=groups.iloc[:-5])


def test_a_method_asked_for_by_name_that_ignores_calibrate_by_or_meta_features_says_so(tmp_path: Path,
                                                                                      capsys) -> None:
    # -p method blend -p calibrate_by unit_family: 04 read the CSVs for the groups and wrote an uncalibrated blend
    # without a word (calibrate_by's help says 'a calibration factor per group')
    w = world(12)
    noisy_run(tmp_path, "r", w, 0.3, 1)
    all_ids = np.concatenate([w["ids"], w["test_ids"]])
    groups = pd.Series(np.where(np.arange(len(all_ids)) % 2, "g", "ml"), index=all_ids)
    extra = pd.DataFrame({"x": np.arange(len(all_ids), dtype=float)}, index=all_ids)
    expected = {"blend": "calibrate_by (the +calibration methods use it only) and meta_features (the stack methods "
                         "see them only)",
                "stack": "calibrate_by (the +calibration methods use it only)",
                "blend+calibration": "meta_features (the stack methods see them only)"}
    for method in METHODS + ("best",):
        capsys.readouterr()
        ensemble(tmp_path, ["r"], method=method, groups=groups, meta_features=extra)
        out = capsys.readouterr().out
        if method in expected:
            assert f"note: method {method} ignores {expected[method]}" in out
        else:
            assert "ignores" not in out
    ensemble(tmp_path, ["r"], method="blend")
    assert "ignores" not in capsys.readouterr().out


def test_small_groups_take_the_global_factor() -> None:
    pred, target = np.array([2.0] * 300 + [1.0] * 10), np.array([1.0] * 300 + [1.0] * 10)
    groups = np.array(["big"] * 300 + ["small"] * 10)
    cal = Calibrator(min_group_rows=200).fit(pred, target, groups)
    assert set(cal.group_factors_) == {"big"}
    out = cal.predict(pred, groups)
    assert out[-1] == pytest.approx(cal.factor_)


# --------------------------------------------------------------------------------------------------
# stacking
# --------------------------------------------------------------------------------------------------


def complementary_runs(work: Path, w: dict, seed: int = 0) -> None:
    """log target = 3 + a + b: run 'a' sees only a, run 'b' only b (each misses the other half)."""
    rng = np.random.default_rng(seed)
    n, n_test = len(w["target"]), len(w["test_ids"])
    a, b = rng.normal(0, 0.7, n + n_test), rng.normal(0, 0.7, n + n_test)
    w["target"] = np.exp(3.0 + a[:n] + b[:n])
    eps = rng.normal(0, 0.05, (2, n + n_test))
    pa, pb = np.exp(3.0 + a + eps[0]), np.exp(3.0 + b + eps[1])
    make_run(work, "a", w, pa[:n], pa[n:])
    make_run(work, "b", w, pb[:n], pb[n:])


def test_stacking_complementary_runs_beats_each_run_and_the_blend_nested(tmp_path: Path) -> None:
    w = world(13)
    complementary_runs(tmp_path, w)
    m = ensemble(tmp_path, ["a", "b"])
    assert m["stack_smape_nested"] < min(m["run_smape"].values()) - 20
    assert m["stack_smape_nested"] < m["blend_smape_nested"] - 10
    assert m["method"] in ("stack", "stack+calibration")
    assert set(m["method_picked_per_fold"]) <= {"stack", "stack+calibration"}
    assert m["cv_smape"] < m["blend_smape_nested"] - 10
    assert m["stack_coef"]["a"] == pytest.approx(1.0, abs=0.1) and m["stack_coef"]["b"] == pytest.approx(1.0, abs=0.1)
    chosen = pd.read_csv(tmp_path / "04_ensemble" / "test_methods.csv")[m["method"]]
    np.testing.assert_allclose(pd.read_csv(tmp_path / "04_ensemble" / "test_pred.csv")["pred"], chosen, rtol=1e-9)


class SpyMeta:
    """A ridge meta-model that records which rows each fitted copy trained on and later predicted."""

    calls: list[tuple[frozenset, frozenset]] = []  # (rows fit on, rows predicted), shared by every copy
    lookup: dict[tuple, int] = {}  # a row's log predictions -> its train row number

    def _rows(self, x: np.ndarray) -> frozenset:
        return frozenset(self.lookup.get(tuple(r), -1) for r in x)

    def fit(self, x: np.ndarray, y_log: np.ndarray) -> SpyMeta:
        from amzkit.ml.combiners import RidgeStack

        self.fit_rows_ = self._rows(x)
        self.model_ = RidgeStack().fit(x, y_log)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        SpyMeta.calls.append((self.fit_rows_, self._rows(x)))
        return self.model_.predict(x)


def test_the_meta_model_for_a_fold_never_sees_that_folds_rows(tmp_path: Path) -> None:
    w = world(14)
    complementary_runs(tmp_path, w)
    oof_log = np.column_stack([np.log(pd.read_csv(tmp_path / "03_train" / r / "oof.csv")["pred"]) for r in "ab"])
    SpyMeta.lookup = {tuple(row): i for i, row in enumerate(oof_log)}
    SpyMeta.calls = []
    m = ensemble(tmp_path, ["a", "b"], meta=SpyMeta())
    all_rows = frozenset(range(N_ROWS))
    fold_rows = {f: frozenset(np.flatnonzero(w["folds"] == f).tolist()) for f in range(N_FOLDS)}
    held_out_predictions = 0
    for fit_rows, predicted in SpyMeta.calls:
        assert -1 not in fit_rows  # only OOF rows of train, never test rows
        left_out = [f for f, rows in fold_rows.items() if not rows & fit_rows]
        assert fit_rows == all_rows - frozenset().union(*(fold_rows[f] for f in left_out))  # whole folds only
        assert len(left_out) <= 2  # every row, or nested (one fold out), or method "best" picked inside (two)
        if predicted <= all_rows and not predicted <= fit_rows:  # a nested prediction
            fold = next(f for f, rows in fold_rows.items() if predicted == rows)
            assert fold in left_out
            held_out_predictions += 1
    # stack and stack+calibration, each fold once, and again inside each of the other folds' nested picks
    assert held_out_predictions == 2 * N_FOLDS + 2 * N_FOLDS * (N_FOLDS - 1)
    assert m["meta"] == "SpyMeta" and m["stack_smape_nested"] < min(m["run_smape"].values())


def test_lightgbm_meta_model_with_raw_columns(tmp_path: Path) -> None:
    w = world(15)
    complementary_runs(tmp_path, w)
    all_ids = np.concatenate([w["ids"], w["test_ids"]])
    extra = pd.DataFrame({"x": np.random.default_rng(0).normal(size=len(all_ids))}, index=all_ids)
    m = ensemble(tmp_path, ["a", "b"], meta="lightgbm", meta_features=extra)
    assert m["meta"] == "lightgbm" and "stack_coef" not in m
    assert m["stack_smape_nested"] < min(m["run_smape"].values()) - 10


# --------------------------------------------------------------------------------------------------
# method choice and outputs
# --------------------------------------------------------------------------------------------------


def test_best_method_is_chosen_by_nested_score_and_written(tmp_path: Path) -> None:
    w = world(16)
    noisy_run(tmp_path, "a", w, 0.3, seed=1)
    make_run(tmp_path, "b", w, 1.15 * noisy(w["target"], 0.4, 2), 1.15 * noisy(w["test_target"], 0.4, 3))
    m = ensemble(tmp_path, [])
    assert set(m["method_smape_nested"]) == set(METHODS) and m["method_requested"] == "best"
    assert m["method"] == min(m["method_smape_nested"], key=m["method_smape_nested"].get)
    assert m["cv_scores"] == BEST_INSIDE and len(m["method_picked_per_fold"]) == N_FOLDS
    out = tmp_path / "04_ensemble"
    oof = pd.read_csv(out / "oof.csv")
    assert smape(oof["target"], oof["pred"]) == pytest.approx(m["cv_smape"], rel=1e-9)
    methods = pd.read_csv(out / "oof_methods.csv")
    for fold, picked in enumerate(m["method_picked_per_fold"]):  # each fold: its own pick's nested predictions
        rows = oof["fold"] == fold
        np.testing.assert_allclose(oof.loc[rows, "pred"], methods.loc[rows, picked], rtol=1e-12)
    table = pd.read_csv(out / "table.csv")
    assert table["model"].tolist() == ["a", "b", *METHODS, BEST_INSIDE]
    assert table.loc[table["chosen"], "model"].tolist() == [m["method"]]
    assert table.set_index("model").loc[BEST_INSIDE, "nested_smape"] == pytest.approx(m["cv_smape"], rel=1e-12)
    assert {"nested_smape", "fold_mean", "fold_std", "in_sample_smape"} <= set(table.columns)
    weights = pd.read_csv(out / "weights.csv")
    assert weights["run"].tolist() == ["a", "b"] and weights.shape[1] == 2 + N_FOLDS
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["method"] == m["method"] and len(on_disk["table"]) == 3 + len(METHODS)
    summary = summary_table(m)
    assert summary["model"].tolist() == ["best single: a", *METHODS, BEST_INSIDE]
    plot_ensemble(tmp_path, m)
    assert (out / "ensemble.png").stat().st_size > 0
    with pytest.raises(ValueError, match="method"):
        ensemble(tmp_path, [], method="average")


def test_a_run_named_like_a_method_is_shown_once_as_the_best_single_run(tmp_path: Path) -> None:
    # a 03 run named "stack" also matched the stack method's row: two "best single: stack" rows, one of them the
    # ensemble's score
    w = world(3, 300)
    noisy_run(tmp_path, "stack", w, 0.2, seed=1)
    noisy_run(tmp_path, "x", w, 0.3, seed=2)
    m = ensemble(tmp_path, [])
    assert m["best_single_run"] == "stack"
    summary = summary_table(m)
    assert summary["model"].tolist() == ["best single: stack", *METHODS, BEST_INSIDE]
    assert summary["nested_smape"].iloc[0] == pytest.approx(m["best_single_smape"], rel=1e-12)


def test_the_target_is_refused_as_a_meta_feature_or_calibration_group() -> None:
    text = [f"Item Name: Thing {i}\nValue: {i % 4 + 1}.0\nUnit: Ounce" for i in range(30)]
    train = pd.DataFrame({"sample_id": [str(i) for i in range(20)], "catalog_content": text[:20],
                          "image_link": "", "price": np.arange(1.0, 21.0)})
    test = pd.DataFrame({"sample_id": [str(i) for i in range(20, 30)], "catalog_content": text[20:],
                         "image_link": ""})
    data = {"train": train, "test": test}
    with pytest.raises(ValueError, match="'price' is the target: as a meta-feature or calibration group"):
        ensemble_columns(data, "amazon2025", ["unit_family", "price"])
    columns = ensemble_columns(data, "amazon2025", ["unit_family", "image_link"])
    assert list(columns.columns) == ["unit_family", "image_link"] and len(columns) == 30


def test_the_weights_plotted_are_those_of_the_submitted_method():
    metrics = {"weights": {"a": 0.7, "b": 0.3, "c": 0.0}, "stack_coef": {"a": 0.53, "b": 0.52, "c": -0.03}}
    shown, title = submitted_weights({**metrics, "method": "stack+calibration"})
    assert shown == metrics["stack_coef"] and title.startswith("submitted: stack+calibration; stack coefficients")
    shown, title = submitted_weights({**metrics, "method": "blend+calibration"})
    assert shown == metrics["weights"] and title.startswith("submitted: blend+calibration; blend weights")
    shown, title = submitted_weights({"weights": metrics["weights"], "method": "stack"})  # a tree meta-model
    assert shown == metrics["weights"] and "no coefficients" in title


def test_the_row_id_is_refused_as_a_meta_feature_or_calibration_group() -> None:
    # ids that follow the train prices gave a nested CV of 22.9 against 86.5 on the test rows in a review
    train = pd.DataFrame({"sample_id": [str(i) for i in range(20)], "catalog_content": "Item Name: x",
                          "image_link": "", "price": np.arange(1.0, 21.0)})
    test = pd.DataFrame({"sample_id": [str(i) for i in range(20, 30)], "catalog_content": "Item Name: x",
                         "image_link": ""})
    with pytest.raises(ValueError, match="'sample_id' is the row id"):
        ensemble_columns({"train": train, "test": test}, "amazon2025", ["sample_id"])


def test_a_run_named_twice_is_refused(tmp_path: Path) -> None:
    w = world(11)
    noisy_run(tmp_path, "a", w, 0.3, seed=1)
    noisy_run(tmp_path, "b", w, 0.3, seed=2)
    with pytest.raises(ValueError, match="runs names 'a' more than once"):
        ensemble(tmp_path, ["a", "b", "a"])  # it reported weights summing to 0.94


def test_a_misspelt_meta_model_is_refused_with_the_choices_before_any_run_is_read(tmp_path: Path) -> None:
    """-p meta lgbm passed the notebook's guard and failed only after the runs were loaded."""
    from amzkit.ml.combiners import META_MODELS
    from amzkit.stages.ensemble import PARAMETERS

    assert set(PARAMETERS["meta"].choices) == set(META_MODELS)
    with pytest.raises(ValueError, match=r"meta.*'lgbm'.*lightgbm"):
        PARAMETERS.validate(meta="lgbm")
    with pytest.raises(ValueError, match=r"meta.*'lgbm'.*lightgbm"):
        ensemble(tmp_path, ["never_made"], meta="lgbm")  # not "no 03_train run 'never_made'"


def test_a_failed_rerun_leaves_no_finished_04_behind_for_05(tmp_path: Path) -> None:
    w = world(12)
    noisy_run(tmp_path, "a", w, 0.3, seed=1)
    noisy_run(tmp_path, "b", w, 0.3, seed=2)
    plot_ensemble(tmp_path, ensemble(tmp_path, ["a", "b"]))
    out = tmp_path / "04_ensemble"
    assert {path.name for path in out.iterdir()} == set(OUTPUTS)  # every file 04 writes is in the list
    (out / "my_notes.txt").write_text("kept")
    with pytest.raises(FileNotFoundError):
        ensemble(tmp_path, ["a", "typo"])
    # 05 then refuses the old blend, and no old prediction, table or plot looks like this run's
    assert [path.name for path in out.iterdir()] == ["my_notes.txt"]


@pytest.mark.parametrize("split", ["train", "test"])
def test_runs_made_from_other_rows_under_the_same_ids_are_refused(tmp_path: Path, split: str) -> None:
    w = world(13)
    for name, seed in (("a", 1), ("b", 2)):
        run_dir = make_run(tmp_path, name, w, noisy(w["target"], 0.3, seed), noisy(w["test_target"], 0.3, seed + 9))
        metrics = json.loads((run_dir / "metrics.json").read_text())
        (run_dir / "metrics.json").write_text(json.dumps({**metrics, f"{split}_rows_sha256": f"{split} csv of {name}"}))
    with pytest.raises(ValueError, match=f"made from different {split} rows with the same ids: {split}.csv's text"):
        ensemble(tmp_path, ["a", "b"])


def test_a_04_notebook_refusing_a_column_leaves_no_finished_04_behind(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from amzkit.app.runners import Context, run_ensemble
    from amzkit.core.schema import get_schema

    w = world(14)
    noisy_run(tmp_path, "a", w, 0.3, seed=1)
    noisy_run(tmp_path, "b", w, 0.3, seed=2)
    ensemble(tmp_path, ["a", "b"])
    frame = pd.DataFrame({"sample_id": ["1"], "catalog_content": ["Item Name: x"], "image_link": [""]})
    params = SimpleNamespace(runs=["a", "b"], method="best", meta="ridge", calibrate_by="",
                             meta_features=["sample_id"], factor_min=0.7, factor_max=1.3, min_group_rows=200)
    ctx = Context("04_ensemble", params, get_schema("amazon2025"), tmp_path,
                  data={"train": frame.assign(price=[1.0]), "test": frame.assign(sample_id=["2"])})
    with pytest.raises(ValueError, match="row id"):
        run_ensemble(ctx)
    assert not (tmp_path / "04_ensemble" / "metrics.json").exists()


def test_a_method_asked_for_by_name_is_not_said_to_be_chosen_by_nested_score(tmp_path: Path, capsys) -> None:
    # -p method stack: 04's line said 'chosen by nested score: stack' though the blend's nested score was lower
    from types import SimpleNamespace

    from amzkit.app.runners import Context, run_ensemble
    from amzkit.core.schema import get_schema

    w = world(16)
    noisy_run(tmp_path, "a", w, 0.3, seed=1)
    noisy_run(tmp_path, "b", w, 0.3, seed=2)
    params = SimpleNamespace(runs=["a", "b"], method="stack", meta="ridge", calibrate_by="", meta_features=[],
                             factor_min=0.7, factor_max=1.3, min_group_rows=200)
    m = run_ensemble(Context("04_ensemble", params, get_schema("amazon2025"), tmp_path))
    out = capsys.readouterr().out
    lowest = min(m["method_smape_nested"], key=m["method_smape_nested"].get)
    assert m["method"] == "stack" and lowest != "stack"
    assert "chosen by nested score" not in out
    assert (f"stack as asked (-p method; the lowest nested is {lowest} {m['method_smape_nested'][lowest]:.3f}) -> "
            f"test_pred.csv, CV SMAPE {m['cv_smape']:.3f}") in out
    params.method = "best"
    m = run_ensemble(Context("04_ensemble", params, get_schema("amazon2025"), tmp_path))
    out = capsys.readouterr().out
    assert f"chosen by nested score: {m['method']} -> test_pred.csv" in out
    assert (f"CV SMAPE {m['cv_smape']:.3f} (each fold by the method that won on the other folds, so the choosing is "
            "scored too)") in out  # was "(best (picked inside each fold))"


def test_runs_made_for_other_test_rows_are_refused_whichever_run_comes_first(tmp_path: Path) -> None:
    w = world(15)
    for name, seed, made_for in (("a_old", 1, None), ("b", 2, "rows b"), ("c", 3, "rows c")):
        run_dir = make_run(tmp_path, name, w, noisy(w["target"], 0.3, seed), noisy(w["test_target"], 0.3, seed + 9))
        if made_for:
            metrics = json.loads((run_dir / "metrics.json").read_text())
            (run_dir / "metrics.json").write_text(json.dumps({**metrics, "test_rows_sha256": made_for}))
    with pytest.raises(ValueError, match="'b' and 'c' were made from different test rows with the same ids"):
        ensemble(tmp_path, ["a_old", "b", "c"])  # a_old predates the digest: it used to be the only reference


def test_a_04_that_scores_worse_than_its_best_run_says_so_and_names_the_run(tmp_path: Path) -> None:
    """One run: a calibration picked inside each fold costs more than it gains; 05 would submit it silently."""
    from amzkit.stages.ensemble_report import choice_note

    w = world(21)
    make_run(tmp_path, "only", w, noisy(w["target"], 0.4, 1), noisy(w["test_target"], 0.4, 2))
    m = ensemble(tmp_path, ["only"])
    note = choice_note(m)
    assert (m["cv_smape"] > m["best_single_smape"] and not m["test_is_best_single"]) == bool(note)
    written = pd.read_csv(tmp_path / "04_ensemble" / "test_pred.csv")["pred"].to_numpy()
    run = pd.read_csv(tmp_path / "03_train" / "only" / "test_pred.csv")["pred"].to_numpy()
    assert m["test_is_best_single"] == bool(np.allclose(written, run, rtol=1e-9, atol=0))
    quiet = {**m, "cv_smape": m["best_single_smape"] + 0.5, "test_is_best_single": True}
    assert choice_note(quiet) == ""  # 05 -p source only would submit the same numbers: nothing to advise
    m = {**m, "test_is_best_single": False}
    assert choice_note({**m, "cv_smape": m["best_single_smape"] + 0.5}).endswith("what a blend needs")
    assert "05 -p source only" in choice_note({**m, "cv_smape": m["best_single_smape"] + 0.5})
    assert choice_note({**m, "cv_smape": m["best_single_smape"] - 0.5}) == ""
    # a run named 04_ensemble (before 03 reserved the name): -p source 04_ensemble would submit the blend
    clash = choice_note({**m, "cv_smape": m["best_single_smape"] + 0.5, "best_single_run": "04_ensemble"})
    assert "-p source 04_ensemble" not in clash and "once its folder 03_train/04_ensemble is renamed" in clash


def test_a_blend_that_gives_every_weight_to_one_run_says_test_pred_is_that_run(tmp_path: Path) -> None:
    from amzkit.stages.ensemble_report import choice_note

    w = world(23)
    make_run(tmp_path, "good", w, noisy(w["target"], 0.1, 1), noisy(w["test_target"], 0.1, 2))
    make_run(tmp_path, "bad", w, noisy(w["target"], 2.0, 3), noisy(w["test_target"], 2.0, 4))
    m = ensemble(tmp_path, ["good", "bad"], method="blend")
    assert m["weights"] == {"good": 1.0, "bad": 0.0} and m["test_is_best_single"]
    assert choice_note(m) == (f"note: test_pred.csv is 'good' alone (blend gave the other runs no weight); its own "
                              f"CV is {m['run_smape']['good']:.3f}")


def test_a_run_blended_with_its_twin_is_not_said_to_have_taken_every_weight(tmp_path: Path) -> None:
    # one run trained twice under two names: the blend weighs both and writes that run's predictions; the note
    # said 'blend gave the other runs no weight' beside weights.csv giving the twin most of it
    from amzkit.stages.ensemble_report import choice_note

    w = world(24)
    oof, test = noisy(w["target"], 0.3, 1), noisy(w["test_target"], 0.3, 2)
    make_run(tmp_path, "a", w, oof, test)
    make_run(tmp_path, "b", w, oof, test)
    m = ensemble(tmp_path, ["a", "b"], method="blend")
    assert m["test_is_best_single"] and m["best_single_run"] == "a" and m["weights"]["b"] > 0
    note = choice_note(m)
    assert "no weight" not in note
    assert note == (f"note: test_pred.csv is 'a''s own predictions (blend also weighs 'b', which predict the same); "
                    f"its own CV is {m['run_smape']['a']:.3f}")


def test_runs_of_reordered_train_rows_are_refused_with_what_changed(tmp_path: Path) -> None:
    w = world(22)
    noisy_run(tmp_path, "old", w, 0.3, 1)
    order = np.arange(len(w["ids"]))[::-1]
    make_run(tmp_path, "new", {**w, "target": w["target"][order]}, noisy(w["target"][order], 0.3, 2),
             noisy(w["test_target"], 0.3, 3), ids=np.asarray(w["ids"])[order], folds=np.asarray(w["folds"])[order])
    with pytest.raises(ValueError, match=r"'new' has the same ids in another row order\): cannot blend; rerun"):
        ensemble(tmp_path, ["old", "new"])


def test_04s_column_wise_smape_is_the_metrics_smape() -> None:
    from amzkit.ml.combiners import _smape_columns

    rng = np.random.default_rng(0)
    target, preds = rng.lognormal(2, 1, 500), rng.lognormal(2, 1, (500, 7))
    target[:3], preds[0, 0], preds[1, :] = 0.0, 0.0, target[1]  # A = F = 0 counts 0; a perfect row
    np.testing.assert_allclose(_smape_columns(target, preds), [smape(target, preds[:, j]) for j in range(7)],
                               rtol=0, atol=1e-12)


def test_the_ridge_stack_reads_a_value_missing_only_at_prediction_as_its_fit_median():
    from amzkit.ml.combiners import RidgeStack

    rng = np.random.default_rng(0)
    meta = rng.normal(50, 5, 400)  # a meta-feature never missing in the fit rows (e.g. a pack total)
    y_log = 3 + 0.1 * (meta - 50) + rng.normal(0, 0.2, 400)
    x = np.column_stack([y_log + rng.normal(0, 0.3, 400), meta])
    stack = RidgeStack().fit(x, y_log)
    missing = stack.predict(np.array([[3.0, np.nan]]))
    assert missing == pytest.approx(stack.predict(np.array([[3.0, np.median(meta)]])))
    assert abs(missing[0] - 3.0) < 0.5, "read as 0, the meta-feature priced this row at exp(-2)"
    never = RidgeStack().fit(np.column_stack([x, np.full(400, np.nan)]), y_log)  # a column with no value: 0
    assert never.fill_[2] == 0.0 and np.isfinite(never.predict(np.array([[3.0, np.nan, np.nan]]))).all()


def test_runs_made_for_another_test_csv_are_refused_with_what_changed_and_the_fix(tmp_path: Path) -> None:
    w = world(16)
    noisy_run(tmp_path, "full", w, 0.3, seed=1)
    sample = {**w, "test_ids": w["test_ids"][:100], "test_target": w["test_target"][:100]}  # made on sample_test.csv
    noisy_run(tmp_path, "sample", sample, 0.3, seed=2)
    with pytest.raises(ValueError, match=r"'sample' has 0 ids added, 200 gone\).*Rerun the older runs on the current "
                                         r"test.csv, or leave them out \(-p runs\)"):
        ensemble(tmp_path, ["full", "sample"])


def test_a_calibration_column_from_another_test_csv_than_the_runs_says_which_ids_and_the_fix(tmp_path: Path) -> None:
    w = world(17)
    noisy_run(tmp_path, "a", w, 0.3, seed=1)
    all_ids = np.concatenate([w["ids"], w["test_ids"] + 1000])  # test.csv replaced since 03 ran
    groups = pd.Series(np.where(np.arange(len(all_ids)) % 2, "x", "y"), index=all_ids)
    with pytest.raises(ValueError, match=r"groups \(calibrate_by\), read from data_dir's train.csv and test.csv, "
                                         r"lacks 300 of the runs' 300 test ids \(e.g. \[50000.*Rerun 03 on these CSVs"):
        ensemble(tmp_path, ["a"], groups=groups)


def test_product_groups_passed_by_hand_without_some_train_ids_names_the_argument_and_the_ids(tmp_path: Path) -> None:
    # the message said product_groups was "read from data_dir's train.csv and test.csv" and blamed the CSVs
    w = world(18)
    noisy_run(tmp_path, "a", w, 0.3, seed=1)
    by_id = pd.Series("one product", index=w["ids"][2:])
    with pytest.raises(ValueError) as refused:
        ensemble(tmp_path, ["a"], product_groups=by_id)
    message = str(refused.value)
    assert message.startswith(f"the product_groups argument lacks 2 of the runs' {N_ROWS} train ids (e.g. "
                              f"{show_ids(w['ids'][:2])})")
    assert "data_dir" not in message and "leave product_groups out" in message


def test_a_run_named_as_one_string_is_one_run_not_its_letters(tmp_path: Path) -> None:
    # the library split ensemble(work, "a,b") letter by letter before checking it ("a", ",", "b")
    w = world(0)
    noisy_run(tmp_path, "a", w, 0.3, seed=11)
    noisy_run(tmp_path, "b", w, 0.3, seed=22)
    assert list(ensemble(tmp_path, "a,b", method="blend")["weights"]) == ["a", "b"]


@pytest.mark.parametrize("meta", ["ridge", "lightgbm"])
def test_a_meta_feature_far_outside_the_fit_rows_range_is_read_at_that_range_edge(tmp_path: Path, meta: str) -> None:
    # a raw column that explains part of the price: a linear meta-model extrapolating it for a test row with a
    # value 1000x beyond every train row's wrote a price of 0.001 or inf; the row must read as the fit rows' edge
    w = world(21)
    rng = np.random.default_rng(4)
    size = np.concatenate([rng.uniform(0, 100, N_ROWS), rng.uniform(0, 100, N_TEST)])
    target = np.concatenate([w["target"], w["test_target"]]) * np.exp(size / 100)
    w["target"], w["test_target"] = target[:N_ROWS], target[N_ROWS:]
    noisy_run(tmp_path, "a", w, 0.4, seed=1)
    noisy_run(tmp_path, "b", w, 0.4, seed=2)
    all_ids = np.concatenate([w["ids"], w["test_ids"]])
    size[N_ROWS] = size[:N_ROWS].max() * 1000
    edge = size.copy()
    edge[N_ROWS] = size[:N_ROWS].max()
    far = ensemble(tmp_path, [], method="stack", meta=meta, meta_features=pd.DataFrame({"size": size}, index=all_ids))
    far_test = pd.read_csv(tmp_path / "04_ensemble" / "test_methods.csv")
    ensemble(tmp_path, [], method="stack", meta=meta, meta_features=pd.DataFrame({"size": edge}, index=all_ids))
    edge_test = pd.read_csv(tmp_path / "04_ensemble" / "test_methods.csv")
    assert far["stack_smape_nested"] < min(far["run_smape"].values())  # the column helps
    for method in METHODS:
        assert far_test[method].iloc[0] == pytest.approx(edge_test[method].iloc[0], rel=1e-9)


@pytest.mark.parametrize("edit", ["rows missing", "rows reordered", "folds changed"])
def test_a_runs_oof_csv_that_does_not_match_the_first_runs_rows_or_folds_is_refused(tmp_path: Path,
                                                                                     edit: str) -> None:
    # what is checked is the files 04 blends, not what metrics.json says of them: an oof.csv edited or copied after
    # 03 crashed 04 with a numpy broadcast error (rows missing), blamed changed prices (rows reordered) or was
    # blended against the first run's folds without a word (folds changed)
    w = world(23)
    noisy_run(tmp_path, "a", w, 0.3, seed=1)
    run_dir = make_run(tmp_path, "b", w, noisy(w["target"], 0.3, 2), noisy(w["test_target"], 0.3, 3))
    oof = pd.read_csv(run_dir / "oof.csv", float_precision="round_trip")
    if edit == "rows missing":
        oof = oof.iloc[:-5]
    elif edit == "rows reordered":
        oof = oof.iloc[::-1]
    else:
        oof["fold"] = (oof["fold"] + 1) % N_FOLDS
    oof.to_csv(run_dir / "oof.csv", index=False)
    match = "used different folds" if edit == "folds changed" else "'a' and 'b' were trained on different rows"
    with pytest.raises(ValueError, match=match):
        ensemble(tmp_path, ["a", "b"])


def test_with_two_folds_04_picks_the_method_on_halves_that_keep_products_together(tmp_path: Path,
                                                                                  monkeypatch) -> None:
    import amzkit.ml.nested as nested

    w = world(24, n_rows=600)
    products = np.repeat(np.arange(200), 3)  # 3 copies per product, in one outer fold as 03's group folds
    w["folds"] = np.random.default_rng(2).permutation(np.arange(200) % 2)[products]
    noisy_run(tmp_path, "a", w, 0.3, seed=1)
    noisy_run(tmp_path, "b", w, 0.4, seed=2)
    halves = []
    real_inner_folds = nested.inner_folds
    monkeypatch.setattr(nested, "inner_folds", lambda rows, n, seed, groups=None: halves.append(
        (rows, real_inner_folds(rows, n, seed, groups))) or halves[-1][1])
    by_id = pd.Series([f"product {p}" for p in products], index=[str(i) for i in w["ids"]])
    ensemble(tmp_path, [], product_groups=by_id[::-1])  # aligned by id, whatever the order
    assert len(halves) == 2 * len(METHODS)
    for rows, half in halves:
        together = pd.Series(half).groupby(products[rows]).nunique()
        assert (together == 1).all()
    halves.clear()
    ensemble(tmp_path, [])  # no product groups (no folds.csv with them): halves row by row, as before
    assert any((pd.Series(half).groupby(products[rows]).nunique() > 1).any() for rows, half in halves)

    halves.clear()  # 03's group folds keep each row's group in folds.csv (rows in their own order): 04 reads them
    order = np.random.default_rng(3).permutation(len(products))
    pd.DataFrame({"id": w["ids"][order], "fold": w["folds"][order], "group": products[order]}).to_csv(
        tmp_path / "03_train" / "folds.csv", index=False)
    ensemble(tmp_path, [])
    assert len(halves) == 2 * len(METHODS)
    assert all((pd.Series(half).groupby(products[rows]).nunique() == 1).all() for rows, half in halves)


def test_group_folds_keep_each_rows_product_group_in_folds_csv(tmp_path: Path) -> None:
    from amzkit.core.schema import get_schema
    from amzkit.ml.folds import saved_fold_groups, shared_folds

    schema = get_schema("amazon2025")
    names = [f"Item Name: Product {i % 40}" for i in range(120)]  # 40 products, 3 copies each
    train = pd.DataFrame({"sample_id": np.arange(120), "catalog_content": names, "image_link": "",
                          "price": np.exp(np.random.default_rng(0).normal(2, 1, 120))})
    folds = shared_folds(tmp_path, train, schema, 2, 0, "group")
    groups = saved_fold_groups(tmp_path)
    assert groups is not None and groups.index.tolist() == [str(i) for i in range(120)]
    assert groups.groupby(np.arange(120) % 40).nunique().eq(1).all() and groups.nunique() == 40
    assert pd.Series(folds).groupby(groups.to_numpy()).nunique().eq(1).all()
    assert saved_fold_groups(tmp_path / "elsewhere") is None
    shared_folds(tmp_path / "plain", train, schema, 2, 0, "stratified")
    assert saved_fold_groups(tmp_path / "plain") is None


def test_a_category_meta_feature_reaches_the_ridge_as_indicators_not_as_its_codes(tmp_path: Path) -> None:
    # a category column (brand, unit_family: categories, as ensemble_columns gives them) reached the ridge
    # meta-model as its codes, so the stack read "category 3 is 3x category 1": its fit depended on the codes'
    # (alphabetical) order and missed a price effect that does not grow with it
    w = world(31)
    rng = np.random.default_rng(7)
    labels = np.array(["a", "b", "c", "d"])[rng.integers(0, 4, N_ROWS + N_TEST)]
    effect = pd.Series({"a": 0.0, "b": 0.8, "c": 0.0, "d": 0.8})[labels].to_numpy()
    noisy_run(tmp_path, "a", w, 0.3, seed=1)  # the runs know nothing of the category's effect
    noisy_run(tmp_path, "b", w, 0.3, seed=2)
    target = np.concatenate([w["target"], w["test_target"]]) * np.exp(effect)
    for name in ("a", "b"):
        run = pd.read_csv(tmp_path / "03_train" / name / "oof.csv")
        run.assign(target=target[:N_ROWS]).to_csv(tmp_path / "03_train" / name / "oof.csv", index=False)
    all_ids = np.concatenate([w["ids"], w["test_ids"]])
    tests = []
    for renamed in ({"a": "a", "b": "b", "c": "c", "d": "d"}, {"a": "q", "b": "z", "c": "m", "d": "a"}):
        column = pd.Series([renamed[label] for label in labels], index=all_ids).astype("category")
        metrics = ensemble(tmp_path, [], method="stack", meta_features=pd.DataFrame({"brand": column}))
        tests.append(pd.read_csv(tmp_path / "04_ensemble" / "test_methods.csv")["stack"].to_numpy())
        assert metrics["stack_smape_nested"] < 0.5 * min(metrics["run_smape"].values()), "the category's effect is fit"
    np.testing.assert_allclose(tests[0], tests[1], rtol=1e-5)  # the names' order means nothing
