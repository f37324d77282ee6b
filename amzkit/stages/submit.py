"""Stage 05: build, validate and atomically write the submission CSV; an invalid one is never written."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from amzkit.core.io import (
    atomic_path,
    id_keys,
    read_csv,
    save_figure,
    show_ids,
    unreadable,
    write_json,
)
from amzkit.core.metric import METRICS, constant_level_warning, other_scores, smape
from amzkit.core.params import Param, Parameters
from amzkit.core.schema import ID_TEXT, Schema, column_fix, get_schema, load_split
from amzkit.core.workdir import stage_dir
from amzkit.stages.leaderboard import log_submission, submissions_path
from amzkit.stages.submit_sources import (
    ENSEMBLE_SOURCE,
    SubmissionError,
    check_made_for,
    source_cv,
    source_folder,
    source_predictions,
)

SHOW_IDS = 5
FAR_OUTSIDE = 10.0  # a prediction this many times beyond the training targets' range is named in a warning
NUMBER_TEXT = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*|\s*[+-]?(?:nan|NaN|inf|Infinity)\s*",
                         re.ASCII)  # what a CSV reader takes for a number: ASCII digits and spaces only


PARAMETERS = Parameters(
    Param("source", ENSEMBLE_SOURCE, "where the predictions come from: 04_ensemble or a 03_train run name",
          plain_name=True),
    Param("file_name", "submission.csv", "the submission's file name in 05_submit/ (a plain name)", plain_name=True),
    Param("solution_csv", "", "a CSV with the test prices, when known (the demo): scores the submission"),
)
D = PARAMETERS.defaults

def _ids(values) -> str:
    return show_ids(values, SHOW_IDS)


def _rows_without_id(ids) -> np.ndarray:
    """Positions of the missing ids (None, NaN, pd.NA: the gaps of an Int64 or float id column)."""
    return np.flatnonzero(pd.isna(np.asarray(ids, dtype=object)))


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
        columns = [str(c) for c in submission.columns]
        fix = column_fix(columns, (id_col, value_col), [c for c in (id_col, value_col) if c not in columns])
        return [f"columns must be exactly {[id_col, value_col]} in that order, found {columns}"
                + (f": {fix}" if fix else "")]
    submission = submission.reset_index(drop=True)
    raw_ids = submission[id_col]
    absent = _rows_without_id(raw_ids)
    if absent.size:  # else an Int64 column's gaps read as an id 'nan' that the test CSV lacks
        return [f"{id_col} is missing in {absent.size} rows: rows {show_ids(absent + 1)} (1 = first row after the "
                "header) have no id; every row needs its test id: fill them in, or drop those rows"]
    if raw_ids.dtype.kind not in "iu":  # numpy scalars as Python's: numpy 2 writes np.int64(7) for repr(7)
        plain = [v.item() if isinstance(v, np.generic) else v for v in raw_ids.tolist()]
        texts = pd.Series([v if isinstance(v, str) else ("" if pd.isna(v) else repr(v)) for v in plain], dtype=object)
        bad = np.flatnonzero(~texts.str.strip().str.fullmatch(ID_TEXT.pattern).to_numpy())
        if bad.size:
            shown = ", ".join(repr(plain[i]) for i in bad[:SHOW_IDS])
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
                        ("zero", (array == 0) & (not schema.zero_predictions)),  # 2025: positive floats
                        ("negative", array < 0)):
        if mask.any():
            problems.append(f"{mask.sum()} {label} {value_col} values, ids {_ids(raw_ids[mask])}")
    if len(submission) != len(test_keys) and not problems:
        problems.append(f"{len(submission)} rows for {len(test_keys)} test ids")
    return problems


def _prediction_id_problems(predictions: pd.DataFrame, test_ids: np.ndarray) -> tuple[list[str], bool]:
    """Problems of the predictions' ids against the test ids, and whether the two sets of ids differ."""
    absent = _rows_without_id(predictions["id"])
    if absent.size:
        return [f"column 'id' of the predictions is empty (NaN) in {absent.size} rows: rows {show_ids(absent + 1)} "
                "(1 = first row) have no id; give every prediction the id of its test row"], False
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
    return problems, bool(len(missing) or len(extra))


