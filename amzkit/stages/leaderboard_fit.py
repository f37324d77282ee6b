"""The CV-LB fit over a leaderboard table (amzkit.stages.leaderboard records it): LB = slope * CV + intercept,
Pearson r, the latest submission against the earlier trend, and a verdict in plain words."""

from __future__ import annotations

import numpy as np
import pandas as pd

from amzkit.core.metric import METRICS

MIN_R = 0.5  # below this Pearson r the CV ranking no longer predicts the LB ranking
TOLERANCE = 1.0  # score points: a latest point closer than this to the earlier line is never "far"
MIN_EARLIER = 3  # earlier submissions the latest one is judged against: a 2-point line fits them exactly (RMSE 0)


class LeaderboardError(ValueError):
    """A score or run that cannot be recorded."""


def table_metric(table: pd.DataFrame) -> str:
    """The one metric of a leaderboard table (SMAPE for a table without the column)."""
    metrics = sorted(set(table["metric"].dropna())) if "metric" in table else []
    if len(metrics) > 1:
        raise LeaderboardError(f"the leaderboard mixes metrics {metrics}: keep one competition per work folder")
    return metrics[0] if metrics else "smape"


def _line(cv: np.ndarray, lb: np.ndarray) -> tuple[float, float] | None:
    if len(cv) < 2 or np.ptp(cv) == 0:
        return None
    slope, intercept = np.polyfit(cv, lb, 1)
    return float(slope), float(intercept)


def cv_lb_fit(table: pd.DataFrame) -> dict:
    """Fit LB = slope * CV + intercept over the table's rows (>= 2 points; Pearson r needs >= 3).

    Also the mean gap (LB - CV), and for the latest row its residual from the line fitted on the earlier rows
    (`latest_residual`) with those rows' RMSE around that line (`earlier_rmse`); None where too few points (the
    earlier rows need MIN_EARLIER: a line through two points has no scatter to judge a third by).
    """
    points = table[["cv", "lb"]].astype(float).dropna()
    cv, lb = points["cv"].to_numpy(), points["lb"].to_numpy()
    n = len(cv)
    if n < 2:
        raise ValueError(f"a CV-LB fit needs at least 2 scored submissions; have {n} (add one with `amzkit lb add`)")
    line = _line(cv, lb)
    r = None
    if n >= 3 and np.ptp(cv) > 0 and np.ptp(lb) > 0:
        r = float(np.corrcoef(cv, lb)[0, 1])
    latest_residual = earlier_rmse = None
    earlier = _line(cv[:-1], lb[:-1]) if n - 1 >= MIN_EARLIER else None
    if earlier is not None:
        slope_e, intercept_e = earlier
        latest_residual = float(lb[-1] - (slope_e * cv[-1] + intercept_e))
        earlier_rmse = float(np.sqrt(np.mean((lb[:-1] - (slope_e * cv[:-1] + intercept_e)) ** 2)))
    return {
        "metric": table_metric(table), "n": n, "slope": line[0] if line else None,
        "intercept": line[1] if line else None, "r": r,
        "mean_gap": float(np.mean(lb - cv)), "latest_cv": float(cv[-1]), "latest_lb": float(lb[-1]),
        "latest_residual": latest_residual, "earlier_rmse": earlier_rmse,
        "cv_range": (float(cv.min()), float(cv.max())), "lb_constant": bool(n >= 3 and np.ptp(lb) == 0),
    }


def tracking_verdict(fit: dict, min_r: float = MIN_R, tolerance: float = TOLERANCE) -> str:
    """Plain words: "CV tracks LB ..." or "CV stopped tracking: ..." (r < min_r, an LB that never moved while the CV
    did, or the latest point far off).

    The latest point is far when its residual from the earlier points' line exceeds
    max(tolerance, 3 * earlier RMSE) points of the metric; "worse" follows the metric's direction.
    """
    higher_is_better = METRICS[fit.get("metric", "smape")].higher_is_better
    problems = []
    r = fit.get("r")
    if r is not None and r < min_r:
        problems.append(f"Pearson r = {r:.2f} < {min_r:g} over {fit['n']} submissions")
    low, high = fit.get("cv_range") or (0.0, 0.0)
    if fit.get("lb_constant") and high > low:  # no r, and a flat line that every point lies on
        problems.append(f"the LB stayed at {fit['latest_lb']:.3f} over {fit['n']} submissions while their CV ranged "
                        f"{low:.2f}..{high:.2f}: the CV's differences never reach the LB"
                        + (" (a 2023 score of 0 is a MAPE of 1 or more: the leaderboard clamps it)"
                           if fit.get("metric") == "score2023" and fit["latest_lb"] == 0 else ""))
    residual, rmse = fit.get("latest_residual"), fit.get("earlier_rmse")
    if residual is not None:
        limit = max(tolerance, 3 * (rmse or 0.0))
        if abs(residual) > limit:
            side = "worse" if (residual > 0) != higher_is_better else "better"
            problems.append(f"the latest submission (CV {fit['latest_cv']:.2f}, LB {fit['latest_lb']:.2f}) is "
                            f"{abs(residual):.2f} {METRICS[fit.get('metric', 'smape')].label} points {side} on LB "
                            "than the earlier trend predicts "
                            f"(limit {limit:.2f})")
    if problems:
        return "CV stopped tracking: " + "; ".join(problems) + ". Check the folds against the test split."
    if r is None and residual is None:
        return (f"too few points to judge: {fit['n']} submissions (r needs 3, not all at one CV); "
                f"mean LB-CV gap {fit['mean_gap']:+.2f}")
    parts = [f"r = {r:.2f}" if r is not None else None,
             f"LB ~= {fit['slope']:.2f} * CV {fit['intercept']:+.2f}" if fit.get("slope") is not None else None,
             f"mean LB-CV gap {fit['mean_gap']:+.2f}"]
    return "CV tracks LB (" + ", ".join(p for p in parts if p) + ")"
