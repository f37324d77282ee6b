"""amzkit.leaderboard: LB scores beside CV, the CV-LB fit, the tracking verdict, the plot and the `lb` CLI."""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from amzkit.core.io import write_json
from amzkit.stages.leaderboard import (
    LB_COLUMNS,
    LeaderboardError,
    add_cli,
    add_score,
    cv_lb_fit,
    leaderboard,
    plot_cv_vs_lb,
    record_scores,
    show_leaderboard,
    tracking_verdict,
)


def make_run(work_dir: Path, run: str, cv: float) -> None:
    folder = work_dir / "04_ensemble" if run == "04_ensemble" else work_dir / "03_train" / run
    write_json(folder / "metrics.json", {"run": run, "cv_smape": cv})


def points(cv: list[float], lb: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"run": [f"r{i}" for i in range(len(cv))], "cv": cv, "lb": lb})


def test_add_and_read_back(tmp_path: Path) -> None:
    make_run(tmp_path, "lgbm_a", 48.25)
    make_run(tmp_path, "04_ensemble", 46.5)
    add_score(tmp_path, "lgbm_a", 49.0, note="first, with comma")
    row = add_score(tmp_path, "04_ensemble", 47.75)
    assert row["cv"] == 46.5 and row["metric"] == "smape"
    table = leaderboard(tmp_path)
    assert list(table.columns) == [*LB_COLUMNS, "gap"]
    assert table["run"].tolist() == ["lgbm_a", "04_ensemble"]
    assert table["cv"].tolist() == [48.25, 46.5]
    assert table["lb"].tolist() == [49.0, 47.75]
    assert table["gap"].tolist() == pytest.approx([0.75, 1.25])
    assert table["note"].tolist() == ["first, with comma", ""]
    assert not list(tmp_path.glob(".leaderboard.csv.*"))  # atomic write left no temporary file


def test_a_leaderboard_edited_by_hand_names_the_line_that_is_not_a_number(tmp_path: Path) -> None:
    make_run(tmp_path, "lgbm_a", 48.25)
    add_score(tmp_path, "lgbm_a", 49.0)
    add_score(tmp_path, "lgbm_a", 50.0)
    path = tmp_path / "leaderboard.csv"
    table = pd.read_csv(path)
    table["lb"] = table["lb"].astype(object)
    table.loc[1, "lb"] = "52,0"
    table.loc[0, "cv"] = None
    table.to_csv(path, index=False)
    with pytest.raises(LeaderboardError, match=r"column cv must hold numbers; row 1 \(empty\) is not"):
        leaderboard(tmp_path)
    table.loc[0, "cv"] = 48.25
    table.to_csv(path, index=False)
    with pytest.raises(LeaderboardError, match=r"leaderboard.csv: column lb must hold numbers; row 2 \('52,0'\) .*"
                                               r"'\.' before the decimals"):
        leaderboard(tmp_path)


def test_the_same_score_added_twice_is_one_point(tmp_path: Path) -> None:
    """`lb add` run twice (a rerun cell, a shell history) made two points of one submission in the CV-LB fit."""
    make_run(tmp_path, "04_ensemble", 46.5)
    add_score(tmp_path, "04_ensemble", 47.75)
    again = add_score(tmp_path, "04_ensemble", 47.75)
    assert again["already"] is True and again["lb"] == 47.75
    assert len(leaderboard(tmp_path)) == 1
    add_score(tmp_path, "04_ensemble", 47.5)  # another score of it (another submission) is a new point
    assert leaderboard(tmp_path)["lb"].tolist() == [47.75, 47.5]
    make_run(tmp_path, "04_ensemble", 45.0)  # trained again and submitted: the same LB at another CV is new
    assert "already" not in add_score(tmp_path, "04_ensemble", 47.75)
    assert leaderboard(tmp_path)["cv"].tolist() == [46.5, 46.5, 45.0]


def test_empty_leaderboard(tmp_path: Path) -> None:
    table = leaderboard(tmp_path)
    assert table.empty and "gap" in table.columns