def write_submission(predictions: pd.DataFrame, test: pd.DataFrame, schema: str | Schema, path: str | Path
                     ) -> pd.DataFrame:
    """Submission in test-CSV row order from a frame with columns id, pred; validated, then written atomically.

    Ids are written exactly as the test CSV has them. The file is checked as written (after float formatting)
    before it replaces anything at `path`; returns it as read back (ids as text, prices as floats).
    """
    schema = get_schema(schema)
    id_col, value_col = schema.submission_columns
    test_ids = test[id_col].to_numpy()
    problems, _ = _prediction_id_problems(predictions, test_ids)
    if problems:
        raise SubmissionError("submission not written: " + "; ".join(problems))
    pred_keys, test_keys = id_keys(predictions["id"]), pd.Index(id_keys(test_ids))
    by_id = pd.Series(predictions["pred"].to_numpy(), index=pred_keys)
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
    missing, a folder, not readable, empty, not UTF-8, or rows whose number of fields differs from the header's."""
    path = Path(path)
    if path.is_dir():
        return None, [f"{path} is a folder, not a submission CSV"]
    if not path.is_file():
        return None, [f"{path} not found"]
    try:
        data = path.read_bytes()
    except PermissionError:
        return None, [unreadable(path, "submission CSV")]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        kind = "UTF-16" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else "not UTF-8"
        return None, [f"{path} is {kind} text (byte {data[err.start:err.start + 1]!r} at offset {err.start}): "
                      "write it as UTF-8 CSV"]
    rows, problem = _csv_rows(text, path)
    if problem:
        return None, [problem]
    if not rows:
        return None, [f"{path} is empty: a submission needs the header {list(get_schema(schema).submission_columns)} "
                      "and one row per test id"]
    header, body = rows[0], rows[1:]
    expected = get_schema(schema).submission_columns
    if fix := column_fix(header, expected, [c for c in expected if c not in header]):  # e.g. ';' with 10,5 prices
        return None, [f"columns must be exactly {list(expected)} in that order, found {header}: {fix}"]
    ragged = [(number, len(row)) for number, row in enumerate(body, start=1) if len(row) != len(header)]
    if ragged:
        shown = ", ".join(f"row {number} has {count}" for number, count in ragged[:SHOW_IDS])
        return None, [f"{len(ragged)} rows do not have the header's {len(header)} fields ({shown}; 1 = first row "
                      "after the header): a trailing comma, a missing value or an unquoted comma"]
    return pd.DataFrame(body, columns=header, dtype=object), []


