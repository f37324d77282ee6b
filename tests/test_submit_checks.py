"""Tests for stage 05's submit(): a solution file checked by name before anything is written, a subset scored and
said so, and no previous submission or metrics left that look current after a failed run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from amzkit.core.metric import smape
from amzkit.stages import submit as submit_stage
from amzkit.stages.submit import SubmissionError, submit

IDS = ["101", "205", "307", "412"]
PRED = [10.0, 20.0, 30.0, 40.0]
TRUTH = [12.0, 20.0, 25.0, 50.0]
TRAIN_TARGET = np.array([1.0, 100.0])


def make_test(ids=IDS) -> pd.DataFrame:
    return pd.DataFrame({"sample_id": list(ids), "catalog_content": ["x"] * len(ids), "image_link": ["u"] * len(ids)})


def make_work(tmp_path: Path, ids=IDS, pred=PRED) -> Path:
    """A work folder whose 04_ensemble holds test predictions and their CV metrics."""
    work = tmp_path / "work"
    folder = work / "04_ensemble"
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": list(ids), "pred": pred}).to_csv(folder / "test_pred.csv", index=False)
    (folder / "metrics.json").write_text(json.dumps({"cv_smape": 30.0, "constant_median_smape": 60.0}))
    return work


def write_solution(tmp_path: Path, frame: pd.DataFrame, name: str = "sol.csv") -> str:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


def run(work: Path, test: pd.DataFrame | None = None, solution_csv: str = "") -> dict:
    return submit(work, make_test() if test is None else test, TRAIN_TARGET, "amazon2025",
                  solution_csv=solution_csv)


def out_files(work: Path) -> set[str]:
    folder = work / "05_submit"
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


# --------------------------------------------------------------------------------------------------
# The solution file
# --------------------------------------------------------------------------------------------------


def test_a_full_solution_is_scored_on_all_test_ids(tmp_path: Path, capsys) -> None:
    work = make_work(tmp_path)
    sol = write_solution(tmp_path, pd.DataFrame({"sample_id": IDS, "price": TRUTH}))
    metrics = run(work, solution_csv=sol)
    assert metrics["test_smape"] == pytest.approx(smape(TRUTH, PRED))
    assert metrics["test_scored_rows"] == 4 and metrics["solution_lacks_ids"] == 0
    assert metrics["solution_extra_ids"] == 0
    assert "on all 4 test ids" in capsys.readouterr().out


def test_a_solution_with_some_test_ids_is_scored_on_that_subset_and_says_so(tmp_path: Path, capsys) -> None:
    work = make_work(tmp_path)
    sol = write_solution(tmp_path, pd.DataFrame({"sample_id": IDS[:3], "price": TRUTH[:3]}))
    metrics = run(work, solution_csv=sol)
    assert metrics["test_smape"] == pytest.approx(smape(TRUTH[:3], PRED[:3]))
    assert metrics["test_scored_rows"] == 3 and metrics["solution_lacks_ids"] == 1
    assert metrics["solution_lacks_first"] == ["412"]
    out = capsys.readouterr().out
    assert "on 3 of 4 test ids only" in out and "[412]" in out and "sol.csv" in out
    assert json.loads((work / "05_submit" / "metrics.json").read_text())["test_scored_rows"] == 3


def test_solution_ids_not_in_the_test_are_ignored_and_reported(tmp_path: Path, capsys) -> None:
    work = make_work(tmp_path)
    sol = write_solution(tmp_path, pd.DataFrame({"sample_id": [*IDS, "999"], "price": [*TRUTH, 7.0]}))
    metrics = run(work, solution_csv=sol)
    assert metrics["test_smape"] == pytest.approx(smape(TRUTH, PRED))
    assert metrics["solution_extra_ids"] == 1 and metrics["solution_extra_first"] == ["999"]
    out = capsys.readouterr().out
    assert "1 solution ids not in the test CSV were ignored" in out and "[999]" in out


# (fault, solution frame, words the message must hold)
SOLUTION_FAULTS = [
    ("price column named Price", pd.DataFrame({"sample_id": IDS, "Price": TRUTH}), ["Price", "'price'", "rename"]),
    ("no id column", pd.DataFrame({"id": IDS, "price": TRUTH}), ["'sample_id'", "columns"]),
    ("none of the test ids", pd.DataFrame({"sample_id": ["1", "2"], "price": [1.0, 2.0]}),
     ["none of the 4 test ids", "another test CSV"]),
    ("duplicate id", pd.DataFrame({"sample_id": [*IDS, "205"], "price": [*TRUTH, 3.0]}), ["duplicate", "[205]"]),
    ("empty price", pd.DataFrame({"sample_id": IDS, "price": [12.0, None, 25.0, 50.0]}), ["[205]", "drop"]),
    ("text price", pd.DataFrame({"sample_id": IDS, "price": ["12", "cheap", "25", "50"]}), ["[205]", "price"]),
    ("non-integer id", pd.DataFrame({"sample_id": ["101", "abc", "307", "412"], "price": TRUTH}),
     ["integer ids", "abc"]),
]


@pytest.mark.parametrize(("fault", "frame", "words"), SOLUTION_FAULTS, ids=[f[0] for f in SOLUTION_FAULTS])
def test_a_bad_solution_is_refused_by_name_before_anything_is_written(tmp_path: Path, monkeypatch, fault, frame,
                                                                      words) -> None:
    work = make_work(tmp_path)
    sol = write_solution(tmp_path, frame, name="my_solution.csv")

    def not_reached(*args, **kwargs):
        raise AssertionError("the submission was written before the solution was checked")

    monkeypatch.setattr(submit_stage, "write_submission", not_reached)
    with pytest.raises(ValueError) as err:
        run(work, solution_csv=sol)
    message = str(err.value)
    assert "my_solution.csv" in message, message
    for word in words:
        assert word in message, message
    assert out_files(work) == set()


def test_a_failed_rerun_leaves_no_metrics_beside_another_submission(tmp_path: Path) -> None:
    work = make_work(tmp_path)
    run(work)
    (work / "05_submit" / "distribution.png").write_bytes(b"png")  # what 05's plot cell writes
    assert out_files(work) == {"submission.csv", "metrics.json", "distribution.png"}
    make_work(tmp_path, pred=[11.0, 21.0, 31.0, 41.0])  # new predictions, then a solution that cannot be used
    sol = write_solution(tmp_path, pd.DataFrame({"sample_id": IDS, "Price": TRUTH}))
    with pytest.raises(ValueError, match="sol.csv") as err:
        run(work, solution_csv=sol)
    assert out_files(work) == set(), "no submission, metrics or plot of another run left"
    assert any("removed the previous run's" in note for note in getattr(err.value, "__notes__", []))
    metrics = run(work)  # the fixed rerun writes both again
    assert out_files(work) == {"submission.csv", "metrics.json"}
    assert pd.read_csv(metrics["path"])["price"].tolist() == [11.0, 21.0, 31.0, 41.0]


def test_a_parameter_error_touches_nothing(tmp_path: Path) -> None:
    work = make_work(tmp_path)
    run(work)
    before = {name: (work / "05_submit" / name).read_bytes() for name in out_files(work)}
    with pytest.raises(ValueError, match="file_name"):
        submit(work, make_test(), TRAIN_TARGET, "amazon2025", file_name="../s.csv")
    assert {name: (work / "05_submit" / name).read_bytes() for name in out_files(work)} == before


# --------------------------------------------------------------------------------------------------
# Predictions made for another test CSV
# --------------------------------------------------------------------------------------------------


def test_predictions_for_another_test_csv_say_so_and_leave_no_old_submission(tmp_path: Path) -> None:
    work = make_work(tmp_path)
    first = run(work)
    assert first["valid"] is True
    new_test = make_test(["101", "205", "307", "500"])  # test.csv changed since 01-04 ran
    with pytest.raises(SubmissionError, match="predicted ids are not in the test CSV") as err:
        run(work, test=new_test)
    message = str(err.value)
    for words in ("first [412]", "[500]", "different test CSV", "rerun 01-04", "data_dir",
                  str(work / "04_ensemble" / "test_pred.csv")):
        assert words in message, message
    assert out_files(work) == set(), "the old valid-looking submission and its metrics are gone"


def test_duplicate_predictions_do_not_blame_the_test_csv(tmp_path: Path) -> None:
    work = make_work(tmp_path, ids=[*IDS, "205"], pred=[*PRED, 5.0])
    with pytest.raises(SubmissionError, match="duplicate") as err:
        run(work)
    assert "different test CSV" not in str(err.value)


# --------------------------------------------------------------------------------------------------
# Predictions that no longer match: another test.csv under the same ids, a 04 blend of runs trained since
# --------------------------------------------------------------------------------------------------


def test_predictions_for_other_test_rows_under_the_same_ids_are_refused(tmp_path: Path) -> None:
    from amzkit.core.io import rows_sha256

    work = make_work(tmp_path)
    metrics = work / "04_ensemble" / "metrics.json"
    made_for = rows_sha256(make_test(), "sample_id")
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "test_rows_sha256": made_for}))
    assert run(work)["valid"] is True
    edited = make_test().assign(catalog_content=["y", "x", "x", "x"])  # same ids, one text changed
    with pytest.raises(SubmissionError, match="same ids but other rows.*rerun 01-04"):
        run(work, test=edited)
    assert out_files(work) == set()


def test_the_same_test_rows_in_another_order_are_submitted_in_the_new_order(tmp_path: Path) -> None:
    """05 aligns predictions by id: test.csv re-saved in another row order (sorted, say) is the same test, and was
    refused with 'rerun 01-04' (hours of embedding for a submission that was right); edited text still is refused."""
    from amzkit.core.io import rows_sha256

    work = make_work(tmp_path)
    metrics = work / "04_ensemble" / "metrics.json"
    reordered = make_test().assign(catalog_content=["a", "b", "c", "d"])
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()),
                                   "test_rows_sha256": rows_sha256(reordered, "sample_id")}))
    reordered = reordered.iloc[[2, 0, 3, 1]].reset_index(drop=True)
    result = run(work, test=reordered)
    written = pd.read_csv(result["path"], dtype={"sample_id": str})
    assert written["sample_id"].tolist() == ["307", "101", "412", "205"]  # the test CSV's order now
    assert written["price"].tolist() == [30.0, 10.0, 40.0, 20.0]  # each id keeps its own prediction
    edited = reordered.assign(catalog_content=["c", "a", "d", "x"])  # reordered and one text changed
    with pytest.raises(SubmissionError, match="same ids but other rows"):
        run(work, test=edited)
    assert out_files(work) == set()


def test_predictions_of_models_trained_on_another_train_csv_are_refused(tmp_path: Path) -> None:
    """05 read only test.csv: prices fixed in train.csv after 03 gave a 'valid submission' of the old models."""
    from amzkit.core.io import rows_sha256

    train = pd.DataFrame({"sample_id": [11, 12, 13], "catalog_content": ["a", "b", "c"], "image_link": ["u"] * 3,
                          "price": [5.0, 6.0, 7.0]})
    work = make_work(tmp_path)
    metrics = work / "04_ensemble" / "metrics.json"
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()),
                                   "train_rows_sha256": rows_sha256(train, "sample_id")}))
    assert submit(work, make_test(), TRAIN_TARGET, "amazon2025", train=train)["valid"] is True
    assert submit(work, make_test(), TRAIN_TARGET, "amazon2025", train=train.astype({"sample_id": str}))["valid"]
    for edited in (train.assign(price=[5.0, 6.5, 7.0]), train.assign(catalog_content=["a", "b", "d"])):
        with pytest.raises(SubmissionError, match="trained on another train.csv.*rerun 03-04"):
            submit(work, make_test(), TRAIN_TARGET, "amazon2025", train=edited)
        assert out_files(work) == set()
    pd.DataFrame({"id": [11, 12, 13], "fold": [0, 1, 2], "target": [5.0, 6.0, 7.0], "pred": [5.0, 6.0, 7.0]}).to_csv(
        work / "04_ensemble" / "oof.csv", index=False)  # the rows the models were trained on
    for edited, how in ((train.iloc[:2], "0 ids added, 1 gone"), (train.iloc[::-1], "the same ids in another row")):
        with pytest.raises(SubmissionError, match=f"train.csv now has {how}.*in a new -p work_dir"):
            submit(work, make_test(), TRAIN_TARGET, "amazon2025", train=edited)


def test_a_04_blend_of_runs_trained_again_since_is_refused(tmp_path: Path) -> None:
    from amzkit.ml.runs import run_predictions_sha256

    work = make_work(tmp_path)
    run_dir = work / "03_train" / "lgbm"
    run_dir.mkdir(parents=True)
    pd.DataFrame({"id": IDS, "pred": PRED}).to_csv(run_dir / "test_pred.csv", index=False)
    (run_dir / "oof.csv").write_text("id,fold,target,pred\n1,0,5.0,6.0\n")
    metrics = work / "04_ensemble" / "metrics.json"
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()),
                                   "run_predictions_sha256": {"lgbm": run_predictions_sha256(work, "lgbm")}}))
    assert run(work)["valid"] is True
    (run_dir / "oof.csv").write_text("id,fold,target,pred\n1,0,5.0,7.0\n")  # 03 retrained it under the same name
    with pytest.raises(SubmissionError, match="blended run\\(s\\) 'lgbm' as they were then.*rerun 04, then 05"):
        run(work)
    assert out_files(work) == set()


def test_a_03_source_whose_rerun_was_stopped_says_its_last_finished_outputs_are_submitted(tmp_path, capsys):
    from amzkit.ml.runs import PROGRESS_DIR

    work = make_work(tmp_path)
    run_dir = work / "03_train" / "lgbm"
    (run_dir / PROGRESS_DIR).mkdir(parents=True)
    pd.DataFrame({"id": IDS, "pred": PRED}).to_csv(run_dir / "test_pred.csv", index=False)
    (run_dir / "metrics.json").write_text(json.dumps({"cv_smape": 30.0, "constant_median_smape": 60.0}))
    submit(work, make_test(), TRAIN_TARGET, "amazon2025", source="lgbm")
    assert "run 'lgbm': a rerun was stopped: its last finished outputs are used" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["metrics.json", "distribution.png", "sub.txt"])
def test_a_file_name_that_is_not_a_csv_is_refused(tmp_path: Path, name: str) -> None:
    work = make_work(tmp_path)
    with pytest.raises(ValueError, match="must end in .csv"):
        submit(work, make_test(), TRAIN_TARGET, "amazon2025", file_name=name)


# --------------------------------------------------------------------------------------------------
# The submission log: an LB score pairs with the CV its submission was made with
# --------------------------------------------------------------------------------------------------


def test_a_later_lb_score_pairs_with_the_cv_the_submission_was_made_with(tmp_path: Path, capsys) -> None:
    from types import SimpleNamespace

    from amzkit.app.runners import Context, run_submit
    from amzkit.core.schema import get_schema
    from amzkit.stages.leaderboard import add_score, leaderboard, pair_scores

    work = make_work(tmp_path)  # 04's CV 30.0
    day1 = run(work)
    logged = pd.read_csv(work / "submissions.csv")
    assert logged[["source", "metric", "cv"]].values.tolist() == [["04_ensemble", "smape", 30.0]]
    (work / "04_ensemble" / "metrics.json").write_text(json.dumps({"cv_smape": 25.0, "constant_median_smape": 60.0}))
    row = add_score(work, "04_ensemble", 33.0)  # yesterday's file's score, after 04 was rerun today
    assert row["cv"] == 30.0 and "made at CV 30.000; the run's CV is 25.000 now" in capsys.readouterr().out
    saved = tmp_path / "day1.csv"
    saved.write_bytes(Path(day1["path"]).read_bytes())
    assert add_score(work, str(saved), 34.0)["cv"] == 30.0  # the file itself names its CV
    # one submission named twice in one lb_scores (by its run and by its file) is one point of the CV-LB fit
    pairs, refused = pair_scores(work, {"04_ensemble": 36.0, str(saved): 36.0})
    assert refused == [] and [(pair["run"], pair["lb"]) for pair in pairs] == [("04_ensemble", 36.0)]
    # 05 run today with yesterday's score: the score is recorded before today's submission is logged
    params = SimpleNamespace(source="04_ensemble", file_name="submission.csv", solution_csv="",
                             lb_scores={"04_ensemble": 35.0})
    ctx = Context("05_submit", params, get_schema("amazon2025"), work, data={"test": make_test(),
                  "train": pd.DataFrame({"price": TRAIN_TARGET})})
    run_submit(ctx)
    assert leaderboard(work)["cv"].tolist() == [30.0, 30.0, 30.0]
    assert pd.read_csv(work / "submissions.csv")["cv"].tolist() == [30.0, 25.0]
    capsys.readouterr()
    assert add_score(work, "04_ensemble", 31.0)["cv"] == 25.0  # today's submission, scored tomorrow
    # by the run's name alone it could be yesterday's submission's score too: said, with how to pick that one
    assert ("'04_ensemble' was submitted at 2 CVs (30.000, 25.000, oldest first): the score is paired with the last "
            "submission's, 25.000; for an earlier one give its submission file") in capsys.readouterr().out


def test_a_file_05_did_not_log_is_refused_with_what_to_give_instead(tmp_path: Path) -> None:
    from amzkit.stages.leaderboard import LeaderboardError, add_score

    work = make_work(tmp_path)
    other = tmp_path / "hand_made.csv"
    other.write_text("sample_id,price\n101,5.0\n")
    with pytest.raises(LeaderboardError, match="not a submission 05 logged.*name of the run"):
        add_score(work, str(other), 40.0)
    with pytest.raises(LeaderboardError, match="no submission file"):
        add_score(work, str(tmp_path / "missing.csv"), 40.0)


def test_a_file_05_logged_in_another_work_folder_names_that_folder(tmp_path: Path) -> None:
    """`lb add runs/exp2/05_submit/submission.csv 47.9` without --work-dir (runs/latest) was told to give the name
    of its run instead, which pairs the score with runs/latest's run of that name: another work folder's CV."""
    from amzkit.stages.leaderboard import LeaderboardError, add_score

    latest, exp2 = make_work(tmp_path / "latest"), make_work(tmp_path / "exp2", pred=[11.0, 21.0, 31.0, 41.0])
    (exp2 / "04_ensemble" / "metrics.json").write_text(json.dumps({"cv_smape": 25.0, "constant_median_smape": 60.0}))
    run(latest)
    path = run(exp2)["path"]
    with pytest.raises(LeaderboardError, match="was made in the work folder") as err:
        add_score(latest, path, 40.0)
    message = str(err.value)
    assert f"--work-dir {exp2}" in message and "give the name of the run" not in message, message
    assert not (latest / "leaderboard.csv").exists()
    assert add_score(exp2, path, 40.0)["cv"] == 25.0


def test_the_same_test_csv_read_with_integer_ids_is_not_refused(tmp_path: Path) -> None:
    from amzkit.core.io import rows_sha256

    work = make_work(tmp_path)
    metrics = work / "04_ensemble" / "metrics.json"
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "test_rows_sha256": rows_sha256(make_test(),
                                                                                              "sample_id")}))
    as_numbers = make_test().assign(sample_id=[int(i) for i in IDS])  # pd.read_csv without dtype={"sample_id": str}
    assert run(work, test=as_numbers)["valid"] is True


def test_a_bad_lb_score_entry_costs_no_submission_and_the_good_ones_are_recorded(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from amzkit.app.runners import Context, run_submit
    from amzkit.core.schema import get_schema
    from amzkit.stages.leaderboard import leaderboard

    work = make_work(tmp_path)
    params = SimpleNamespace(source="04_ensemble", file_name="submission.csv", solution_csv="",
                             lb_scores={"04_ensmble": 47.9, "04_ensemble": 31.0})  # a typo beside a good entry
    ctx = Context("05_submit", params, get_schema("amazon2025"), work, data={"test": make_test(),
                  "train": pd.DataFrame({"price": TRAIN_TARGET})})
    # a warning, not an error: the notebook's next cells (the plot; on Kaggle the outputs' listing that
    # `kaggle fetch` needs) still run
    with pytest.warns(UserWarning, match="04_ensmble.*unknown run.*lb add"):
        metrics = run_submit(ctx)
    assert metrics["valid"] is True and "04_ensmble" in metrics["lb_scores_refused"][0]
    assert (work / "05_submit" / "submission.csv").is_file() and (work / "05_submit" / "metrics.json").is_file()
    assert leaderboard(work)["run"].tolist() == ["04_ensemble"]


def test_a_leaderboard_csv_broken_by_hand_costs_neither_the_submission_nor_the_notebooks_end(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from amzkit.app.runners import Context, run_submit, show_cv_vs_lb
    from amzkit.core.schema import get_schema

    work = make_work(tmp_path)
    (work / "leaderboard.csv").write_text("time,run,metric,cv,lb,note\n2026-01-01,04_ensemble,smape,,31.0,\n")
    params = SimpleNamespace(source="04_ensemble", file_name="submission.csv", solution_csv="",
                             lb_scores={"04_ensemble": 33.0})
    ctx = Context("05_submit", params, get_schema("amazon2025"), work, data={"test": make_test(),
                  "train": pd.DataFrame({"price": TRAIN_TARGET})})
    with pytest.warns(UserWarning, match="lb_scores not recorded .*leaderboard.csv: column cv must hold numbers"):
        metrics = run_submit(ctx)
    assert metrics["valid"] and (work / "05_submit" / "submission.csv").is_file()
    with pytest.warns(UserWarning, match="the CV-vs-LB table is not shown: .*row 1 \\(empty\\) is not"):
        assert show_cv_vs_lb(ctx) is None


def test_an_unreadable_submission_log_is_set_aside_not_a_failed_submission(tmp_path: Path, capsys) -> None:
    work = make_work(tmp_path)
    (work / "submissions.csv").write_text("")  # emptied by hand, or a foreign file
    assert run(work)["valid"] is True
    assert "moved to submissions.csv.unreadable-" in capsys.readouterr().out
    assert pd.read_csv(work / "submissions.csv")["source"].tolist() == ["04_ensemble"]


def test_a_04_blend_whose_runs_were_cleaned_away_is_submitted_with_a_note(tmp_path: Path, capsys) -> None:
    work = make_work(tmp_path)
    metrics = work / "04_ensemble" / "metrics.json"
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "run_predictions_sha256": {"gone": "0" * 64}}))
    assert run(work)["valid"] is True
    assert "run(s) 'gone' that 04 blended are no longer" in capsys.readouterr().out


@pytest.mark.parametrize("requested", [[], ["lgbm"], None])
def test_a_04_blend_of_all_runs_names_the_runs_finished_since(tmp_path: Path, capsys, requested) -> None:
    # 04 with runs=[] blended lgbm; 'mlp' finished later: the user believes the blend includes it
    work = make_work(tmp_path)
    for name in ("lgbm", "mlp"):
        (work / "03_train" / name).mkdir(parents=True)
        (work / "03_train" / name / "metrics.json").write_text("{}")
    metrics = work / "04_ensemble" / "metrics.json"
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "runs": ["lgbm"],
                                   **({} if requested is None else {"runs_requested": requested})}))
    assert run(work)["valid"] is True  # submitted all the same
    out = capsys.readouterr().out
    if requested == ["lgbm"]:  # named by hand: left out on purpose
        assert "mlp" not in out
    else:
        assert ("run(s) 'mlp' finished after 04 ran" in out and "does not include them (it blends 'lgbm'): rerun 04"
                in out)


def test_runs_of_the_first_digest_form_are_checked_in_their_own_form(tmp_path: Path) -> None:
    # 2023 runs saved by the previous build hashed every cell as read (PRODUCT_TYPE_ID as a number): refused
    from amzkit.core.io import frame_sha256

    work = make_work(tmp_path)
    metrics = work / "04_ensemble" / "metrics.json"
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "test_sha256": frame_sha256(make_test())}))
    assert run(work)["valid"] is True
    with pytest.raises(SubmissionError, match="same ids but other rows"):
        run(work, test=make_test().assign(catalog_content=["y", "x", "x", "x"]))


def test_a_04_blend_of_runs_saved_before_the_test_digest_is_not_refused(tmp_path: Path) -> None:
    """04 writes test_rows_sha256: null when its runs predate the digest; 05 refused that blend as made for 'other
    rows' (the runs alone were submitted)."""
    work = make_work(tmp_path)
    metrics = work / "04_ensemble" / "metrics.json"
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "train_rows_sha256": None,
                                   "test_rows_sha256": None}))
    assert run(work)["valid"] is True