def test_unknown_run_names_existing_runs(tmp_path: Path) -> None:
    make_run(tmp_path, "lgbm_a", 48.0)
    make_run(tmp_path, "04_ensemble", 47.0)
    with pytest.raises(LeaderboardError, match="unknown run 'nope'.*lgbm_a, 04_ensemble"):
        add_score(tmp_path, "nope", 50.0)
    with pytest.raises(LeaderboardError, match="unknown run"):
        add_score(tmp_path, "../03_train", 50.0)
    assert not (tmp_path / "leaderboard.csv").exists()


@pytest.mark.parametrize("score", [-0.1, 200.5, float("nan"), float("inf"), "abc"])
def test_bad_score_refused(tmp_path: Path, score) -> None:
    make_run(tmp_path, "lgbm_a", 48.0)
    with pytest.raises(LeaderboardError, match="outside 0..200|not a number"):
        add_score(tmp_path, "lgbm_a", score)
    assert not (tmp_path / "leaderboard.csv").exists()


def test_edge_scores_accepted(tmp_path: Path) -> None:
    make_run(tmp_path, "lgbm_a", 48.0)
    add_score(tmp_path, "lgbm_a", 0)
    add_score(tmp_path, "lgbm_a", 200)
    assert leaderboard(tmp_path)["lb"].tolist() == [0.0, 200.0]


def test_fit_recovers_exact_line() -> None:
    cv = [40.0, 42.0, 45.0, 50.0, 47.0]
    lb = [1.2 * x - 7.0 for x in cv]
    fit = cv_lb_fit(points(cv, lb))
    assert fit["n"] == 5
    assert fit["slope"] == pytest.approx(1.2)
    assert fit["intercept"] == pytest.approx(-7.0)
    assert fit["r"] == pytest.approx(1.0)
    assert fit["mean_gap"] == pytest.approx(sum(b - a for a, b in zip(cv, lb, strict=True)) / 5)
    assert fit["latest_residual"] == pytest.approx(0.0, abs=1e-9)


def test_fit_point_counts() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        cv_lb_fit(points([45.0], [46.0]))
    fit = cv_lb_fit(points([45.0, 47.0], [46.0, 49.0]))
    assert fit["slope"] == pytest.approx(1.5) and fit["r"] is None and fit["latest_residual"] is None
    assert tracking_verdict(fit).startswith("too few points")


def test_verdict_flips_when_a_point_breaks_the_trend() -> None:
    cv = [40.0, 42.0, 44.0, 46.0]
    lb = [x + 1.0 for x in cv]
    assert tracking_verdict(cv_lb_fit(points(cv, lb))).startswith("CV tracks LB")
    # a better CV whose LB is far worse: the latest point leaves the line
    broken = tracking_verdict(cv_lb_fit(points([*cv, 38.0], [*lb, 49.0])))
    assert broken.startswith("CV stopped tracking:")
    assert "latest submission" in broken and "worse" in broken


def test_verdict_flags_low_correlation() -> None:
    fit = cv_lb_fit(points([40.0, 41.0, 42.0, 43.0], [45.0, 43.0, 45.2, 43.1]))
    assert fit["r"] < 0.5
    verdict = tracking_verdict(fit)
    assert verdict.startswith("CV stopped tracking:") and "Pearson r" in verdict


def test_plot_written(tmp_path: Path) -> None:
    for i, cv in enumerate([44.0, 46.0, 48.0]):
        make_run(tmp_path, f"run{i}", cv)
        add_score(tmp_path, f"run{i}", cv + 0.5)
    fig = plot_cv_vs_lb(tmp_path)
    try:
        png = tmp_path / "cv_vs_lb.png"
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(fig.axes[0].lines) == 2  # y = x and the fitted line
    finally:
        plt.close(fig)


