"""Stage 05: build, validate and atomically write the submission CSV; an invalid one is never written."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from amzkit.core.io import atomic_path, read_json, save_figure, write_json
from amzkit.core.metric import METRICS, smape
from amzkit.core.params import Param, Parameters
from amzkit.core.schema import Schema, get_schema, load_split
from amzkit.core.workdir import stage_dir

SHOW_IDS = 5


PARAMETERS = Parameters(
    Param("source", "04_ensemble", "where the predictions come from: 04_ensemble or a 03_train run name"),
    Param("file_name", "submission.csv", "the submission's file name in 05_submit/ (a plain name)"),
    Param("solution_csv", "", "a CSV with the test prices, when known (the demo): scores the submission"),
)
D = PARAMETERS.defaults

class SubmissionError(ValueError):
    """A submission that the organisers would reject or score as garbage."""


def _ids(values) -> list:
    return [v.item() if hasattr(v, "item") else v for v in list(values)[:SHOW_IDS]]


def validate_submission(submission: pd.DataFrame, test_ids, schema: str | Schema) -> list[str]:
    """Every problem with `submission` against the test ids, as messages naming the first offenders."""
    schema = get_schema(schema)
    id_col, value_col = schema.submission_columns
    problems = []
    if list(submission.columns) != [id_col, value_col]:
        return [f"columns must be exactly {[id_col, value_col]} in that order, found {list(submission.columns)}"]
    test_ids = pd.Series(np.asarray(test_ids))
    ids = submission[id_col]
    if ids.dtype.kind not in "iu":
        numeric = pd.to_numeric(ids, errors="coerce")
        if numeric.isna().any() or (numeric % 1 != 0).any():
            problems.append(f"{id_col} must hold integer ids like the test CSV; bad values {_ids(ids[numeric.isna()])}")
            return problems
        ids = numeric.astype("int64")
    duplicated = ids[ids.duplicated()].unique()
    if len(duplicated):
        problems.append(f"{len(duplicated)} duplicate ids, first {_ids(duplicated)}")
    missing = np.setdiff1d(test_ids.to_numpy(), ids.to_numpy())
    if len(missing):
        problems.append(f"{len(missing)} test ids missing, first {_ids(missing)}")
    extra = np.setdiff1d(ids.to_numpy(), test_ids.to_numpy())
    if len(extra):
        problems.append(f"{len(extra)} ids not in the test CSV, first {_ids(extra)}")
    values = pd.to_numeric(submission[value_col], errors="coerce")
    not_numbers = submission[value_col][values.isna() & submission[value_col].notna()]
    if len(not_numbers):
        problems.append(f"{value_col} holds non-numbers for ids {_ids(ids[not_numbers.index])}")
    array = values.to_numpy(dtype=float)
    for label, mask in (("NaN", np.isnan(array) & submission[value_col].isna().to_numpy()),
                        ("infinite", np.isinf(array)),
                        ("zero", array == 0),
                        ("negative", array < 0)):
        if mask.any():
            problems.append(f"{mask.sum()} {label} {value_col} values, ids {_ids(ids[mask])}")
    if len(submission) != len(test_ids) and not problems:
        problems.append(f"{len(submission)} rows for {len(test_ids)} test ids")
    return problems


def write_submission(predictions: pd.DataFrame, test: pd.DataFrame, schema: str | Schema, path: str | Path
                     ) -> pd.DataFrame:
    """Submission in test-CSV row order from a frame with columns id, pred; validated, then written atomically.

    The file is checked as written (after float formatting) before it replaces anything at `path`.
    """
    schema = get_schema(schema)
    id_col, value_col = schema.submission_columns
    test_ids = test[id_col].to_numpy()
    pred_ids = predictions["id"].to_numpy()
    problems = []
    duplicated = predictions["id"][predictions["id"].duplicated()].unique()
    if len(duplicated):
        problems.append(f"predictions hold {len(duplicated)} duplicate ids, first {_ids(duplicated)}")
    missing = np.setdiff1d(test_ids, pred_ids)
    if len(missing):
        problems.append(f"missing predictions for {len(missing)} test ids, first {_ids(missing)}")
    extra = np.setdiff1d(pred_ids, test_ids)
    if len(extra):
        problems.append(f"{len(extra)} predicted ids are not in the test CSV, first {_ids(extra)}")
    if problems:
        raise SubmissionError("submission not written: " + "; ".join(problems))
    by_id = predictions.set_index("id")["pred"]
    submission = pd.DataFrame({id_col: test_ids, value_col: by_id.reindex(test_ids).to_numpy()})
    problems = validate_submission(submission, test_ids, schema)
    if problems:
        raise SubmissionError("submission not written: " + "; ".join(problems))
    with atomic_path(path) as tmp:
        submission.to_csv(tmp, index=False)
        written = pd.read_csv(tmp)
        problems = validate_submission(written, test_ids, schema)
        if problems:  # raising here leaves `path` untouched and removes the temp file
            raise SubmissionError("the file as written fails validation, not written: " + "; ".join(problems))
    return written


def validate_file(submission_csv: str | Path, test_csv: str | Path, schema: str | Schema) -> list[str]:
    """Check a submission file against a test CSV (the `python -m amzkit validate` command)."""
    test = load_split(test_csv, schema, "test")
    submission = pd.read_csv(submission_csv)
    return validate_submission(submission, test[get_schema(schema).id_column], schema)


def source_predictions(work_dir: str | Path, source: str) -> pd.DataFrame:
    """Test predictions of '04_ensemble' or of a 03_train run ('03_train/<run>' or just '<run>')."""
    if source == "04_ensemble":
        path = stage_dir(work_dir, "04_ensemble") / "test_pred.csv"
    else:
        path = stage_dir(work_dir, "03_train") / source.removeprefix("03_train/") / "test_pred.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no predictions at {path}: run the stage that writes {source!r} first")
    return pd.read_csv(path)


def source_cv(work_dir: str | Path, source: str) -> dict:
    if source == "04_ensemble":
        return read_json(stage_dir(work_dir, "04_ensemble") / "metrics.json")
    return read_json(stage_dir(work_dir, "03_train") / source.removeprefix("03_train/") / "metrics.json")


def submit(work_dir: str | Path, test: pd.DataFrame, train_target: np.ndarray, schema: str, source: str = D.source,
           file_name: str = D.file_name, solution_csv: str = D.solution_csv) -> dict:
    """Write the validated submission and its metrics; score it when a solution file is given (demo)."""
    schema_ = get_schema(schema)
    out_dir = stage_dir(work_dir, "05_submit")
    path = out_dir / file_name
    submission = write_submission(source_predictions(work_dir, source), test, schema_, path)
    values = submission[schema_.target].to_numpy()
    low, high = float(np.min(train_target)), float(np.max(train_target))
    cv = source_cv(work_dir, source)
    metrics = {
        "path": str(path.resolve()), "rows": len(submission), "valid": True, "source": source,
        "cv_smape": cv["cv_smape"], "constant_median_smape": cv["constant_median_smape"],
        "prediction_min": float(values.min()), "prediction_median": float(np.median(values)),
        "prediction_max": float(values.max()),
        "outside_train_range": int(((values < low) | (values > high)).sum()),
    }
    if solution_csv:
        solution = pd.read_csv(solution_csv).set_index(schema_.id_column)[schema_.target]
        truth = solution.reindex(submission[schema_.id_column]).to_numpy()
        metrics["test_smape"] = smape(truth, values)
        for name in schema_.report_metrics:
            metrics[f"test_{name}"] = METRICS[name].fn(truth, values)
    write_json(out_dir / "metrics.json", metrics)
    return metrics


def plot_distribution(work_dir: str | Path, submission_path: str | Path, train_target: np.ndarray,
                      value_column: str):
    """Histogram of predictions against the train target, log scale; saved as PNG."""
    preds = pd.read_csv(submission_path)[value_column]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    bins = np.linspace(np.log1p(min(preds.min(), train_target.min())),
                       np.log1p(max(preds.max(), train_target.max())), 50)
    ax.hist(np.log1p(train_target), bins=bins, alpha=0.5, density=True, label="train target")
    ax.hist(np.log1p(preds), bins=bins, alpha=0.5, density=True, label="submission")
    ax.set(xlabel=f"log1p({value_column})", ylabel="density", title="predictions vs train target")
    ax.legend()
    save_figure(fig, stage_dir(work_dir, "05_submit") / "distribution.png")
    return fig
