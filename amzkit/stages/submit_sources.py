"""Stage 05's sources: the predictions `-p source` names (04_ensemble or a 03 run), their CV, and the checks
that they were made for the train.csv and test.csv loaded now."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from amzkit.core.io import frame_sha256, id_keys, ids_difference, read_csv, read_json, rows_sha256
from amzkit.core.workdir import check_name, list_runs, missing_run, stage_dir
from amzkit.ml.runs import run_predictions_sha256, unfinished_runs

ENSEMBLE_SOURCE = "04_ensemble"


class SubmissionError(ValueError):
    """A submission that the organisers would reject or score as garbage."""


def run_as_source(run: str) -> str:
    """How 05 submits 03 run `run` by itself: `-p source <run>`; a run named 04_ensemble (made before 03 reserved
    the name) has to be renamed first, as that source is 04's blend."""
    if run != ENSEMBLE_SOURCE:
        return f"-p source {run}"
    return (f"-p source <new name>, once its folder 03_train/{run} is renamed (05's source {ENSEMBLE_SOURCE} is "
            "04's blend, and 03 now refuses the name),")


def source_folder(work_dir: str | Path, source: str) -> Path:
    """The folder of predictions `source` names: 04_ensemble, or a 03_train run (a plain name)."""
    if source == ENSEMBLE_SOURCE:
        return stage_dir(work_dir, ENSEMBLE_SOURCE)
    return stage_dir(work_dir, "03_train") / check_name(source, "source")


def source_predictions(work_dir: str | Path, source: str) -> pd.DataFrame:
    """Test predictions of '04_ensemble' or of a 03_train run (its name); ids as written."""
    path = source_folder(work_dir, source) / "test_pred.csv"
    if not path.is_file():
        if source != ENSEMBLE_SOURCE and not path.parent.is_dir():  # a 03 run's name: misspelt, or never trained
            clash = (f" (its run {ENSEMBLE_SOURCE!r}: {run_as_source(ENSEMBLE_SOURCE).rstrip(',')})"
                     if ENSEMBLE_SOURCE in list_runs(work_dir, "03_train") else "")
            raise FileNotFoundError(missing_run(work_dir, "03_train", source) + f": -p source takes one of them, or "
                                    f"{ENSEMBLE_SOURCE!r} for 04's blend{clash}")
        if source == ENSEMBLE_SOURCE:
            runs = list_runs(work_dir, "03_train")
            raise FileNotFoundError(
                f"no predictions at {path}: run 04_ensemble first (a 04 that fails leaves none), or submit one 03 "
                f"run with -p source <run_name> ({'finished runs: ' + ', '.join(runs) if runs else 'none finished'}"
                + (f"; run {ENSEMBLE_SOURCE!r}: {run_as_source(ENSEMBLE_SOURCE).rstrip(',')}" if ENSEMBLE_SOURCE in runs
                   else "") + ")")
        raise FileNotFoundError(f"no predictions at {path}: run the stage that writes {source!r} first")
    if not (path.parent / "metrics.json").is_file():  # written last: its files may be half old, half new
        raise FileNotFoundError(f"{source!r} did not finish: {path.parent} has predictions but no metrics.json (the "
                                "stage failed, was stopped, or was killed while saving): rerun it, then 05")
    return read_csv(path, "predictions", dtype={"id": str})


def _in_order_of(frame: pd.DataFrame, id_column: str, ids) -> pd.DataFrame:
    """`frame`'s rows in the order of `ids` when these are its ids in another order; else `frame` as it is."""
    if ids is None:
        return frame
    keys, wanted = pd.Index(id_keys(frame[id_column])), pd.Index(id_keys(ids))
    if len(keys) != len(wanted) or not keys.is_unique or keys.equals(wanted) or not wanted.isin(keys).all():
        return frame
    return frame.iloc[keys.get_indexer(wanted)].reset_index(drop=True)


