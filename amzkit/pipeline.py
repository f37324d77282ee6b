"""What each notebook calls: set-up of folders and data, one runner per stage, the end-to-end demo."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from amzkit.io import on_kaggle, resolve_data_dir, resolve_work_dir, stage_dir, write_json
from amzkit.schema import Schema, get_schema

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NEEDS_DATA = {"01_extract", "02_correlate", "03_train", "05_submit"}


@dataclass
class Context:
    """A stage's resolved parameters, folders and (when it needs them) the checked train/test frames."""

    stage: str
    params: SimpleNamespace
    schema: Schema
    work_dir: Path
    data_dir: Path | None = None
    data: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def out_dir(self) -> Path:
        return stage_dir(self.work_dir, self.stage)


def setup(params: SimpleNamespace, stage: str) -> Context:
    """Resolve work_dir/data_dir ('auto' = Kaggle paths on Kaggle) and load the CSVs the stage needs."""
    from amzkit.extract import load_data

    work_dir = resolve_work_dir(params.work_dir)
    if on_kaggle():
        from amzkit.kaggle import attach_previous_outputs

        attach_previous_outputs(work_dir, stage)  # earlier kernels' outputs, mounted under /kaggle/input
    schema = get_schema(params.schema)
    ctx = Context(stage, params, schema, work_dir)
    needs_data = stage in NEEDS_DATA or (stage == "04_ensemble" and (params.calibrate_by or params.meta_features))
    if needs_data:
        ctx.data_dir = resolve_data_dir(params.data_dir, work_dir)
        ctx.data = load_data(ctx.data_dir, schema.name)
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    print(f"{stage}: work_dir={work_dir}" + (f" data_dir={ctx.data_dir}" if ctx.data_dir else ""))
    return ctx


def finish(ctx: Context) -> Path:
    """End of a notebook: drop the links to earlier kernels' outputs (Kaggle) and say where the results are."""
    if on_kaggle():
        from amzkit.kaggle import detach_previous_outputs

        detach_previous_outputs(ctx.work_dir)
    print(f"{ctx.stage} done: outputs in {ctx.out_dir}")
    return ctx.out_dir


def run_extract(ctx: Context) -> pd.DataFrame:
    """Embed both splits with the image model and the text model; one row per run."""
    from amzkit.extract import extract

    p = ctx.params
    manifests = {}
    for model in [m for m in (p.model, p.text_model) if m]:
        if p.merge_dirs:
            manifests[model] = merge_model(ctx, model, p.merge_dirs)
            continue
        manifests[model] = extract(ctx.data, ctx.data_dir, ctx.work_dir, ctx.schema.name, model,
                                   batch_size=p.batch_size, device=p.device, num_workers=p.num_workers,
                                   shard_index=p.shard_index, num_shards=p.num_shards)
    if p.num_shards > 1 and not p.merge_dirs:
        print(f"kernel {p.shard_index} of {p.num_shards} wrote its shards; when all have finished, run this "
              "notebook with -p merge_dirs '[<each kernel's work_dir>]' to join them")
        return pd.DataFrame(manifests).T
    table = pd.DataFrame({
        name: {"dim": m["dim"], "modality": m["modality"], "train ok": m["splits"]["train"]["ok"],
               "train rows": m["splits"]["train"]["rows"], "test ok": m["splits"]["test"]["ok"],
               "test rows": m["splits"]["test"]["rows"], "rows/s": m["rows_per_second"]}
        for name, m in manifests.items()}).T
    write_json(ctx.out_dir / "metrics.json", {"runs": list(manifests), "table": table.to_dict(orient="index")})
    return table


def merge_model(ctx: Context, model: str, merge_dirs: list[str]) -> dict:
    """Join the shards that several kernels wrote for `model` into this work folder's run."""
    from amzkit.extract import SPLITS, merge_shards
    from amzkit.models import get_model_spec

    spec = get_model_spec(model)
    sources = [stage_dir(resolve_work_dir(d), "01_extract") / spec.name for d in merge_dirs]
    ids = {split: ctx.data[split][ctx.schema.id_column] for split in SPLITS}
    return merge_shards(sources, stage_dir(ctx.work_dir, "01_extract") / spec.name, ids, spec)


def run_correlate(ctx: Context):
    """The roadmap's measure, its null and the probes for every requested run; returns (table, results)."""
    from amzkit.correlate import correlate, summary_table

    p = ctx.params
    results = correlate(ctx.data["train"], ctx.schema.name, ctx.work_dir, p.runs, top_k=p.top_k,
                        n_permutations=p.n_permutations, n_folds=p.n_folds, knn_k=p.knn_k,
                        knn_max_queries=p.knn_max_queries, baseline_features=p.baseline_features,
                        baseline_runs=p.baseline_runs, seed=p.seed)
    return summary_table(results), results


