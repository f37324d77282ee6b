"""Stage 02: how much price signal an embedding carries, measured the roadmap's way and honestly.

The roadmap's measure is kept exactly (per-dimension Pearson correlation, max |corr|, its verdict
table), and put beside what a careful competitor needs to trust it: a permutation null for max |corr|
(pure noise at 75k x 768 already reaches ~0.015), and probes scored by K-fold CV SMAPE on the
original scale: a ridge probe (alpha chosen inside the training folds), a cosine kNN regressor, and an
added-value probe (baseline text features + embedding vs the baseline alone). A probe's gain counts only when
it clears its own fold-to-fold noise (`gain_test`), so small data needs a larger gain than large data. Every probe
of every run scores in one split, 03's folds (`probe_folds`), each run on the train rows that have its embedding.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from amzkit.core.io import write_csv, write_json
from amzkit.core.metric import constant_oof, smape
from amzkit.core.params import Param, Parameters
from amzkit.core.schema import get_schema, row_text
from amzkit.core.workdir import list_runs, stage_dir
from amzkit.embed.runs import load_embeddings, unfinished_runs
from amzkit.embed.simple import TfidfSvdEmbedder
from amzkit.ml.folds import FOLD_STRATEGIES, check_trainable
from amzkit.ml.stats import pearson_columns
from amzkit.stages.correlate_probes import (
    added_value_probe,
    fold_gains,
    gain_test,
    knn_probe,
    make_probe_folds,
    price_of,
    probe_folds,
    query_order,
    ridge_probe,
    smape_of_log,
)
from amzkit.stages.train import D as TRAIN_DEFAULTS
from amzkit.text.features import FEATURE_GROUPS, build_features
from amzkit.text.names import product_groups

# The roadmap's decision table: (lower bound on max |corr|, verdict, next step), checked top-down.
VERDICTS: tuple[tuple[float, str, str], ...] = (
    (0.05, "STRONG", "03_train with this embedding"),
    (0.02, "MODERATE", "04_ensemble: a separate model on it, blended"),
    (0.0, "WEAK", "alternatives: other models, image metadata, text features"),
)
# the roadmap's max |corr| of two CLIP runs, measured on 2025 prices: shown beside that edition's runs only
ROADMAP_BASELINES = {"amazon2025": {"CLIP ViT-B/32 image (roadmap)": 0.0089, "text CLIP (roadmap)": 0.1089}}
PARAMETERS = Parameters(
    Param("runs", [], "01_extract runs to analyse; []: every run in the work folder", plain_name=True),
    Param("top_k", 20, "dimensions listed per run, most correlated first", low=1),
    Param("n_permutations", 20, "shuffles of the target for the noise floor of max |corr|", low=1),
    Param("n_folds", TRAIN_DEFAULTS.n_folds,
          "03's n_folds: every probe scores in 03's folds (before 03: those it will make)", low=2, high=50),
    Param("fold_strategy", TRAIN_DEFAULTS.fold_strategy,
          "03's fold_strategy: group (copies of a product in one fold), stratified or kfold", choices=FOLD_STRATEGIES),
    Param("knn_k", 20, "neighbours of the kNN probe", low=1),
    Param("knn_max_queries", 20000, "validation rows the kNN probe scores at most (bounds its cost)", low=1),
    Param("baseline_features", ["quantity", "text_stats", "keywords", "brand", "dimensions", "tfidf", "pack_totals"],
          "label-free feature groups of the added-value probe's baseline (tfidf: TF-IDF + SVD of the text)"),
    Param("baseline_runs", [], "01_extract runs added to that baseline (e.g. the text model's)", plain_name=True),
    Param("seed", TRAIN_DEFAULTS.seed, "03's seed of the folds; also of the permutations and the kNN probe's rows",
          low=0, high=2**32 - 1),
)
D = PARAMETERS.defaults


def verdict(max_abs_corr: float) -> tuple[str, str]:
    """The roadmap's verdict and next step for a max |corr|."""
    for bound, name, step in VERDICTS:
        if max_abs_corr > bound:
            return name, step
    return VERDICTS[-1][1], VERDICTS[-1][2]


