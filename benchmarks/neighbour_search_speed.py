"""The `neighbour_unit` group's one label-free search (ml.neighbour_prices) at competition scale.

Texts are amz25_dev's item names or row texts (../shared/data or $AMZKIT_SHARED_DATA), each copy with a fifth of
its words replaced by words of other rows, so that no two rows are identical. Prints, on a subset, the pruned
search (n-grams in at most MAX_DF of the rows) against the exact one (every n-gram) run in the same process:
the speed ratio and how many of the exact 10 nearest rows the pruned search also finds; and, measured first, the
pruned search's wall time and peak memory at `--rows` train + `--rows` test rows.

    .venv/bin/python benchmarks/neighbour_search_speed.py [--view name|text] [--rows 75000] [--subset 10000]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's amzkit, not an installed one
from amzkit.core.schema import get_schema, row_text
from amzkit.ml.neighbour_prices import MAX_DF, nearest_train_rows
from amzkit.text.features import parsed_rows

SHARED = Path(os.environ.get("AMZKIT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def source_texts(view: str) -> list[str]:
    path = SHARED / "amz25_dev.csv"
    if not path.is_file():
        raise SystemExit(f"neighbour_search_speed builds its texts from real rows: {path} not found; set "
                         "AMZKIT_SHARED_DATA to the folder holding amz25_dev.csv")
    frame, schema = pd.read_csv(path), get_schema("amazon2025")
    if view == "name":
        return parsed_rows(frame, schema)["item_name"].fillna("").astype(str).tolist()
    return row_text(frame, schema).tolist()


def synthetic(texts: list[str], n: int, rng: np.random.Generator) -> list[str]:
    words = [t.split() for t in texts]
    vocabulary = np.array([w for ws in words for w in ws], dtype=object)
    out = []
    for _ in range(n):
        row = np.array(words[rng.integers(len(words))], dtype=object)
        swap = rng.random(len(row)) < 0.2
        row[swap] = rng.choice(vocabulary, int(swap.sum()))
        out.append(" ".join(row))
    return out


def timed(texts: list[str], n_train: int, max_df: float):
    started = time.perf_counter()
    index, _ = nearest_train_rows(texts, n_train, max_df=max_df)
    return index, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--view", choices=("name", "text"), default="name")
    parser.add_argument("--rows", type=int, default=75_000, help="train rows, and as many test rows")
    parser.add_argument("--subset", type=int, default=10_000, help="train (and test) rows of the exact comparison")
    args = parser.parse_args()
    if not 0 < args.subset <= args.rows:  # a larger subset would be cut from 2 x --rows texts, its split mislabelled
        parser.error(f"--subset must be between 1 and --rows ({args.rows}); got {args.subset}")
    rng = np.random.default_rng(0)
    texts = synthetic(source_texts(args.view), 2 * args.rows, rng)

    # first: ru_maxrss only grows, and the exact search below may peak higher than the pruned one at --rows
    _, seconds = timed(texts, args.rows, MAX_DF)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"{args.view}, {args.rows:,} + {args.rows:,} rows, pruned: {seconds:.0f} s, peak memory {peak:.1f} GB")

    subset = texts[:2 * args.subset]
    exact, exact_s = timed(subset, args.subset, 1.0)
    pruned, pruned_s = timed(subset, args.subset, MAX_DF)
    found = [len(set(e[:10]) & set(p[:10])) / 10 for e, p in zip(exact, pruned, strict=True)]
    print(f"{args.view}, {args.subset:,} + {args.subset:,} rows: exact {exact_s:.1f} s, pruned (max_df {MAX_DF}) "
          f"{pruned_s:.1f} s: {exact_s / pruned_s:.1f}x faster; it finds {np.mean(found):.0%} of the exact 10 "
          "nearest rows")


if __name__ == "__main__":
    main()
