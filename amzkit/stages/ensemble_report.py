"""Stage 04's report: the summary table and the figure (blend weights, per-fold SMAPE, how alike the runs are)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from amzkit.core.io import save_figure
from amzkit.core.workdir import stage_dir
from amzkit.ml.diversity import ALIKE_CORRELATION
from amzkit.stages.submit_sources import run_as_source


def summary_table(metrics: dict) -> pd.DataFrame:
    """The best single run and each method: nested SMAPE, fold mean and std, in-sample SMAPE (a run named like a
    method, `stack`, is told apart by its kind)."""
    table = pd.DataFrame(metrics["table"])
    name = metrics["best_single_run"]
    best = table[(table["kind"] == "run") & (table["model"] == name)].assign(model=f"best single: {name}")
    return pd.concat([best, table[table["kind"] == "ensemble"]], ignore_index=True).drop(columns="kind")


def choice_note(metrics: dict) -> str:
    """A note when what 04 writes to test_pred.csv scores worse (honestly, picked inside each fold) than its best
    single run: few or alike runs, where picking a method costs more than blending gains; '' otherwise."""
    best = metrics["best_single_run"]
    if metrics.get("test_is_best_single") and len(metrics["runs"]) > 1:
        weighed = [name for name, weight in metrics["weights"].items() if name != best and weight > 0]
        if weighed and metrics["method"].startswith("blend"):  # e.g. a run trained twice under two names
            return (f"note: test_pred.csv is {best!r}'s own predictions ({metrics['method']} also weighs "
                    f"{', '.join(map(repr, weighed))}, which predict the same); its own CV is "
                    f"{metrics['best_single_smape']:.3f}")
        return (f"note: test_pred.csv is {best!r} alone ({metrics['method']} gave the other runs no weight); its "
                f"own CV is {metrics['best_single_smape']:.3f}")
    if metrics["cv_smape"] <= metrics["best_single_smape"] or metrics.get("test_is_best_single"):
        return ""
    return (f"note: 04's {metrics['cv_scores']} scores {metrics['cv_smape']:.3f}, worse than its best single run "
            f"{best!r} ({metrics['best_single_smape']:.3f}): with {len(metrics['runs'])} run(s), or runs this alike, "
            f"blending gains less than choosing a method costs. 05 {run_as_source(best)} submits that run itself; more "
            "diverse runs (another learner or embedding, error correlation below) are what a blend needs")


def submitted_weights(metrics: dict) -> tuple[dict[str, float], str]:
    """Each run's weight in the method whose test predictions 04 writes (the stack's meta-model coefficients
    when it is a stack with a linear meta-model, else the blend's weights), and a title that says which."""
    method = metrics.get("method", "blend")
    if method.startswith("stack") and metrics.get("stack_coef"):
        return metrics["stack_coef"], f"submitted: {method}; stack coefficients (log space, full OOF)"
    if method.startswith("stack"):
        return metrics["weights"], f"submitted: {method} (its meta-model has no coefficients); blend weights"
    return metrics["weights"], f"submitted: {method}; blend weights (log space, full OOF)"


def plot_ensemble(work_dir: str | Path, metrics: dict):
    """The submitted method's weights per run and the runs' error correlation (near 1: the pair adds little to a
    blend; pairs at ALIKE_CORRELATION or above outlined), over the per-fold SMAPE of each run against each nested
    method (legend outside the lines); saved as PNG."""
    fig = plt.figure(figsize=(13, 9))
    grid = fig.add_gridspec(2, 2, height_ratios=(1, 1.1), hspace=0.45, wspace=0.3)
    ax_w, ax_f, ax_c = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[1, :]), fig.add_subplot(grid[0, 1])
    names = list(metrics["weights"])
    shown, label = submitted_weights(metrics)
    ax_w.bar(names, [shown[n] for n in names])
    ax_w.set(ylabel="weight", title=label.replace("; ", "\n", 1))
    ax_w.tick_params(axis="x", rotation=30)
    chosen = metrics.get("cv_scores", f"{metrics.get('method', 'blend')} (nested)")  # the curve cv_smape scores
    for name, scores in metrics["fold_smape"].items():
        style = {"lw": 2.5, "color": "k"} if name == chosen else {"lw": 1, "ls": "-" if "nested" in name else ":"}
        ax_f.plot(range(len(scores)), scores, marker="o", label=name, **style)
    ax_f.set(xlabel="fold", ylabel="SMAPE %", title=f"per-fold SMAPE (black: what cv_smape scores, {chosen})",
             xticks=range(len(scores)))
    ax_f.legend(fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    corr = np.array(metrics.get("error_correlation") or np.eye(len(names)), dtype=float)  # None (NaN): constant
    off_diagonal = corr[~np.eye(len(names), dtype=bool)]
    low = float(np.nanmin(off_diagonal)) if np.isfinite(off_diagonal).any() else 0.0
    sns.heatmap(corr, ax=ax_c, vmin=min(max(np.floor(low * 10) / 10, -1.0), 0.9), vmax=1, cmap="viridis",
                annot=len(names) <= 12, fmt=".2f", square=True, xticklabels=names, yticklabels=names,
                cbar_kws={"shrink": 0.8})
    for row, column in zip(*np.nonzero(corr >= ALIKE_CORRELATION), strict=True):
        if row != column:  # a pair whose errors are this alike: one of them adds little
            ax_c.add_patch(plt.Rectangle((column, row), 1, 1, fill=False, edgecolor="red", lw=2))
    ax_c.set(title=f"OOF log-error correlation between runs\n(red: {ALIKE_CORRELATION} or more)")
    ax_c.tick_params(axis="x", rotation=30)
    ax_c.tick_params(axis="y", rotation=0)
    save_figure(fig, stage_dir(work_dir, "04_ensemble") / "ensemble.png")
    return fig
