"""03_train at competition scale: 75,000 rows x (1,024 embedding + 50 engineered) float32, 5 folds.

Prints wall time per part (feature assembly, LightGBM training, prediction), peak memory, and which part
dominates. Target on this 2-core machine: under 15 minutes and 6 GB. Synthetic data with a planted signal,
so early stopping behaves as on real data.

    .venv/bin/python benchmarks/train_scale.py [--rows 75000] [--dim 1024] [--folds 5]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from amzkit.metric import smape
from amzkit.train import FeatureSet, LightGBMRegressor, make_folds


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=75_000)
    parser.add_argument("--test-rows", type=int, default=75_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--engineered", type=int, default=50)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    n = args.rows + args.test_rows
    log_price = rng.normal(2.7, 0.9, n)
    engineered = rng.normal(size=(n, args.engineered)).astype(np.float32)
    engineered[:, :5] += log_price[:, None].astype(np.float32) * np.array([0.8, 0.5, 0.3, 0.2, 0.1], np.float32)
    embedding = rng.normal(size=(n, args.dim)).astype(np.float32)
    embedding[:, :20] += 0.3 * log_price[:, None].astype(np.float32)
    static = np.hstack([engineered, embedding])
    del engineered, embedding
    names = [f"f{i}" for i in range(static.shape[1])]
    features = FeatureSet(static, names, [], n_train=args.rows)
    y = np.expm1(log_price[: args.rows])
    folds = make_folds(y, args.folds, seed=0)
    print(f"{args.rows} train + {args.test_rows} test rows x {static.shape[1]} float32 features "
          f"({static.nbytes / 1e9:.2f} GB); peak RSS so far {peak_rss_gb():.2f} GB")

    timings = {"assemble fold matrices": 0.0, "LightGBM train (incl. binning)": 0.0, "predict": 0.0}
    model = LightGBMRegressor()
    oof = np.zeros(args.rows)
    test_rows = np.arange(args.rows, n)
    started = time.perf_counter()
    iterations = []
    for fold in range(args.folds):
        t = time.perf_counter()
        train_rows, valid_rows = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
        x_train, x_valid, x_test = (features.matrix(r) for r in (train_rows, valid_rows, test_rows))
        timings["assemble fold matrices"] += time.perf_counter() - t
        t = time.perf_counter()
        model.fit(x_train, y[train_rows], x_valid, y[valid_rows], names)
        timings["LightGBM train (incl. binning)"] += time.perf_counter() - t
        t = time.perf_counter()
        oof[valid_rows] = model.predict(x_valid)
        model.predict(x_test)
        timings["predict"] += time.perf_counter() - t
        iterations.append(model.booster_.best_iteration)
        print(f"fold {fold}: best iteration {iterations[-1]}, {time.perf_counter() - started:.0f} s so far, "
              f"peak RSS {peak_rss_gb():.2f} GB", flush=True)
        del x_train, x_valid, x_test
    total = time.perf_counter() - started
    print(f"\n{'part':34s} {'seconds':>8s} {'share':>6s}")
    for part, seconds in timings.items():
        print(f"{part:34s} {seconds:8.1f} {seconds / total:6.0%}")
    print(f"{'total':34s} {total:8.1f}")
    print(f"CV SMAPE {smape(y, oof):.2f}; best iterations {iterations}")
    print(f"dominant part: {max(timings, key=timings.get)}; peak RSS {peak_rss_gb():.2f} GB")
    print(f"target (< 900 s, < 6 GB): {'MEETS' if total < 900 and peak_rss_gb() < 6 else 'MISSES'}")


if __name__ == "__main__":
    main()