def run_leak_report(ctx: Context):
    """Train/test twins (name, text, image link, image hash from 01's cache); returns (report, summary) or None."""
    from amzkit.leaks import cached_image_paths, leak_report

    p = ctx.params
    if not p.leak_report:
        print("leak report skipped (leak_report=False)")
        return None
    paths = cached_image_paths(ctx.data, ctx.schema, ctx.data_dir, ctx.work_dir) if p.leak_image_hash else None
    started = time.perf_counter()
    report, summary = leak_report(ctx.data, ctx.schema, ctx.out_dir, paths, p.leak_text_threshold,
                                  p.leak_hash_distance, p.leak_max_hash_matches)
    print(f"{summary['with_twin']:,} of {summary['test_rows']:,} test rows ({summary['twin_share']:.1%}) have a train "
          f"twin: {summary['by_kind']} ({time.perf_counter() - started:.0f} s). Their prices are a feature in "
          "03_train: -p features '[..., \"twin_price\"]'")
    return report, summary


def plot_leaks(ctx: Context, leaks) -> None:
    """The leak report's plot (nothing when the report was skipped)."""
    from amzkit.leaks import plot_leak_report

    if leaks is not None:
        plot_leak_report(*leaks, ctx.out_dir / "leak_report.png")


def run_train(ctx: Context) -> dict:
    """Cross-validate one LightGBM run with the notebook's parameters; prints the CV line."""
    from amzkit.train import train_run

    p = ctx.params
    if p.learner != "lightgbm":
        from amzkit.learners import learner_run

        if p.tune_trials or p.pseudo_label_run:
            raise ValueError(f"tune_trials and pseudo_label_run apply to learner 'lightgbm', not {p.learner!r}")

        metrics = learner_run(ctx.data, ctx.schema.name, ctx.work_dir, p.run_name, learner=p.learner,
                              n_folds=p.n_folds, seed=p.seed, fold_strategy=p.fold_strategy, **p.learner_params)
        print(f"{p.run_name} ({p.learner}): CV SMAPE {metrics['cv_smape']:.3f}")
        return metrics
    preset = p.preset
    if p.tune_trials > 0:
        from amzkit.tune import tune_preset

        preset = f"tuned-{p.run_name}"
        tuned = tune_preset(ctx.data, ctx.schema.name, ctx.work_dir, preset, p.features, p.embeddings,
                            n_folds=p.n_folds, seed=p.seed, fold_strategy=p.fold_strategy, base_preset=p.preset,
                            n_trials=p.tune_trials, timeout_minutes=p.tune_minutes, num_threads=p.num_threads,
                            tfidf_dim=p.tfidf_dim, data_dir=ctx.data_dir)
        print(f"tuned preset {preset!r}: CV SMAPE {tuned['best_smape']:.3f} vs {tuned['base_smape']:.3f} with "
              f"{p.preset!r} ({tuned['n_trials']} trials, {tuned['n_pruned']} pruned); later runs can use "
              f"-p preset {preset}")
    metrics = train_run(ctx.data, ctx.schema.name, ctx.work_dir, p.run_name, p.features, p.embeddings,
                        n_folds=p.n_folds, seed=p.seed, fold_strategy=p.fold_strategy, preset=preset,
                        lgb_params=p.lgb_params, num_threads=p.num_threads, group_by=p.group_by,
                        tfidf_dim=p.tfidf_dim, data_dir=ctx.data_dir, pseudo_label_run=p.pseudo_label_run,
                        pseudo_label_fraction=p.pseudo_label_fraction, pseudo_label_weight=p.pseudo_label_weight)
    print(f"{p.run_name}: CV SMAPE {metrics['cv_smape']:.3f} (folds {metrics['fold_smape_mean']:.3f} "
          f"+- {metrics['fold_smape_std']:.3f}); constant median {metrics['constant_median_smape']:.3f}")
    if "pseudo_label" in metrics:
        info = metrics["pseudo_label"]
        print(f"pseudo-labels: {info['rows']:,} test rows from {info['source']!r} (weight {info['weight']}): "
              f"CV SMAPE {info['cv_smape_with']:.3f} with them vs {info['cv_smape_without']:.3f} without, in the "
              "same folds (pseudo rows never validate; fold f's labels come from the source's fold-f model)")
    return metrics