def test_a_broken_leaderboard_never_costs_the_submission(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from amzkit.app.runners import Context, run_submit
    from amzkit.core.schema import get_schema

    work = make_work(tmp_path)
    (work / "leaderboard.csv").write_text("time,run,cv\nx,y,1\n")  # edited by hand: columns missing
    for scores in ({}, {"04_ensemble": 31.0}):
        params = SimpleNamespace(source="04_ensemble", file_name="submission.csv", solution_csv="", lb_scores=scores)
        ctx = Context("05_submit", params, get_schema("amazon2025"), work, data={"test": make_test(),
                      "train": pd.DataFrame({"price": TRAIN_TARGET})})
        (work / "05_submit" / "submission.csv").unlink(missing_ok=True)
        if scores:
            with pytest.warns(UserWarning, match="lacks the columns"):
                run_submit(ctx)
        else:
            run_submit(ctx)
        assert (work / "05_submit" / "submission.csv").is_file()  # written whether or not the scores are


def test_a_misspelt_source_or_run_lists_the_runs_and_the_closest_name(tmp_path: Path) -> None:
    from amzkit.ml.runs import load_run

    work = make_work(tmp_path)
    run_dir = work / "03_train" / "quick"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"no 03_train run 'quik' .*'quick'.*\['quick'\].*-p source"):
        submit(work, make_test(), TRAIN_TARGET, "amazon2025", source="quik")
    with pytest.raises(FileNotFoundError, match=r"no 03_train run 'quik' .*did you mean 'quick'.*-p runs"):
        load_run(work, "quik")