def test_plot_without_scores_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no leaderboard scores"):
        plot_cv_vs_lb(tmp_path)


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="amzkit")
    add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_add_and_show(tmp_path: Path, capsys) -> None:
    make_run(tmp_path, "lgbm_a", 45.0)
    make_run(tmp_path, "lgbm_b", 47.0)
    make_run(tmp_path, "04_ensemble", 44.0)
    wd = ["--work-dir", str(tmp_path)]
    assert run_cli(["lb", "add", "lgbm_a", "46.0", *wd, "--note", "sub1"]) == 0
    assert "gap +1.000" in capsys.readouterr().out
    assert run_cli(["lb", "add", "lgbm_b", "48.0", *wd]) == 0
    assert run_cli(["lb", "add", "04_ensemble", "45.0", *wd]) == 0
    capsys.readouterr()
    assert run_cli(["lb", "show", *wd, "--plot"]) == 0
    out = capsys.readouterr().out
    assert "lgbm_b" in out and "+1.000" in out and "CV tracks LB" in out
    assert (tmp_path / "cv_vs_lb.png").is_file()
    plt.close("all")
    assert len(leaderboard(tmp_path)) == 3


def test_cli_errors(tmp_path: Path, capsys) -> None:
    make_run(tmp_path, "lgbm_a", 45.0)
    assert run_cli(["lb", "add", "missing", "46.0", "--work-dir", str(tmp_path)]) == 1
    assert "runs that exist: lgbm_a" in capsys.readouterr().err
    assert run_cli(["lb", "add", "lgbm_a", "250", "--work-dir", str(tmp_path)]) == 1
    assert "outside 0..200" in capsys.readouterr().err
    assert not (tmp_path / "leaderboard.csv").exists()


def test_notebook_section_records_scores_once_and_plots(tmp_path: Path, capsys) -> None:
    assert show_leaderboard(tmp_path, {}) is None
    assert "no public LB scores yet" in capsys.readouterr().out
    for run, cv in (("a", 45.0), ("b", 47.0), ("c", 50.0)):
        make_run(tmp_path, run, cv)
    scores = {"a": 46.0, "b": 48.1, "c": 51.2}
    fig = show_leaderboard(tmp_path, scores)
    assert fig is not None and (tmp_path / "cv_vs_lb.png").stat().st_size > 1000
    show_leaderboard(tmp_path, scores)  # the notebook rerun with the same parameter adds nothing
    table = leaderboard(tmp_path)
    assert table["run"].tolist() == ["a", "b", "c"] and table["lb"].tolist() == [46.0, 48.1, 51.2]
    assert "recorded 0 new" in capsys.readouterr().out.split("recorded 3 new")[-1]
    with pytest.raises(LeaderboardError, match="nope"):
        show_leaderboard(tmp_path, {"nope": 40.0})
    plt.close("all")


def make_2023_run(work_dir: Path, run: str, smape_cv: float, score_cv: float) -> None:
    folder = work_dir / "04_ensemble" if run == "04_ensemble" else work_dir / "03_train" / run
    write_json(folder / "metrics.json", {"run": run, "schema": "amazon2023", "cv_smape": smape_cv,
                                         "cv_score2023": score_cv, "cv_mape": 1 - score_cv / 100})


def test_2023_scores_are_the_2023_leaderboard_metric_higher_is_better(tmp_path: Path, capsys) -> None:
    # the 2023 leaderboard shows max(0, 100(1-MAPE)): a run's CV in that metric is recorded beside it, never its
    # SMAPE, and a CV that rises with the LB tracks it (it used to be read as SMAPE: r = -1, "stopped tracking")
    for i, (smape_cv, score_cv) in enumerate([(50.0, 40.0), (48.0, 45.0), (46.0, 50.0)]):
        make_2023_run(tmp_path, f"r{i}", smape_cv, score_cv)
    show_leaderboard(tmp_path, {"r0": 41.0, "r1": 46.0, "r2": 51.0})
    out = capsys.readouterr().out
    table = leaderboard(tmp_path)
    assert table["metric"].tolist() == ["score2023"] * 3 and table["cv"].tolist() == [40.0, 45.0, 50.0]
    fit = cv_lb_fit(table)
    assert fit["metric"] == "score2023" and fit["r"] == pytest.approx(1.0)
    assert "CV tracks LB" in out and "stopped" not in out
    make_2023_run(tmp_path, "r3", 44.0, 55.0)  # better CV, far lower LB score: worse, not better
    add_score(tmp_path, "r3", 30.0)
    verdict = tracking_verdict(cv_lb_fit(leaderboard(tmp_path)))
    assert verdict.startswith("CV stopped tracking:") and "worse" in verdict and "2023 score" in verdict
    with pytest.raises(LeaderboardError, match="outside 0..100"):
        add_score(tmp_path, "r0", 150.0)
    plt.close("all")


