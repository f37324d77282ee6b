"""The 2023 edition through 03, 04 and 05: the lines they print and their metrics.json carry the 2023 score
(max(0, 100(1-MAPE))) and MAPE beside SMAPE, each equal to what the files give; the 2025 lines do not."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from amzkit.app import runners
from amzkit.app.demo import make_demo
from amzkit.app.parameters import check_parameters, stage_parameters
from amzkit.core.io import read_json
from amzkit.core.metric import mape, score_2023, smape

WORDS = ["cable", "shirt", "table", "lamp", "mat", "rope", "frame", "shelf", "towel", "bag"]


def params(stage: str, **overrides):
    return check_parameters({**stage_parameters(stage), **overrides}, stage)


def write_2023(folder: Path, n_train: int = 150, n_test: int = 40, seed: int = 0) -> pd.Series:
    """train.csv and test.csv of the 2023 schema whose length is written in the title; the test lengths."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    length = np.round(np.exp(rng.uniform(1, 6, n)), 1)
    word = rng.choice(WORDS, n)
    frame = pd.DataFrame({
        "PRODUCT_ID": np.arange(1000, 1000 + n),
        "TITLE": [f"{w} {v:g} inch model {i}" for i, (w, v) in enumerate(zip(word, length, strict=True))],
        "BULLET_POINTS": [f"[{w} for home,made of cotton]" for w in word],
        "DESCRIPTION": ["" if i % 3 else f"A {w}." for i, w in enumerate(word)],
        "PRODUCT_TYPE_ID": rng.integers(1, 4, n),
        "PRODUCT_LENGTH": length,
    })
    folder.mkdir(parents=True, exist_ok=True)
    frame.iloc[:n_train].to_csv(folder / "train.csv", index=False)
    frame.iloc[n_train:].drop(columns="PRODUCT_LENGTH").to_csv(folder / "test.csv", index=False)
    solution = frame.iloc[n_train:][["PRODUCT_ID", "PRODUCT_LENGTH"]]
    solution.to_csv(folder.parent / "solution.csv", index=False)
    return solution["PRODUCT_LENGTH"]


def test_2023_chain_prints_and_records_the_2023_score(tmp_path: Path, capsys) -> None:
    write_2023(tmp_path / "data")
    common = {"schema": "amazon2023", "data_dir": str(tmp_path / "data"), "work_dir": str(tmp_path / "work")}
    for run, learner, features in (("ridge", "ridge_tfidf", []), ("trees", "lightgbm", ["dimensions"])):
        ctx = runners.setup(params("03_train", **common, run_name=run, learner=learner, n_folds=3,
                                   features=features, embeddings=[]), "03_train")
        metrics = runners.run_train(ctx)
        line = next(text for text in capsys.readouterr().out.splitlines() if text.startswith(f"{run} ({learner})"))
        oof = pd.read_csv(tmp_path / "work" / "03_train" / run / "oof.csv")
        assert metrics["cv_score2023"] == pytest.approx(score_2023(oof["target"], oof["pred"]), rel=1e-12)
        assert metrics["cv_mape"] == pytest.approx(mape(oof["target"], oof["pred"]), rel=1e-12)
        assert f"CV 2023 score max(0, 100(1-MAPE)) {metrics['cv_score2023']:.3f} (higher is better)" in line
        assert f"CV MAPE {metrics['cv_mape']:.3f} (lower is better)" in line

    ctx = runners.setup(params("04_ensemble", **common, runs=["ridge", "trees"]), "04_ensemble")
    metrics = runners.run_ensemble(ctx)
    out = capsys.readouterr().out
    oof = pd.read_csv(tmp_path / "work" / "04_ensemble" / "oof.csv")
    assert metrics["schema"] == "amazon2023"
    assert metrics["cv_smape"] == pytest.approx(smape(oof["target"], oof["pred"]), rel=1e-12)
    assert metrics["cv_score2023"] == pytest.approx(score_2023(oof["target"], oof["pred"]), rel=1e-12)
    assert metrics["cv_mape"] == pytest.approx(mape(oof["target"], oof["pred"]), rel=1e-12)
    assert read_json(tmp_path / "work" / "04_ensemble" / "metrics.json")["cv_score2023"] == metrics["cv_score2023"]
    assert f"CV 2023 score max(0, 100(1-MAPE)) {metrics['cv_score2023']:.3f}" in out
    # 04 without -p schema (it reads no CSV): its line still gives the runs' edition's scores
    ctx = runners.setup(params("04_ensemble", work_dir=str(tmp_path / "work"), runs=["ridge", "trees"]),
                        "04_ensemble")
    assert f"CV 2023 score max(0, 100(1-MAPE)) {runners.run_ensemble(ctx)['cv_score2023']:.3f}" in \
        capsys.readouterr().out
    blend = metrics

    ctx = runners.setup(params("05_submit", **common, solution_csv=str(tmp_path / "solution.csv")), "05_submit")
    metrics = runners.run_submit(ctx)
    out = capsys.readouterr().out
    on_disk = read_json(tmp_path / "work" / "05_submit" / "metrics.json")  # the CV it was made with, in 2023 terms
    assert on_disk["cv_score2023"] == blend["cv_score2023"] and on_disk["cv_mape"] == blend["cv_mape"]
    assert f"test 2023 score max(0, 100(1-MAPE)) {metrics['test_score2023']:.3f} (higher is better)" in out
    assert f"test MAPE {metrics['test_mape']:.3f}" in out and "test SMAPE against" in out


