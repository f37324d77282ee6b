"""Stage 04's report: the summary table and the figure (blend weights, per-fold SMAPE, how alike the runs are)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from amzkit.core.io import save_figure
from amzkit.core.workdir import stage_dir


def summary_table(metrics: dict) -> pd.DataFrame:
    """The best single run and each method: nested SMAPE, fold mean and std, in-sample SMAPE."""
    table = pd.DataFrame(metrics["table"])
    name = metrics["best_single_run"]
    best = table[table["model"] == name].assign(model=f"best single: {name}")
    return pd.concat([best, table[table["kind"] == "ensemble"]], ignore_index=True).drop(columns="kind")


def choice_note(metrics: dict) -> str:
    """A note when what 04 writes to test_pred.csv scores worse (honestly, picked inside each fold) than its best
    single run: few or alike runs, where picking a method costs more than blending gains; '' otherwise."""
    best = metrics["best_single_run"]
    if metrics.get("test_is_best_single") and len(metrics["runs"]) > 1:
        return (f"note: test_pred.csv is {best!r} alone ({metrics['method']} gave the other runs no weight); its "
                f"own CV is {metrics['best_single_smape']:.3f}")
    if metrics["cv_smape"] <= metrics["best_single_smape"] or metrics.get("test_is_best_single"):
        return ""
    return (f"note: 04's {metrics['cv_scores']} scores {metrics['cv_smape']:.3f}, worse than its best single run "
            f"{best!r} ({metrics['best_single_smape']:.3f}): with {len(metrics['runs'])} run(s), or runs this alike, "
            f"blending gains less than choosing a method costs. 05 -p source {best} submits that run itself; more "
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
    """The submitted method's weights per run, per-fold SMAPE of each run against each nested method, and the
    runs' error correlation (near 1: the pair adds little to a blend); saved as PNG."""
    fig, (ax_w, ax_f, ax_c) = plt.subplots(1, 3, figsize=(18, 4.5), gridspec_kw={"wspace": 0.4})
    names = list(metrics["weights"])
    shown, label = submitted_weights(metrics)
    ax_w.bar(names, [shown[n] for n in names])
    ax_w.set(ylabel="weight", title=label)
    ax_w.tick_params(axis="x", rotation=30)
    chosen = metrics.get("cv_scores", f"{metrics.get('method', 'blend')} (nested)")  # the curve cv_smape scores
    for name, scores in metrics["fold_smape"].items():
        style = {"lw": 2.5, "color": "k"} if name == chosen else {"lw": 1, "ls": "-" if "nested" in name else ":"}
        ax_f.plot(range(len(scores)), scores, marker="o", label=name, **style)
    ax_f.set(xlabel="fold", ylabel="SMAPE %", title=f"per-fold SMAPE (chosen: {chosen})",
             xticks=range(len(scores)))
    ax_f.legend(fontsize=7)
    corr = np.array(metrics.get("error_correlation") or np.eye(len(names)), dtype=float)  # None (NaN): constant
    low = min(0.0, float(np.nanmin(corr)))
    sns.heatmap(corr, ax=ax_c, vmin=low, vmax=1, cmap="viridis", annot=len(names) <= 12, fmt=".2f", square=True,
                xticklabels=names, yticklabels=names, cbar_kws={"shrink": 0.8})
    ax_c.set(title="OOF log-error correlation between runs")
    ax_c.tick_params(axis="x", rotation=30)
    ax_c.tick_params(axis="y", rotation=0)
    save_figure(fig, stage_dir(work_dir, "04_ensemble") / "ensemble.png")
    return fig