def test_2023_ensemble_takes_its_runs_schema(tmp_path: Path) -> None:
    make_2023_run(tmp_path, "r0", 50.0, 40.0)
    write_json(tmp_path / "04_ensemble" / "metrics.json", {"runs": ["r0"], "cv_smape": 49.0, "cv_score2023": 42.0})
    assert add_score(tmp_path, "04_ensemble", 43.0)["cv"] == 42.0


def test_a_leaderboard_csv_of_the_old_columns_reads_as_smape(tmp_path: Path) -> None:
    pd.DataFrame({"time": ["t"], "run": ["a"], "cv_smape": [45.0], "lb_smape": [46.0], "note": [""]}).to_csv(
        tmp_path / "leaderboard.csv", index=False)
    make_run(tmp_path, "b", 47.0)
    add_score(tmp_path, "b", 48.5)
    table = leaderboard(tmp_path)
    assert list(table.columns) == [*LB_COLUMNS, "gap"] and table["metric"].tolist() == ["smape", "smape"]
    assert table["gap"].tolist() == pytest.approx([1.0, 1.5])


def test_one_metric_per_leaderboard(tmp_path: Path) -> None:
    make_run(tmp_path, "a", 45.0)
    add_score(tmp_path, "a", 46.0)
    make_2023_run(tmp_path, "b", 50.0, 40.0)
    with pytest.raises(LeaderboardError, match="holds smape scores.*score2023"):
        add_score(tmp_path, "b", 41.0)
    assert len(leaderboard(tmp_path)) == 1


def test_an_lb_score_entered_as_a_fraction_is_refused_with_the_points_it_means(tmp_path: Path) -> None:
    """0.45 for the leaderboard's 45 was recorded and then decided the CV-LB fit on its own."""
    make_run(tmp_path, "lgbm_a", 48.25)
    with pytest.raises(LeaderboardError, match=r"score 0.45 beside a CV of 48.250 looks like a fraction.*e\.g\. 45 "):
        add_score(tmp_path, "lgbm_a", 0.45)
    with pytest.raises(LeaderboardError, match="looks like a fraction"):
        record_scores(tmp_path, {"lgbm_a": 0.45})
    assert add_score(tmp_path, "lgbm_a", 45.0)["lb"] == 45.0
    make_run(tmp_path, "tiny", 0.8)  # a CV below 2 (a near-perfect model) leaves a score below 1 alone
    assert add_score(tmp_path, "tiny", 0.5)["lb"] == 0.5


def test_a_score_kept_in_lb_scores_after_its_run_was_submitted_again_is_not_a_second_point(tmp_path: Path) -> None:
    """05 rerun with the same lb_scores after the run was retrained and submitted again paired the old score with
    the new submission's CV: a point of a submission never made in the CV-LB fit."""
    from amzkit.stages.leaderboard import log_submission

    submission = tmp_path / "submission.csv"
    make_run(tmp_path, "a", 47.0)
    submission.write_text("sample_id,price\n1,5.0\n")
    log_submission(tmp_path, "a", submission)  # 05: a at CV 47, scored 47.9 on the LB
    make_run(tmp_path, "a", 46.0)  # trained again
    record_scores(tmp_path, {"a": 47.9})  # 05 with lb_scores, before it logs its own submission
    submission.write_text("sample_id,price\n1,6.0\n")
    log_submission(tmp_path, "a", submission)  # ... which is a at CV 46
    record_scores(tmp_path, {"a": 47.9})  # 05 rerun, lb_scores unchanged
    assert add_score(tmp_path, "a", 47.9)["already"] is True  # `lb add` of that score again
    table = leaderboard(tmp_path)
    assert table[["cv", "lb"]].values.tolist() == [[47.0, 47.9]]
    record_scores(tmp_path, {"a": 47.1})  # the new submission's own score
    assert leaderboard(tmp_path)[["cv", "lb"]].values.tolist() == [[47.0, 47.9], [46.0, 47.1]]


