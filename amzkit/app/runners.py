"""What the notebooks call, one style throughout: `runners.<step>(ctx)` for every step a notebook shows.

`setup` resolves the folders and loads the checked CSVs into a Context; each `run_*` does a stage's work and
prints its headline; each `show_*` / `plot_*` draws what a user looks at (saved as PNG in the stage folder
and shown inline); `finish` says where the outputs are. `run_demo` runs the five notebooks on the demo data.
"""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import papermill as pm

from amzkit.app.demo import DEMO_N_TEST, DEMO_N_TRAIN, DEMO_SEED, make_demo
from amzkit.app.kaggle_outputs import pack_image_cache, restore_image_cache, write_output_listing
from amzkit.app.kaggle_runtime import (
    attach_previous_outputs,
    detach_previous_outputs,
    find_data_dir,
    find_data_dirs,
    reads_data,
)
from amzkit.core.io import read_csv, read_json, remove_stale_temporaries, rows_sha256, write_json
from amzkit.core.metric import constant_level_warning, other_scores
from amzkit.core.progress import text_bars_in_started_kernels
from amzkit.core.schema import SPLITS, Schema, check_columns, get_schema, load_data
from amzkit.core.workdir import KAGGLE_INPUT, check_writable, on_kaggle, resolve_work_dir, stage_dir
from amzkit.embed.registry import LOCAL_DIR, LOCAL_DIR_TEXT, MODELS, get_model_spec
from amzkit.ml.diversity import ALIKE_CORRELATION
from amzkit.ml.folds import folds_of_other_rows
from amzkit.ml.runs import marked_rerun, runs_leaderboard
from amzkit.stages import correlate as correlate_stage
from amzkit.stages import ensemble as ensemble_stage
from amzkit.stages import ensemble_report
from amzkit.stages.correlate_plots import plot_correlations, plot_probes
from amzkit.stages.devices import extract_on_devices
from amzkit.stages.ensemble_inputs import ensemble_columns
from amzkit.stages.extract import kernel_rows, merge_kernels
from amzkit.stages.extract_reports import runs_table, status_table
from amzkit.stages.image_tables import merge_image_tables, write_image_tables
from amzkit.stages.leaderboard import LeaderboardError, pair_scores, show_leaderboard, write_scores
from amzkit.stages.leaks import cached_image_paths, leak_report, plot_leak_report
from amzkit.stages.submit import plot_distribution, submit
from amzkit.stages.train import build_learner, fold_fits_summary, train_run
from amzkit.stages.train_plots import plot_importance, plot_oof
from amzkit.stages.tune import check_tuning, plot_tuning, tune_preset, tuning_paths

NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"


def resolve_data_dir(data_dir: str, work_dir: Path, train_name: str = "train.csv",
                     schema: str | Schema | None = None) -> Path:
    """Find the folder holding train.csv and test.csv.

    'auto' probes /kaggle/input on Kaggle (given `schema`, the first folder whose CSVs have its columns, so
    another attached dataset's train.csv is passed over, and named); 'demo' builds the embedded demo under
    work_dir/data; anything else is a folder path (one whose CSVs lie further down is refused naming their folder).
    """
    if data_dir == "demo":
        return make_demo(work_dir / "data").train_csv.parent
    if data_dir == "auto":
        if not on_kaggle():
            raise ValueError(
                "data_dir='auto' only works on Kaggle (it probes /kaggle/input). Pass the folder that "
                "holds train.csv and test.csv with -p data_dir <folder>, or -p data_dir demo."
            )
        found = find_data_dirs(KAGGLE_INPUT, train_name=train_name) if schema is not None else []
        fitting = [folder for folder in found if _fits_schema(folder, train_name, get_schema(schema))]
        chosen = (fitting or found or [find_data_dir(KAGGLE_INPUT, train_name=train_name)])[0]
        others = [str(folder) for folder in found if folder != chosen]
        if others:
            print(f"data_dir auto: {chosen}" + ("" if fitting else f" (no folder's CSVs fit schema "
                  f"{get_schema(schema).name!r})") + f"; also found {', '.join(others)}: pass -p data_dir <folder> "
                  "to use another")
        return chosen
    folder = Path(data_dir).expanduser().resolve()
    if folder.is_file():
        raise NotADirectoryError(f"data_dir {folder} is a file: give the folder that holds train.csv and test.csv "
                                 f"(here {folder.parent})")
    if not folder.is_dir():
        under_input = any(folder.is_relative_to(root) for root in (KAGGLE_INPUT.absolute(), KAGGLE_INPUT.resolve()))
        found = find_data_dirs(KAGGLE_INPUT, train_name=train_name) if under_input else []
        raise FileNotFoundError(f"data_dir {folder} does not exist" + (  # Kaggle's mount layouts differ: name them
            f"; under {KAGGLE_INPUT} the folders holding {train_name} and test.csv are "
            f"{', '.join(map(str, found[:3]))}: pass one, or -p data_dir auto" if found else ""))
    if not (folder / train_name).exists() and (found := find_data_dirs(folder, train_name=train_name)):
        # e.g. the unzipped 2025 archive (or its Kaggle mount): the CSVs are in student_resource/dataset/
        raise FileNotFoundError(f"data_dir {folder} holds no {train_name}; folders below it hold {train_name} and "
                                f"test.csv: {', '.join(map(str, found[:3]))}. Pass -p data_dir {found[0]}")
    return folder