def test_05_without_a_04_blend_names_the_03_runs_it_could_submit_instead(tmp_path: Path) -> None:
    work = make_work(tmp_path)
    for name in ("ridge", "lgbm"):
        (work / "03_train" / name).mkdir(parents=True)
        (work / "03_train" / name / "metrics.json").write_text("{}")
    for old in (work / "04_ensemble").iterdir():  # as a 04 that failed leaves it
        old.unlink()
    with pytest.raises(FileNotFoundError, match=r"run 04_ensemble first .* -p source <run_name> \(finished runs: "
                                                r"lgbm, ridge\)"):
        run(work)


def test_a_03_run_named_04_ensemble_is_never_offered_as_source_by_that_name(tmp_path: Path) -> None:
    # a work folder from before 03 reserved the name: -p source 04_ensemble means 04's blend, never that run
    work = make_work(tmp_path)
    for name in ("04_ensemble", "lgbm"):
        (work / "03_train" / name).mkdir(parents=True)
        (work / "03_train" / name / "metrics.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"or '04_ensemble' for 04's blend \(its run '04_ensemble': -p "
                                                r"source <new name>, once its folder 03_train/04_ensemble is renamed"):
        submit(work, make_test(), TRAIN_TARGET, "amazon2025", source="lgbn")
    for old in (work / "04_ensemble").iterdir():
        old.unlink()
    with pytest.raises(FileNotFoundError, match=r"finished runs: 04_ensemble, lgbm; run '04_ensemble': -p source "
                                                r"<new name>, once its folder 03_train/04_ensemble is renamed"):
        run(work)