def test_a_third_submission_on_the_trend_is_not_judged_by_a_line_through_two_points() -> None:
    """A line through the first two submissions fits them exactly (RMSE 0), so ordinary LB noise on a third at
    another CV was 'CV stopped tracking' (here r = 0.997); the latest point is judged once 3 earlier ones give
    the trend a scatter."""
    fit = cv_lb_fit(points([45.0, 45.4, 43.0], [46.1, 46.3, 44.0]))
    assert fit["r"] > 0.99 and fit["latest_residual"] is None
    assert tracking_verdict(fit).startswith("CV tracks LB (r = 1.00")
    fit = cv_lb_fit(points([45.0, 45.4, 44.0, 43.0], [46.1, 46.3, 45.0, 47.5]))  # 3 earlier: judged
    assert fit["latest_residual"] == pytest.approx(3.5, abs=0.1)
    assert "latest submission" in tracking_verdict(fit)


def test_an_lb_that_never_moves_while_the_cv_does_is_not_tracking() -> None:
    """Identical LB scores (a 2023 score clamped at 0) over submissions of other CVs have no r, and lie on a flat
    line: the verdict said 'CV tracks LB (LB ~= 0.00 * CV ...)'."""
    table = points([5.0, 12.0, 20.0, 31.0], [0.0, 0.0, 0.0, 0.0]).assign(metric="score2023")
    verdict = tracking_verdict(cv_lb_fit(table))
    assert verdict.startswith("CV stopped tracking: the LB stayed at 0.000 over 4 submissions while their CV "
                              "ranged 5.00..31.00") and "clamps" in verdict
    assert tracking_verdict(cv_lb_fit(points([45.0, 46.0, 47.0], [47.5] * 3))).startswith("CV stopped tracking")
    assert tracking_verdict(cv_lb_fit(points([45.0, 45.0, 45.0], [47.5] * 3))).startswith("too few points")


def test_a_logged_submission_of_a_run_that_is_unfinished_now_can_still_be_scored(tmp_path: Path, capsys) -> None:
    """A 04 (or 03) rerun that failed leaves no metrics.json: the LB score of the submission made from the run
    before was refused as 'unknown run', though 05's log holds the CV it was made with."""
    from amzkit.stages.leaderboard import log_submission

    make_run(tmp_path, "04_ensemble", 46.5)
    submission = tmp_path / "submission.csv"
    submission.write_text("sample_id,price\n1,5.0\n")
    log_submission(tmp_path, "04_ensemble", submission)
    (tmp_path / "04_ensemble" / "metrics.json").unlink()  # 04 rerun today, failed
    row = add_score(tmp_path, "04_ensemble", 47.75)
    assert (row["cv"], row["lb"], row["metric"]) == (46.5, 47.75, "smape")
    assert "not a finished run now" in capsys.readouterr().out
    assert record_scores(tmp_path, {"04_ensemble": 47.75}) == []  # the same point, from 05's lb_scores
    with pytest.raises(LeaderboardError, match="unknown run 'never_submitted'"):
        add_score(tmp_path, "never_submitted", 47.0)


@pytest.mark.parametrize("name", ["NA", "null", "nan", "None"])
def test_a_run_named_like_a_missing_value_keeps_its_name_and_its_logged_cv(tmp_path: Path, name: str) -> None:
    """pandas reads NA, null, nan and None as missing: the logs lost such a run's name, so its score paired with its
    CV now instead of its logged submission's, and the same score given again was recorded as another point."""
    from amzkit.stages.leaderboard import log_submission

    submission = tmp_path / "submission.csv"
    make_run(tmp_path, name, 47.0)
    submission.write_text("sample_id,price\n1,5.0\n")
    log_submission(tmp_path, name, submission)
    make_run(tmp_path, name, 46.0)  # trained again after that submission
    assert add_score(tmp_path, name, 48.0)["cv"] == 47.0
    assert add_score(tmp_path, name, 48.0)["already"] is True
    assert record_scores(tmp_path, {name: 48.0}) == []
    assert leaderboard(tmp_path)[["run", "cv", "lb"]].values.tolist() == [[name, 47.0, 48.0]]


