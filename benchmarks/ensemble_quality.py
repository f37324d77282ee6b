"""04_ensemble quality on real rows: ../shared/data/amz23_dev.csv (2023 schema, 1,716 rows), one table.

Four 03_train runs in one work folder (so they share folds): LightGBM `default` preset on engineered
features + TF-IDF/SVD, LightGBM `seed` preset (the roadmap's params, raw target), ridge on TF-IDF, and kNN
on the `tfidf-svd` embedding from 01_extract. Then 04_ensemble: blend, stack, blend + calibration and
stack + calibration, each scored nested (fitted on 4 folds, scored on the 5th), and 04's `cv_smape`, which scores
the choice of method too (made inside each fold). Target: that `cv_smape` beats the best single run's own CV (a
single run has nothing to choose inside its folds; being the lowest of four runs' CV flatters it a little, so
the comparison does not favour the ensemble).

    .venv/bin/python benchmarks/ensemble_quality.py [--data ../shared/data/amz23_dev.csv] [--work /tmp/amzkit_ens]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's amzkit, not an installed one
from amzkit.stages.ensemble import ensemble
from amzkit.stages.extract import extract
from amzkit.stages.train import train_run
from amzkit.testing import dev_competition

SHARED = Path(os.environ.get("AMZKIT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SCHEMA = "amazon2023"
FEATURES = ["quantity", "text_stats", "keywords", "brand", "category", "tfidf"]
COMPARED = ("blend", "stack", "blend+calibration", "stack+calibration")


def comparison(m: dict) -> tuple[pd.DataFrame, str]:
    """04's metrics as a table (the best single run's own CV, each method's nested score, 04's `cv_smape`) and the
    verdict line, each number labelled as what it scores."""
    table = pd.DataFrame(m["table"]).set_index("model")
    best = m["best_single_run"]
    rows = [{"model": f"best single run ({best}): its own CV, nothing chosen", "CV SMAPE": m["best_single_smape"],
             "fold std": table.loc[best, "fold_std"], "in-sample": float("nan")}]
    rows += [{"model": f"{name}: nested", "CV SMAPE": table.loc[name, "nested_smape"],
              "fold std": table.loc[name, "fold_std"], "in-sample": table.loc[name, "in_sample_smape"]}
             for name in COMPARED]
    if m["cv_scores"] in table.index:  # method "best": the picking inside each fold, scored
        rows.append({"model": f"{m['cv_scores']}: 04's cv_smape", "CV SMAPE": m["cv_smape"],
                     "fold std": table.loc[m["cv_scores"], "fold_std"], "in-sample": float("nan")})
    verdict = "MEETS" if m["cv_smape"] < m["best_single_smape"] else "MISSES"
    line = (f"04's cv_smape ({m['cv_scores']}) vs the best single run's own CV ({best}; a single run has no method "
            f"to choose): {m['cv_smape']:.2f} vs {m['best_single_smape']:.2f} "
            f"({m['best_single_smape'] - m['cv_smape']:+.2f} points): {verdict}")
    return pd.DataFrame(rows), line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(SHARED / "amz23_dev.csv"),
                        help="the labelled rows (default: $AMZKIT_SHARED_DATA, else ../shared/data beside the clone)")
    parser.add_argument("--work", default="/tmp/amzkit_ensemble_quality")
    parser.add_argument("--embedding", default="tfidf-svd", help="01_extract text model for the kNN run")
    parser.add_argument("--fold-strategy", default="group")
    parser.add_argument("--knn-k", type=int, default=20)
    parser.add_argument("--meta", default="ridge", choices=["ridge", "lightgbm"])
    parser.add_argument("--num-threads", type=int, default=0, help="LightGBM threads (0: LightGBM's default)")
    args = parser.parse_args()
    if not Path(args.data).is_file():  # before the work folder's old runs are removed
        parser.error(f"{args.data} not found: ensemble_quality needs the real rows of ../shared/data; set "
                     "AMZKIT_SHARED_DATA to the folder holding amz23_dev.csv, or pass --data")

    work = Path(args.work)
    for stage in ("03_train", "04_ensemble"):
        shutil.rmtree(work / stage, ignore_errors=True)
    (work / "runs.csv").unlink(missing_ok=True)
    data = dev_competition(args.data, SCHEMA)
    train = data["train"]
    started = time.perf_counter()
    extract(data, Path(args.data).parent, work, SCHEMA, args.embedding)
    print(f"01_extract {args.embedding}: {time.perf_counter() - started:.0f} s")

    common = {"fold_strategy": args.fold_strategy}
    lgbm = {"num_threads": args.num_threads, **common}
    runs = {
        "lgbm_default": lambda: train_run(data, SCHEMA, work, "lgbm_default", FEATURES, [], **lgbm),
        "lgbm_seed": lambda: train_run(data, SCHEMA, work, "lgbm_seed", FEATURES, [], preset="seed", **lgbm),
        "ridge_tfidf": lambda: train_run(data, SCHEMA, work, "ridge_tfidf", learner="ridge_tfidf", **common),
        f"knn_{args.embedding}": lambda: train_run(data, SCHEMA, work, f"knn_{args.embedding}", learner="knn",
                                                   learner_params={"embedding": args.embedding, "k": args.knn_k},
                                                   **common),
    }
    for name, make in runs.items():
        m = make()
        print(f"03_train {name}: CV SMAPE {m['cv_smape']:.2f} (fold std {m['fold_smape_std']:.2f}), "
              f"{m['seconds']:.0f} s")

    started = time.perf_counter()
    m = ensemble(work, list(runs), meta=args.meta)
    seconds = time.perf_counter() - started
    table, verdict = comparison(m)
    print(f"\n{len(train)} rows of {args.data}, 5 folds ({args.fold_strategy}), schema {SCHEMA}, "
          f"meta-model {args.meta}; 04_ensemble {seconds:.1f} s")
    print("runs: " + ", ".join(f"{n} {s:.2f}" for n, s in m["run_smape"].items()))
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print(f"blend weights: {', '.join(f'{n} {w:.3f}' for n, w in m['weights'].items())}; "
          f"calibration factor {m['calibration_factor']:.3f}")
    print(f"chosen by nested score: {m['method']} -> test_pred.csv")
    print(verdict)


if __name__ == "__main__":
    main()
