"""End to end: the five notebooks run headless with papermill on the embedded demo."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from conftest import REPO_ROOT

from amzkit.app.runners import run_demo
from amzkit.stages.submit import validate_file

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    metrics = run_demo(out, n_train=400, n_test=150, seed=1)
    return out, metrics


def _metrics(out, stage, run=None):
    folder = out / stage / run if run else out / stage
    return json.loads((folder / "metrics.json").read_text())


def test_every_stage_writes_metrics_and_plots(demo_run):
    out, _ = demo_run
    extract = _metrics(out, "01_extract")
    assert extract["runs"] == ["color-stats", "tfidf-svd"]
    correlate = _metrics(out, "02_correlate")
    assert set(correlate["runs"]) == {"color-stats", "tfidf-svd"}
    assert all(r["verdict"] in {"STRONG", "MODERATE", "WEAK"} for r in correlate["runs"].values())
    for png in ("02_correlate/correlation_hist.png", "02_correlate/probes.png",
                "03_train/lgbm_text/feature_importance.png", "03_train/lgbm_text/oof_scatter.png",
                "04_ensemble/ensemble.png", "05_submit/distribution.png"):
        assert (out / png).stat().st_size > 1000, png
    assert pd.read_csv(out / "runs.csv")["run"].tolist() == ["lgbm_text", "lgbm_text_image", "ridge_tfidf",
                                                              "lgbm_pseudo", "lgbm_tuned"]


def test_later_phase_parameters_reach_the_library(demo_run):
    """Image groups, the leak report, pseudo-labels and tuning, each switched on by a notebook parameter."""
    out, _ = demo_run
    leaks = json.loads((out / "02_correlate" / "leak_report.json").read_text())
    assert leaks["test_rows"] == 150 and (out / "02_correlate" / "leak_report.png").stat().st_size > 1000
    importance = pd.read_csv(out / "03_train" / "lgbm_text_image" / "feature_importance.csv")["feature"]
    assert {"image_width", "image_mode", "colour_c0_share", "colour_brightness_mean"} <= set(importance)
    pseudo = _metrics(out, "03_train", "lgbm_pseudo")["pseudo_label"]
    assert pseudo["source"] == "lgbm_text" and pseudo["rows"] == 75
    assert {"cv_smape_with", "cv_smape_without"} <= set(pseudo)
    tuned = _metrics(out, "03_train", "lgbm_tuned")
    assert tuned["preset"] == "tuned-lgbm_tuned"
    assert (out / "03_train" / "presets" / "tuned-lgbm_tuned.json").is_file()
    assert (out / "03_train" / "presets" / "tuned-lgbm_tuned.history.png").stat().st_size > 1000


def test_cv_smape_beats_the_constant_median(demo_run):
    out, metrics = demo_run
    for run in ("lgbm_text", "lgbm_text_image"):
        train = _metrics(out, "03_train", run)
        assert train["cv_smape"] < 0.8 * train["constant_median_smape"], run
        oof = pd.read_csv(out / "03_train" / run / "oof.csv")
        from amzkit.core.metric import smape

        assert smape(oof["target"], oof["pred"]) == pytest.approx(train["cv_smape"], rel=1e-12)
    assert metrics["cv_smape"] < 0.8 * metrics["constant_median_smape"]


def test_submission_is_valid_with_one_row_per_test_id(demo_run):
    out, metrics = demo_run
    test = pd.read_csv(out / "data" / "test.csv")
    submission = pd.read_csv(metrics["path"])
    assert list(submission.columns) == ["sample_id", "price"]
    assert submission["sample_id"].tolist() == test["sample_id"].tolist()
    assert validate_file(metrics["path"], out / "data" / "test.csv", "amazon2025") == []
    assert metrics["test_smape"] < metrics["constant_median_smape"]


def test_executed_notebooks_are_saved(demo_run):
    out, _ = demo_run
    names = sorted(p.stem for p in (out / "notebooks").glob("*.ipynb"))
    assert names == ["01_extract", "02_correlate", "03_train_lgbm_pseudo", "03_train_lgbm_text",
                     "03_train_lgbm_text_image", "03_train_lgbm_tuned", "03_train_ridge_tfidf", "04_ensemble",
                     "05_submit"]


def test_papermill_cli_refuses_a_misspelt_parameter(demo_run, tmp_path):
    out, _ = demo_run
    result = subprocess.run(
        [sys.executable, "-m", "papermill", str(REPO_ROOT / "notebooks" / "01_extract.ipynb"),
         str(tmp_path / "out.ipynb"), "-p", "modle", "x", "-p", "data_dir", str(out / "data"),
         "-p", "work_dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0
    assert "unknown parameter 'modle'" in result.stdout + result.stderr


def test_papermill_cli_runs_01_extract_on_the_demo(demo_run, tmp_path):
    out, _ = demo_run
    result = subprocess.run(
        [sys.executable, "-m", "papermill", str(REPO_ROOT / "notebooks" / "01_extract.ipynb"),
         str(tmp_path / "out.ipynb"), "-p", "model", "color-stats", "-p", "data_dir", str(out / "data"),
         "-p", "work_dir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = json.loads((tmp_path / "work" / "01_extract" / "color-stats" / "manifest.json").read_text())
    assert manifest["splits"]["train"]["rows"] == 400 and manifest["splits"]["train"]["ok"] == 400


def test_a_demo_rerun_tunes_afresh_and_leaves_other_tunings(tmp_path) -> None:
    # an Optuna study continues where it stopped: each `make demo` into the same folder added 3 trials and
    # printed other numbers than README (34.57, then 34.28 after three runs)
    from amzkit.app.runners import reset_demo_tuning
    from amzkit.stages.tune import tuning_paths

    demo, mine = tuning_paths(tmp_path, "tuned-lgbm_tuned"), tuning_paths(tmp_path, "tuned-mine")
    for path in [*demo.values(), *mine.values()]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    assert sorted(reset_demo_tuning(tmp_path)) == sorted(path.name for path in demo.values())
    assert not any(path.exists() for path in demo.values()) and all(path.exists() for path in mine.values())
    assert reset_demo_tuning(tmp_path) == []
