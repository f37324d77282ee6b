"""03_train quality on real rows: ../shared/data/amz23_dev.csv (2023 schema, 1,716 rows), 5-fold CV, one table.

Rows: constant median, the roadmap's `seed` preset (raw target), TF-IDF + ridge on log1p, and the `default`
preset (log1p, L1) over engineered features + TF-IDF/SVD, alone and with `minilm` text embeddings from
01_extract (PCA and in-fold neighbour-price features).
All share one fold assignment. Target: `default` at least 10% lower SMAPE than TF-IDF + ridge.

    .venv/bin/python benchmarks/train_quality.py [--data ../shared/data/amz23_dev.csv] [--work /tmp/amzkit_quality]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from amzkit.extract import extract
from amzkit.learners import learner_run
from amzkit.testing import dev_competition
from amzkit.train import train_run

SCHEMA = "amazon2023"
FEATURES = ["quantity", "text_stats", "keywords", "brand", "category", "dimensions", "tfidf"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_data = Path(__file__).resolve().parents[2] / "shared" / "data" / "amz23_dev.csv"
    parser.add_argument("--data", default=str(default_data))
    parser.add_argument("--work", default="/tmp/amzkit_quality")
    parser.add_argument("--text-model", default="minilm")
    parser.add_argument("--fold-strategy", default="group")
    args = parser.parse_args()

    work = Path(args.work)
    shutil.rmtree(work / "03_train", ignore_errors=True)
    (work / "runs.csv").unlink(missing_ok=True)
    data = dev_competition(args.data, SCHEMA)
    train = data["train"]
    started = time.perf_counter()
    extract(data, Path(args.data).parent, work, SCHEMA, args.text_model)
    print(f"01_extract {args.text_model}: {time.perf_counter() - started:.0f} s")

    common = {"fold_strategy": args.fold_strategy}
    rows = {}
    seed = train_run(data, SCHEMA, work, "seed", FEATURES, [], preset="seed", **common)
    rows["constant median"] = (seed["constant_median_smape"], float("nan"), 0.0)
    rows["seed preset (roadmap params, raw target)"] = seed
    rows["TF-IDF + ridge on log1p"] = learner_run(data, SCHEMA, work, "ridge_tfidf", **common)
    rows["default preset, features only"] = train_run(data, SCHEMA, work, "default_features", FEATURES, [], **common)
    rows[f"default preset + {args.text_model} (pca:16, knn:20)"] = train_run(
        data, SCHEMA, work, "default", FEATURES, [f"{args.text_model}:pca:16", f"{args.text_model}:knn:20"], **common)
    table = pd.DataFrame(
        [{"model": name, "CV SMAPE": m[0], "fold std": m[1], "seconds": m[2]} if isinstance(m, tuple) else
         {"model": name, "CV SMAPE": m["cv_smape"], "fold std": m["fold_smape_std"], "seconds": m["seconds"]}
         for name, m in rows.items()])
    print(f"\n{len(train)} rows of {args.data}, 5 folds ({args.fold_strategy}), schema {SCHEMA}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    ridge = rows["TF-IDF + ridge on log1p"]["cv_smape"]
    best = rows[f"default preset + {args.text_model} (pca:16, knn:20)"]["cv_smape"]
    print(f"\ndefault + {args.text_model} vs TF-IDF + ridge: {100 * (1 - best / ridge):.1f}% lower SMAPE "
          f"(target >= 10%): {'MEETS' if best <= 0.9 * ridge else 'MISSES'}")
    print(f"seed preset vs constant median: {rows['seed preset (roadmap params, raw target)']['cv_smape']:.2f} vs "
          f"{rows['constant median'][0]:.2f}")
    np.set_printoptions(precision=2)


if __name__ == "__main__":
    main()
