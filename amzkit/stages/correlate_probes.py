"""02_correlate's probes: how well a model can predict the price from an embedding, scored out of fold.

Each probe fits on a fold's training rows only (ridge's alpha by GCV inside them, the kNN's neighbours among them)
and scores the fold's rows; the folds are the caller's (02 gives 03's, `probe_folds`). A gain over a reference
counts only beyond its own fold-to-fold noise (`gain_test`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from amzkit.core.io import id_hash
from amzkit.core.metric import smape
from amzkit.core.schema import Schema
from amzkit.core.workdir import stage_dir
from amzkit.ml.folds import FOLDS_FILE, folds_to_come, inner_folds
from amzkit.ml.knn import NeighbourSpace, knn_mean
from amzkit.ml.ridge import RIDGE_ALPHAS, GcvRidge

MEANINGFUL_GAIN = 0.5  # SMAPE points: the floor a probe's mean per-fold gain must exceed, however steady
# ... and this many standard errors of its per-fold gains (5 folds, t with 4 df: a ~94% one-sided bar). On 600
# rows the bar came to 0.5-2 SMAPE points for noise embeddings and 1-6 for real signal; on 4,300 rows, the floor.
GAIN_STANDARD_ERRORS = 2.0


def probe_folds(work_dir: str | Path, train: pd.DataFrame, schema: Schema, n_folds: int, seed: int,
                strategy: str) -> tuple[np.ndarray, dict]:
    """(03's fold of every train row, how 02 came by them for metrics.json): 03_train/folds.csv once 03 made it
    (with these settings, or refused as 03 refuses a run asking for others), before that the very folds 03 makes
    with them; nothing is written, so 03 run later with other settings makes its own as it would have."""
    try:
        folds, saved = folds_to_come(work_dir, train, schema, n_folds, seed, strategy)
    except ValueError as err:
        raise ValueError(f"02_correlate scores its probes in 03's folds: {err}") from err
    made = str(stage_dir(work_dir, "03_train") / FOLDS_FILE) if saved else "as 03_train will make them"
    return folds, {"n_folds": n_folds, "seed": seed, "strategy": strategy, "from": made, "folds_sha256": id_hash(folds)}


def make_probe_folds(n_rows: int, n_folds: int = 5, seed: int = 0, groups: np.ndarray | None = None) -> np.ndarray:
    """Fold number per row for probes given no folds (`analyse_embedding` called alone; 02 gives 03's): random, or
    with `groups` (product names) every copy of a product in one fold, as 03's group folds keep them (a copy on both
    sides flatters the probes); random only when there are fewer products than folds, where 03 refuses group folds."""
    if groups is not None and len(np.unique(groups)) >= n_folds:
        return inner_folds(np.arange(n_rows), n_folds, seed, np.asarray(groups))
    folds = np.arange(n_rows) % n_folds
    return np.random.default_rng(seed).permutation(folds)



def within_training(pred_log: np.ndarray, train_log: np.ndarray) -> np.ndarray:
    """Log predictions clipped to the training fold's log1p target range widened by its width on each side: one
    embedding value 1e4 standard deviations out made a linear probe predict e^1000, which overflowed and stopped 02
    ('metric inputs must be finite'). Ridge predictions on ordinary rows never come near it (no score changed)."""
    low, high = float(np.min(train_log)), float(np.max(train_log))
    return np.clip(np.asarray(pred_log, dtype=np.float64), 2 * low - high, 2 * high - low)


def ridge_probe(x: np.ndarray, y_log: np.ndarray, folds: np.ndarray,
                alphas: tuple[float, ...] = RIDGE_ALPHAS) -> tuple[np.ndarray, list[float]]:
    """Out-of-fold ridge predictions of log1p(target); alpha chosen (GCV) inside each training fold; predictions
    clipped far outside the training fold's targets (`within_training`)."""
    oof = np.empty(len(y_log))
    chosen = []
    for fold in np.unique(folds):
        train, valid = folds != fold, folds == fold
        model = GcvRidge(alphas).fit(x[train], y_log[train])
        oof[valid] = within_training(model.predict(x[valid]), y_log[train])
        chosen.append(model.alpha_)
    return oof, chosen


def added_value_probe(baseline: np.ndarray, x: np.ndarray, y_log: np.ndarray, folds: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold log predictions of the baseline alone and of baseline + embedding.

    The embedding enters as a second ridge on the baseline's training residuals with its own alpha (chosen
    inside the training fold, up to shrinking it away), so an embedding that adds nothing costs about nothing
    and one ridge penalty is not shared between a few strong baseline features and many weak dimensions. Both
    are clipped far outside the training fold's targets (`within_training`).
    """
    base_oof, both_oof = np.empty(len(y_log)), np.empty(len(y_log))
    residual_alphas = (*RIDGE_ALPHAS, 1e8, 1e9, 1e10)
    for fold in np.unique(folds):
        train, valid = folds != fold, folds == fold
        base_model = GcvRidge().fit(baseline[train], y_log[train])
        residual = y_log[train] - base_model.predict(baseline[train])
        extra = GcvRidge(residual_alphas).fit(x[train], residual)
        base_valid = base_model.predict(baseline[valid]).astype(np.float64)
        base_oof[valid] = within_training(base_valid, y_log[train])
        both_oof[valid] = within_training(base_valid + extra.predict(x[valid]), y_log[train])
    return base_oof, both_oof


def knn_probe(x: np.ndarray, y_log: np.ndarray, folds: np.ndarray, k: int = 20, max_queries: int = 20_000,
              seed: int = 0, query_order: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """kNN regression (ml.knn: cosine, or nearest values for a one-column run), out of fold: the mean log1p
    target of the k nearest training rows.

    Every training row is a candidate neighbour; at most `max_queries` validation rows are scored to bound the
    cost: the first of `query_order` (the rows in the order to query them; None: a random order of `seed`).
    Returns (predictions, queried mask).
    """
    order = np.random.default_rng(seed).permutation(len(y_log)) if query_order is None else query_order
    queried = np.zeros(len(y_log), dtype=bool)
    queried[order[:max_queries]] = True
    oof = np.full(len(y_log), np.nan)
    for fold in np.unique(folds):
        train, valid = np.flatnonzero(folds != fold), np.flatnonzero((folds == fold) & queried)
        if len(valid) == 0:
            continue
        space = NeighbourSpace().fit(x[train])
        oof[valid] = knn_mean(space, space.rows(x[valid]), space.rows(x[train]), y_log[train], k)
    return oof, queried


def price_of(pred_log: np.ndarray) -> np.ndarray:
    return np.maximum(np.expm1(pred_log), 0.0)


def smape_of_log(y: np.ndarray, pred_log: np.ndarray) -> float:
    return smape(y, price_of(pred_log))


def fold_gains(y: np.ndarray, reference: np.ndarray, candidate: np.ndarray, folds: np.ndarray,
               scored: np.ndarray | None = None) -> list[float]:
    """SMAPE of the `reference` price predictions minus that of `candidate`, fold by fold on the same rows
    (paired; only the `scored` rows when given); a fold with no scored row is left out."""
    scored = np.ones(len(y), dtype=bool) if scored is None else scored
    gains = []
    for fold in np.unique(folds):
        rows = (folds == fold) & scored
        if rows.any():
            gains.append(smape(y[rows], reference[rows]) - smape(y[rows], candidate[rows]))
    return gains


def gain_test(per_fold: list[float]) -> dict:
    """Whether a gain is more than fold noise: its mean over folds must exceed MEANINGFUL_GAIN and
    GAIN_STANDARD_ERRORS standard errors of the per-fold gains (plain floats; None where under 2 folds)."""
    gains = np.asarray(per_fold, dtype=np.float64)
    mean = float(gains.mean()) if gains.size else 0.0
    error = float(gains.std(ddof=1) / np.sqrt(gains.size)) if gains.size > 1 else None
    threshold = None if error is None else max(MEANINGFUL_GAIN, GAIN_STANDARD_ERRORS * error)
    return {"fold_gains": [float(g) for g in gains], "mean": mean, "standard_error": error,
            "threshold": threshold, "meaningful": threshold is not None and mean > threshold}




def query_order(ok: np.ndarray, seed: int) -> np.ndarray:
    """The kNN probe's order of querying a run's rows (positions among the rows `ok` marks): one random order of
    every train row, kept to the run's, so runs capped at knn_max_queries score the same rows, less those a run
    lacks (each run's own draw gave two runs apart by one missing row different queried rows)."""
    ok = np.asarray(ok, dtype=bool)
    order = np.random.default_rng(seed).permutation(len(ok))
    return (np.cumsum(ok) - 1)[order[ok[order]]]
