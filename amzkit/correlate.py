"""Stage 02: per-dimension correlation of each embedding run with the target, and the roadmap's verdict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from amzkit.extract import load_embeddings
from amzkit.io import list_runs, save_figure, stage_dir, write_csv, write_json

# The roadmap's decision table: (lower bound on max |corr|, verdict, next step), checked top-down.
VERDICTS: tuple[tuple[float, str, str], ...] = (
    (0.05, "STRONG", "03_train with this embedding (Phase 2)"),
    (0.02, "MODERATE", "04_ensemble: a separate model on it, blended (Phase 3)"),
    (0.0, "WEAK", "alternatives: other models, image metadata, text (Phase 4)"),
)
ROADMAP_BASELINES = {"CLIP ViT-B/32 image (roadmap)": 0.0089, "text CLIP (roadmap)": 0.1089}


def verdict(max_abs_corr: float) -> tuple[str, str]:
    for bound, name, step in VERDICTS:
        if max_abs_corr > bound:
            return name, step
    return VERDICTS[-1][1], VERDICTS[-1][2]


def pearson_columns(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of every column of x with y in one matrix product (0 for constant columns)."""
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.float64)
    xc = x - x.mean(axis=0, dtype=np.float64).astype(np.float32)
    yc = (y - y.mean()).astype(np.float32)
    cov = yc @ xc
    x_norm = np.sqrt(np.einsum("ij,ij->j", xc, xc, dtype=np.float64))
    y_norm = float(np.sqrt(yc.astype(np.float64) @ yc))
    denom = x_norm * y_norm
    return np.divide(cov, denom, out=np.zeros(x.shape[1]), where=denom > 0)


def correlate_run(embeddings: np.ndarray, ok: np.ndarray, target: np.ndarray, top_k: int = 20) -> dict:
    """The roadmap's measure for one run: per-dimension corr with target and log1p(target), max |corr|."""
    x, y = embeddings[ok], np.asarray(target, dtype=np.float64)[ok]
    corr = pearson_columns(x, y)
    corr_log = pearson_columns(x, np.log1p(y))
    name, step = verdict(float(np.abs(corr).max()))
    order = np.argsort(-np.abs(corr))[:top_k]
    return {
        "dim": int(embeddings.shape[1]), "rows_used": int(ok.sum()), "rows_excluded": int((~ok).sum()),
        "max_abs_corr": float(np.abs(corr).max()), "max_abs_corr_log1p": float(np.abs(corr_log).max()),
        "top_dims": [int(i) for i in order], "top_corr": [float(corr[i]) for i in order],
        "verdict": name, "next_step": step, "corr": corr, "corr_log1p": corr_log,
    }


def correlate(train: pd.DataFrame, target_column: str, id_column: str, work_dir: str | Path,
              runs: list[str], top_k: int = 20) -> dict[str, dict]:
    """Correlate each named 01_extract run (all runs when `runs` is empty); write tables and metrics."""
    runs = runs or list_runs(work_dir, "01_extract")
    if not runs:
        raise FileNotFoundError(f"no 01_extract runs in {work_dir}: run 01_extract first")
    out_dir = stage_dir(work_dir, "02_correlate")
    results = {}
    for name in runs:
        embeddings, ok = load_embeddings(work_dir, name, "train", train[id_column])
        result = correlate_run(embeddings, ok, train[target_column].to_numpy(), top_k)
        write_csv(pd.DataFrame({"dim": np.arange(result["dim"]), "corr": result["corr"],
                                "corr_log1p": result["corr_log1p"]}), out_dir / f"{name}_corr.csv")
        results[name] = result
    write_json(out_dir / "metrics.json", {
        "runs": {n: {k: v for k, v in r.items() if k not in ("corr", "corr_log1p")} for n, r in results.items()},
        "roadmap_baselines": ROADMAP_BASELINES,
    })
    return results


def summary_table(results: dict[str, dict]) -> pd.DataFrame:
    rows = [{"embedding": n, "dim": r["dim"], "rows used": r["rows_used"], "max |corr|": r["max_abs_corr"],
             "max |corr| log1p": r["max_abs_corr_log1p"], "verdict": r["verdict"], "next step": r["next_step"]}
            for n, r in results.items()]
    rows += [{"embedding": n, "max |corr|": v, "verdict": verdict(v)[0]} for n, v in ROADMAP_BASELINES.items()]
    return pd.DataFrame(rows).set_index("embedding")


def plot_correlations(results: dict[str, dict], path: str | Path):
    """Histogram of |corr| per run with the roadmap's thresholds; saved as PNG."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for name, r in results.items():
        ax.hist(np.abs(r["corr"]), bins=40, alpha=0.5, label=f"{name} (max {r['max_abs_corr']:.3f})")
    for bound, label, _ in VERDICTS[:2]:
        ax.axvline(bound, color="k", ls="--", lw=1)
        ax.text(bound, ax.get_ylim()[1] * 0.95, f" {label}", va="top")
    ax.set(xlabel="|Pearson corr| of a dimension with the target", ylabel="dimensions",
           title="Per-dimension price signal")
    ax.legend()
    save_figure(fig, path)
    return fig