def _csv_rows(text: str, path: Path) -> tuple[list[list[str]], str]:
    """The non-empty rows of a CSV text (CSV's line ends, not str's), or the problem that stops reading it: a quote
    never closed (it swallows the rest of the file) or text after a closing quote."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows, start = [], 1
    try:
        for row in reader:
            if row:
                rows.append(row)
            start = reader.line_num + 1
    except csv.Error as err:
        return [], (f"{path} cannot be read as CSV at the row starting on line {start} ({err}): a quote (\") opened "
                    "there is never closed, or text follows a closing quote; a submission needs no quotes: write "
                    "each id and price as plain text")
    return rows, ""


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


def read_solution(solution_csv: str | Path, test_ids, schema: str | Schema) -> tuple[np.ndarray, dict]:
    """The true prices of the test rows (NaN where the solution has no row) and what it covers.

    A solution may hold only some of the test ids (those are scored, and the count says so); its ids not in the
    test CSV are ignored and counted. A solution with none of the test ids, duplicate or non-integer ids, missing
    columns or prices that are not finite non-negative numbers is refused by name.
    """
    schema = get_schema(schema)
    id_col, target = schema.id_column, schema.target
    path = Path(solution_csv)
    solution = read_csv(path, "solution_csv", dtype=str, keep_default_na=False)
    columns = [str(c) for c in solution.columns]
    if id_col not in columns or target not in columns:
        alike = [c for c in columns if c.strip().lower() in (id_col, target) and c not in (id_col, target)]
        hint = f" (mind case and spaces: {', '.join(map(repr, alike))})" if alike else ""
        raise ValueError(f"solution_csv {path} has columns {columns}{hint}; it needs {id_col!r} and {target!r} "
                         f"(the test ids and their true prices): rename its columns or give the right file")
    ids = solution[id_col].str.strip()
    bad = np.flatnonzero(~ids.str.fullmatch(ID_TEXT.pattern).to_numpy())
    if bad.size:
        raise ValueError(f"solution_csv {path}: column {id_col} must hold integer ids; rows {show_ids(bad + 1)} "
                         f"(1 = first row after the header) hold {show_ids(ids.to_numpy()[bad])}: fix those rows")
    keys = pd.Series(id_keys(ids.to_numpy(dtype=object)))
    duplicated = ids[keys.duplicated().to_numpy()].unique()
    if len(duplicated):
        raise ValueError(f"solution_csv {path}: {len(duplicated)} duplicate ids, first {_ids(duplicated)}: keep "
                         "one row per id")
    prices, not_numbers = _prices(solution[target])
    bad = not_numbers | ~np.isfinite(prices) | (prices < 0)
    if bad.any():
        raise ValueError(f"solution_csv {path}: {bad.sum()} rows have no usable {target} (empty, not a number, "
                         f"infinite or negative), ids {_ids(ids[bad])}: fix them, or drop those rows (a test id "
                         "the solution lacks is left out of the score)")
    test_ids = np.asarray(test_ids, dtype=object)
    test_keys = pd.Index(id_keys(test_ids))
    truth = pd.Series(prices, index=keys.to_numpy()).reindex(test_keys).to_numpy()
    covered = ~np.isnan(truth)
    extra = ids[~keys.isin(test_keys)].to_numpy()
    if not covered.any():
        raise ValueError(f"solution_csv {path} holds none of the {len(test_ids)} test ids (test ids start "
                         f"{_ids(test_ids)}, solution ids start {_ids(ids)}): it is the solution of another test "
                         "CSV; give the one for this test CSV, or leave solution_csv empty")
    info = {"solution_csv": str(path.resolve()), "test_scored_rows": int(covered.sum()),
            "solution_lacks_ids": int((~covered).sum()),
            "solution_lacks_first": [str(v) for v in test_ids[~covered][:SHOW_IDS]],
            "solution_extra_ids": len(extra), "solution_extra_first": [str(v) for v in extra[:SHOW_IDS]]}
    return truth, info


def _scored_line(path: str, smape_value: float, rows: int, info: dict) -> str:
    """One line: the score against the solution, and on how many test ids when it covers only some."""
    scored = info["test_scored_rows"]
    line = f"test SMAPE against {path}: {smape_value:.3f}"
    if info["solution_lacks_ids"]:
        line += (f" on {scored} of {rows} test ids only (the solution lacks {info['solution_lacks_ids']}, first "
                 f"{_ids(info['solution_lacks_first'])}): the score of that subset, not of the whole test CSV")
    else:
        line += f" on all {rows} test ids"
    if info["solution_extra_ids"]:
        line += (f"; {info['solution_extra_ids']} solution ids not in the test CSV were ignored, first "
                 f"{_ids(info['solution_extra_first'])}")
    return line


def _remove_outputs(out_dir: Path, path: Path) -> list[str]:
    """Remove 05's previous submission at `path`, its metrics.json and distribution.png; the names removed."""
    removed = []
    for old in (path, out_dir / "metrics.json", out_dir / "distribution.png"):
        try:
            if old.is_file():
                old.unlink()
                removed.append(old.name)
        except OSError:  # an unwritable folder: the error being raised already says so
            pass
    return removed


