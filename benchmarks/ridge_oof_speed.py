"""One fold of the `ridge_oof` group (ml.stacking.RidgeOofTransform) at competition scale, old against new.

Rows are amz25_dev's (../shared/data or $AMZKIT_SHARED_DATA) tiled: each copy of a row has a fifth of the words of
its name, bullet and description lines replaced by words of other rows (its Value/Unit lines kept), and its price
scaled by exp(N(0, 0.1)); copies of one row share a product group. One outer fold (a fifth of the products) is held
out: the transform is fit on the other `--rows` x 4/5 train rows and transforms the held rows + `--rows` test rows.
The new method counts every text's n-grams once a run (ml.tfidf_counts: train and test rows, before the first
fold) and builds each fold's TF-IDF from those counts; the baseline fits the fold's own TfidfVectorizers
(`shared_counts=False`, the method before it: every text analysed again in every fold), run in the same process
on the same rows. Prints wall time per stage (count: the n-gram counts, once a run; vectorize: the fold's TF-IDF
of the training rows, then of the rows to transform; ridge fits: the 18 inner and final fits; predict), the ridge
fits' own times summed by solver (with threads they overlap), the process's CPU time of the stages (steadier
than wall time on a shared machine), the memory the counts hold, the speed ratio of one fold and of a 5-fold run
(the counts made once), in wall and CPU time, and the largest difference between the two's columns (log
price).

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
from amzkit.ml.stacking import RidgeOofTransform, ridge_oof_transform
from amzkit.ml.tfidf_counts import FittedTfidf, SharedTfidf

SHARED = Path(os.environ.get("AMZKIT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SWAPPED = ("Item Name", "Bullet Point", "Product Description")  # lines whose words are perturbed


class Stages:
    """Wall time inside the vectorizers (outermost call only), of the n-gram counts and of the ridge fits (by
    solver), while installed; the process's CPU time too for the first two (one thread, none other running)."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.depth = 0
        self.originals = []

    def _wrap(self, cls, name: str, label) -> None:
        original = getattr(cls, name)
        stages = self

        def timed(obj, *args, **kwargs):
            outer = label != "vectorize" or stages.depth == 0
            stages.depth += label == "vectorize"
            started, cpu = time.perf_counter(), time.process_time()
            try:
                return original(obj, *args, **kwargs)
            finally:
                stages.depth -= label == "vectorize"
                if outer:
                    key = label(obj, args) if callable(label) else label
                    stages.seconds[key] += time.perf_counter() - started
                    stages.cpu[key] += time.process_time() - cpu

        self.originals.append((cls, name, original))
        setattr(cls, name, timed)

    def __enter__(self) -> Stages:
        for cls in (TfidfVectorizer, FeatureUnion, SharedTfidf, FittedTfidf):
            for name in ("fit", "fit_transform", "transform"):
                if hasattr(cls, name):
                    self._wrap(cls, name, "vectorize")
        self._wrap(SharedTfidf, "count", "count")
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
        started, cpu = time.perf_counter(), time.process_time()
        transform.fit(train, y)
        fitted = time.perf_counter()
        vectorize_fit, count = stages.seconds["vectorize"], stages.seconds["count"]
        cpu_fit, cpu_count = stages.cpu["vectorize"], stages.cpu["count"]
        values = transform.transform(other)
        done, cpu_done = time.perf_counter(), time.process_time()
    fit_s, predict_s = fitted - started, done - fitted
    vectorize_predict = stages.seconds["vectorize"] - vectorize_fit
    stage = {"count (once a run)": count, "vectorize (fit)": vectorize_fit - count,
             "ridge fits": fit_s - vectorize_fit, "vectorize (held + test)": vectorize_predict,
             "predict": predict_s - vectorize_predict, "fold": done - started - count}
    cpu = {"count (once a run)": cpu_count, "vectorize (fit)": cpu_fit - cpu_count,
           "vectorize (held + test)": stages.cpu["vectorize"] - cpu_fit, "fold": cpu_done - cpu - cpu_count}
    fits = {k: v for k, v in stages.seconds.items() if k not in ("vectorize", "count")}
    return np.vstack([transform.train_values_[train], values]), stage, cpu, fits


def show(label: str, stage: dict, cpu: dict, fits: dict) -> None:
    print(f"{label}: " + ", ".join(f"{k} {v:.1f} s" for k, v in stage.items() if v or k != "count (once a run)"))
    print("   CPU time: " + ", ".join(f"{k} {v:.1f} s" for k, v in cpu.items() if v or k != "count (once a run)")
          + " (the fold's: all threads)")
    print("   ridge fits (summed): " + ", ".join(f"{k} {v:.1f} s" for k, v in fits.items()))


def speedup(label: str, new: dict, old: dict) -> str:
    """One fold's seconds old -> new, and a 5-fold run's (the counts made once)."""
    count, new_fold, old_fold = new["count (once a run)"], new["fold"], old["fold"]
    return (f"{label}: a fold {old_fold:.0f} -> {new_fold:.0f} s ({old_fold / new_fold:.2f}x), counts once a run "
            f"{count:.0f} s; a 5-fold run {5 * old_fold:.0f} -> {count + 5 * new_fold:.0f} s "
            f"({5 * old_fold / (count + 5 * new_fold):.2f}x faster)")


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
        values, stage, cpu, fits = one_fold(new, train, inputs.y[train], other)
        show(f"new ({args.threads or 'free cores'} threads)", stage, cpu, fits)
        held_bytes = sum(shared.nbytes for shared in new.shared_.values())
        print(f"   the counts of {len(inputs.texts):,} texts hold {held_bytes / 1024**3:.2f} GB", flush=True)
        if not args.skip_baseline:
            old = ridge_oof_transform(inputs)
            old.num_threads, old.shared_counts = args.threads, False
            old_values, old_stage, old_cpu, old_fits = one_fold(old, train, inputs.y[train], other)
            show("baseline (each fold's own TfidfVectorizers)", old_stage, old_cpu, old_fits)
            diff = np.nanmax(np.abs(values - old_values), axis=0)
            same_nan = (np.isnan(values) == np.isnan(old_values)).all()
            largest = dict(zip(new.names, diff.round(7).tolist(), strict=True))
            print(speedup("wall", stage, old_stage))
            print(speedup("CPU", cpu, old_cpu))
            print(f"largest difference in log price per column {largest}, NaN in the same places: {same_nan}")
    print(f"peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2:.1f} GB")


if __name__ == "__main__":
    main()