def _fits_schema(folder: Path, train_name: str, schema: Schema) -> bool:
    """True when the train and test CSVs in `folder` have the schema's columns (their headers alone are read)."""
    try:
        for name, split in ((train_name, "train"), ("test.csv", "test")):
            check_columns(list(read_csv(folder / name, nrows=0).columns), schema, split, str(folder / name))
    except (ValueError, OSError):
        return False
    return True


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


# Stages whose folder holds only what one run of theirs wrote: cleared as they start, so none of an earlier run's
# files (another data_dir's leak report, a run left out this time) sits beside this run's.
FRESH_OUTPUTS = {"02_correlate": correlate_stage.clear_outputs}


def setup(params: SimpleNamespace, stage: str) -> Context:
    """Resolve work_dir/data_dir ('auto' = Kaggle paths on Kaggle) and load the CSVs the stage needs."""
    work_dir = check_writable(resolve_work_dir(params.work_dir))
    if on_kaggle():
        attach_previous_outputs(work_dir, stage)  # earlier kernels' outputs, mounted under /kaggle/input
    schema = get_schema(params.schema)
    ctx = Context(stage, params, schema, work_dir)
    needs_data = reads_data(stage, vars(params))
    if needs_data:
        ctx.data_dir = resolve_data_dir(params.data_dir, work_dir, schema=schema)
        ctx.data = load_data(ctx.data_dir, schema.name)
    if stage in FRESH_OUTPUTS:
        FRESH_OUTPUTS[stage](work_dir)
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    pd.set_option("display.max_colwidth", 250)  # the notebooks' tables carry advice in words (02's next step)
    print(f"{stage}: work_dir={work_dir}" + (f" data_dir={ctx.data_dir}" if ctx.data_dir else ""))
    if not needs_data and getattr(params, "data_dir", "auto") != "auto":
        print(f"note: {stage} reads no CSV, so data_dir={params.data_dir} is not used"
              + (" (it is with calibrate_by or meta_features)" if stage == "04_ensemble" else ""))
    removed = remove_stale_temporaries(work_dir, recursive=True)
    if removed:
        print(f"removed {removed} temporary files a killed run left in {work_dir} (none was a finished file)")
    return ctx


def finish(ctx: Context) -> Path:
    """End of a notebook: say where the results are. On Kaggle, first drop the links to earlier kernels' outputs,
    pack 01's image cache into a few tar shards (later kernels read 01's image tables) and list every output
    file for `kaggle fetch` to check."""
    if on_kaggle():
        detach_previous_outputs(ctx.work_dir)
        if ctx.stage == "01_extract":
            shards = pack_image_cache(ctx.work_dir)
            if shards:
                print(f"image cache packed into {len(shards)} tar shards (later stages read 01_extract/image_tables)")
        write_output_listing(ctx.work_dir)
    print(f"{ctx.stage} done: outputs in {ctx.out_dir}")
    return ctx.out_dir


