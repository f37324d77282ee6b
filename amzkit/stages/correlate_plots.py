"""02's two plots: |corr| per dimension against the permutation null, and the probes' SMAPE against the constant
median (with the predictions of the run whose ridge gains most); PNG files in 02_correlate/."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from amzkit.core.io import save_figure
from amzkit.stages.correlate import VERDICTS


def plot_correlations(results: dict[str, dict], path: str | Path):
    """|corr| with log1p(target) of each run's dimensions against its permutation null (what the verdict reads),
    with the roadmap's thresholds; two runs a row; saved as PNG."""
    columns = min(2, len(results))
    rows = -(-len(results) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 3.6 * rows), squeeze=False)
    for ax in axes.flat[len(results):]:
        ax.set_visible(False)
    for ax, (name, r) in zip(axes.flat, results.items(), strict=False):
        ax.hist(np.abs(r["corr_log1p"]), bins=40, alpha=0.7, label="|corr| per dimension")
        ax.axvspan(min(r["null_max_log1p"]), max(r["null_max_log1p"]), color="grey", alpha=0.3,
                   label="null max |corr| range")
        ax.axvline(r["null_p95_log1p"], color="grey", ls="-", lw=1.5, label=f"null p95 {r['null_p95_log1p']:.3f}")
        ax.axvline(r["max_abs_corr_log1p"], color="C3", lw=1.5, label=f"max {r['max_abs_corr_log1p']:.3f}")
        for height, (bound, verdict_name, _) in zip((0.92, 0.8), VERDICTS[:2], strict=True):  # apart, not overlaid
            ax.axvline(bound, color="k", ls="--", lw=0.8)
            ax.text(bound, ax.get_ylim()[1] * height, f" {verdict_name}", fontsize=7)
        ax.set(xlabel="|Pearson corr| with log1p(target)", ylabel="dimensions", title=f"{name}: {r['verdict']}")
        ax.legend(fontsize=7, loc="center right")
    save_figure(fig, path)
    return fig


def best_probe_run(results: dict[str, dict]) -> str:
    """The run whose ridge probe gains most over the constant median of its own rows (not the lowest SMAPE: a run
    covering only cheap rows scores low without any signal)."""
    return min(results, key=lambda n: results[n]["ridge_smape"] - results[n]["constant_smape"])


def plot_probes(results: dict[str, dict], path: str | Path):
    """Probe SMAPE per embedding against the constant median of its own rows (and its text features alone), and
    predicted vs actual for the run whose ridge gains most over its constant; PNG. Runs can cover other rows (an
    image run without the rows whose pictures failed), so each is drawn against its own lines, and a kNN probe that
    scored a subset of them (knn_max_queries) against the constant of that subset."""
    names = list(results)
    fig, (ax_bar, ax_scatter) = plt.subplots(1, 2, figsize=(11, 4.8))
    width = 0.25
    positions = np.arange(len(names))
    for offset, key, label in ((-width, "ridge_smape", "ridge"), (0, "knn_smape", "kNN"),
                               (width, "baseline_plus_smape", "text features + embedding")):
        values = [results[n].get(key, np.nan) for n in names]
        if np.isnan(values).all():  # no baseline (baseline_features and baseline_runs empty): no such bars
            continue
        bars = ax_bar.bar(positions + offset, values, width, label=label)
        ax_bar.bar_label(bars, fmt="%.1f", fontsize=6, padding=1)  # the added value is a gap of tenths
    for key, style, label in (("constant_smape", {"color": "k", "ls": "--"}, "constant median (its rows)"),
                              ("baseline_smape", {"color": "C4", "ls": ":"}, "text features alone (its rows)")):
        having = [i for i, name in enumerate(names) if key in results[name]]  # a baseline run alone: none
        for i in having:
            ax_bar.hlines(results[names[i]][key], i - 0.45, i + 0.45, label=label if i == having[0] else None,
                          **style)
    # the kNN probe scored a subset (knn_max_queries): its bar gets the constant of the rows it scored
    subset = [i for i, name in enumerate(names) if results[name]["knn_rows"] < results[name]["rows_used"]]
    for i in subset:
        ax_bar.hlines(results[names[i]]["knn_constant_smape"], i - width / 2, i + width / 2, color="k", ls="-.",
                      label="constant median (kNN's rows)" if i == subset[0] else None)
    ax_bar.set(xticks=positions, xticklabels=names, ylabel="CV SMAPE %", title="probes (lower is better)")
    ax_bar.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)  # below, not on the bars
    best = best_probe_run(results)
    y, pred = results[best]["target_used"], np.expm1(results[best]["ridge_oof_log"])
    ax_scatter.scatter(y, np.maximum(pred, 1e-3), s=4, alpha=0.3)
    low, high = max(y.min(), 1e-2), y.max()
    ax_scatter.plot([low, high], [low, high], "k--", lw=1)
    ax_scatter.set(xscale="log", yscale="log", xlabel="actual", ylabel="ridge probe (out of fold)",
                   title=f"largest ridge gain over its constant: {best}")
    save_figure(fig, path)
    return fig