def null_max_abs_corr(x: np.ndarray, y: np.ndarray, n_permutations: int = 20, seed: int = 0,
                      groups: np.ndarray | None = None) -> np.ndarray:
    """max |corr| over dimensions against `n_permutations` shuffles of y: the noise floor of the roadmap's number.
    With `groups` (products) that repeat, prices are shuffled between products (each product's mean price goes to
    every copy of another): copies share an embedding and a price, which widens max |corr| on noise by about
    sqrt(copies), and a row-by-row shuffle would not (noise cleared it 40 times in 40). Each row keeps a
    deviation from its product's mean, shuffled among the product's copies: copies priced apart (other pack
    sizes under one name) spread y as much as the real prices do (the means alone made the floor too high, and
    real signal looked like noise)."""
    rng = np.random.default_rng(seed)
    if groups is not None:
        _, group_index = np.unique(np.asarray(groups), return_inverse=True)
        group_index = group_index.ravel()
        if group_index.max() + 1 < len(y):  # some product is listed more than once
            y = np.asarray(y, dtype=float)
            means = np.bincount(group_index, weights=y) / np.bincount(group_index)
            deviations = y - means[group_index]
            by_group = np.argsort(group_index, kind="stable")  # rows grouped by product, in row order

            def within_products() -> np.ndarray:
                """The deviations, each product's shuffled among its own copies."""
                shuffled = np.empty_like(deviations)
                shuffled[by_group] = deviations[np.lexsort((rng.random(len(y)), group_index))]
                return shuffled

            shuffled = np.column_stack([means[rng.permutation(len(means))][group_index] + within_products()
                                        for _ in range(n_permutations)])
            return np.abs(pearson_columns(x, shuffled)).max(axis=0)
    shuffled = np.column_stack([rng.permutation(y) for _ in range(n_permutations)])
    return np.abs(pearson_columns(x, shuffled)).max(axis=0)


ONE_ROW_SHARE = 0.5  # a column where one row holds more of the squared deviations is that row's, to the probes
ONE_ROW_DISTANCE = 100.0  # ... when that row is this many sd of the other rows out: one far value, not a heavy tail


def one_row_columns(x: np.ndarray) -> list[tuple[int, int, float]]:
    """(column, row, share) of each column where one row, ONE_ROW_DISTANCE sd of the others or more from the mean,
    holds more than ONE_ROW_SHARE of the squared deviations: the ridge and kNN probes standardise a column by its
    sd, which that row then sets, so the other rows' values shrink to almost nothing (one value 1e4 sd out in the
    column carrying the signal took a ridge probe from 50.7 to 60.4 SMAPE, its constant's 64.5, and the run read
    as noise). A heavy tail (log-normal values, sigma 1.5, 600 rows: one row 78% of the variance, 46 sd out) is
    not flagged."""
    mean = x.mean(axis=0, dtype=np.float64)  # reductions only: no n x d copy of a 75k-row run
    total = np.maximum(np.einsum("ij,ij->j", x, x, dtype=np.float64) - len(x) * mean**2, 0.0)
    top = np.maximum(x.max(axis=0) - mean, mean - x.min(axis=0)) ** 2  # the farthest row's squared deviation
    others = np.maximum(total - top, 0.0) / max(len(x) - 1, 1)  # the other rows' variance about the mean
    flagged = (top > ONE_ROW_SHARE * total) & (top > ONE_ROW_DISTANCE**2 * others) & (total > 0)
    return [(int(j), int(np.abs(x[:, j] - mean[j]).argmax()), float(top[j] / total[j]))
            for j in np.flatnonzero(flagged)]


def one_row_warning(name: str, columns: list[dict], ids: pd.Series) -> str:
    """What 02 prints of a run's columns that one row holds (`one_row_columns`, rows as train positions)."""
    listed = ", ".join(f"column {c['column']} (id {ids.iloc[c['row']]}: {c['share']:.1%})" for c in columns[:3])
    more = f" and {len(columns) - 3} more" if len(columns) > 3 else ""
    return (f"02_correlate: warning: run {name!r}: one row holds most of the variance of {listed}{more}: the ridge "
            "and kNN probes standardise each column by its sd, which that row's value then sets, so they see almost "
            "nothing of the other rows' values there and may score the run weaker than it is (03's tree learners "
            "are not affected). Check that row's input and its value in 01's output: a value thousands of sd out is "
            "more likely an error than a price signal")


