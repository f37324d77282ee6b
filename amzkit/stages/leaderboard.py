"""Public leaderboard scores beside CV scores: does CV still track the LB? (the final checks of a competition).

Each submission's public LB SMAPE is recorded with the CV SMAPE of the run it came from (a 03_train run or
04_ensemble) in `work_dir/leaderboard.csv`. `cv_lb_fit` fits LB = slope * CV + intercept, `tracking_verdict`
says in plain words whether CV still predicts the LB, and `plot_cv_vs_lb` draws CV against LB.

    python -m amzkit lb add siglip_lgbm 47.9 --work-dir runs/latest --note "first sub"
    python -m amzkit lb show --work-dir runs/latest --plot
"""

from __future__ import annotations

import argparse
import math
import sys
from datetime import UTC, datetime
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from amzkit.core.io import atomic_path, read_json, save_figure
from amzkit.core.params import Param, Parameters
from amzkit.core.workdir import list_runs, resolve_work_dir, stage_dir

PARAMETERS = Parameters(
    Param("lb_scores", {}, "public LB SMAPE of earlier submissions, JSON {\"<run>\": <score>}: does CV track LB?"),
)
LB_COLUMNS = ("time", "run", "cv_smape", "lb_smape", "note")
ENSEMBLE_RUN = "04_ensemble"
SMAPE_RANGE = (0.0, 200.0)
MIN_R = 0.5  # below this Pearson r the CV ranking no longer predicts the LB ranking
TOLERANCE = 1.0  # SMAPE points: a latest point closer than this to the earlier line is never "far"


class LeaderboardError(ValueError):
    """A score or run that cannot be recorded."""


def leaderboard_path(work_dir: str | Path) -> Path:
    return Path(work_dir) / "leaderboard.csv"


def known_runs(work_dir: str | Path) -> list[str]:
    """Runs a submission can come from: finished 03_train runs, then 04_ensemble when it has metrics.json."""
    runs = list_runs(work_dir, "03_train")
    if (stage_dir(work_dir, ENSEMBLE_RUN) / "metrics.json").is_file():
        runs.append(ENSEMBLE_RUN)
    return runs


def run_cv_smape(work_dir: str | Path, run: str) -> float:
    """The cv_smape in the run's metrics.json; LeaderboardError naming the existing runs when it is unknown."""
    runs = known_runs(work_dir)
    if run not in runs:
        existing = ", ".join(runs) if runs else f"none (no metrics.json under {Path(work_dir)}/03_train or 04_ensemble)"
        raise LeaderboardError(f"unknown run {run!r} in {work_dir}; runs that exist: {existing}")
    folder = stage_dir(work_dir, ENSEMBLE_RUN) if run == ENSEMBLE_RUN else stage_dir(work_dir, "03_train") / run
    metrics = read_json(folder / "metrics.json")
    if "cv_smape" not in metrics:
        raise LeaderboardError(f"{folder / 'metrics.json'} has no cv_smape")
    return float(metrics["cv_smape"])


def _check_score(score: float) -> float:
    try:
        value = float(score)
    except (TypeError, ValueError) as err:
        raise LeaderboardError(f"score {score!r} is not a number") from err
    low, high = SMAPE_RANGE
    if not math.isfinite(value) or not low <= value <= high:
        raise LeaderboardError(f"score {score!r} is outside {low:g}..{high:g}; SMAPE (%) always lies in that range")
    return value


def _read_table(work_dir: str | Path) -> pd.DataFrame:
    path = leaderboard_path(work_dir)
    if not path.is_file():
        return pd.DataFrame({c: pd.Series(dtype=float if c.endswith("smape") else object) for c in LB_COLUMNS})
    table = pd.read_csv(path, dtype={"run": str, "note": str, "time": str})
    table["note"] = table["note"].fillna("")
    return table[list(LB_COLUMNS)]


def add_score(work_dir: str | Path, run: str, score: float, note: str = "") -> dict:
    """Append one public LB score for a submission made from `run`; returns the row written."""
    lb = _check_score(score)
    cv = run_cv_smape(work_dir, run)
    row = {"time": datetime.now(UTC).isoformat(timespec="seconds"), "run": run, "cv_smape": cv, "lb_smape": lb,
           "note": note}
    table = pd.concat([_read_table(work_dir), pd.DataFrame([row])], ignore_index=True)
    with atomic_path(leaderboard_path(work_dir)) as tmp:
        table.to_csv(tmp, index=False)
    return row


def leaderboard(work_dir: str | Path) -> pd.DataFrame:
    """All recorded scores in the order they were added, with gap = lb_smape - cv_smape."""
    table = _read_table(work_dir).reset_index(drop=True)
    table["gap"] = table["lb_smape"].astype(float) - table["cv_smape"].astype(float)
    return table