def submit(work_dir: str | Path, test: pd.DataFrame, train_target: np.ndarray, schema: str, source: str = D.source,
           file_name: str = D.file_name, solution_csv: str = D.solution_csv, train: pd.DataFrame | None = None) -> dict:
    """Write the validated submission and its metrics; score it when a solution file is given (demo).

    `train` (train.csv as loaded) is checked against the rows the predictions' models were trained on; without it
    (None) that check is skipped.
    Everything that can fail is checked before anything is written. A run that fails removes the previous
    submission at `file_name`, metrics.json and distribution.png, so 05_submit/ never holds outputs that look
    current but were made from other predictions or for another test CSV.
    """
    schema_ = get_schema(schema)
    PARAMETERS.validate(source=source, file_name=file_name, solution_csv=solution_csv)
    if not file_name.lower().endswith(".csv"):
        raise ValueError(f"file_name {file_name!r} must end in .csv (a submission is a CSV; metrics.json and "
                         "distribution.png are 05's own files)")
    out_dir = stage_dir(work_dir, "05_submit")
    path = out_dir / file_name
    try:
        return _submit(work_dir, test, train_target, schema_, source, path, solution_csv, train)
    except BaseException as err:
        removed = _remove_outputs(out_dir, path)
        if removed:
            err.add_note(f"05_submit: removed the previous run's {', '.join(removed)} from {out_dir}: they may not "
                         "match these predictions or this test CSV (a run that succeeds writes them again)")
        raise


def _submit(work_dir: str | Path, test: pd.DataFrame, train_target: np.ndarray, schema_: Schema, source: str,
            path: Path, solution_csv: str, train: pd.DataFrame | None) -> dict:
    """submit's work: check the predictions, their CV and the solution, then write submission and metrics."""
    id_col, value_col = schema_.submission_columns
    test_ids = test[id_col].to_numpy()
    predictions = source_predictions(work_dir, source)
    problems, differ = _prediction_id_problems(predictions, test_ids)
    if problems:
        hint = (f". The predictions in {source_folder(work_dir, source) / 'test_pred.csv'} were made for a different "
                f"test CSV than the one loaded now ({len(test_ids)} rows): rerun 01-04 on this test CSV (for a 03 "
                "run as source, 01-03), or point data_dir at the test.csv they were made for") if differ else ""
        raise SubmissionError("submission not written: " + "; ".join(problems) + hint)
    cv = source_cv(work_dir, source)
    check_made_for(work_dir, source, cv, test, schema_.id_column, train, predictions["id"].to_numpy())
    cv_values = {key: cv[key] for key in ("cv_smape", "constant_median_smape",  # + the edition's own (2023: MAPE)
                                          *(f"cv_{name}" for name in schema_.report_metrics)) if key in cv}
    truth, scoring = read_solution(solution_csv, test_ids, schema_) if solution_csv else (None, {})
    (path.parent / "metrics.json").unlink(missing_ok=True)  # never beside a submission it does not describe
    (path.parent / "distribution.png").unlink(missing_ok=True)
    submission = write_submission(predictions, test, schema_, path)
    values = submission[value_col].to_numpy()
    low, high = float(np.min(train_target)), float(np.max(train_target))
    metrics = {
        "path": str(path.resolve()), "rows": len(submission), "valid": True, "source": source, **cv_values,
        "prediction_min": float(values.min()), "prediction_median": float(np.median(values)),
        "prediction_max": float(values.max()),
        "outside_train_range": int(((values < low) | (values > high)).sum()),
    }
    if truth is not None:
        covered = ~np.isnan(truth)
        metrics["test_smape"] = smape(truth[covered], values[covered])
        for name in schema_.report_metrics:
            metrics[f"test_{name}"] = METRICS[name].fn(truth[covered], values[covered])
        metrics.update(scoring)
        print(_scored_line(scoring["solution_csv"], metrics["test_smape"], len(values), scoring)
              + other_scores(metrics, schema_.report_metrics, "test_", "test"))
    for line in _signal_warnings(cv_values, values, source, (low, high)):
        print(line)
    write_json(path.parent / "metrics.json", metrics)
    try:
        log_submission(work_dir, source, path)  # the CV this file was made with, for the LB score it will get
    except (OSError, ValueError) as err:  # LeaderboardError too: the log serves `lb add` later, never worth the
        # submission just written (a failure here would remove it with the outputs of a failed run)
        print(f"WARNING: the submission was not logged in {submissions_path(work_dir)} ({err}): an LB score for it "
              "will pair with its run's CV at that time")
    return metrics


