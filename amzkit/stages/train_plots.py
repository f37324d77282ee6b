"""03's plots of a finished run: its feature importance and its out-of-fold predictions against the targets, each
saved as PNG in the run folder."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from amzkit.core.io import save_figure
from amzkit.core.metric import smape, smape_by_target_bin
from amzkit.core.workdir import check_name, missing_run, stage_dir
from amzkit.ml.runs import IMPORTANCE_PLOT, OOF_PLOT


def _finished_run(work_dir: str | Path, name: str) -> Path:
    """The folder of finished 03 run `name`; an error saying so when it has not finished (a plot cell run
    before the train cell, a misspelt name)."""
    run_dir = stage_dir(work_dir, "03_train") / check_name(name, "run_name")
    if not (run_dir / "metrics.json").is_file():
        raise FileNotFoundError(missing_run(work_dir, "03_train", name) + ": run the train cell (03) first")
    return run_dir


def plot_importance(work_dir: str | Path, name: str, top: int = 30):
    """Bar chart of the top features by the learner's importance (gain for LightGBM) and, where the run recorded
    each feature's group, every group's share of the total; saved as PNG in the run folder."""
    run_dir = _finished_run(work_dir, name)
    if not (run_dir / "feature_importance.csv").is_file():
        print(f"{name}: this learner reports no feature importance")
        return None
    table = pd.read_csv(run_dir / "feature_importance.csv", keep_default_na=False)
    kind = table.columns[1]
    shares = (table.groupby("group")[kind].sum() / table[kind].sum()).sort_values() if "group" in table else None
    drawn = table.head(top).iloc[::-1]
    height = max(3, 0.25 * len(drawn))
    if shares is None or not table[kind].sum() > 0:
        fig, ax = plt.subplots(figsize=(7, height))
    else:
        fig, (ax, by_group) = plt.subplots(1, 2, figsize=(13, height), gridspec_kw={"width_ratios": [1.3, 1]})
        counts = table["group"].value_counts()
        bars = by_group.barh([f"{g or '(unrecorded)'} ({counts[g]})" for g in shares.index], shares.to_numpy(),
                             color="C1")
        by_group.bar_label(bars, labels=[f"{v:.0%}" for v in shares], fontsize=8)
        by_group.set(xlabel=f"share of the total {kind.replace('_', ' ')}", title="by feature group (its features)")
    ax.barh(drawn["feature"], drawn[kind])
    ax.set(xlabel=f"{kind.replace('_', ' ')} (mean over folds)", title=f"{name}: top {len(drawn)} features")
    fig.tight_layout()
    save_figure(fig, run_dir / IMPORTANCE_PLOT)
    return fig


def _short(value: float) -> str:
    """A tick label's number: 3 significant digits, thousands as k and millions as M."""
    for size, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"


def plot_oof(work_dir: str | Path, name: str):
    """Predicted vs actual (log axes) on out-of-fold rows, with the median prediction per tenth of the actual
    values, and the SMAPE of each tenth; saved as PNG in the run folder."""
    run_dir = _finished_run(work_dir, name)
    oof = pd.read_csv(run_dir / "oof.csv")
    bins = smape_by_target_bin(oof["target"], oof["pred"])
    fig, (ax, bars) = plt.subplots(1, 2, figsize=(11, 5), gridspec_kw={"width_ratios": [1, 1.1]})
    ax.scatter(oof["target"], oof["pred"], s=6, alpha=0.4, label="row")
    ax.plot(bins["median_actual"], bins["median_pred"], "o-", color="C3", lw=2, label="median per tenth of actual")
    low, high = oof[["target", "pred"]].min().min(), oof[["target", "pred"]].max().max()
    ax.plot([max(low, 1e-3), high], [max(low, 1e-3), high], "k--", lw=1, label="prediction = actual")
    ax.set(xscale="log", yscale="log", xlabel="actual", ylabel="out-of-fold prediction",
           title=f"{name}: CV SMAPE {smape(oof['target'], oof['pred']):.2f}")
    ax.legend(loc="upper left", fontsize=8)
    labels = [f"{_short(lo)}-{_short(hi)}" for lo, hi in zip(bins["low"], bins["high"], strict=True)]
    drawn = bars.bar(range(len(bins)), bins["smape"], color="C0")
    bars.bar_label(drawn, labels=[f"{v:.0f}" for v in bins["smape"]], fontsize=8)
    bars.axhline(smape(oof["target"], oof["pred"]), color="k", ls="--", lw=1, label="all rows")
    bars.set_xticks(range(len(bins)), labels, rotation=45, ha="right", fontsize=8)
    bars.set(xlabel="actual value, tenths of the rows", ylabel="SMAPE", title="SMAPE per tenth of the actual values")
    bars.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, run_dir / OOF_PLOT)
    return fig