def test_2025_lines_name_only_smape(tmp_path: Path, capsys) -> None:
    demo = make_demo(tmp_path / "demo", n_train=60, n_test=20, seed=4).train_csv.parent
    ctx = runners.setup(params("03_train", data_dir=str(demo), work_dir=str(tmp_path / "work"), run_name="ridge",
                               learner="ridge_tfidf", n_folds=3, features=[], embeddings=[]), "03_train")
    metrics = runners.run_train(ctx)
    line = next(text for text in capsys.readouterr().out.splitlines() if text.startswith("ridge (ridge_tfidf)"))
    assert "CV SMAPE" in line and "MAPE " not in line.replace("SMAPE", "") and "2023" not in line
    assert "cv_score2023" not in metrics and "cv_mape" not in metrics


def test_2023_mistakes_get_the_fix_for_2023(tmp_path: Path) -> None:
    write_2023(tmp_path / "data", n_train=60, n_test=20)
    common = {"schema": "amazon2023", "data_dir": str(tmp_path / "data"), "work_dir": str(tmp_path / "work")}
    # 01 with its default image model: the fix is to pass no image model (it said "choose a text model for it",
    # while text_model was already minilm)
    ctx = runners.setup(params("01_extract", **common, text_model=""), "01_extract")
    with pytest.raises(ValueError, match=re.escape('pass -p model "" (no image model')):
        runners.run_extract(ctx)
    # 03 with its default embeddings, which name an image model: leave it out (it said "run 01_extract with
    # -p model fashion-siglip first", which 01 refuses for this schema)
    ctx = runners.setup(params("03_train", **common, run_name="emb", n_folds=3, features=[],
                               embeddings=["fashion-siglip:pca:64"]), "03_train")
    with pytest.raises(FileNotFoundError, match="this schema has no image column: leave 'fashion-siglip'") as err:
        runners.run_train(ctx)
    assert "-p model fashion-siglip" not in str(err.value)
    # a test.csv that kept the target column: drop it
    test = pd.read_csv(tmp_path / "data" / "test.csv")
    test.assign(PRODUCT_LENGTH=1.0).to_csv(tmp_path / "data" / "test.csv", index=False)
    with pytest.raises(ValueError, match=re.escape("drop column 'PRODUCT_LENGTH' from it")):
        runners.setup(params("03_train", **common), "03_train")