def test_the_05_notebook_hands_its_train_csv_to_the_check(tmp_path: Path, monkeypatch) -> None:
    from types import SimpleNamespace

    from amzkit.app import runners
    from amzkit.core.schema import get_schema

    seen = {}

    def fake_submit(*args, **kwargs):
        seen.update(kwargs)
        return {"path": "x.csv", "rows": 0}

    monkeypatch.setattr(runners, "submit", fake_submit)
    train = pd.DataFrame({"sample_id": [1], "catalog_content": ["a"], "image_link": ["u"], "price": [2.0]})
    ctx = SimpleNamespace(params=SimpleNamespace(lb_scores={}, source="04_ensemble", file_name="submission.csv",
                                                 solution_csv=""),
                          data={"train": train, "test": make_test()}, schema=get_schema("amazon2025"),
                          work_dir=tmp_path)
    runners.run_submit(ctx)
    assert seen["train"] is train


def test_the_distribution_plot_sets_the_submission_beside_the_out_of_fold_predictions(tmp_path: Path) -> None:
    from amzkit.stages.submit import plot_distribution

    work = make_work(tmp_path)
    pd.DataFrame({"id": ["1", "2", "3"], "fold": [0, 1, 2], "target": [5.0, 50.0, 500.0],
                  "pred": [8.0, 40.0, 300.0]}).to_csv(work / "04_ensemble" / "oof.csv", index=False)
    path = run(work)["path"]
    fig = plot_distribution(work, path, np.array([0.0, 5.0, 50.0, 500.0]), "price", source="04_ensemble")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "train target", "out-of-fold predictions (what CV scored)", "submission"]
    assert ax.get_xscale() == "log" and "out-of-fold" in ax.get_title()
    assert (work / "05_submit" / "distribution.png").stat().st_size > 0