def check_made_for(work_dir: str | Path, source: str, metrics: dict, test: pd.DataFrame, id_column: str,
                   train: pd.DataFrame | None = None, prediction_ids=None) -> None:
    """Refuse predictions made for another test.csv with the same ids (edited text or links) or by models trained
    on another train.csv (edited prices, text or rows), and a 04 blend of runs trained again since it was made;
    say when a 03 source's rerun was stopped. (Runs saved before these records existed are not checked.)
    `prediction_ids`: the ids of the predictions in their row order; test rows in another order then pass."""
    folder = source_folder(work_dir, source)
    if train is not None and metrics.get("train_rows_sha256") not in (None, rows_sha256(train, id_column)):
        trained = folder / "oof.csv"
        trained_ids = read_csv(trained, "OOF predictions", dtype={"id": str})["id"] if trained.is_file() else None
        how = ids_difference(trained_ids, train[id_column]) if trained_ids is not None else ""
        if how and metrics["train_rows_sha256"] == rows_sha256(_in_order_of(train, id_column, trained_ids),
                                                                id_column):
            raise SubmissionError(
                f"submission not written: train.csv now has {how} than the one the predictions in {folder} were "
                "trained on (the rows themselves are the same), and the work folder's folds were made for the old "
                f"order: put train.csv's rows back in the order of the ids in {trained}, e.g. t = pd.read_csv("
                f"'train.csv', dtype=str, keep_default_na=False); t.set_index('{id_column}').loc[pd.read_csv("
                f"'{trained}', dtype=str)['id']].reset_index().to_csv('train.csv', index=False); or point data_dir "
                "at the train.csv they were trained on; or run 01-05 on this train.csv in a new -p work_dir")
        fix = (f"train.csv now has {how}, and the work folder's folds were made for the old rows: run 01-05 on "
               "this train.csv in a new -p work_dir" if how else
               "its prices, text or links differ from the one loaded now: rerun 03-04 on this train.csv (01 first "
               "if the text changed)")
        raise SubmissionError(f"submission not written: the predictions in {folder} come from models trained on "
                              f"another train.csv ({fix}), or point data_dir at the train.csv they were trained on")
    # in the predictions' row order (the test.csv's when they were made): 05 aligns rows by id, so the same rows
    # re-saved in another order are the same test
    test = _in_order_of(test, id_column, prediction_ids)
    if metrics.get("test_rows_sha256") is not None:  # null in a 04 blend of runs saved before the digest
        differs = metrics["test_rows_sha256"] != rows_sha256(test, id_column)
    else:  # runs of 2026-12-05's builds hashed every cell as read (dtype-dependent): compared in their own form
        differs = "test_sha256" in metrics and metrics["test_sha256"] != frame_sha256(test)
    if differs:
        raise SubmissionError(
            f"submission not written: the predictions in {folder} were made for a test.csv with the same ids but "
            "other rows (text or image links differ from the one loaded now): rerun 01-04 on this test CSV (for a "
            "03 run as source, 01-03), or point data_dir at the test.csv they were made for")
    if source == ENSEMBLE_SOURCE:
        blended = metrics.get("run_predictions_sha256", {})
        gone = [name for name in blended if not (stage_dir(work_dir, "03_train") / name / "test_pred.csv").is_file()]
        if gone:
            print(f"note: run(s) {', '.join(map(repr, gone))} that 04 blended are no longer in {work_dir}/03_train: "
                  "04's predictions are submitted as they are (they stand on their own; a rerun of 04 needs the runs)")
        changed = [name for name, digest in blended.items()
                   if name not in gone and run_predictions_sha256(work_dir, name) != digest]
        if changed:
            raise SubmissionError(
                f"submission not written: 04_ensemble blended run(s) {', '.join(map(repr, changed))} as they were "
                "then, and they have been trained again since (their predictions changed): rerun 04, then 05")
        took = metrics.get("runs")
        if took and not metrics.get("runs_requested"):  # 04 took all finished runs (or did not record what it took)
            since = [name for name in list_runs(work_dir, "03_train") if name not in took]
            if since:
                when = ("finished after 04 ran" if "runs_requested" in metrics
                        else "finished after 04 ran, or left out by 04's -p runs")
                print(f"note: 03_train run(s) {', '.join(map(repr, since))} {when}: the submitted 04 blend does not "
                      f"include them (it blends {', '.join(map(repr, took))}): rerun 04, then 05, to blend them too")
    elif source in (stopped := unfinished_runs(work_dir)):
        print(f"note: run {source!r}: {stopped[source]} (its last finished outputs are submitted; rerun 03 to "
              "finish the new one)")


def source_cv(work_dir: str | Path, source: str) -> dict:
    return read_json(source_folder(work_dir, source) / "metrics.json")