def analyse_embedding(embeddings: np.ndarray, ok: np.ndarray, target: np.ndarray, *, baseline: np.ndarray | None = None,
                      groups: np.ndarray | None = None, folds: np.ndarray | None = None,
                      top_k: int = D.top_k, n_permutations: int = D.n_permutations, n_folds: int = D.n_folds,
                      knn_k: int = D.knn_k, knn_max_queries: int = D.knn_max_queries, seed: int = D.seed) -> dict:
    """Everything 02_correlate reports for one embedding, on the rows where it exists (`ok` and finite, as 03
    reads it), each probe in `folds` (a fold per row: 02 gives 03's) less the rows without it; None: folds of
    every row (`make_probe_folds`, `groups`, a product name per row, keeping each product's copies in one)."""
    ok = usable_rows(embeddings, ok)
    if folds is None:
        folds = make_probe_folds(len(ok), n_folds, seed, groups)
    too_few = too_few_rows(ok, n_folds, folds)
    if too_few:
        raise ValueError(f"{too_few}: nothing to measure")
    x = np.asarray(embeddings[ok], dtype=np.float32)
    y = np.asarray(target, dtype=np.float64)[ok]
    y_log = np.log1p(y)
    corr = pearson_columns(x, y)
    corr_log = pearson_columns(x, y_log)
    max_abs, max_abs_log = float(np.abs(corr).max()), float(np.abs(corr_log).max())
    groups = None if groups is None else np.asarray(groups)[ok]  # the products of the rows used
    used = np.flatnonzero(ok)
    one_row = [{"column": j, "row": int(used[i]), "share": share} for j, i, share in one_row_columns(x)]
    # the verdict that counts is on log1p(target), the scale every probe and learner fits: on the raw price
    # one outlier decides both the max |corr| and its null's width (a 1,643 beside prices under 400)
    null_log = null_max_abs_corr(x, y_log, n_permutations, seed, groups)
    null_p95_log = float(np.percentile(null_log, 95))
    roadmap_name, _ = verdict(max_abs)
    honest_name, honest_step = verdict(max_abs_log) if max_abs_log > null_p95_log else ("WEAK", VERDICTS[-1][2])
    folds = np.asarray(folds)[ok]  # the run's rows in the one split every run is scored in
    ridge_oof, alphas = ridge_probe(x, y_log, folds)
    knn_oof, queried = knn_probe(x, y_log, folds, knn_k, knn_max_queries, query_order=query_order(ok, seed))
    constant = constant_oof(y, folds)
    result = {
        "dim": int(x.shape[1]), "rows_used": int(ok.sum()), "rows_excluded": int((~ok).sum()),
        "max_abs_corr": max_abs, "max_abs_corr_log1p": max_abs_log,
        "null_p95_log1p": null_p95_log, "null_max_log1p": [float(v) for v in null_log],
        "clears_null": max_abs_log > null_p95_log,
        "roadmap_verdict": roadmap_name, "verdict": honest_name,
        "top_dims": [int(i) for i in np.argsort(-np.abs(corr))[:top_k]],
        "constant_smape": smape(y, constant),
        "ridge_smape": smape_of_log(y, ridge_oof), "ridge_alphas": alphas,
        "knn_smape": smape_of_log(y[queried], knn_oof[queried]), "knn_rows": int(queried.sum()),
        "knn_constant_smape": smape(y[queried], constant[queried]),
        "corr": corr, "corr_log1p": corr_log, "ridge_oof_log": ridge_oof, "target_used": y,
        "one_row_columns": one_row,  # the row: a position among the train rows given
    }
    result["top_corr"] = [float(corr[i]) for i in result["top_dims"]]
    result["gain_tests"] = {"ridge": gain_test(fold_gains(y, constant, price_of(ridge_oof), folds)),
                            "knn": gain_test(fold_gains(y, constant, price_of(knn_oof), folds, queried))}
    if baseline is not None:
        base = np.asarray(baseline[ok], dtype=np.float32)
        base_oof, both_oof = added_value_probe(base, x, y_log, folds)
        result["baseline_smape"] = smape_of_log(y, base_oof)
        result["baseline_plus_smape"] = smape_of_log(y, both_oof)
        result["added_value_gain"] = result["baseline_smape"] - result["baseline_plus_smape"]
        result["gain_tests"]["added_value"] = gain_test(fold_gains(y, price_of(base_oof), price_of(both_oof), folds))
    result["next_step"] = recommend(result, honest_step)
    return result