def test_a_submission_that_is_the_constant_says_so(tmp_path: Path, capsys) -> None:
    """30 train rows gave LightGBM one tree a fold: a 'valid submission' of one price, with no word about it."""
    work = make_work(tmp_path)
    run(work)
    assert "WARNING" not in capsys.readouterr().out  # CV 30 against the constant's 60, four distinct prices
    flat = make_work(tmp_path / "flat", pred=[15.1607, 15.1608, 15.1606, 15.1607])
    metrics_path = flat / "04_ensemble" / "metrics.json"
    metrics_path.write_text(json.dumps({"cv_smape": 84.56, "constant_median_smape": 84.53}))
    metrics = run(flat)
    out = capsys.readouterr().out
    assert metrics["valid"] and "the source '04_ensemble' scores CV SMAPE 84.560, no better than predicting the " \
                                 "median for every row (84.530)" in out
    assert "every one of the 4 predictions is within 1% of 15.16: this submission is a constant" in out


def test_constant_level_warning_only_below_a_clear_margin() -> None:
    from amzkit.core.metric import constant_level_warning

    assert constant_level_warning(50.0, 60.0, "run 'a'") == ""
    assert constant_level_warning(59.5, 60.0, "run 'a'").startswith("WARNING: run 'a' scores CV SMAPE 59.500")
    assert constant_level_warning(61.0, 60.0, "run 'a'") != ""