def plot_tuning(ctx: Context) -> None:
    """The Optuna history of this run's tuned preset (nothing when 03 did not tune)."""
    if ctx.params.tune_trials > 0:
        from amzkit.tune import plot_tuning

        plot_tuning(ctx.work_dir, f"tuned-{ctx.params.run_name}")


def run_ensemble(ctx: Context) -> dict:
    """Blend, stack and calibrate the 03 runs; the method with the best nested score feeds test_pred.csv."""
    from amzkit.ensemble import ensemble, ensemble_columns, summary_table

    p = ctx.params
    wanted = [c for c in [p.calibrate_by, *p.meta_features] if c]
    columns = ensemble_columns(ctx.data, ctx.schema.name, wanted) if wanted else None
    metrics = ensemble(ctx.work_dir, p.runs, method=p.method, meta=p.meta,
                       groups=columns[p.calibrate_by] if p.calibrate_by else None,
                       meta_features=columns[p.meta_features] if p.meta_features else None,
                       factor_range=(p.factor_min, p.factor_max), min_group_rows=p.min_group_rows)
    print(summary_table(metrics).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"chosen by nested score: {metrics['method']} -> test_pred.csv, CV SMAPE {metrics['cv_smape']:.3f}; "
          f"blend nested {metrics['blend_smape_nested']:.3f} (in-sample {metrics['blend_smape_in_sample']:.3f}); "
          f"best single run {metrics['best_single_run']} {metrics['best_single_smape']:.3f}")
    return metrics


def run_submit(ctx: Context) -> dict:
    from amzkit.submit import submit

    p = ctx.params
    metrics = submit(ctx.work_dir, ctx.data["test"], ctx.data["train"][ctx.schema.target].to_numpy(),
                     ctx.schema.name, p.source, p.file_name, p.solution_csv)
    print(f"valid submission: {metrics['path']} ({metrics['rows']} rows)")
    return metrics


# The demo: each notebook with its parameters, in order. 03 runs five times: text only, text + image groups
# and colour-stats, a ridge for diversity, pseudo-labels from the first run, and a short Optuna tuning.
_DEMO_TEXT = ["quantity", "text_stats", "keywords", "brand", "dimensions", "tfidf"]
DEMO_STEPS: tuple[tuple[str, dict], ...] = (
    ("01_extract", {"model": "color-stats", "text_model": "tfidf-svd"}),
    ("02_correlate", {}),
    ("03_train", {"run_name": "lgbm_text", "embeddings": []}),
    ("03_train", {"run_name": "lgbm_text_image", "embeddings": ["color-stats"],
                  "features": [*_DEMO_TEXT, "image_meta", "colour"]}),
    ("03_train", {"run_name": "ridge_tfidf", "learner": "ridge_tfidf"}),
    ("03_train", {"run_name": "lgbm_pseudo", "embeddings": [], "pseudo_label_run": "lgbm_text"}),
    ("03_train", {"run_name": "lgbm_tuned", "embeddings": [], "tune_trials": 3, "tune_minutes": 5.0}),
    ("04_ensemble", {}),
    ("05_submit", {"source": "04_ensemble"}),
)


def run_demo(out_dir: str | Path, n_train: int = 600, n_test: int = 200, seed: int = 0,
             extra_params: dict | None = None, log_output: bool = False) -> dict:
    """Generate the demo competition and run the five notebooks on it with papermill."""
    import papermill as pm

    from amzkit.demo import make_demo

    out_dir = Path(out_dir).resolve()
    files = make_demo(out_dir / "data", n_train=n_train, n_test=n_test, seed=seed)
    common = {"schema": "amazon2025", "data_dir": str(files.train_csv.parent), "work_dir": str(out_dir)}
    executed = out_dir / "notebooks"
    executed.mkdir(parents=True, exist_ok=True)
    for stage, step_params in DEMO_STEPS:
        params = {**common, **step_params, **(extra_params or {}).get(stage, {})}
        if stage == "05_submit":
            params["solution_csv"] = str(files.solution_csv)
        suffix = f"_{step_params['run_name']}" if "run_name" in step_params else ""
        started = time.perf_counter()
        pm.execute_notebook(str(NOTEBOOKS_DIR / f"{stage}.ipynb"), str(executed / f"{stage}{suffix}.ipynb"),
                            parameters=params, kernel_name="python3", progress_bar=False,
                            log_output=log_output, cwd=str(out_dir))
        print(f"  {stage}{suffix}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    from amzkit.io import read_json

    return read_json(stage_dir(out_dir, "05_submit") / "metrics.json")
