"""One fold of the `ridge_oof` group (ml.stacking.RidgeOofTransform) at competition scale, old against new.

Rows are amz25_dev's (../shared/data or $AMZKIT_SHARED_DATA) tiled: each copy of a row has a fifth of the words of
its name, bullet and description lines replaced by words of other rows (its Value/Unit lines kept), and its price
scaled by exp(N(0, 0.1)); copies of one row share a product group. One outer fold (a fifth of the products) is held
out: the transform is fit on the other `--rows` x 4/5 train rows and transforms the held rows + `--rows` test rows.
The baseline is the method before this benchmark (kept below: the vectorizers fit, then the training rows
vectorized a second time, the six ridges of a view fit one after another), run in the same process on the same
rows. Prints wall time per stage (vectorize: the TF-IDF fits and transforms of the training rows, then of the
rows to transform; ridge fits: the 18 inner and final fits; predict), the ridge fits' own times summed by solver
(with threads they overlap), the speed ratio, and the largest difference between the two's columns (log price).

    .venv/bin/python benchmarks/ridge_oof_speed.py [--rows 75000] [--threads 0] [--skip-baseline]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import Ridge
from sklearn.pipeline import FeatureUnion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's amzkit, not an installed one
from amzkit.core.schema import get_schema
from amzkit.ml.base import RunInputs
from amzkit.ml.folds import inner_folds
from amzkit.ml.stacking import RidgeOofTransform, RidgeView, ridge_oof_transform

SHARED = Path(os.environ.get("AMZKIT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SWAPPED = ("Item Name", "Bullet Point", "Product Description")  # lines whose words are perturbed


class Baseline(RidgeOofTransform):
    """RidgeOofTransform.fit as it was: fit the vectorizers, vectorize the training rows again, fit in turn."""

    def fit(self, rows: np.ndarray, y: np.ndarray) -> Baseline:
        rows = np.asarray(rows)
        n_total = len(next(iter(self.views.values())).texts)
        log_y = np.log1p(np.asarray(y, dtype=float))
        self.train_values_ = np.full((n_total, len(self.views)), np.nan, dtype=np.float32)
        self.is_train_ = np.zeros(n_total, dtype=bool)
        self.is_train_[rows] = True
        self.vectorizers_ = {}
        for view in self.views.values():
            key = self._key(view)
            if key not in self.vectorizers_:
                try:
                    self.vectorizers_[key] = view.vectorizer().fit([view.texts[i] for i in rows])
                except ValueError:
                    self.vectorizers_[key] = None
        vectorized: dict = {}
        self.models_ = [self._fit_view_serially(view, rows, log_y, column, vectorized)
                        for column, view in enumerate(self.views.values())]
        return self

    def _fit_view_serially(self, view: RidgeView, rows: np.ndarray, log_y: np.ndarray, column: int,
                           vectorized: dict):
        offset = self._offset(view)
        usable = np.isfinite(offset[rows])
        if self.vectorizers_[self._key(view)] is None or usable.sum() < 2:
            return None
        matrix = self._matrix(view, rows, vectorized)[usable]
        rows, target = rows[usable], log_y[usable] - offset[rows[usable]]
        inner = inner_folds(rows, self.inner_folds, self.seed, self.groups)
        for fold in range(self.inner_folds):
            held, kept = inner == fold, inner != fold
            if held.any() and kept.any():
                model = self._ridge(int(kept.sum())).fit(matrix[kept], target[kept])
                self.train_values_[rows[held], column] = model.predict(matrix[held]) + offset[rows[held]]
        return self._ridge(len(rows)).fit(matrix, target)


class Stages:
    """Wall time inside the vectorizers (outermost call only) and of the ridge fits (by solver), while installed."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.depth = 0
        self.originals = []

    def _wrap(self, cls, name: str, label) -> None:
        original = getattr(cls, name)
        stages = self

        def timed(obj, *args, **kwargs):
            outer = label != "vectorize" or stages.depth == 0
            stages.depth += label == "vectorize"
            started = time.perf_counter()
            try:
                return original(obj, *args, **kwargs)
            finally:
                stages.depth -= label == "vectorize"
                if outer:
                    key = label(obj, args) if callable(label) else label
                    stages.seconds[key] += time.perf_counter() - started

        self.originals.append((cls, name, original))
        setattr(cls, name, timed)

    def __enter__(self) -> Stages:
        for cls in (TfidfVectorizer, FeatureUnion):
            for name in ("fit", "fit_transform", "transform"):
                self._wrap(cls, name, "vectorize")
        self._wrap(Ridge, "fit", lambda model, args: f"solver {model.solver}")
        return self

    def __exit__(self, *exc) -> None:
        for cls, name, original in reversed(self.originals):
            setattr(cls, name, original)


