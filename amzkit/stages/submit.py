"""Stage 05: build, validate and atomically write the submission CSV; an invalid one is never written."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from amzkit.core.io import atomic_path, id_keys, read_csv, read_json, save_figure, show_ids, write_json
from amzkit.core.metric import METRICS, smape
from amzkit.core.params import Param, Parameters
from amzkit.core.schema import ID_TEXT, Schema, get_schema, load_split
from amzkit.core.workdir import check_name, stage_dir

SHOW_IDS = 5
ENSEMBLE_SOURCE = "04_ensemble"
NUMBER_TEXT = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*|\s*[+-]?(?:nan|NaN|inf|Infinity)\s*",
                         re.ASCII)  # what a CSV reader takes for a number: ASCII digits and spaces only


PARAMETERS = Parameters(
    Param("source", ENSEMBLE_SOURCE, "where the predictions come from: 04_ensemble or a 03_train run name",
          plain_name=True),
    Param("file_name", "submission.csv", "the submission's file name in 05_submit/ (a plain name)", plain_name=True),
    Param("solution_csv", "", "a CSV with the test prices, when known (the demo): scores the submission"),
)
D = PARAMETERS.defaults

class SubmissionError(ValueError):
    """A submission that the organisers would reject or score as garbage."""


def _ids(values) -> str:
    return show_ids(values, SHOW_IDS)


def _prices(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(prices as floats, mask of cells that are not numbers): text such as 'cheap' or 'True' and booleans are
    not numbers; an empty cell is NaN."""
    parsed = np.full(len(values), np.nan)
    not_number = np.zeros(len(values), dtype=bool)
    if pd.api.types.is_bool_dtype(values):
        return parsed, np.ones(len(values), dtype=bool)
    if pd.api.types.is_numeric_dtype(values):
        return values.to_numpy(dtype=float), not_number
    for i, value in enumerate(values.tolist()):
        if isinstance(value, bool | np.bool_):
            not_number[i] = True
        elif isinstance(value, int | float | np.integer | np.floating):
            parsed[i] = float(value)
        elif isinstance(value, str) and value.strip() != "":
            if NUMBER_TEXT.fullmatch(value):
                parsed[i] = float(value)
            else:
                not_number[i] = True
        elif value is not None and not isinstance(value, str):
            not_number[i] = True
    return parsed, not_number


def validate_submission(submission: pd.DataFrame, test_ids, schema: str | Schema) -> list[str]:
    """Every problem with `submission` against the test ids, as messages naming the first offenders.

    Ids are compared as written (integer text of any size), prices must be numbers: 'True' is not a price.
    """
    schema = get_schema(schema)
    id_col, value_col = schema.submission_columns
    problems = []
    if list(submission.columns) != [id_col, value_col]:
        return [f"columns must be exactly {[id_col, value_col]} in that order, found {list(submission.columns)}"]
    submission = submission.reset_index(drop=True)
    raw_ids = submission[id_col]
    if raw_ids.dtype.kind not in "iu":
        texts = raw_ids.map(lambda v: v if isinstance(v, str) else ("" if pd.isna(v) else repr(v)))
        bad = np.flatnonzero(~texts.str.strip().str.fullmatch(ID_TEXT.pattern).to_numpy())
        if bad.size:
            shown = ", ".join(repr(v) for v in raw_ids.to_numpy()[bad][:SHOW_IDS])
            return [f"{id_col} must hold integer ids like the test CSV; rows {show_ids(bad + 1)} (1 = first row "
                    f"after the header) hold [{shown}]"]
    ids = pd.Series(id_keys(raw_ids))
    duplicated = raw_ids[ids.duplicated()].unique()
    if len(duplicated):
        problems.append(f"{len(duplicated)} duplicate ids, first {_ids(duplicated)}")
    test_keys = id_keys(test_ids)
    expected = pd.Index(test_keys)
    missing = np.asarray(test_ids, dtype=object)[~expected.isin(ids)]
    if len(missing):
        problems.append(f"{len(missing)} test ids missing, first {_ids(missing)}")
    extra = raw_ids[~ids.isin(expected)].to_numpy()
    if len(extra):
        problems.append(f"{len(extra)} ids not in the test CSV, first {_ids(extra)}")
    array, not_numbers = _prices(submission[value_col])
    if not_numbers.any():
        problems.append(f"{value_col} holds non-numbers for ids {_ids(raw_ids[not_numbers])} (values "
                        f"{[submission[value_col][i] for i in np.flatnonzero(not_numbers)[:SHOW_IDS]]})")
    for label, mask in (("NaN", np.isnan(array) & ~not_numbers),
                        ("infinite", np.isinf(array)),
                        ("zero", array == 0),
                        ("negative", array < 0)):
        if mask.any():
            problems.append(f"{mask.sum()} {label} {value_col} values, ids {_ids(raw_ids[mask])}")
    if len(submission) != len(test_keys) and not problems:
        problems.append(f"{len(submission)} rows for {len(test_keys)} test ids")
    return problems