def _signal_warnings(cv: dict, values: np.ndarray, source: str, train_range: tuple[float, float]) -> list[str]:
    """Warnings for a submission that is (about) the constant: its source's CV no better than the constant
    median's, or every prediction within 1% of one value; and for predictions more than FAR_OUTSIDE times
    beyond the training targets' range (a source gone wrong)."""
    lines = []
    low, high = train_range
    far = (values < low / FAR_OUTSIDE) | (values > high * FAR_OUTSIDE)
    if far.any():
        lines.append(f"WARNING: {int(far.sum()):,} of the {len(values):,} predictions lie more than {FAR_OUTSIDE:g}x "
                     f"outside the training targets ({low:.4g} .. {high:.4g}): smallest {values.min():.4g}, largest "
                     f"{values.max():.4g}. Check the source {source!r} (its test_pred.csv) before submitting")
    if "cv_smape" in cv and "constant_median_smape" in cv:
        lines.append(constant_level_warning(cv["cv_smape"], cv["constant_median_smape"], f"the source {source!r}"))
    if len(values) > 1 and (values.max() < 1.01 * values.min() or values.max() == values.min()):  # 2023: 0s too
        lines.append(f"WARNING: every one of the {len(values):,} predictions is within 1% of {np.median(values):.4g}: "
                     "this submission is a constant")
    return [line for line in lines if line]


def plot_distribution(work_dir: str | Path, submission_path: str | Path, train_target: np.ndarray,
                      value_column: str, source: str | None = None):
    """Histogram of the submitted values against the source's out-of-fold predictions (what its CV scored: the
    submission should look like them) and the train target, on a log axis of the values, each bar its share of
    the rows; saved as PNG."""
    preds = pd.read_csv(submission_path)[value_column].to_numpy(dtype=float)
    series = {"train target": np.asarray(train_target, dtype=float)}
    oof_path = source_folder(work_dir, source) / "oof.csv" if source else None
    if oof_path is not None and oof_path.is_file():
        series["out-of-fold predictions (what CV scored)"] = pd.read_csv(oof_path)["pred"].to_numpy(dtype=float)
    series["submission"] = preds
    positive = np.concatenate([values[values > 0] for values in series.values()])
    bins = np.geomspace(positive.min(), positive.max(), 50) if positive.size and positive.min() < positive.max() \
        else 50
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for label, values in series.items():
        # each bin's share of the rows, not density=True: that divides by the bin's width in price, which grows
        # with the price on these log-spaced bins, and drew the train target's peak 5x left of its median
        ax.hist(values, bins=bins, alpha=0.45, weights=np.full(len(values), 1 / max(len(values), 1)), label=label,
                histtype="step" if label.startswith("out-of-fold") else "stepfilled", lw=2)
    ax.set(xscale="log", xlabel=f"{value_column} (log axis)", ylabel="share of rows per bin",
           title="submission vs the out-of-fold predictions CV scored" if len(series) == 3
           else "submission vs train target")
    ax.legend(fontsize=8)
    save_figure(fig, stage_dir(work_dir, "05_submit") / "distribution.png")
    return fig