def perturbed(text: str, vocabulary: np.ndarray, rng: np.random.Generator) -> str:
    lines = []
    for line in text.split("\n"):
        head, colon, body = line.partition(": ")
        if colon and head.startswith(SWAPPED):
            words = np.array(body.split(" "), dtype=object)
            swap = rng.random(len(words)) < 0.2
            words[swap] = rng.choice(vocabulary, int(swap.sum()))
            line = head + colon + " ".join(words)
        lines.append(line)
    return "\n".join(lines)


def tiled(rows: int, test_rows: int) -> tuple[dict, np.ndarray]:
    path = SHARED / "amz25_dev.csv"
    if not path.is_file():
        raise SystemExit(f"ridge_oof_speed builds its rows from real ones: {path} not found; set "
                         "AMZKIT_SHARED_DATA to the folder holding amz25_dev.csv")
    source = pd.read_csv(path)
    rng = np.random.default_rng(0)
    vocabulary = np.array([w for text in source["catalog_content"] for w in text.split()], dtype=object)
    pick = rng.integers(len(source), size=rows + test_rows)
    frame = pd.DataFrame({
        "sample_id": np.arange(len(pick)), "image_link": "",
        "catalog_content": [perturbed(source["catalog_content"].iat[i], vocabulary, rng) for i in pick],
        "price": source["price"].to_numpy()[pick] * np.exp(rng.normal(0, 0.1, len(pick)))})
    data = {"train": frame.iloc[:rows].reset_index(drop=True),
            "test": frame.iloc[rows:].drop(columns="price").reset_index(drop=True)}
    return data, pick


def one_fold(transform: RidgeOofTransform, train: np.ndarray, y: np.ndarray, other: np.ndarray):
    with Stages() as stages:
        started = time.perf_counter()
        transform.fit(train, y)
        fitted = time.perf_counter()
        vectorize_fit = stages.seconds["vectorize"]
        values = transform.transform(other)
        done = time.perf_counter()
    fit_s, predict_s = fitted - started, done - fitted
    vectorize_predict = stages.seconds["vectorize"] - vectorize_fit
    stage = {"vectorize (fit)": vectorize_fit, "ridge fits": fit_s - vectorize_fit,
             "vectorize (held + test)": vectorize_predict, "predict": predict_s - vectorize_predict,
             "total": done - started}
    fits = {k: v for k, v in stages.seconds.items() if k != "vectorize"}
    return np.vstack([transform.train_values_[train], values]), stage, fits


def show(label: str, stage: dict, fits: dict) -> None:
    print(f"{label}: " + ", ".join(f"{k} {v:.1f} s" for k, v in stage.items()))
    print("   ridge fits (summed): " + ", ".join(f"{k} {v:.1f} s" for k, v in fits.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=75_000, help="train rows, and as many test rows")
    parser.add_argument("--threads", type=int, default=0, help="the new method's threads (0: the free cores)")
    parser.add_argument("--skip-baseline", action="store_true", help="time the new method alone")
    args = parser.parse_args()
    if args.rows < 50:
        parser.error(f"--rows must be at least 50, got {args.rows}")
    data, pick = tiled(args.rows, args.rows)
    fold = pick[:args.rows] % 5  # whole products (copies of one source row) out
    train, held = np.flatnonzero(fold != 0), np.flatnonzero(fold == 0)
    with tempfile.TemporaryDirectory() as work:
        inputs = RunInputs(data, get_schema("amazon2025"), Path(work), row_groups=pick)
        other = np.concatenate([held, inputs.test_rows])
        new = ridge_oof_transform(inputs)
        new.num_threads = args.threads
        print(f"{len(train):,} training rows, {len(held):,} held + {args.rows:,} test rows to transform",
              flush=True)
        values, stage, fits = one_fold(new, train, inputs.y[train], other)
        show(f"new ({args.threads or 'free cores'} threads)", stage, fits)
        if not args.skip_baseline:
            old = Baseline(new.views, seed=new.seed, groups=new.groups)
            old_values, old_stage, old_fits = one_fold(old, train, inputs.y[train], other)
            show("baseline", old_stage, old_fits)
            diff = np.nanmax(np.abs(values - old_values), axis=0)
            same_nan = (np.isnan(values) == np.isnan(old_values)).all()
            old_fit = old_stage["vectorize (fit)"] + old_stage["ridge fits"]
            new_fit = stage["vectorize (fit)"] + stage["ridge fits"]
            largest = dict(zip(new.names, diff.round(6).tolist(), strict=True))
            print(f"new is {old_stage['total'] / stage['total']:.2f}x faster (fit {old_fit:.0f} -> {new_fit:.0f} s); "
                  f"largest difference in log price per column {largest}, NaN in the same places: {same_nan}")
    print(f"peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2:.1f} GB")


if __name__ == "__main__":
    main()
