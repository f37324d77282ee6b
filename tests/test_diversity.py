"""How alike 03's runs are: error correlation, alike pairs, and what 04 writes of them."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from test_ensemble import make_run, noisy, world

from amzkit.ml.diversity import alike_pairs, error_correlation, log_errors
from amzkit.stages.ensemble import ensemble
from amzkit.stages.ensemble_report import plot_ensemble


def _three_runs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Runs a and b share most of their error (correlation ~0.97); c's error is its own."""
    rng = np.random.default_rng(seed)
    target = np.exp(rng.normal(3.0, 1.0, 3000))
    shared = rng.normal(0, 0.3, 3000)
    a = shared + rng.normal(0, 0.05, 3000)
    b = shared + rng.normal(0, 0.05, 3000)
    c = rng.normal(0, 0.3, 3000)
    return np.log(target)[:, None] + np.column_stack([a, b, c]), target


def test_error_correlation_tells_alike_runs_from_independent_ones():
    log_preds, target = _three_runs()
    np.testing.assert_allclose(log_errors(log_preds, target)[:, 2], log_preds[:, 2] - np.log(target))
    corr = error_correlation(log_preds, target, ["a", "b", "c"])
    assert list(corr.index) == list(corr.columns) == ["a", "b", "c"]
    np.testing.assert_allclose(np.diag(corr), 1.0)
    assert corr.loc["a", "b"] == pytest.approx(0.3**2 / (0.3**2 + 0.05**2), abs=0.01)
    assert abs(corr.loc["a", "c"]) < 0.06 and abs(corr.loc["b", "c"]) < 0.06
    pairs = alike_pairs(corr)
    assert [p["runs"] for p in pairs] == [["a", "b"]]
    assert pairs[0]["error_correlation"] == pytest.approx(corr.loc["a", "b"])
    assert alike_pairs(corr, threshold=0.99) == []
    # every pair once, most alike first
    assert [p["runs"] for p in alike_pairs(corr, threshold=-1.0)][0] == ["a", "b"]
    assert len(alike_pairs(corr, threshold=-1.0)) == 3


def test_a_run_whose_errors_do_not_vary_has_no_correlation_and_is_in_no_pair():
    log_preds, target = _three_runs()
    log_preds[:, 2] = np.log(target)  # a perfect run: its error is 0 everywhere
    corr = error_correlation(log_preds, target, ["a", "b", "perfect"])
    assert np.isnan(corr.loc["a", "perfect"])
    assert all("perfect" not in p["runs"] for p in alike_pairs(corr, threshold=-1.0))


def test_one_run_and_bad_shapes():
    log_preds, target = _three_runs()
    one = error_correlation(log_preds[:, :1], target, ["a"])
    assert one.shape == (1, 1) and one.iloc[0, 0] == 1.0
    assert alike_pairs(one) == []
    with pytest.raises(ValueError, match="2 run names"):
        error_correlation(log_preds, target, ["a", "b"])
    with pytest.raises(ValueError, match="rows"):
        error_correlation(log_preds[:10], target, ["a", "b", "c"])


def test_ensemble_writes_the_error_correlation_and_names_alike_runs(tmp_path):
    w = world(3)
    shared = noisy(w["target"], 0.4, 7)
    make_run(tmp_path, "twin1", w, shared * np.exp(np.random.default_rng(1).normal(0, 0.02, len(shared))),
             noisy(w["test_target"], 0.4, 8))
    make_run(tmp_path, "twin2", w, shared * np.exp(np.random.default_rng(2).normal(0, 0.02, len(shared))),
             noisy(w["test_target"], 0.4, 9))
    make_run(tmp_path, "other", w, noisy(w["target"], 0.4, 11), noisy(w["test_target"], 0.4, 12))
    m = ensemble(tmp_path, ["twin1", "twin2", "other"])
    out = tmp_path / "04_ensemble"
    table = pd.read_csv(out / "error_correlation.csv").set_index("run")
    assert list(table.index) == list(table.columns) == ["twin1", "twin2", "other"]
    assert table.loc["twin1", "twin2"] > 0.99 and abs(table.loc["twin1", "other"]) < 0.1
    on_disk = json.loads((out / "metrics.json").read_text())
    np.testing.assert_allclose(np.array(on_disk["error_correlation"], dtype=float), table.to_numpy(), atol=1e-4)
    assert [p["runs"] for p in m["alike_runs"]] == [["twin1", "twin2"]]
    heatmap = plot_ensemble(tmp_path, m).axes[2]  # the third panel is the heatmap of this table
    assert heatmap.get_title().startswith("OOF log-error correlation between runs")
    outlined = [patch.get_xy() for patch in heatmap.patches if patch.get_edgecolor()[:3] == (1.0, 0.0, 0.0)]
    assert sorted(outlined) == [(0, 1), (1, 0)]  # twin1 ~ twin2, both cells; not the diagonal, not 'other'
    assert [t.get_text() for t in heatmap.get_xticklabels()] == ["twin1", "twin2", "other"]
    plt.close("all")
    older = {k: v for k, v in m.items() if k != "error_correlation"}  # metrics.json of an earlier kit version
    plot_ensemble(tmp_path, older)
    plt.close("all")