def test_predictions_far_beyond_the_training_targets_are_named(tmp_path: Path, capsys) -> None:
    """A 1e30 price (a source gone wrong: exp of a raw score) passed validation with no word; metrics.json
    counted it under outside_train_range, which nobody reads on a deadline."""
    run(make_work(tmp_path, pred=[0.5, 20.0, 150.0, 40.0]))  # a little beyond 1..100: ordinary for a regressor
    assert "WARNING" not in capsys.readouterr().out
    metrics = run(make_work(tmp_path / "far", pred=[0.05, 20.0, 1e30, 40.0]))
    out = capsys.readouterr().out
    assert metrics["valid"] and metrics["outside_train_range"] == 2
    assert ("WARNING: 2 of the 4 predictions lie more than 10x outside the training targets (1 .. 100): "
            "smallest 0.05, largest 1e+30") in out


def test_a_train_csv_re_saved_in_another_row_order_is_refused_with_how_to_put_it_back(tmp_path: Path,
                                                                                         monkeypatch) -> None:
    """The refusal of a reordered train.csv called it 'another train.csv' and offered only 01-05 in a new work
    folder (hours of embeddings on a deadline); the same rows in another order can be put back, and the message
    now says how, with code that does it."""
    from amzkit.core.io import rows_sha256
    from amzkit.core.schema import load_split

    data = tmp_path / "data"
    data.mkdir()
    train_csv = data / "train.csv"
    pd.DataFrame({"sample_id": [11, 12, 13], "catalog_content": ["Item Name: a\nValue: 2", "NA", "c, d"],
                  "image_link": ["u1", "", "u3"], "price": ["5", "6.50", "7.0"]}).to_csv(train_csv, index=False)
    train = load_split(train_csv, "amazon2025", "train")
    work = make_work(tmp_path)
    metrics = work / "04_ensemble" / "metrics.json"
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()),
                                   "train_rows_sha256": rows_sha256(train, "sample_id")}))
    pd.DataFrame({"id": [11, 12, 13], "fold": [0, 1, 2], "target": [5.0, 6.5, 7.0], "pred": [5.0, 6.0, 7.0]}).to_csv(
        work / "04_ensemble" / "oof.csv", index=False)
    pd.read_csv(train_csv, dtype=str, keep_default_na=False).iloc[[2, 0, 1]].to_csv(train_csv, index=False)
    with pytest.raises(SubmissionError, match="train.csv now has the same ids in another row order") as refused:
        submit(work, make_test(), TRAIN_TARGET, "amazon2025", train=load_split(train_csv, "amazon2025", "train"))
    message = str(refused.value)
    assert "the rows themselves are the same" in message and "another train.csv" not in message
    monkeypatch.chdir(data)
    exec(message.split("e.g. ", 1)[1].split("; or point", 1)[0], {"pd": pd})  # the message's own fix
    assert submit(work, make_test(), TRAIN_TARGET, "amazon2025",
                  train=load_split(train_csv, "amazon2025", "train"))["valid"] is True