def write_submission(predictions: pd.DataFrame, test: pd.DataFrame, schema: str | Schema, path: str | Path
                     ) -> pd.DataFrame:
    """Submission in test-CSV row order from a frame with columns id, pred; validated, then written atomically.

    Ids are written exactly as the test CSV has them. The file is checked as written (after float formatting)
    before it replaces anything at `path`; returns it as read back (ids as text, prices as floats).
    """
    schema = get_schema(schema)
    id_col, value_col = schema.submission_columns
    test_ids = test[id_col].to_numpy()
    pred_keys = pd.Series(id_keys(predictions["id"]))
    test_keys = pd.Index(id_keys(test_ids))
    problems = []
    duplicated = predictions["id"][pred_keys.duplicated().to_numpy()].unique()
    if len(duplicated):
        problems.append(f"predictions hold {len(duplicated)} duplicate ids, first {_ids(duplicated)}")
    missing = test_ids[~test_keys.isin(pred_keys)]
    if len(missing):
        problems.append(f"missing predictions for {len(missing)} test ids, first {_ids(missing)}")
    extra = predictions["id"].to_numpy()[~pred_keys.isin(test_keys).to_numpy()]
    if len(extra):
        problems.append(f"{len(extra)} predicted ids are not in the test CSV, first {_ids(extra)}")
    if problems:
        raise SubmissionError("submission not written: " + "; ".join(problems))
    by_id = pd.Series(predictions["pred"].to_numpy(), index=pred_keys.to_numpy())
    submission = pd.DataFrame({id_col: test_ids, value_col: by_id.reindex(test_keys).to_numpy()})
    problems = validate_submission(submission, test_ids, schema)
    if problems:
        raise SubmissionError("submission not written: " + "; ".join(problems))
    with atomic_path(path) as tmp:
        submission.to_csv(tmp, index=False)
        written, problems = read_submission(tmp, schema)
        problems = problems or validate_submission(written, test_ids, schema)
        if problems:  # raising here leaves `path` untouched and removes the temp file
            raise SubmissionError("the file as written fails validation, not written: " + "; ".join(problems))
    return written.assign(**{value_col: _prices(written[value_col])[0]})


def read_submission(path: str | Path, schema: str | Schema) -> tuple[pd.DataFrame | None, list[str]]:
    """A submission file as text cells (ids exactly as written), or the problems that keep it from being read:
    missing, a folder, empty, not UTF-8, or rows whose number of fields differs from the header's."""
    path = Path(path)
    if path.is_dir():
        return None, [f"{path} is a folder, not a submission CSV"]
    if not path.is_file():
        return None, [f"{path} not found"]
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        kind = "UTF-16" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else "not UTF-8"
        return None, [f"{path} is {kind} text (byte {data[err.start:err.start + 1]!r} at offset {err.start}): "
                      "write it as UTF-8 CSV"]
    rows = [row for row in csv.reader(io.StringIO(text, newline="")) if row]  # CSV's line ends, not str's
    if not rows:
        return None, [f"{path} is empty: a submission needs the header {list(get_schema(schema).submission_columns)} "
                      "and one row per test id"]
    header, body = rows[0], rows[1:]
    ragged = [(number, len(row)) for number, row in enumerate(body, start=1) if len(row) != len(header)]
    if ragged:
        shown = ", ".join(f"row {number} has {count}" for number, count in ragged[:SHOW_IDS])
        return None, [f"{len(ragged)} rows do not have the header's {len(header)} fields ({shown}; 1 = first row "
                      "after the header): a trailing comma, a missing value or an unquoted comma"]
    return pd.DataFrame(body, columns=header, dtype=object), []


def validate_file(submission_csv: str | Path, test_csv: str | Path, schema: str | Schema) -> list[str]:
    """Check a submission file against a test CSV (the `python -m amzkit validate` command): every problem as a
    message, including a test CSV that cannot be read (never a traceback)."""
    try:
        test = load_split(test_csv, schema, "test")
    except (ValueError, OSError) as err:
        return [f"the test CSV cannot be checked against: {err}"]
    submission, problems = read_submission(submission_csv, schema)
    if problems:
        return problems
    return validate_submission(submission, test[get_schema(schema).id_column], schema)


def _run_folder(work_dir: str | Path, source: str) -> Path:
    """The folder of predictions `source` names: 04_ensemble, or a 03_train run (a plain name)."""
    if source == ENSEMBLE_SOURCE:
        return stage_dir(work_dir, ENSEMBLE_SOURCE)
    return stage_dir(work_dir, "03_train") / check_name(source, "source")


def source_predictions(work_dir: str | Path, source: str) -> pd.DataFrame:
    """Test predictions of '04_ensemble' or of a 03_train run (its name); ids as written."""
    path = _run_folder(work_dir, source) / "test_pred.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no predictions at {path}: run the stage that writes {source!r} first")
    return read_csv(path, "predictions", dtype={"id": str})


def source_cv(work_dir: str | Path, source: str) -> dict:
    return read_json(_run_folder(work_dir, source) / "metrics.json")


def submit(work_dir: str | Path, test: pd.DataFrame, train_target: np.ndarray, schema: str, source: str = D.source,
           file_name: str = D.file_name, solution_csv: str = D.solution_csv) -> dict:
    """Write the validated submission and its metrics; score it when a solution file is given (demo)."""
    schema_ = get_schema(schema)
    PARAMETERS.validate(source=source, file_name=file_name, solution_csv=solution_csv)
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
        solution = read_csv(solution_csv, "solution_csv", dtype={schema_.id_column: str})
        truth = pd.Series(solution[schema_.target].to_numpy(dtype=float), index=id_keys(solution[schema_.id_column])
                          ).reindex(id_keys(submission[schema_.id_column])).to_numpy()
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
