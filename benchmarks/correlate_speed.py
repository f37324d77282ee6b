"""02_correlate at competition scale: the full analysis on 75,000 x 1,024 random float16 embeddings.

Prints wall time per part and peak memory (target on a 2-core machine: under 3 minutes and 4 GB), and the
speed-up of the matrix-product correlations (one pass, and the permutation null) over a per-dimension
np.corrcoef loop run in the same process.

    .venv/bin/python benchmarks/correlate_speed.py [--rows 75000] [--dim 1024]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's amzkit, not an installed one
from amzkit.core.metric import constant_oof, smape
from amzkit.ml.stats import pearson_columns
from amzkit.stages.correlate import null_max_abs_corr
from amzkit.stages.correlate_probes import knn_probe, make_probe_folds, ridge_probe


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=75_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--permutations", type=int, default=20)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    embeddings = rng.standard_normal((args.rows, args.dim), dtype=np.float32).astype(np.float16)
    price = np.exp(rng.normal(2.7, 0.9, args.rows))
    ok = np.ones(args.rows, bool)
    print(f"data: {args.rows} x {args.dim} float16 ({embeddings.nbytes / 1e6:.0f} MB); peak RSS {peak_rss_gb():.2f} GB")

    timings = {}
    started = time.perf_counter()
    x = np.asarray(embeddings[ok], dtype=np.float32)
    y = price[ok]
    t = time.perf_counter()
    corr = pearson_columns(x, y)
    corr_log = pearson_columns(x, np.log1p(y))
    timings["correlations (target, log1p)"] = time.perf_counter() - t
    t = time.perf_counter()
    null = null_max_abs_corr(x, np.log1p(y), args.permutations)  # 02's verdict reads log1p(target)
    timings[f"null ({args.permutations} permutations)"] = time.perf_counter() - t
    folds = make_probe_folds(len(y), args.folds)
    t = time.perf_counter()
    ridge_oof, _ = ridge_probe(x, np.log1p(y), folds)
    timings[f"ridge probe ({args.folds} folds)"] = time.perf_counter() - t
    t = time.perf_counter()
    knn_probe(x, np.log1p(y), folds)
    timings[f"kNN probe ({args.folds} folds, {min(len(y), 20_000)} queries)"] = time.perf_counter() - t
    smape(y, constant_oof(y, folds))
    total = time.perf_counter() - started

    loop_dims = 64
    t = time.perf_counter()
    loop = np.array([np.corrcoef(x[:, j], y)[0, 1] for j in range(loop_dims)])
    loop_per_dim = (time.perf_counter() - t) / loop_dims
    assert np.allclose(loop, corr[:loop_dims], atol=1e-4)
    matrix_per_dim = timings["correlations (target, log1p)"] / 2 / args.dim

    print(f"\n{'part':45s} {'seconds':>8s}")
    for part, seconds in timings.items():
        print(f"{part:45s} {seconds:8.1f}")
    print(f"{'total':45s} {total:8.1f}")
    print(f"\nmax |corr| with log1p {np.abs(corr_log).max():.4f}, its null p95 {np.percentile(null, 95):.4f}")
    null_per_pair = timings[f"null ({args.permutations} permutations)"] / (args.dim * args.permutations)
    print(f"one correlation pass: matrix product {1 / matrix_per_dim:,.0f} dims/s vs np.corrcoef loop "
          f"{1 / loop_per_dim:,.0f} dims/s -> {loop_per_dim / matrix_per_dim:.1f}x (memory-bound: standardising)")
    print(f"permutation null: {1 / null_per_pair:,.0f} (dim, permutation) pairs/s in one product vs the loop's "
          f"{1 / loop_per_dim:,.0f} -> {loop_per_dim / null_per_pair:.0f}x")
    print(f"peak RSS {peak_rss_gb():.2f} GB")
    verdict = "MEETS" if total < 180 and peak_rss_gb() < 4 else "MISSES"
    print(f"target (< 180 s, < 4 GB): {verdict}")


if __name__ == "__main__":
    main()