def test_lb_scores_are_recorded_when_the_submission_itself_fails(tmp_path: Path) -> None:
    """05 paired lb_scores before submitting but wrote them after: a submission that failed (a source misspelt)
    lost them, and its failure removed the submitted file a file key named, so the next rerun could not pair it."""
    from types import SimpleNamespace

    from amzkit.app.runners import Context, run_submit
    from amzkit.core.schema import get_schema
    from amzkit.stages.leaderboard import leaderboard

    work = make_work(tmp_path)
    path = run(work)["path"]  # 04 at CV 30, submitted
    params = SimpleNamespace(source="04_ensmble", file_name="submission.csv", solution_csv="",
                             lb_scores={path: 31.0})
    ctx = Context("05_submit", params, get_schema("amazon2025"), work, data={"test": make_test(),
                  "train": pd.DataFrame({"price": TRAIN_TARGET})})
    with pytest.raises(FileNotFoundError, match="04_ensmble"):
        run_submit(ctx)
    assert leaderboard(work)[["run", "cv", "lb"]].values.tolist() == [["04_ensemble", 30.0, 31.0]]


def test_a_submission_file_named_inside_the_work_folder_is_found_there(tmp_path: Path, monkeypatch) -> None:
    """A relative file key was read from the current folder only: `05_submit/submission.csv` (or `submission.csv`,
    the name Kaggle lists) in lb_scores, from a notebook whose folder is not the work folder, was refused as 'no
    submission file' though 05 had written and logged it."""
    from amzkit.stages.leaderboard import LeaderboardError, add_score, pair_scores

    work = make_work(tmp_path)
    run(work)  # 04 at CV 30
    elsewhere = tmp_path / "notebooks"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    pairs, refused = pair_scores(work, {"05_submit/submission.csv": 31.0})
    assert refused == [] and [(pair["run"], pair["cv"]) for pair in pairs] == [("04_ensemble", 30.0)]
    assert add_score(work, "submission.csv", 31.0)["cv"] == 30.0
    with pytest.raises(LeaderboardError, match=r"no submission file sub\.csv \(looked in .*notebooks, .*work and"):
        add_score(work, "sub.csv", 31.0)