def usable_rows(embeddings: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """The rows that have the embedding: `ok` and every value finite (a row 01 marked ok holding NaN or inf, from
    a model's overflow or an older merge, is missing to 03's readers, and crashed the probes' ridge here)."""
    return np.asarray(ok, dtype=bool) & np.isfinite(embeddings).all(axis=1)


def too_few_rows(ok: np.ndarray, n_folds: int, folds: np.ndarray | None = None) -> str:
    """Why an embedding cannot be analysed: fewer rows have it than probe folds, or (given the `folds` of every
    train row) its rows all lie in one fold, which no other fold's rows could predict ('' when it can)."""
    used = int(np.count_nonzero(ok))
    if used < n_folds:
        return f"only {used} of {len(ok)} train rows have this embedding, fewer than the {n_folds} probe folds"
    if folds is not None and len(np.unique(np.asarray(folds)[np.asarray(ok, dtype=bool)])) < 2:
        return f"the {used} train rows that have this embedding all lie in one fold: no probe can be trained for it"
    return ""


def unusable_reason(work_dir: str | Path, name: str, ok: np.ndarray, usable: np.ndarray) -> str:
    """Why a run has (almost) no usable row: rows 01 marked ok that hold NaN or inf (a broken run, not a fetch
    problem), else rows 01 could not read (an image run's statuses are in its train_fetch.csv)."""
    run_dir = stage_dir(work_dir, "01_extract") / name
    marked, broken = int(np.count_nonzero(ok)), int(np.count_nonzero(np.asarray(ok, dtype=bool) & ~usable))
    if broken:
        return (f"{broken:,} of the {marked:,} rows 01 marked ok hold NaN or inf, a model's overflow or a broken "
                f"merge: rerun 01 for run {name!r} (delete {run_dir} first), or leave the run out with -p runs")
    fetch = run_dir / "train_fetch.csv"
    where = f"each row's status is in {fetch}" if fetch.is_file() else "a row without text has no text embedding"
    return (f"01 fetched or embedded almost no input: {where}. Rerun 01 once its inputs can be read, or leave the "
            "run out with -p runs")


def deciding_probe(result: dict) -> str:
    """The probe (ridge or knn) whose gain over the constant clears its threshold by the most."""
    def margin(name: str) -> float:
        test = result["gain_tests"][name]
        return -np.inf if test["threshold"] is None else test["mean"] - test["threshold"]

    return max(("ridge", "knn"), key=margin)


def recommend(result: dict, roadmap_step: str) -> str:
    """The next step from the probes (what a model can extract beyond fold noise), falling back to the roadmap's
    table. Clearing the permutation null alone does not pass the noise gate: noise clears its p95 in ~1 of 10
    runs, so a probe must beat the constant, or the embedding must add to the text features beyond fold noise
    (a gain test as well: on text features that leave little noise, the same signal gains more SMAPE than on the
    constant, and 4 points added over them read as noise when only the probes alone could pass)."""
    tests = result["gain_tests"]
    added = tests.get("added_value")
    if added is not None and added["meaningful"]:
        return "03_train: add it to the text features"
    if not tests[deciding_probe(result)]["meaningful"]:
        return "alternatives: indistinguishable from noise"
    if added is not None:
        return "04_ensemble: own model, blended; adds little to text features"
    return roadmap_step


BASELINE_TFIDF = "tfidf"  # a baseline group: TF-IDF (words 1-2) + SVD of the row text, as 03's tfidf group


def baseline_blocks(train: pd.DataFrame, schema: str, work_dir: str | Path, features: list[str],
                    runs: list[str]) -> list[tuple[str | None, np.ndarray]]:
    """Numeric baseline text features (label-free engineered groups, `tfidf`, text embedding runs) for the
    added-value probe, as column blocks, each with the run it comes from (None: the feature groups), so a run that
    is itself in the baseline can be judged against the others. `tfidf` is fit on every train row's text: it reads
    no label, so no fold is needed."""
    if not features and not runs:
        return []
    schema_ = get_schema(schema)
    blocks = []
    groups = [g for g in features if g != BASELINE_TFIDF]
    unknown = [g for g in groups if g not in FEATURE_GROUPS]
    if unknown:
        raise ValueError(f"baseline_features {unknown}: the baseline takes label-free groups "
                         f"{sorted([*FEATURE_GROUPS, BASELINE_TFIDF])} (groups fit on labels, such as ridge_oof, "
                         "cannot be a probe's fixed baseline)")
    if BASELINE_TFIDF in features:
        texts = row_text(train, schema_).tolist()
        blocks.append((None, TfidfSvdEmbedder(TRAIN_DEFAULTS.tfidf_dim).fit(texts).transform(texts)[0]))
    if groups:
        frame, _ = build_features(train, train.iloc[:0], schema_, groups)
        numeric = pd.get_dummies(frame, dummy_na=False, dtype=np.float32)
        numeric = numeric.fillna(numeric.median(numeric_only=True)).fillna(0.0)
        blocks.append((None, numeric.to_numpy(dtype=np.float32)))
    for name in runs:
        emb, ok = load_embeddings(work_dir, name, "train", train[schema_.id_column], frame=train, schema=schema_)
        # a row without the embedding (not ok, or holding NaN or inf, as 03 reads it) is zeros: nan_to_num alone
        # made an inf 3.4e38, and the probe's predictions overflowed ('metric inputs must be finite')
        blocks.append((name, np.where(usable_rows(emb, ok)[:, None], emb, np.float32(0.0))))
    return blocks


def correlate(train: pd.DataFrame, schema: str, work_dir: str | Path, runs=D.runs, *, top_k: int = D.top_k,
              n_permutations: int = D.n_permutations, n_folds: int = D.n_folds, knn_k: int = D.knn_k,
              knn_max_queries: int = D.knn_max_queries, baseline_features=D.baseline_features,
              baseline_runs=D.baseline_runs, seed: int = D.seed, fold_strategy: str = D.fold_strategy
              ) -> dict[str, dict]:
    """Analyse each named 01_extract run (all runs when `runs` is empty), every probe of every run in 03's folds
    (`probe_folds`: n_folds, seed, fold_strategy as 03's), each run on its rows; write tables and metrics.json."""
    schema_ = get_schema(schema)
    checked = PARAMETERS.validate(runs=runs, top_k=top_k, n_permutations=n_permutations, n_folds=n_folds,
                                  knn_k=knn_k, knn_max_queries=knn_max_queries, baseline_features=baseline_features,
                                  baseline_runs=baseline_runs, seed=seed, fold_strategy=fold_strategy)
    # "minilm" (or "tfidf") as one name, never letter by letter
    runs, baseline_runs, baseline_features = checked["runs"], checked["baseline_runs"], checked["baseline_features"]
    check_trainable(train[schema_.target].to_numpy(), n_folds, schema_.target)
    named = bool(runs)  # runs the user named must load; of the default (every run), a stale one is skipped
    runs = runs or sorted([*list_runs(work_dir, "01_extract"), *unfinished_runs(work_dir)])  # unfinished: said
    if not runs:
        raise FileNotFoundError(f"no 01_extract runs in {work_dir}: run 01_extract first")
    features = list(baseline_features)
    blocks = baseline_blocks(train, schema_.name, work_dir, features, list(baseline_runs))
    baseline = np.hstack([block for _, block in blocks]) if blocks else None
    out_dir = stage_dir(work_dir, "02_correlate")
    results, skipped = {}, {}
    target = train[schema_.target].to_numpy()
    groups = product_groups(train, schema_)
    folds, folds_info = probe_folds(work_dir, train, schema_, n_folds, seed, fold_strategy)
    print(f"02_correlate: every probe in 03's folds ({folds_info['from']}): {n_folds} {fold_strategy} folds, "
          f"seed {seed}; a run is scored on its rows that have the embedding (`rows used`)")
    for number, name in enumerate(runs, start=1):
        try:
            embeddings, ok = load_embeddings(work_dir, name, "train", train[schema_.id_column], frame=train,
                                             schema=schema_)
        except (ValueError, FileNotFoundError) as err:  # made for other rows (an older train.csv), or unfinished
            if named:
                raise
            skipped[name] = f"run {name!r} skipped: {err}; or name the runs to analyse with -p runs"
            print(f"02_correlate: {skipped[name]}")
            continue
        if too_few := too_few_rows(usable := usable_rows(embeddings, ok), n_folds, folds):
            skipped[name] = f"run {name!r} skipped: {too_few} ({unusable_reason(work_dir, name, ok, usable)})"
            print(f"02_correlate: {skipped[name]}")
            continue
        started = time.perf_counter()  # a run of 75k rows takes minutes: say which one the cell is on
        print(f"02_correlate: run {name!r} ({number}/{len(runs)}): {int(usable.sum()):,} rows x {embeddings.shape[1]} "
              "dims, null and probes ...", end=" ", flush=True)
        run_baseline = baseline
        if name in baseline_runs:  # a run of the baseline is judged against the rest: against itself it adds nothing
            others = [block for owner, block in blocks if owner != name]
            run_baseline = np.hstack(others) if others else None
        result = analyse_embedding(embeddings, ok, target, baseline=run_baseline, groups=groups, folds=folds,
                                   top_k=top_k, n_permutations=n_permutations, n_folds=n_folds, knn_k=knn_k,
                                   knn_max_queries=knn_max_queries, seed=seed)
        print(f"{time.perf_counter() - started:.0f} s", flush=True)
        if result["one_row_columns"]:
            print(one_row_warning(name, result["one_row_columns"], train[schema_.id_column]))
        result["baseline_runs"] = [run for run in baseline_runs if run != name]
        write_csv(pd.DataFrame({"dim": np.arange(result["dim"]), "corr": result["corr"],
                                "corr_log1p": result["corr_log1p"]}), out_dir / f"{name}_corr.csv")
        results[name] = result
    if not results:
        raise ValueError("02_correlate has no run to analyse: " + "; ".join(skipped.values()))
    write_json(out_dir / "metrics.json", {
        "runs": {n: _public(r) for n, r in results.items()}, "skipped": skipped,
        "table": summary_table(results, schema_.name).reset_index().to_dict(orient="records"),
        "roadmap_baselines": ROADMAP_BASELINES.get(schema_.name, {}),
        "baseline": {"features": features, "runs": list(baseline_runs)}, "folds": folds_info,
    })
    return results


def clear_outputs(work_dir: str | Path) -> list[str]:
    """Remove 02's files from an earlier run (its tables, plots, leak report, metrics.json), so what 02_correlate/
    holds after a rerun, or a failed one, is this run's only; returns their names."""
    folder = stage_dir(work_dir, "02_correlate")
    removed = sorted(path.name for path in folder.iterdir() if path.is_file()) if folder.is_dir() else []
    for name in removed:
        (folder / name).unlink()
    return removed


def _public(result: dict) -> dict:
    return {k: v for k, v in result.items() if not isinstance(v, np.ndarray)}


def summary_table(results: dict[str, dict], schema: str) -> pd.DataFrame:
    """One row per embedding (and the roadmap's baselines, for the edition they were measured on): the comparison
    table of 02_correlate."""
    rows = []
    for name, r in results.items():
        rows.append({"embedding": name, "dim": r["dim"], "rows used": r["rows_used"],
                     "rows left out": r["rows_excluded"],  # train rows without the embedding: in no score of it
                     "max |corr|": round(r["max_abs_corr"], 4), "roadmap verdict": r["roadmap_verdict"],
                     "max |corr| log1p": round(r["max_abs_corr_log1p"], 4),
                     "null p95 log1p": round(r["null_p95_log1p"], 4), "verdict (log1p vs null)": r["verdict"],
                     "constant SMAPE": round(r["constant_smape"], 2), "ridge SMAPE": round(r["ridge_smape"], 2),
                     "kNN SMAPE": round(r["knn_smape"], 2), "kNN rows": r["knn_rows"],
                     # the kNN probe scores at most knn_max_queries rows: the constant on those very rows
                     "constant SMAPE (kNN rows)": round(r["knn_constant_smape"], 2),
                     "added-value gain": round(r["added_value_gain"], 2) if "added_value_gain" in r else None,
                     **_gain_columns(r), "next step": r["next_step"]})
    rows += [{"embedding": n, "max |corr|": v, "roadmap verdict": verdict(v)[0]}
             for n, v in ROADMAP_BASELINES.get(schema, {}).items()]
    return pd.DataFrame(rows).set_index("embedding")


def _gain_columns(result: dict) -> dict:
    """The table's view of the gain tests: the deciding probe's mean per-fold gain, and the bars to clear."""
    name = deciding_probe(result)
    probe, added = result["gain_tests"][name], result["gain_tests"].get("added_value", {})
    return {"deciding probe": name, "probe gain (fold mean)": round(probe["mean"], 2),
            "probe bar": _rounded(probe["threshold"]), "added-value bar": _rounded(added.get("threshold"))}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
