"""Public leaderboard scores beside CV scores: does CV still track the LB? (the final checks of a competition).

Each submission's public LB score is recorded with the CV score of the run it came from (a 03_train run or
04_ensemble) in `work_dir/leaderboard.csv`; 05 logs every submission it writes (file, sha256, source and the
source's CV then) in `work_dir/submissions.csv`, so a score given for a run pairs with the CV of the run's last
logged submission, not with a CV the run got when it was trained again afterwards, and a score given for a
submission file pairs with that file's CV; both in the metric the schema's leaderboard shows (2025: SMAPE,
lower is better; 2023: max(0, 100(1-MAPE)), higher is better), named in the table's `metric` column.
`cv_lb_fit` fits LB = slope * CV + intercept, `tracking_verdict` says in plain words whether CV still predicts
the LB, and `plot_cv_vs_lb` draws CV against LB.

    python -m amzkit lb add siglip_lgbm 47.9 --work-dir runs/latest --note "first sub"
    python -m amzkit lb add runs/latest/05_submit/submission.csv 47.9     # or the file that was submitted
    python -m amzkit lb show --work-dir runs/latest --plot
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
import sys
from datetime import UTC, datetime
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from amzkit.core.io import atomic_path, read_json, save_figure
from amzkit.core.metric import METRICS
from amzkit.core.params import Param, Parameters
from amzkit.core.schema import SCHEMAS
from amzkit.core.workdir import is_plain_name, list_runs, resolve_work_dir, stage_dir
from amzkit.stages.leaderboard_fit import LeaderboardError, cv_lb_fit, table_metric, tracking_verdict

PARAMETERS = Parameters(
    Param("lb_scores", {}, "public LB scores of earlier submissions, JSON {\"<run>\": <score>}: does CV track LB?"),
)
LB_COLUMNS = ("time", "run", "metric", "cv", "lb", "note")
SUBMISSION_COLUMNS = ("time", "source", "file", "sha256", "metric", "cv")
OLD_COLUMNS = {"cv_smape": "cv", "lb_smape": "lb"}  # a leaderboard.csv written before the metric column: SMAPE
ENSEMBLE_RUN = "04_ensemble"
SCORE_RANGES = {"smape": (0.0, 200.0), "score2023": (0.0, 100.0), "mape": (0.0, math.inf)}  # what a score can be
FRACTION_RATIO = 20.0  # an LB score below 1 and this many times below its CV was entered as a fraction
# run names, notes and files as written: a run named NA, null, nan or None is not pandas' missing value; only an
# empty score cell is missing (and named as such)
TEXT_AS_WRITTEN = {"keep_default_na": False, "na_values": {"cv": [""], "lb": [""], "cv_smape": [""], "lb_smape": [""]}}


def leaderboard_path(work_dir: str | Path) -> Path:
    return Path(work_dir) / "leaderboard.csv"


def known_runs(work_dir: str | Path) -> list[str]:
    """Runs a submission can come from: finished 03_train runs, then 04_ensemble when it has metrics.json (the name
    is always 04's blend, as in 05's source: never a 03 run of that name, made before 03 reserved it)."""
    runs = [run for run in list_runs(work_dir, "03_train") if run != ENSEMBLE_RUN]
    if (stage_dir(work_dir, ENSEMBLE_RUN) / "metrics.json").is_file():
        runs.append(ENSEMBLE_RUN)
    return runs


def _run_metrics(work_dir: str | Path, run: str) -> tuple[Path, dict]:
    runs = known_runs(work_dir)
    if run not in runs:
        existing = ", ".join(runs) if runs else f"none (no metrics.json under {Path(work_dir)}/03_train or 04_ensemble)"
        old = stage_dir(work_dir, "03_train") / ENSEMBLE_RUN
        clash = (f"; {ENSEMBLE_RUN!r} is 04's blend (none finished in {stage_dir(work_dir, ENSEMBLE_RUN)}), never the "
                 f"run {old} made before 03 reserved the name: rename that folder to submit and score it by its new "
                 "name" if run == ENSEMBLE_RUN and (old / "metrics.json").is_file() else "")
        raise LeaderboardError(f"unknown run {run!r} in {work_dir}; runs that exist: {existing}{clash}")
    folder = stage_dir(work_dir, ENSEMBLE_RUN) if run == ENSEMBLE_RUN else stage_dir(work_dir, "03_train") / run
    return folder / "metrics.json", read_json(folder / "metrics.json")


def _leaderboard_metric(work_dir: str | Path, run: str, metrics: dict) -> str:
    schema = metrics.get("schema")
    if schema is None and run == ENSEMBLE_RUN and metrics.get("runs"):
        schema = _run_metrics(work_dir, metrics["runs"][0])[1].get("schema")
    return SCHEMAS[schema].leaderboard_metric if schema in SCHEMAS else "smape"


def run_cv_score(work_dir: str | Path, run: str) -> tuple[str, float]:
    """(metric, CV score) of the run in its leaderboard's metric; LeaderboardError naming the existing runs when
    it is unknown."""
    path, metrics = _run_metrics(work_dir, run)
    metric = _leaderboard_metric(work_dir, run, metrics)
    if f"cv_{metric}" not in metrics:
        raise LeaderboardError(f"{path} has no cv_{metric} (the leaderboard's metric): rerun that stage with this "
                               "version of amzkit")
    return metric, float(metrics[f"cv_{metric}"])


def _check_score(score: float, metric: str = "smape") -> float:
    try:
        value = float(score)
    except (TypeError, ValueError) as err:
        raise LeaderboardError(f"score {score!r} is not a number") from err
    low, high = SCORE_RANGES[metric]
    if math.isnan(value) or not low <= value <= high or (math.isinf(value) and high != math.inf):
        raise LeaderboardError(f"score {score!r} is outside {low:g}..{high:g}; the leaderboard's "
                               f"{METRICS[metric].label} always lies in that range")
    return value


def _check_scale(lb: float, cv: float, metric: str) -> None:
    """An LB score entered as a fraction (0.45 for the leaderboard's 45) beside a CV in points is refused: one such
    point would decide the CV-LB fit."""
    if 0 < lb < 1 and cv >= 2 and cv > FRACTION_RATIO * lb:
        raise LeaderboardError(f"score {lb:g} beside a CV of {cv:.3f} looks like a fraction: the leaderboard's "
                               f"{METRICS[metric].label} is in points (e.g. {lb * 100:g} for {lb:g}); enter it as "
                               "Kaggle shows it")


def _read_table(work_dir: str | Path) -> pd.DataFrame:
    path = leaderboard_path(work_dir)
    if not path.is_file():
        return pd.DataFrame({c: pd.Series(dtype=float if c in ("cv", "lb") else object) for c in LB_COLUMNS})
    try:
        table = pd.read_csv(path, dtype={"run": str, "note": str, "time": str, "metric": str}, **TEXT_AS_WRITTEN)
    except (ValueError, OSError) as err:  # pandas' EmptyDataError and ParserError are ValueErrors
        raise LeaderboardError(f"{path} is unreadable ({type(err).__name__}: {err}): move it aside") from err
    table = table.rename(columns=OLD_COLUMNS)
    if "metric" not in table:
        table["metric"] = "smape"
    if "note" not in table:
        table["note"] = ""
    missing = [c for c in LB_COLUMNS if c not in table]
    if missing:
        raise LeaderboardError(f"{path} lacks the columns {missing} of amzkit's leaderboard: move it aside")
    table["note"] = table["note"].fillna("")
    for column in ("cv", "lb"):  # edited by hand: a decimal comma, a blank, a word where a score belongs
        values = pd.to_numeric(table[column], errors="coerce")
        bad = np.flatnonzero(~np.isfinite(values.to_numpy(dtype=float)))
        if bad.size:
            written = [table[column].iloc[i] for i in bad[:5]]
            shown = ", ".join(f"row {i + 1} ({'empty' if pd.isna(v) else repr(str(v))})"
                              for i, v in zip(bad[:5], written, strict=True))
            raise LeaderboardError(f"{path}: column {column} must hold numbers; {shown} "
                                   f"{'is' if bad.size == 1 else 'are'} not (edited by hand?): write them with '.' "
                                   "before the decimals, or delete those rows")
        table[column] = values.astype(float)
    return table[list(LB_COLUMNS)]


def submissions_path(work_dir: str | Path) -> Path:
    return Path(work_dir) / "submissions.csv"


def _file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _submissions(work_dir: str | Path) -> pd.DataFrame:
    """05's submission log (empty when there is none); LeaderboardError when it is unreadable or not 05's."""
    path = submissions_path(work_dir)
    if not path.is_file():
        return pd.DataFrame({c: pd.Series(dtype=float if c == "cv" else object) for c in SUBMISSION_COLUMNS})
    try:
        table = pd.read_csv(path, dtype={c: str for c in SUBMISSION_COLUMNS if c != "cv"}, **TEXT_AS_WRITTEN)
    except (ValueError, OSError) as err:  # pandas' EmptyDataError and ParserError are ValueErrors
        raise LeaderboardError(f"{path} is unreadable ({type(err).__name__}: {err}): move it aside") from err
    if list(table.columns) != list(SUBMISSION_COLUMNS):
        raise LeaderboardError(f"{path} is not 05's submission log (columns {list(table.columns)}, not "
                               f"{list(SUBMISSION_COLUMNS)}): move it aside")
    table["cv"] = pd.to_numeric(table["cv"], errors="coerce")
    return table


def log_submission(work_dir: str | Path, source: str, path: str | Path) -> dict:
    """Record a submission file 05 wrote from `source`, with the source's CV now (in the leaderboard's metric;
    NaN for a run saved without it): `add_score` pairs a later LB score with this CV. A metrics.json that cannot
    be read (cut short or edited) is a LeaderboardError naming it, before anything is written."""
    try:
        metric, cv = run_cv_score(work_dir, source)
    except LeaderboardError:
        metric, cv = "", math.nan
    except (ValueError, TypeError, OSError) as err:  # read_json names the file and the fix
        raise LeaderboardError(f"the CV of {source!r} cannot be read: {err}") from err
    row = {"time": datetime.now(UTC).isoformat(timespec="seconds"), "source": source, "file": _log_path(work_dir, path),
           "sha256": _file_sha256(path), "metric": metric, "cv": cv}
    log = submissions_path(work_dir)
    try:
        earlier = _submissions(work_dir)
    except LeaderboardError as err:  # never a reason to fail the submission: set the file aside, start anew
        aside = log.with_name(f"{log.name}.unreadable-{datetime.now(UTC):%Y%m%dT%H%M%S}")
        log.replace(aside)
        print(f"WARNING: {err}; moved to {aside.name}, and a new log started")
        earlier = _submissions(work_dir)
    table = pd.concat([earlier, pd.DataFrame([row])], ignore_index=True) if len(earlier) else pd.DataFrame([row])
    with atomic_path(log) as tmp:
        table.to_csv(tmp, index=False)
    return row


def _log_path(work_dir: str | Path, path: str | Path) -> str:
    """`path` as the log keeps it: relative to the work folder when inside it (05's files: still right when the
    folder moves, e.g. Kaggle's outputs downloaded, or is named from another folder), else absolute."""
    full, root = Path(path).resolve(), Path(work_dir).resolve()
    return full.relative_to(root).as_posix() if full.is_relative_to(root) else str(full)


def _logged_places(work_dir: str | Path, file: str) -> list[Path]:
    """Where a logged file is: an absolute path as it is; a relative one in the work folder, or (a log written
    before 05 logged paths relative to the work folder) relative to the current folder."""
    return [Path(file)] if Path(file).is_absolute() else [Path(work_dir) / file, Path(file)]


def _logged_in_other_work_dir(work_dir: str | Path, path: str | Path, sha256: str) -> Path | None:
    """The other work folder whose 05 wrote (in its 05_submit/) and logged the submission file `path`, or None."""
    folder = Path(path).resolve().parent
    if folder.name != "05_submit" or folder.parent == Path(work_dir).resolve():
        return None
    with contextlib.suppress(LeaderboardError):
        return folder.parent if (_submissions(folder.parent)["sha256"] == sha256).any() else None
    return None


def _file_places(work_dir: str | Path, path: str | Path) -> list[Path]:
    """Where a submission file `path` is looked for: as given, else (a relative path) inside the work folder or its
    05_submit/ (`05_submit/submission.csv`, or the file name Kaggle lists)."""
    places = [Path(path)]
    if not Path(path).is_absolute():
        places += [Path(work_dir) / path, stage_dir(work_dir, "05_submit") / path]
    return places


def _submission_file(work_dir: str | Path, path: str | Path) -> Path:
    """The submission file `path` names (see `_file_places`); LeaderboardError naming where it was looked for."""
    places = _file_places(work_dir, path)
    found = next((place for place in places if place.is_file()), None)
    if found is None:
        looked = f" (looked in {Path.cwd()}, {Path(work_dir)} and its 05_submit/)" if len(places) > 1 else ""
        raise LeaderboardError(f"no submission file {path}{looked}: give the file that was submitted, or its run's "
                               "name")
    return found


def _names_file(work_dir: str | Path, key: str | Path) -> bool:
    """Whether a score's key names a submission file, not a run: it ends in .csv and is not the plain name of a
    03_train run (a folder there, or a source 05 logged: 03 takes run names such as v2.csv); LeaderboardError when
    a run's name is also a file's."""
    text = str(key)
    if not text.lower().endswith(".csv"):
        return False
    run = is_plain_name(text) and ((stage_dir(work_dir, "03_train") / text).is_dir()
                                   or (_submissions(work_dir)["source"] == text).any())
    if not run:
        return True
    file = next((place for place in _file_places(work_dir, text) if place.is_file()), None)
    if file is not None:
        raise LeaderboardError(f"{text!r} names both the 03_train run {stage_dir(work_dir, '03_train') / text} and "
                               f"the file {file.resolve()}: for the file give its path with a folder (e.g. "
                               f"{file.resolve()}); for the run, move that file aside")
    return False


def submission_cv(work_dir: str | Path, run: str) -> tuple[str, str, float, str]:
    """(source, metric, CV, notice) an LB score for `run` pairs with: a submission file's logged source and CV,
    else the CV logged with the run's last submission, else (no logged submission) the run's CV now; the notice
    says when the run's CV has changed since its last submission ('' otherwise)."""
    logged = _submissions(work_dir).dropna(subset=["cv"])
    if _names_file(work_dir, run):
        run = _submission_file(work_dir, run)
        sha256 = _file_sha256(run)
        found = logged[logged["sha256"] == sha256]
        if found.empty:
            other = _logged_in_other_work_dir(work_dir, run, sha256)
            if other is not None:  # its run's name would pair it with this folder's run of that name
                raise LeaderboardError(f"{run} was made in the work folder {other} (its submissions.csv logs it), not "
                                       f"in {work_dir}: record its score there, with --work-dir {other} (in 05: -p "
                                       f"work_dir {other}), so that it pairs with the CV that folder's run had")
            raise LeaderboardError(f"{run} is not a submission 05 logged in {submissions_path(work_dir)} (it was "
                                   "edited, or made elsewhere): give the name of the run it came from instead")
        last = found.iloc[-1]
        return str(last["source"]), str(last["metric"]), float(last["cv"]), ""
    try:
        metric, cv_now = run_cv_score(work_dir, run)
    except LeaderboardError as err:  # unfinished now (a 03/04 rerun that failed, or still running), or deleted
        earlier = logged[logged["source"] == str(run)]
        if earlier.empty:
            raise
        last = earlier.iloc[-1]
        return run, str(last["metric"]), float(last["cv"]), (
            f"run {run!r} is not a finished run now ({err}); the score is paired with its last logged submission "
            f"({last['file']}, {last['time']}), made at CV {float(last['cv']):.3f}")
    found = logged[(logged["source"] == str(run)) & (logged["metric"] == metric)]
    if found.empty:
        return run, metric, cv_now, (
            f"run {run!r}: no submission of it is logged in {submissions_path(work_dir)} (made by an older amzkit, "
            f"or in another kernel: each Kaggle 05 kernel starts a new log): the score is paired with its CV now, "
            f"{cv_now:.3f}; if it was trained again since that submission, give the submission file instead")
    last, notices = found.iloc[-1], []
    if not math.isclose(float(last["cv"]), cv_now, abs_tol=1e-9):
        notices.append(f"run {run!r}: its last submission ({last['file']}, {last['time']}) was made at CV "
                       f"{float(last['cv']):.3f}; the run's CV is {cv_now:.3f} now (trained again since): the score "
                       f"is paired with {float(last['cv']):.3f}. For another submission, give its file instead of the "
                       "run")
    cvs = list(dict.fromkeys(round(float(cv), 3) for cv in found["cv"]))
    if len(cvs) > 1:  # submitted again after training again: the name alone cannot say which one was scored
        notices.append(f"run {run!r} was submitted at {len(cvs)} CVs ({', '.join(f'{cv:.3f}' for cv in cvs)}, "
                       f"oldest first): the score is paired with the last submission's, {float(last['cv']):.3f}; "
                       "for an earlier one give its submission file (a kept copy: 05 writes over submission.csv)")
    return run, metric, float(last["cv"]), " ".join(notices)


def add_score(work_dir: str | Path, run: str, score: float, note: str = "") -> dict:
    """Append one public LB score for a submission made from `run` (a run name, or a submission file 05 logged);
    the CV beside it is the one its submission was made with (`submission_cv`); returns the row written."""
    source, metric, cv, notice = submission_cv(work_dir, run)
    lb = _check_score(score, metric)
    _check_scale(lb, cv, metric)
    table = _read_table(work_dir)
    same = table[(table["run"].astype(str) == source) & (table["lb"].astype(float).round(6) == round(lb, 6))
                 & table["cv"].astype(float).round(6).isin(_same_submission_cvs(work_dir, run, source, cv))]
    if len(same):  # the same score of the same submission twice would count as two points in the CV-LB fit
        return {**same.iloc[-1].to_dict(), "already": True}
    return write_scores(work_dir, [{"run": source, "metric": metric, "cv": cv, "lb": lb, "notice": notice}],
                        note)[0]


def _same_submission_cvs(work_dir: str | Path, run: str, source: str, cv: float) -> set[float]:
    """The CVs (rounded) at which a recorded score of `source` with the same LB is this entry's score again: the
    paired CV; for an entry by run name also the CVs of the run's earlier logged submissions (a score recorded for
    one of them, given again by name after the run was submitted anew, is that submission's, not the new one's)."""
    cvs = {round(cv, 6)}
    if not _names_file(work_dir, run):
        logged = _submissions(work_dir).dropna(subset=["cv"])
        cvs |= {round(float(v), 6) for v in logged.loc[logged["source"] == str(source), "cv"]}
    return cvs


def _earlier_at_path(work_dir: str | Path, path: str | Path) -> set[tuple[str, float]]:
    """(source, CV rounded) of the logged submissions 05 wrote at `path` before the file it holds now."""
    logged = _submissions(work_dir).dropna(subset=["cv"])
    here, now = Path(path).resolve(), _file_sha256(path)
    same_file = logged["file"].map(lambda f: any(place.resolve() == here for place in _logged_places(work_dir, f)))
    same_file = same_file.astype(bool)
    at_path = logged[same_file & (logged["sha256"] != now)]
    return {(str(source), round(float(cv), 6)) for source, cv in zip(at_path["source"], at_path["cv"], strict=True)}


def write_scores(work_dir: str | Path, pairs: list[dict], note: str = "") -> list[dict]:
    """Append scores paired with their CV (`pair_scores`, `add_score`), saying each pairing's notice; returns the
    rows written."""
    table = _read_table(work_dir)
    rows = []
    for pair in pairs:
        if pair.get("notice"):
            print(pair["notice"])
        metric = table_metric(table) if not table.empty else pair["metric"]
        if metric != pair["metric"]:
            raise LeaderboardError(f"{leaderboard_path(work_dir)} holds {metric} scores, but run {pair['run']!r} "
                                   f"is scored in {pair['metric']}: keep one competition per work folder")
        row = {"time": datetime.now(UTC).isoformat(timespec="seconds"), "run": pair["run"],
               "metric": pair["metric"], "cv": pair["cv"], "lb": pair["lb"], "note": note}
        table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
        rows.append(row)
    if rows:
        with atomic_path(leaderboard_path(work_dir)) as tmp:
            table.to_csv(tmp, index=False)
    return rows


def leaderboard(work_dir: str | Path) -> pd.DataFrame:
    """All recorded scores in the order they were added, with gap = lb - cv."""
    table = _read_table(work_dir).reset_index(drop=True)
    table["gap"] = table["lb"].astype(float) - table["cv"].astype(float)
    return table


def plot_cv_vs_lb(work_dir: str | Path):
    """Scatter of CV against LB score with the fitted line and y = x; saved as work_dir/cv_vs_lb.png."""
    table = leaderboard(work_dir)
    if table.empty:
        raise ValueError(f"no leaderboard scores in {leaderboard_path(work_dir)}; add one with `amzkit lb add`")
    cv, lb = table["cv"].to_numpy(float), table["lb"].to_numpy(float)
    label = METRICS[table_metric(table)].label
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.scatter(cv[:-1], lb[:-1], color="C0", label="submissions")
    ax.scatter(cv[-1:], lb[-1:], color="C3", marker="*", s=150, label="latest")
    for x, y, run in zip(cv, lb, table["run"], strict=True):
        ax.annotate(str(run), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    low, high = float(min(cv.min(), lb.min())), float(max(cv.max(), lb.max()))
    pad = max(0.5, 0.1 * (high - low))
    xs = np.array([low - pad, high + pad])
    ax.plot(xs, xs, color="grey", ls=":", label="y = x")
    title = "CV vs public LB"
    if len(table) >= 2:
        fit = cv_lb_fit(table)
        if fit["slope"] is not None:
            ax.plot(xs, fit["slope"] * xs + fit["intercept"], color="C1",
                    label=f"fit: LB = {fit['slope']:.2f} CV {fit['intercept']:+.2f}")
        title += "\n" + tracking_verdict(fit)[:90]
    ax.set(xlabel=f"CV {label}", ylabel=f"public LB {label}", title=title)
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    save_figure(fig, Path(work_dir) / "cv_vs_lb.png")
    return fig


def format_table(table: pd.DataFrame) -> str:
    """The leaderboard as fixed-width text."""
    if table.empty:
        return "(no leaderboard scores yet)"
    shown = table.assign(**{c: table[c].map(lambda v: f"{v:.3f}") for c in ("cv", "lb")},
                         gap=table["gap"].map(lambda v: f"{v:+.3f}"))
    return shown[["time", "run", "metric", "cv", "lb", "gap", "note"]].to_string(index=False)


def pair_scores(work_dir: str | Path, scores: dict[str, float]) -> tuple[list[dict], list[str]]:
    """({run, metric, cv, lb, notice} for each {run or submission file: public LB score} not recorded yet (a
    notebook can rerun), each paired with its submission's CV as logged now; why each other entry was refused)."""
    table = _read_table(work_dir)
    seen = set(zip(table["run"].astype(str), table["lb"].astype(float).round(6), table["cv"].astype(float).round(6),
                   strict=True))
    pairs, refused = [], []
    for run, score in scores.items():
        try:
            source, metric, cv, notice = submission_cv(work_dir, run)
            lb = _check_score(score, metric)
            _check_scale(lb, cv, metric)
            cvs = _same_submission_cvs(work_dir, run, source, cv)
            before = _earlier_at_path(work_dir, _submission_file(work_dir, run)) \
                if _names_file(work_dir, run) else set()
        except (LeaderboardError, ValueError, OSError, KeyError) as err:  # a run's unreadable metrics.json too
            refused.append(f"{run}: {err}")
            continue
        key = (source, round(lb, 6), round(cv, 6))
        # a resubmission (another CV) is a new point; one named twice (run, file) is one, and so is a score kept in
        # lb_scores after its run was submitted again (recorded at the earlier submission's CV), or after 05 wrote
        # another submission over its file (recorded with the file's earlier source and CV)
        if not any((source, round(lb, 6), c) in seen for c in cvs) and \
                not any((earlier, round(lb, 6), c) in seen for earlier, c in before):
            seen.add(key)
            pairs.append({"run": source, "metric": metric, "cv": cv, "lb": lb, "notice": notice})
    return pairs, refused


def record_scores(work_dir: str | Path, scores: dict[str, float], note: str = "") -> list[dict]:
    """Record {run: public LB score}, skipping a (run, score) pair already recorded (so a notebook can rerun); an
    entry that cannot be recorded is an error naming it, after the others are written."""
    pairs, refused = pair_scores(work_dir, scores)
    added = write_scores(work_dir, pairs, note)
    if refused:
        raise LeaderboardError("LB scores not recorded: " + "; ".join(refused))
    return added


def show_leaderboard(work_dir: str | Path, scores: dict[str, float] | None = None):
    """05's section: record `scores`, print the CV-LB table and verdict, plot CV against LB; None when empty."""
    added = record_scores(work_dir, scores or {}, note="05_submit lb_scores")
    table = leaderboard(work_dir)
    if table.empty:
        print("no public LB scores yet: after submitting, rerun with -p lb_scores '{\"<run>\": <LB score>}' or "
              "record them with python -m amzkit lb add <run> <score>")
        return None
    print((f"recorded {len(added)} new score(s)\n" if scores else "") + format_table(table))
    if len(table) >= 2:
        print(tracking_verdict(cv_lb_fit(table)))
    return plot_cv_vs_lb(work_dir)


def _lb_command(args: argparse.Namespace) -> int:
    work_dir = resolve_work_dir(args.work_dir)
    try:
        if args.lb_command == "add":
            row = add_score(work_dir, args.run, args.score, note=args.note)
            done = "already recorded" if row.get("already") else "recorded"
            print(f"{done} {row['run']} ({METRICS[row['metric']].label}): CV {row['cv']:.3f}  LB {row['lb']:.3f}  "
                  f"gap {row['lb'] - row['cv']:+.3f} -> {leaderboard_path(work_dir)}")
        else:
            table = leaderboard(work_dir)
            print(format_table(table))
            if len(table) >= 2:
                fit = cv_lb_fit(table)
                print(tracking_verdict(fit))
            if args.plot and not table.empty:
                plot_cv_vs_lb(work_dir)
                print(f"plot: {Path(work_dir) / 'cv_vs_lb.png'}")
    except (LeaderboardError, ValueError, FileNotFoundError) as err:
        print(f"amzkit lb {args.lb_command}: {err}", file=sys.stderr)
        return 1
    return 0


def add_cli(subparsers) -> argparse.ArgumentParser:
    """Register `lb add|show` on an argparse subparsers object; the handler is set as `func`."""
    lb = subparsers.add_parser("lb", help="record public LB scores and check that CV still tracks them")
    lsub = lb.add_subparsers(dest="lb_command", required=True)
    add = lsub.add_parser("add", help="record the public LB score of a submission made from a run")
    add.add_argument("run", help=f"a 03_train run name or {ENSEMBLE_RUN} (its last logged submission's CV), or the "
                     "submission file 05 wrote")
    add.add_argument("score", type=float, help="public leaderboard score as the leaderboard shows it (2025: SMAPE "
                     "0..200; 2023: max(0, 100(1-MAPE)) 0..100)")
    add.add_argument("--note", default="", help="free text, e.g. the submission file")
    show = lsub.add_parser("show", help="print the scores with the CV-LB gap, the fit and the verdict")
    show.add_argument("--plot", action="store_true", help="also write work_dir/cv_vs_lb.png")
    for parser in (add, show):
        parser.add_argument("--work-dir", default="auto",
                            help="work folder (default auto: /kaggle/working/amzkit on Kaggle, else runs/latest)")
    lb.set_defaults(func=_lb_command)
    return lb
