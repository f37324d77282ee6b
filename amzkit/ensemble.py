"""Stage 04: blend 03_train runs in log space with weights that minimise out-of-fold SMAPE.

The weights' score is reported twice: in-sample (weights chosen and scored on the same rows) and
nested (for each fold, weights chosen on the other folds and scored on it) - only the nested one is
an honest estimate.
"""

from __future__ import annotations

from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd

from amzkit.io import list_runs, save_figure, stage_dir, write_csv, write_json
from amzkit.metric import smape
from amzkit.train import load_run

GRID_STEP = 0.05


def blend(log_preds: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted geometric mean: exp(log_preds @ weights)."""
    return np.exp(log_preds @ weights)


def _simplex_grid(k: int, step: float) -> np.ndarray:
    ticks = np.round(np.arange(0, 1 + step / 2, step), 10)
    points = [w for w in product(ticks, repeat=k - 1) if sum(w) <= 1 + 1e-9]
    return np.array([[*w, 1 - sum(w)] for w in points])


def fit_weights(log_preds: np.ndarray, target: np.ndarray, step: float = GRID_STEP) -> np.ndarray:
    """Non-negative weights summing to 1 that minimise SMAPE (grid search, refined by coordinate steps)."""
    k = log_preds.shape[1]
    if k == 1:
        return np.ones(1)
    if k <= 4:
        candidates = _simplex_grid(k, step)
    else:
        candidates = np.vstack([np.eye(k), np.full((1, k), 1 / k)])
    scores = [smape(target, blend(log_preds, w)) for w in candidates]
    best = candidates[int(np.argmin(scores))].copy()
    best_score = min(scores)
    for delta in (step / 2, step / 5):
        improved = True
        while improved:
            improved = False
            for i, j in product(range(k), repeat=2):
                if i == j or best[j] < delta:
                    continue
                trial = best.copy()
                trial[i] += delta
                trial[j] -= delta
                score = smape(target, blend(log_preds, trial))
                if score < best_score - 1e-12:
                    best, best_score, improved = trial, score, True
    return best


def check_compatible(runs: dict[str, dict]) -> None:
    """Refuse runs that do not share train ids and folds (their OOF rows would not line up)."""
    names = list(runs)
    ref = runs[names[0]]["metrics"]
    for name in names[1:]:
        other = runs[name]["metrics"]
        if other["train_ids_sha256"] != ref["train_ids_sha256"]:
            raise ValueError(f"runs {names[0]!r} and {name!r} were trained on different rows; cannot blend")
        if other["folds_sha256"] != ref["folds_sha256"]:
            raise ValueError(
                f"runs {names[0]!r} and {name!r} used different folds; blending them would score on rows "
                "each model trained on. Retrain them in one work folder (they then share 03_train/folds.csv)."
            )
        if not runs[name]["test"]["id"].equals(runs[names[0]]["test"]["id"]):
            raise ValueError(f"runs {names[0]!r} and {name!r} predict different test ids")


def ensemble(work_dir: str | Path, runs: list[str]) -> dict:
    """Blend the named runs (all finished 03_train runs when empty); write predictions and metrics."""
    runs = runs or list_runs(work_dir, "03_train")
    if len(runs) < 1:
        raise FileNotFoundError(f"no 03_train runs in {work_dir}: run 03_train first")
    loaded = {name: load_run(work_dir, name) for name in runs}
    check_compatible(loaded)
    first = loaded[runs[0]]["oof"]
    target, folds = first["target"].to_numpy(), first["fold"].to_numpy()
    oof_log = np.column_stack([np.log(loaded[n]["oof"]["pred"].to_numpy()) for n in runs])
    test_log = np.column_stack([np.log(loaded[n]["test"]["pred"].to_numpy()) for n in runs])
    weights = fit_weights(oof_log, target)
    nested = np.empty(len(target))
    nested_weights = []
    for fold in np.unique(folds):
        inner, outer = folds != fold, folds == fold
        w = fit_weights(oof_log[inner], target[inner])
        nested_weights.append(w.tolist())
        nested[outer] = blend(oof_log[outer], w)
    per_run = {n: smape(target, np.exp(oof_log[:, i])) for i, n in enumerate(runs)}
    fold_scores = {n: [smape(target[folds == f], np.exp(oof_log[folds == f, i])) for f in np.unique(folds)]
                   for i, n in enumerate(runs)}
    fold_scores["blend (nested)"] = [smape(target[folds == f], nested[folds == f]) for f in np.unique(folds)]
    out_dir = stage_dir(work_dir, "04_ensemble")
    ids = first["id"].to_numpy()
    write_csv(pd.DataFrame({"id": ids, "fold": folds, "target": target, "pred": nested}), out_dir / "oof.csv")
    test_ids = loaded[runs[0]]["test"]["id"].to_numpy()
    write_csv(pd.DataFrame({"id": test_ids, "pred": blend(test_log, weights)}), out_dir / "test_pred.csv")
    best_single = min(per_run, key=per_run.get)
    metrics = {
        "runs": runs, "weights": dict(zip(runs, weights.tolist(), strict=True)), "nested_weights": nested_weights,
        "run_smape": per_run, "best_single_run": best_single, "best_single_smape": per_run[best_single],
        "blend_smape_in_sample": smape(target, blend(oof_log, weights)),
        "blend_smape_nested": smape(target, nested), "fold_smape": fold_scores,
        "cv_smape": smape(target, nested),
        "constant_median_smape": float(np.mean(
            [loaded[n]["metrics"]["constant_median_smape"] for n in runs])),
    }
    write_json(out_dir / "metrics.json", metrics)
    return metrics


def plot_ensemble(work_dir: str | Path, metrics: dict):
    """Weights bar chart and per-fold SMAPE of each run against the nested blend; saved as PNG."""
    import matplotlib.pyplot as plt

    fig, (ax_w, ax_f) = plt.subplots(1, 2, figsize=(11, 3.8))
    names = list(metrics["weights"])
    ax_w.bar(names, [metrics["weights"][n] for n in names])
    ax_w.set(ylabel="weight", title="blend weights (log space)")
    ax_w.tick_params(axis="x", rotation=30)
    for name, scores in metrics["fold_smape"].items():
        ax_f.plot(range(len(scores)), scores, marker="o", label=name)
    ax_f.set(xlabel="fold", ylabel="SMAPE %", title="per-fold SMAPE")
    ax_f.legend()
    save_figure(fig, stage_dir(work_dir, "04_ensemble") / "ensemble.png")
    return fig