def run_extract(ctx: Context) -> pd.DataFrame:
    """Embed both splits with the image model and the text model; a row per finished run of the work folder."""
    p = ctx.params
    restored = restore_image_cache(ctx.work_dir)
    if restored:
        print(f"{restored:,} pictures unpacked from the image cache's tar shards (an earlier run of 01 packed them)")
    if not p.model and not p.text_model:
        raise ValueError("01_extract has nothing to extract: -p model and -p text_model are both empty; name an image "
                         "model (-p model) or a text model (-p text_model minilm)")
    for parameter, model, modality in (("model", p.model, "image"), ("text_model", p.text_model, "text")):
        if model and (spec := get_model_spec(model)).modality != modality:
            other = "text_model" if parameter == "model" else "model"
            article = "an" if spec.modality == "image" else "a"
            tower = (repr(f"{spec.name}-text") if f"{spec.name}-text" in MODELS else
                     f"'{LOCAL_DIR_TEXT}...' (a CLIP / SigLIP folder)" if model.startswith(LOCAL_DIR) else "")
            hint = f"; for its text tower, -p text_model {tower}" if parameter == "text_model" and tower else ""
            raise ValueError(f"-p {parameter} {model!r} is {article} {spec.modality} model and {parameter} takes "
                             f"{modality} models: pass it as -p {other} {model!r}{hint}")
    if refused := folds_of_other_rows(ctx.work_dir, ctx.data["train"], ctx.schema):  # say it before hours of work
        warnings.warn(f"03_train will refuse this train.csv in this work folder: {refused}. Stop and rerun 01 with a "
                      "new -p work_dir (copy image_cache/ into it to keep the pictures fetched)", stacklevel=2)
    manifests = {}
    for model in [m for m in (p.model, p.text_model) if m]:
        name = get_model_spec(model).name  # the run's folder (a local-dir: model's is its folder's name)
        if p.merge_dirs:
            manifests[name] = merge_kernels(ctx.data, ctx.work_dir, ctx.schema.name, model,
                                            [resolve_work_dir(d) for d in p.merge_dirs], p.images_offline_ok)
            continue
        # this kernel's rows (all, or its share of num_shards kernels'), on each of its devices (several GPUs) at once
        manifests[name] = extract_on_devices(ctx.data, ctx.data_dir, ctx.work_dir, ctx.schema.name, model,
                                              batch_size=p.batch_size, device=p.device, num_workers=p.num_workers,
                                              images_offline_ok=p.images_offline_ok, shard_index=p.shard_index,
                                              num_shards=p.num_shards)
    if p.model and get_model_spec(p.model).modality == "image":
        tables = write_run_image_tables(ctx)
        if tables is not None and p.num_shards > 1 and not p.merge_dirs:
            print(f"this kernel's rows of the image tables (meta, colour, hashes), for the merging run: {tables}")
        elif tables is not None:
            print(f"image tables (meta, colour, hashes) for 02 and 03: {tables}")
    if p.num_shards > 1 and not p.merge_dirs:
        print(f"kernel {p.shard_index} of {p.num_shards} wrote its shards; when all have finished, run this "
              "notebook with -p merge_dirs '[<each kernel's work_dir>]' to join them")
        return pd.DataFrame(manifests).T
    table = runs_table(ctx.work_dir, list(manifests))  # every finished run, not only this call's
    write_json(ctx.out_dir / "metrics.json", {"runs": table.index.tolist(), "this_call": list(manifests),
                                              "table": table.to_dict(orient="index")})
    for name, m in manifests.items():
        if m["modality"] == "image" and not any(split["ok"] for split in m["splits"].values()):
            print(f"WARNING: image run {name!r} has no image (0 of {sum(s['rows'] for s in m['splits'].values())} "
                  f"rows): 02 skips it and 03 cannot use it. Each link's status and error: "
                  f"{stage_dir(ctx.work_dir, '01_extract') / name}/train_fetch.csv")
    return table