def test_a_submission_file_kept_in_lb_scores_after_05_wrote_it_anew_is_not_a_second_point(tmp_path: Path) -> None:
    """A file key in lb_scores names the file as it is now: after 05 wrote another submission at that path, a rerun
    with lb_scores unchanged paired the earlier file's LB score with the new file's source and CV."""
    from amzkit.stages.leaderboard import log_submission

    submission = tmp_path / "05_submit" / "submission.csv"
    submission.parent.mkdir()
    make_run(tmp_path, "a", 47.0)
    make_run(tmp_path, "b", 45.0)
    submission.write_text("sample_id,price\n1,5.0\n")
    log_submission(tmp_path, "a", submission)  # 05 from a; submitted, scored 48.1
    assert len(record_scores(tmp_path, {str(submission): 48.1})) == 1  # 05 rerun with that score, source b ...
    submission.write_text("sample_id,price\n1,6.0\n")
    log_submission(tmp_path, "b", submission)  # ... writes b's submission over the file
    assert record_scores(tmp_path, {str(submission): 48.1}) == []  # 05 rerun, lb_scores unchanged
    assert leaderboard(tmp_path)[["run", "cv", "lb"]].values.tolist() == [["a", 47.0, 48.1]]
    record_scores(tmp_path, {str(submission): 46.2})  # the new file's own score
    assert leaderboard(tmp_path)[["run", "cv", "lb"]].values.tolist() == [["a", 47.0, 48.1], ["b", 45.0, 46.2]]
    assert add_score(tmp_path, submission, 48.1)["cv"] == 45.0  # `lb add` names the file as it is: b's, same LB


def test_a_run_named_like_a_csv_file_is_scored_as_the_run(tmp_path: Path, monkeypatch) -> None:
    """03 accepts a run_name such as v2.csv: `lb add v2.csv 47.9` and lb_scores {"v2.csv": ...} took it for a
    submission file and refused it ('no submission file v2.csv'); a name that is both a run and a file is refused
    naming both."""
    from amzkit.stages.leaderboard import log_submission

    monkeypatch.chdir(tmp_path)
    submission = tmp_path / "05_submit" / "submission.csv"
    submission.parent.mkdir()
    make_run(tmp_path, "v2.csv", 47.0)
    submission.write_text("sample_id,price\n1,5.0\n")
    log_submission(tmp_path, "v2.csv", submission)
    make_run(tmp_path, "v2.csv", 46.0)  # trained again since: by name the score is the logged submission's
    assert add_score(tmp_path, "v2.csv", 48.0)["cv"] == 47.0
    assert add_score(tmp_path, "v2.csv", 48.0)["already"] is True
    assert record_scores(tmp_path, {"v2.csv": 48.5})[0]["cv"] == 47.0
    assert add_score(tmp_path, str(submission), 48.5)["already"] is True  # the file names the same submission
    (tmp_path / "v2.csv").write_text("sample_id,price\n1,5.0\n")  # a file of that name too: which one?
    with pytest.raises(LeaderboardError, match=r"'v2\.csv' names both the 03_train run .*v2\.csv and the file .*"
                                               r"v2\.csv"):
        add_score(tmp_path, "v2.csv", 49.0)
    assert add_score(tmp_path, str(submission), 48.0)["already"] is True  # a path with its folder is a file
    assert leaderboard(tmp_path)[["run", "cv", "lb"]].values.tolist() == [["v2.csv", 47.0, 48.0],
                                                                          ["v2.csv", 47.0, 48.5]]