def test_a_blended_runs_metrics_cut_short_costs_neither_the_submission_nor_a_clear_word(tmp_path: Path,
                                                                                        capsys) -> None:
    """A 04 blend saved without its schema reads its first run's metrics.json for the log's metric: one cut short
    raised a JSON error after the submission was written, and the failure removed the new submission too."""
    work = make_work(tmp_path)
    metrics = work / "04_ensemble" / "metrics.json"
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "runs": ["a"]}))
    (work / "03_train" / "a").mkdir(parents=True)
    broken = work / "03_train" / "a" / "metrics.json"
    broken.write_text('{"cv_smape": 31.')
    result = run(work)
    assert result["valid"] is True and out_files(work) == {"submission.csv", "metrics.json"}
    out = capsys.readouterr().out
    assert f"WARNING: the submission was not logged in {work / 'submissions.csv'}" in out
    assert f"{broken} is not valid JSON" in out and "Delete it and rerun" in out
    assert not (work / "submissions.csv").exists()


def test_the_distribution_plot_peaks_where_most_prices_are(tmp_path: Path) -> None:
    """`density=True` on log-spaced bins divided each count by its bin's width in price: on amz25_dev the train
    target drawn this way peaked at 2.9 (median 14.2), so the submission looked shifted 5x to the right."""
    from amzkit.stages.submit import plot_distribution

    work = make_work(tmp_path)
    prices = np.exp(np.random.default_rng(0).normal(np.log(14.0), 1.5, 4000))
    fig = plot_distribution(work, run(work)["path"], prices, "price")
    train_patch = fig.axes[0].patches[0]  # stepfilled: one polygon per series, the train target first
    xy = train_patch.get_xy()
    peak = xy[np.argmax(xy[:, 1]), 0]
    assert 5.0 < peak < 40.0, f"the train target's tallest bin is at {peak:.2f}, not near its median 14"
    assert "share" in fig.axes[0].get_ylabel()