def _line(cv: np.ndarray, lb: np.ndarray) -> tuple[float, float] | None:
    if len(cv) < 2 or np.ptp(cv) == 0:
        return None
    slope, intercept = np.polyfit(cv, lb, 1)
    return float(slope), float(intercept)


def cv_lb_fit(table: pd.DataFrame) -> dict:
    """Fit LB = slope * CV + intercept over the table's rows (>= 2 points; Pearson r needs >= 3).

    Also the mean gap (LB - CV), and for the latest row its residual from the line fitted on the earlier rows
    (`latest_residual`) with those rows' RMSE around that line (`earlier_rmse`); None where too few points.
    """
    points = table[["cv_smape", "lb_smape"]].astype(float).dropna()
    cv, lb = points["cv_smape"].to_numpy(), points["lb_smape"].to_numpy()
    n = len(cv)
    if n < 2:
        raise ValueError(f"a CV-LB fit needs at least 2 scored submissions; have {n} (add one with `amzkit lb add`)")
    line = _line(cv, lb)
    r = None
    if n >= 3 and np.ptp(cv) > 0 and np.ptp(lb) > 0:
        r = float(np.corrcoef(cv, lb)[0, 1])
    latest_residual = earlier_rmse = None
    earlier = _line(cv[:-1], lb[:-1])
    if earlier is not None:
        slope_e, intercept_e = earlier
        latest_residual = float(lb[-1] - (slope_e * cv[-1] + intercept_e))
        earlier_rmse = float(np.sqrt(np.mean((lb[:-1] - (slope_e * cv[:-1] + intercept_e)) ** 2)))
    return {
        "n": n, "slope": line[0] if line else None, "intercept": line[1] if line else None, "r": r,
        "mean_gap": float(np.mean(lb - cv)), "latest_cv": float(cv[-1]), "latest_lb": float(lb[-1]),
        "latest_residual": latest_residual, "earlier_rmse": earlier_rmse,
    }


def tracking_verdict(fit: dict, min_r: float = MIN_R, tolerance: float = TOLERANCE) -> str:
    """Plain words: "CV tracks LB ..." or "CV stopped tracking: ..." (r < min_r, or the latest point far off).

    The latest point is far when its residual from the earlier points' line exceeds
    max(tolerance, 3 * earlier RMSE) SMAPE points.
    """
    problems = []
    r = fit.get("r")
    if r is not None and r < min_r:
        problems.append(f"Pearson r = {r:.2f} < {min_r:g} over {fit['n']} submissions")
    residual, rmse = fit.get("latest_residual"), fit.get("earlier_rmse")
    if residual is not None:
        limit = max(tolerance, 3 * (rmse or 0.0))
        if abs(residual) > limit:
            side = "worse" if residual > 0 else "better"
            problems.append(f"the latest submission (CV {fit['latest_cv']:.2f}, LB {fit['latest_lb']:.2f}) is "
                            f"{abs(residual):.2f} SMAPE points {side} on LB than the earlier trend predicts "
                            f"(limit {limit:.2f})")
    if problems:
        return "CV stopped tracking: " + "; ".join(problems) + ". Check the folds against the test split."
    if r is None and residual is None:
        return (f"too few points to judge: {fit['n']} submissions (r needs 3 with distinct CV); "
                f"mean LB-CV gap {fit['mean_gap']:+.2f}")
    parts = [f"r = {r:.2f}" if r is not None else None,
             f"LB ~= {fit['slope']:.2f} * CV {fit['intercept']:+.2f}" if fit.get("slope") is not None else None,
             f"mean LB-CV gap {fit['mean_gap']:+.2f}"]
    return "CV tracks LB (" + ", ".join(p for p in parts if p) + ")"