def write_run_image_tables(ctx: Context) -> Path | None:
    """01's image tables, read by 02 and 03: from this kernel's pictures; for a kernel embedding its share of the
    rows, the part for those rows; for a merging run, the kernels' parts joined."""
    p = ctx.params
    if p.merge_dirs:
        return merge_image_tables(ctx.data, ctx.schema, [resolve_work_dir(d) for d in p.merge_dirs], ctx.work_dir)
    rows = None if p.num_shards == 1 else {
        split: kernel_rows(len(ctx.data[split]), p.shard_index, p.num_shards) for split in SPLITS}
    return write_image_tables(ctx.data, ctx.schema, ctx.data_dir, ctx.work_dir, rows=rows)


def show_models(ctx: Context) -> pd.DataFrame:
    """The registry rows of the models this run embeds with (-p model, -p text_model; a local-dir model's as read
    from its folder): how each loads, input size, width, parameters, licence. amzkit.registry_table() has them all."""
    p = ctx.params
    specs = {parameter: get_model_spec(model) for parameter, model in (("model", p.model), ("text_model", p.text_model))
             if model}
    rows = [{**asdict(spec), "parameter": parameter} for parameter, spec in specs.items()]
    return pd.DataFrame(rows).set_index("name") if rows else pd.DataFrame()  # none: run_extract says what to pass


def show_fetch_status(ctx: Context) -> pd.DataFrame | None:
    """Fetch statuses per split of the image run (a shard kernel's: of its shards); None (nothing shown) for a
    text-only run."""
    p = ctx.params
    if not p.model:
        print("no image model (-p model ''): no pictures were fetched")
        return None
    kernel = (p.shard_index, p.num_shards) if p.num_shards > 1 and not p.merge_dirs else None
    return status_table(ctx.work_dir, get_model_spec(p.model).name, kernel=kernel)


def run_correlate(ctx: Context):
    """The roadmap's measure, its null and the probes for every requested run; returns (table, results)."""
    p = ctx.params
    results = correlate_stage.correlate(ctx.data["train"], ctx.schema.name, ctx.work_dir, p.runs, top_k=p.top_k,
                        n_permutations=p.n_permutations, n_folds=p.n_folds, knn_k=p.knn_k,
                        knn_max_queries=p.knn_max_queries, baseline_features=p.baseline_features,
                        baseline_runs=p.baseline_runs, seed=p.seed,
                        fold_strategy=p.fold_strategy)
    return correlate_stage.summary_table(results, ctx.schema.name), results


def plot_correlation_histograms(ctx: Context, results: dict):
    """|corr| per dimension against the permutation null and the roadmap's thresholds, one panel per run."""
    return plot_correlations(results, ctx.out_dir / "correlation_hist.png")


def plot_probe_scores(ctx: Context, results: dict):
    """Probe SMAPE per run against the constant median, and the best run's predictions against the truth."""
    return plot_probes(results, ctx.out_dir / "probes.png")


def run_leak_report(ctx: Context):
    """Train/test twins (name, text, image link, image hash from 01's cache); returns (report, summary) or None."""
    p = ctx.params
    if not p.leak_report:
        print("leak report skipped (leak_report=False)")
        return None
    paths = cached_image_paths(ctx.data, ctx.schema, ctx.data_dir, ctx.work_dir) if p.leak_image_hash else None
    started = time.perf_counter()
    report, summary = leak_report(ctx.data, ctx.schema, ctx.out_dir, paths, p.leak_text_threshold,
                                  p.leak_hash_distance, p.leak_max_hash_matches)
    print(f"{summary['with_twin']:,} of {summary['test_rows']:,} test rows ({summary['twin_share']:.1%}) have a train "
          f"twin: {summary['by_kind']} ({time.perf_counter() - started:.0f} s)"
          + (". Their prices can be a feature in 03_train: -p features '[..., \"twin_price\"]'; keep it only if the "
             "runs table shows a gain (on the real 2025 dev rows, few twins, it cost 0.5 SMAPE)"
             if summary["with_twin"] else ""))
    if not summary["image_hashes"]:
        why = "leak_image_hash=False" if not p.leak_image_hash else \
            "the schema has no images" if summary["image_hashed_rows"] is None else \
            "01 cached no picture for a split (no image model, or its pictures were not fetched)"
        print(f"image hashes not compared ({why}): image_hash 0 says nothing about twin pictures")
    return report, summary