def test_an_old_03_run_named_04_ensemble_is_never_taken_for_the_blend(tmp_path: Path) -> None:
    """A 03 run named 04_ensemble (from before 03 reserved the name) was listed as a run to score: without a 04
    blend, `lb add 04_ensemble` failed with 'expected .../04_ensemble/metrics.json' (a FileNotFoundError), which
    also kept a logged blend submission whose 04 rerun failed from being scored."""
    from amzkit.stages.leaderboard import log_submission

    write_json(tmp_path / "03_train" / "04_ensemble" / "metrics.json", {"cv_smape": 47.0})  # old run; no blend
    make_run(tmp_path, "lgbm", 48.0)
    with pytest.raises(LeaderboardError, match=r"unknown run '04_ensemble'.*runs that exist: lgbm; "
                                               r"'04_ensemble' is 04's blend.*03_train/04_ensemble.*rename"):
        add_score(tmp_path, "04_ensemble", 47.5)
    make_run(tmp_path, "04_ensemble", 46.5)  # the blend
    submission = tmp_path / "submission.csv"
    submission.write_text("sample_id,price\n1,5.0\n")
    log_submission(tmp_path, "04_ensemble", submission)
    (tmp_path / "04_ensemble" / "metrics.json").unlink()  # 04 rerun, failed: the logged blend submission counts
    assert add_score(tmp_path, "04_ensemble", 47.75)["cv"] == 46.5


def test_the_log_names_a_submission_so_that_it_still_resolves_from_another_folder(tmp_path: Path,
                                                                                  monkeypatch) -> None:
    """05 logged its file as given (relative to the folder it ran in; or absolute, which a moved work folder, as
    Kaggle's outputs downloaded, no longer matches): from elsewhere a file key kept in lb_scores after 05 wrote the
    file anew no longer matched the earlier file's log line, and its score became a second point."""
    from amzkit.stages.leaderboard import log_submission

    monkeypatch.chdir(tmp_path)
    work = Path("work")  # relative, as a script's submit("work", ...) gives it
    make_run(work, "a", 47.0)
    make_run(work, "b", 45.0)
    submission = work / "05_submit" / "submission.csv"
    submission.parent.mkdir()
    submission.write_text("sample_id,price\n1,5.0\n")
    assert log_submission(work, "a", submission)["file"] == "05_submit/submission.csv"  # inside the work folder
    assert len(record_scores(work, {"05_submit/submission.csv": 48.1})) == 1
    submission.write_text("sample_id,price\n1,6.0\n")
    log_submission(work, "b", submission)  # b's submission written over a's
    (tmp_path / "work").rename(tmp_path / "moved")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    moved = tmp_path / "moved"
    assert record_scores(moved, {"05_submit/submission.csv": 48.1}) == []  # lb_scores kept: a's score, not b's
    assert leaderboard(moved)[["run", "cv", "lb"]].values.tolist() == [["a", 47.0, 48.1]]


def test_a_log_of_paths_relative_to_where_05_ran_is_still_read(tmp_path: Path, monkeypatch) -> None:
    """submissions.csv written before files were logged relative to the work folder holds them as 05 was given them
    (relative to the folder it ran in): they still name their file."""
    from amzkit.stages.leaderboard import _file_sha256

    monkeypatch.chdir(tmp_path)
    make_run(tmp_path / "work", "a", 47.0)
    make_run(tmp_path / "work", "b", 45.0)
    submission = tmp_path / "work" / "05_submit" / "submission.csv"
    submission.parent.mkdir()
    submission.write_text("sample_id,price\n1,6.0\n")
    pd.DataFrame({"time": ["t1", "t2"], "source": ["a", "b"], "file": ["work/05_submit/submission.csv"] * 2,
                  "sha256": ["0" * 64, _file_sha256(submission)], "metric": ["smape"] * 2, "cv": [47.0, 45.0]}
                 ).to_csv(tmp_path / "work" / "submissions.csv", index=False)
    pd.DataFrame([{"time": "t", "run": "a", "metric": "smape", "cv": 47.0, "lb": 48.1, "note": ""}]).to_csv(
        tmp_path / "work" / "leaderboard.csv", index=False)
    assert record_scores(tmp_path / "work", {str(submission): 48.1}) == []  # a's score, kept in lb_scores