def plot_cv_vs_lb(work_dir: str | Path):
    """Scatter of CV against LB SMAPE with the fitted line and y = x; saved as work_dir/cv_vs_lb.png."""
    table = leaderboard(work_dir)
    if table.empty:
        raise ValueError(f"no leaderboard scores in {leaderboard_path(work_dir)}; add one with `amzkit lb add`")
    cv, lb = table["cv_smape"].to_numpy(float), table["lb_smape"].to_numpy(float)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.scatter(cv[:-1], lb[:-1], color="C0", label="submissions")
    ax.scatter(cv[-1:], lb[-1:], color="C3", marker="*", s=150, label="latest")
    for x, y, run in zip(cv, lb, table["run"], strict=True):
        ax.annotate(str(run), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    low, high = float(min(cv.min(), lb.min())), float(max(cv.max(), lb.max()))
    pad = max(0.5, 0.1 * (high - low))
    xs = np.array([low - pad, high + pad])
    ax.plot(xs, xs, color="grey", ls=":", label="y = x")
    title = "CV vs public LB"
    if len(table) >= 2:
        fit = cv_lb_fit(table)
        if fit["slope"] is not None:
            ax.plot(xs, fit["slope"] * xs + fit["intercept"], color="C1",
                    label=f"fit: LB = {fit['slope']:.2f} CV {fit['intercept']:+.2f}")
        title += "\n" + tracking_verdict(fit)[:90]
    ax.set(xlabel="CV SMAPE %", ylabel="public LB SMAPE %", title=title)
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    save_figure(fig, Path(work_dir) / "cv_vs_lb.png")
    return fig


def format_table(table: pd.DataFrame) -> str:
    """The leaderboard as fixed-width text."""
    if table.empty:
        return "(no leaderboard scores yet)"
    shown = table.assign(**{c: table[c].map(lambda v: f"{v:.3f}") for c in ("cv_smape", "lb_smape")},
                         gap=table["gap"].map(lambda v: f"{v:+.3f}"))
    return shown[["time", "run", "cv_smape", "lb_smape", "gap", "note"]].to_string(index=False)


def record_scores(work_dir: str | Path, scores: dict[str, float], note: str = "") -> list[dict]:
    """Record {run: public LB SMAPE}, skipping a (run, score) pair already recorded (so a notebook can rerun)."""
    table = _read_table(work_dir)
    seen = set(zip(table["run"].astype(str), table["lb_smape"].astype(float).round(6), strict=True))
    return [add_score(work_dir, run, score, note) for run, score in scores.items()
            if (str(run), round(_check_score(score), 6)) not in seen]


def show_leaderboard(work_dir: str | Path, scores: dict[str, float] | None = None):
    """05's section: record `scores`, print the CV-LB table and verdict, plot CV against LB; None when empty."""
    added = record_scores(work_dir, scores or {}, note="05_submit lb_scores")
    table = leaderboard(work_dir)
    if table.empty:
        print("no public LB scores yet: after submitting, rerun with -p lb_scores '{\"<run>\": <LB SMAPE>}' or "
              "record them with python -m amzkit lb add <run> <score>")
        return None
    print(f"recorded {len(added)} new score(s)\n{format_table(table)}")
    if len(table) >= 2:
        print(tracking_verdict(cv_lb_fit(table)))
    return plot_cv_vs_lb(work_dir)


def _lb_command(args: argparse.Namespace) -> int:
    work_dir = resolve_work_dir(args.work_dir)
    try:
        if args.lb_command == "add":
            row = add_score(work_dir, args.run, args.score, note=args.note)
            print(f"recorded {row['run']}: CV {row['cv_smape']:.3f}  LB {row['lb_smape']:.3f}  "
                  f"gap {row['lb_smape'] - row['cv_smape']:+.3f} -> {leaderboard_path(work_dir)}")
        else:
            table = leaderboard(work_dir)
            print(format_table(table))
            if len(table) >= 2:
                fit = cv_lb_fit(table)
                print(tracking_verdict(fit))
            if args.plot and not table.empty:
                plot_cv_vs_lb(work_dir)
                print(f"plot: {Path(work_dir) / 'cv_vs_lb.png'}")
    except (LeaderboardError, ValueError, FileNotFoundError) as err:
        print(f"amzkit lb {args.lb_command}: {err}", file=sys.stderr)
        return 1
    return 0


def add_cli(subparsers) -> argparse.ArgumentParser:
    """Register `lb add|show` on an argparse subparsers object; the handler is set as `func`."""
    lb = subparsers.add_parser("lb", help="record public LB scores and check that CV still tracks them")
    lsub = lb.add_subparsers(dest="lb_command", required=True)
    add = lsub.add_parser("add", help="record the public LB SMAPE of a submission made from a run")
    add.add_argument("run", help=f"a 03_train run name or {ENSEMBLE_RUN}")
    add.add_argument("score", type=float, help="public leaderboard SMAPE (0..200)")
    add.add_argument("--note", default="", help="free text, e.g. the submission file")
    show = lsub.add_parser("show", help="print the scores with the CV-LB gap, the fit and the verdict")
    show.add_argument("--plot", action="store_true", help="also write work_dir/cv_vs_lb.png")
    for parser in (add, show):
        parser.add_argument("--work-dir", default="auto",
                            help="work folder (default auto: /kaggle/working/amzkit on Kaggle, else runs/latest)")
    lb.set_defaults(func=_lb_command)
    return lb