def plot_leaks(ctx: Context, leaks) -> None:
    """The leak report's plot (nothing when the report was skipped)."""
    if leaks is not None:
        plot_leak_report(*leaks, ctx.out_dir / "leak_report.png")


def run_train(ctx: Context) -> dict:
    """Cross-validate one run of the notebook's learner (tuning its preset first when asked); prints the CV line."""
    p = ctx.params
    preset, marked = p.preset, False
    if p.tune_trials > 0:
        # the run's learner, built first: a misspelt learner_params key stops here, not after the tuning budget
        build_learner(p.learner, p.learner_params, features=p.features, embeddings=p.embeddings,
                      tfidf_dim=p.tfidf_dim, group_by=p.group_by, num_threads=p.num_threads, preset=p.preset,
                      lgb_params=p.lgb_params)
        fixed, own = check_tuning(p.learner, p.learner_params, p.lgb_params)
        preset = f"tuned-{p.run_name}"
        with marked_rerun(ctx.work_dir, p.run_name) as marked:  # killed in the tuning, the old run is named by 04, 05
            tuned = tune_preset(ctx.data, ctx.schema.name, ctx.work_dir, preset, p.features, p.embeddings,
                                n_folds=p.n_folds, seed=p.seed, fold_strategy=p.fold_strategy, base_preset=p.preset,
                                n_trials=p.tune_trials, timeout_minutes=p.tune_minutes, num_threads=p.num_threads,
                                tfidf_dim=p.tfidf_dim, data_dir=ctx.data_dir, lgb_params=fixed, group_by=p.group_by,
                                learner_settings=own, total_trials=True)
        without = "; tuned without the pseudo-labels the run adds" if p.pseudo_label_run else ""
        earlier = "" if tuned["n_new"] else (
            f"; no trial run again: the study already has its tune_trials {p.tune_trials}, or ran its "
            f"tune_minutes {p.tune_minutes:g} to the end (a larger tune_trials or tune_minutes tunes on)")
        print(f"tuned preset {preset!r}: CV SMAPE {tuned['best_smape']:.3f} vs {tuned['base_smape']:.3f} with "
              f"{p.preset!r} ({tuned['n_trials']} trials, {tuned['n_pruned']} pruned; chosen on these folds, so "
              f"the gain is a little optimistic{without}{earlier}); later runs can use -p preset {preset}")
    metrics = train_run(ctx.data, ctx.schema.name, ctx.work_dir, p.run_name, p.features, p.embeddings,
                        learner=p.learner, learner_params=p.learner_params, preset=preset, lgb_params=p.lgb_params,
                        n_folds=p.n_folds, seed=p.seed, fold_strategy=p.fold_strategy, num_threads=p.num_threads,
                        group_by=p.group_by, tfidf_dim=p.tfidf_dim, data_dir=ctx.data_dir,
                        pseudo_label_run=p.pseudo_label_run, pseudo_label_fraction=p.pseudo_label_fraction,
                        pseudo_label_weight=p.pseudo_label_weight, rerun_marked=marked)
    print(f"{p.run_name} ({p.learner}): CV SMAPE {metrics['cv_smape']:.3f} (folds {metrics['fold_smape_mean']:.3f} "
          f"+- {metrics['fold_smape_std']:.3f}); constant median {metrics['constant_median_smape']:.3f}"
          + other_scores(metrics, ctx.schema.report_metrics, "cv_", "CV"))
    if metrics.get("cv_optimistic"):
        print(f"note: {metrics['cv_optimistic']}")
    fits = fold_fits_summary(metrics)
    if fits:
        print(fits)
    if warning := constant_level_warning(metrics["cv_smape"], metrics["constant_median_smape"],
                                         f"run {p.run_name!r}"):
        print(warning)
    if "pseudo_label" in metrics:
        info = metrics["pseudo_label"]
        print(f"pseudo-labels: {info['rows']:,} test rows from {info['source']!r} (weight {info['weight']}): "
              f"CV SMAPE {info['cv_smape_with']:.3f} with them vs {info['cv_smape_without']:.3f} without, in the "
              "same folds (pseudo rows never validate; fold f's labels come from the source's fold-f model)")
    return metrics


