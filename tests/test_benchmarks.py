"""The benchmark scripts' own helpers (the scripts themselves take minutes; they are run by hand)."""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO_ROOT / "benchmarks"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_price_quality_finetune_line_skips_a_lightgbm_row_that_failed():
    # a failed row is a string in the table; the closing comparison must not index it (TypeError after the whole run)
    price_quality = load_script("price_quality")
    finetune = {"cv_smape": 60.0, "fold_std": 1.0, "seconds": 9.0}
    assert price_quality.finetune_verdict("minilm", finetune, "failed: MemoryError: ") == ""
    assert price_quality.finetune_verdict("minilm", "unavailable: learner 'finetune' cannot be loaded", finetune) == ""
    line = price_quality.finetune_verdict("minilm", finetune, {"cv_smape": 55.0, "fold_std": 1.0, "seconds": 3.0})
    assert line == "finetune minilm does not beat LightGBM default + minilm: 60.00 vs 55.00 (+5.00)"


def test_ensemble_quality_labels_the_nested_ensemble_and_the_single_runs_own_cv_as_what_they_are():
    # the single run's plain CV sat under "nested CV SMAPE", and the verdict's number (04's cv_smape, the choice of
    # method made inside each fold) was called "best ensemble" and was in no row of the table
    ensemble_quality = load_script("ensemble_quality")
    inside = "best (picked inside each fold)"
    table = [{"model": "lgbm", "nested_smape": 44.5, "fold_std": 1.0, "in_sample_smape": 44.5},
             {"model": "ridge", "nested_smape": 47.0, "fold_std": 1.2, "in_sample_smape": 47.0},
             *({"model": m, "nested_smape": 44.0, "fold_std": 0.9, "in_sample_smape": 43.0}
               for m in ensemble_quality.COMPARED),
             {"model": inside, "nested_smape": 44.1, "fold_std": 0.8, "in_sample_smape": float("nan")}]
    metrics = {"table": table, "best_single_run": "lgbm", "best_single_smape": 44.5, "cv_smape": 44.1,
               "cv_scores": inside}
    rows, line = ensemble_quality.comparison(metrics)
    assert list(rows["model"]) == ["best single run (lgbm): its own CV, nothing chosen",
                                   *(f"{m}: nested" for m in ensemble_quality.COMPARED), f"{inside}: 04's cv_smape"]
    assert list(rows["CV SMAPE"]) == [44.5, 44.0, 44.0, 44.0, 44.0, 44.1]
    assert line == (f"04's cv_smape ({inside}) vs the best single run's own CV (lgbm; a single run has no method to "
                    "choose): 44.10 vs 44.50 (+0.40 points): MEETS")


@pytest.mark.parametrize("name", ["train_quality", "ensemble_quality", "price_quality"])
def test_quality_benchmark_without_its_rows_says_where_to_find_them_and_keeps_the_work_folder(name, tmp_path):
    # AMZKIT_SHARED_DATA (as the tests and the other benchmarks read it) points at a folder without the CSV
    work = tmp_path / "work"
    (work / "03_train" / "earlier_run").mkdir(parents=True)
    env = {**os.environ, "AMZKIT_SHARED_DATA": str(tmp_path / "no_data"), "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, str(BENCHMARKS / f"{name}.py"), "--work", str(work)],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert str(tmp_path / "no_data") in result.stderr and "AMZKIT_SHARED_DATA" in result.stderr
    assert "Traceback" not in result.stderr
    assert (work / "03_train" / "earlier_run").is_dir()  # an earlier run's results are not removed first


def test_train_quality_holds_out_a_third_of_a_smaller_csv_and_refuses_too_few_rows(tmp_path):
    # it held out the first 500 rows whatever the CSV: at 500 rows or fewer nothing was left to train on, and the
    # hidden-rows table crashed after minutes of runs
    train_quality = load_script("train_quality")
    assert train_quality.hidden_count(1716) == 500
    assert train_quality.hidden_count(600) == 200
    assert train_quality.hidden_count(150) == 50
    csv = tmp_path / "small.csv"
    csv.write_text("PRODUCT_ID,TITLE,BULLET_POINTS,DESCRIPTION,PRODUCT_TYPE_ID,PRODUCT_LENGTH\n"
                   + "".join(f"{i},Cotton shirt {i},,,{i % 3},{100 + i}\n" for i in range(1, 101)))
    work = tmp_path / "work"
    (work / "03_train" / "earlier_run").mkdir(parents=True)
    result = subprocess.run([sys.executable, str(BENCHMARKS / "train_quality.py"), "--data", str(csv), "--work",
                             str(work)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"{csv} has 100 labelled rows: train_quality needs at least 150" in result.stderr
    assert (work / "03_train" / "earlier_run").is_dir()


def test_neighbour_search_speed_refuses_a_subset_larger_than_its_rows():
    # it used to run 500 train rows + 100 test rows and print them as "500 + 500 rows"
    result = subprocess.run([sys.executable, str(BENCHMARKS / "neighbour_search_speed.py"), "--rows", "300",
                             "--subset", "500"], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 2 and "--subset must be between 1 and --rows (300)" in result.stderr, result.stderr


def inserts_checkout_before_amzkit(source: str) -> bool:
    """Whether a module-level sys.path.insert(0, ...) comes before the module's first amzkit import."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Expr) and ast.unparse(node).startswith("sys.path.insert(0,"):
            return True
        if isinstance(node, ast.ImportFrom | ast.Import) and any(
                (getattr(node, "module", None) or alias.name).split(".")[0] == "amzkit" for alias in node.names):
            return False
    return False


@pytest.mark.parametrize("script", sorted(p.name for p in BENCHMARKS.glob("*.py")))
def test_every_benchmark_measures_its_own_checkout(script):
    # `python benchmarks/x.py` puts benchmarks/ on sys.path, not the checkout: without the insert, amzkit came from
    # whatever is installed (a worktree sharing another clone's venv measured that clone's code)
    assert inserts_checkout_before_amzkit((BENCHMARKS / script).read_text()), script


def test_a_benchmark_imports_this_checkouts_amzkit_over_an_installed_one(tmp_path):
    decoy = tmp_path / "decoy" / "amzkit"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("raise SystemExit('imported the installed amzkit, not the checkout')\n")
    result = subprocess.run([sys.executable, str(BENCHMARKS / "correlate_speed.py"), "--help"], capture_output=True,
                            text=True, timeout=300, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(decoy.parent)})
    assert result.returncode == 0 and "usage: correlate_speed.py" in result.stdout, result.stderr[-2000:]
