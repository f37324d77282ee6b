"""03_train at competition scale: 75,000 rows x (1,024 embedding + 50 engineered) float32, 5 folds.

Prints wall time per fold and in all, and peak memory. Target on this 2-core machine: under 15 minutes and
6 GB. Synthetic data with a planted signal, so early stopping behaves as on real data.

    .venv/bin/python benchmarks/train_scale.py [--rows 75000] [--dim 1024] [--folds 5]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's amzkit, not an installed one
from amzkit.core.metric import smape
from amzkit.core.schema import get_schema
from amzkit.ml.base import RunInputs
from amzkit.ml.cv import cross_validate
from amzkit.ml.featureset import FeatureSet
from amzkit.ml.folds import make_folds
from amzkit.ml.trees import LightGBMLearner


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

    data = {"train": pd.DataFrame({"sample_id": np.arange(args.rows), "price": y}),
            "test": pd.DataFrame({"sample_id": np.arange(args.rows, n)})}
    with tempfile.TemporaryDirectory() as work:
        inputs = RunInputs(data, get_schema("amazon2025"), Path(work), row_groups=np.arange(n))
        learner = LightGBMLearner(features=[], embeddings=[])
        learner.prepare_with(inputs, features)
        started = time.perf_counter()

        def report(step: int, mean_smape: float) -> None:
            print(f"fold {step}: {time.perf_counter() - started:.0f} s so far, mean fold SMAPE {mean_smape:.2f}, "
                  f"peak RSS {peak_rss_gb():.2f} GB", flush=True)

        result = cross_validate(learner, folds, on_fold=report, progress=False)
    total = time.perf_counter() - started
    print(f"total {total:.1f} s with {learner.threads_} threads; CV SMAPE {smape(y, result['oof']):.2f}; "
          f"peak RSS {peak_rss_gb():.2f} GB")
    print(f"target (< 900 s, < 6 GB): {'MEETS' if total < 900 and peak_rss_gb() < 6 else 'MISSES'}")

if __name__ == "__main__":
    main()