def plot_tuning_history(ctx: Context) -> None:
    """The Optuna history of this run's tuned preset (nothing when 03 did not tune)."""
    if ctx.params.tune_trials > 0:
        plot_tuning(ctx.work_dir, f"tuned-{ctx.params.run_name}")


def plot_feature_importance(ctx: Context):
    """The run's top features by gain (learners without importance say so)."""
    return plot_importance(ctx.work_dir, ctx.params.run_name)


def plot_predictions(ctx: Context):
    """Out-of-fold predictions against the truth, log axes."""
    return plot_oof(ctx.work_dir, ctx.params.run_name)


def show_runs(ctx: Context) -> pd.DataFrame:
    """Every run of this work folder, best CV SMAPE first."""
    return runs_leaderboard(ctx.work_dir)


def run_ensemble(ctx: Context) -> dict:
    """Blend, stack and calibrate the 03 runs; the method with the best nested score feeds test_pred.csv."""
    p = ctx.params
    ensemble_stage.unmark_finished(ctx.work_dir)  # before any check here can fail (a column refused by name)
    wanted = [c for c in [p.calibrate_by, *p.meta_features] if c]
    columns = ensemble_columns(ctx.data, ctx.schema.name, wanted) if wanted else None
    metrics = ensemble_stage.ensemble(ctx.work_dir, p.runs, method=p.method, meta=p.meta,
                       groups=columns[p.calibrate_by] if p.calibrate_by else None,
                       meta_features=columns[p.meta_features] if p.meta_features else None,
                       factor_range=(p.factor_min, p.factor_max), min_group_rows=p.min_group_rows,
                       columns_rows_sha256={split: rows_sha256(frame, ctx.schema.id_column)
                                            for split, frame in ctx.data.items()} if wanted else None)
    print(ensemble_report.summary_table(metrics).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    nested = metrics["method_smape_nested"]
    lowest = min(nested, key=nested.get)  # what "best" would send: a method asked for by name may not be it
    how = (f"chosen by nested score: {metrics['method']}" if metrics["method_requested"] == "best" else
           f"{metrics['method']} as asked (-p method" + (f"; the lowest nested is {lowest} {nested[lowest]:.3f})"
                                                        if lowest != metrics["method"] else ")"))
    scores = ("each fold by the method that won on the other folds, so the choosing is scored too"
              if metrics["method_requested"] == "best" else metrics["cv_scores"])
    print(f"{how} -> test_pred.csv, CV SMAPE {metrics['cv_smape']:.3f} ({scores}); "
          f"blend nested {metrics['blend_smape_nested']:.3f} (in-sample {metrics['blend_smape_in_sample']:.3f}); "
          f"best single run {metrics['best_single_run']} {metrics['best_single_smape']:.3f}"
          + other_scores(metrics, get_schema(metrics.get("schema") or ctx.schema.name).report_metrics, "cv_", "CV"))
    if note := ensemble_report.choice_note(metrics):
        print(note)
    for name, why in metrics.get("optimistic_runs", {}).items():
        print(f"note: run {name!r}: {why}")
    if metrics["alike_runs"]:
        print(f"runs whose OOF errors correlate >= {ALIKE_CORRELATION} (one of each pair adds little to the blend): "
              + "; ".join(f"{a} ~ {b} {pair['error_correlation']:.3f}"
                          for pair in metrics["alike_runs"] for a, b in [pair["runs"]]))
    return metrics


def plot_blend(ctx: Context, metrics: dict):
    """Each method's nested and in-sample SMAPE against the best single run, and the blend weights."""
    return ensemble_report.plot_ensemble(ctx.work_dir, metrics)


def run_submit(ctx: Context) -> dict:
    """Record the `lb_scores` given (earlier submissions' LB scores, each paired with the CV of the submission
    its run last made: before this one is logged), then write and validate the submission from `source`
    (04_ensemble or a 03 run), in the test CSV's row order."""
    p = ctx.params
    try:
        pairs, refused = pair_scores(ctx.work_dir, p.lb_scores) if p.lb_scores else ([], [])  # before it is logged
    except LeaderboardError as err:  # leaderboard.csv itself unreadable (edited by hand): never worth the submission
        pairs, refused = [], [f"{', '.join(map(str, p.lb_scores))}: {err}"]
    recorded = ""
    if pairs:  # written before the submission, which may fail: the scores of earlier ones are never lost with it
        try:
            added = write_scores(ctx.work_dir, pairs, note="05_submit lb_scores")
            recorded = f"recorded {len(added)} new LB score(s) of earlier submissions"
        except LeaderboardError as err:  # e.g. a log of another metric
            refused.append(str(err))
    metrics = submit(ctx.work_dir, ctx.data["test"], ctx.data["train"][ctx.schema.target].to_numpy(),
                     ctx.schema.name, p.source, p.file_name, p.solution_csv, train=ctx.data["train"])
    print(f"valid submission: {metrics['path']} ({metrics['rows']} rows)")
    if recorded:
        print(recorded)
    if refused:  # a typo in a score must not cost the submission, its plot, nor (on Kaggle) the outputs' listing
        metrics["lb_scores_refused"] = refused
        warnings.warn("lb_scores not recorded (the submission above was written): " + "; ".join(refused)
                      + ". Fix them and rerun 05, or add each with `python -m amzkit lb add`", stacklevel=2)
    return metrics


def plot_submission(ctx: Context, metrics: dict):
    """The submitted prices' distribution against the source's out-of-fold predictions and the train target."""
    return plot_distribution(ctx.work_dir, metrics["path"], ctx.data["train"][ctx.schema.target].to_numpy(),
                             ctx.schema.target, source=metrics["source"])


def show_cv_vs_lb(ctx: Context):
    """The CV-vs-LB table, its verdict and plot (nothing before any score; run_submit recorded `lb_scores`); a
    leaderboard.csv that cannot be read is a warning (the submission is written, and on Kaggle the outputs'
    listing comes after this cell)."""
    try:
        return show_leaderboard(ctx.work_dir)
    except LeaderboardError as err:
        warnings.warn(f"the CV-vs-LB table is not shown: {err}", stacklevel=2)
        return None


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


def reset_demo_tuning(out_dir: str | Path) -> list[str]:
    """Remove what the demo's tuned runs tuned before: an Optuna study continues where it stopped, so each
    rerun of the demo added 3 trials and printed other numbers (34.57, then 34.28 after three runs)."""
    removed = []
    for _, step in DEMO_STEPS:
        if step.get("tune_trials"):
            for path in tuning_paths(out_dir, f"tuned-{step['run_name']}").values():
                if path.is_file():
                    path.unlink()
                    removed.append(path.name)
    return removed


def run_demo(out_dir: str | Path, n_train: int = DEMO_N_TRAIN, n_test: int = DEMO_N_TEST, seed: int = DEMO_SEED,
             extra_params: dict | None = None, log_output: bool = False) -> dict:
    """Generate the demo competition and run the five notebooks on it with papermill."""

    out_dir = Path(out_dir).resolve()
    files = make_demo(out_dir / "data", n_train=n_train, n_test=n_test, seed=seed)
    reset_demo_tuning(out_dir)
    common = {"schema": "amazon2025", "data_dir": str(files.train_csv.parent), "work_dir": str(out_dir)}
    executed = out_dir / "notebooks"
    executed.mkdir(parents=True, exist_ok=True)
    for stage, step_params in DEMO_STEPS:
        params = {**common, **step_params, **(extra_params or {}).get(stage, {})}
        if stage == "05_submit":
            params["solution_csv"] = str(files.solution_csv)
        suffix = f"_{step_params['run_name']}" if "run_name" in step_params else ""
        started = time.perf_counter()
        with text_bars_in_started_kernels():  # nobody watches these kernels' widgets
            pm.execute_notebook(str(NOTEBOOKS_DIR / f"{stage}.ipynb"), str(executed / f"{stage}{suffix}.ipynb"),
                                parameters=params, kernel_name="python3", progress_bar=False,
                                log_output=log_output, cwd=str(out_dir))
        print(f"  {stage}{suffix}: {time.perf_counter() - started:.1f} s", file=sys.stderr)

    return read_json(stage_dir(out_dir, "05_submit") / "metrics.json")
