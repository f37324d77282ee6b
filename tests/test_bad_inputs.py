"""A hostile user's inputs through the public entry points: the notebooks' parameter guard and runners, the
library functions Python users call, `python -m amzkit validate` and `kaggle build`; hostile image links and a
dead network through 01, 02 and 03.

Each case asserts a clear message (naming the file, row, id or parameter, and what to do) and that nothing was
written outside the work folder, nothing a user computed was lost, and nothing silently wrong came out.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import stat
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from amzkit.app import runners
from amzkit.app.cli import main
from amzkit.app.demo import make_demo
from amzkit.app.kaggle import check_stage_params
from amzkit.app.parameters import check_parameters, stage_parameters
from amzkit.core.io import id_hash, read_json, write_json
from amzkit.core.schema import load_data
from amzkit.stages.correlate import correlate
from amzkit.stages.ensemble import ensemble
from amzkit.stages.extract import extract
from amzkit.stages.leaks import duplicate_report
from amzkit.stages.submit import submit
from amzkit.stages.train import train_run
from amzkit.testing import save_random_open_clip

HUGE_ID = "99999999999999999999"  # > 2**63: as int64 it became -9223372036854775808
TRAIN_HEADER = "sample_id,catalog_content,image_link,price\n"
TEST_HEADER = "sample_id,catalog_content,image_link\n"


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """A small realistic competition folder (read-only for the tests: copy it to change it)."""
    return make_demo(tmp_path_factory.mktemp("demo"), n_train=60, n_test=20, seed=4).train_csv.parent


def params(stage: str, **overrides):
    """The notebook's parameters as its guard returns them (what papermill's -p would inject)."""
    return check_parameters({**stage_parameters(stage), **overrides}, stage)


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


def copy_demo(demo: Path, dest: Path) -> Path:
    shutil.copytree(demo, dest)
    return dest


def write_csv_text(folder: Path, train: str, test: str, encoding: str = "utf-8") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.csv").write_bytes(train.encode(encoding))
    (folder / "test.csv").write_bytes(test.encode(encoding))
    return folder


def good_rows(n: int, start: int = 1, price: float | None = None) -> str:
    return "".join(f"{i},Item Name: thing {i} of {i % 7} colours,,{price if price is not None else 1.5 + i}\n"
                   for i in range(start, start + n))


GOOD_TEST = TEST_HEADER + "".join(f"{i},Item Name: other {i},\n" for i in range(1000, 1010))


# --------------------------------------------------------------------------------------------------
# Parameters: refused at the guard (notebooks and kaggle build), naming the parameter and the range
# --------------------------------------------------------------------------------------------------

BAD_PARAMETERS = [
    ("03_train", {"run_name": "../../x"}, ["run_name", "plain name"]),
    ("03_train", {"run_name": "/abs/path"}, ["run_name", "plain name"]),
    ("03_train", {"run_name": ""}, ["run_name", "empty"]),
    ("03_train", {"run_name": "a/b"}, ["run_name", "plain name"]),
    ("03_train", {"pseudo_label_run": "../other"}, ["pseudo_label_run", "plain name"]),
    ("05_submit", {"file_name": "../../s.csv"}, ["file_name", "plain name"]),
    ("05_submit", {"source": "../../x"}, ["source", "plain name"]),
    ("04_ensemble", {"runs": ["lgbm", "../../x"]}, ["runs", "'../../x'"]),
    ("03_train", {"n_folds": 0}, ["n_folds", ">= 2"]),
    ("03_train", {"n_folds": 1}, ["n_folds", ">= 2"]),
    ("03_train", {"n_folds": 500}, ["n_folds", "<= 50"]),
    ("03_train", {"seed": -1}, ["seed", ">= 0"]),
    ("03_train", {"tfidf_dim": 0}, ["tfidf_dim", ">= 1"]),
    ("03_train", {"pseudo_label_fraction": 0.0}, ["pseudo_label_fraction", "> 0"]),
    ("03_train", {"learner": "lgbm"}, ["learner", "lightgbm"]),
    ("02_correlate", {"n_permutations": 0}, ["n_permutations", ">= 1"]),
    ("02_correlate", {"knn_k": 0}, ["knn_k", ">= 1"]),
    ("02_correlate", {"leak_text_threshold": -1}, ["leak_text_threshold", "> 0"]),
    ("02_correlate", {"seed": -1}, ["seed", ">= 0"]),
    ("04_ensemble", {"factor_min": 1.5, "factor_max": 1.3}, ["factor_min", "factor_max", "<="]),
    ("04_ensemble", {"method": "blnd"}, ["method", "blend"]),
    ("03_train", {"schema": 2023}, ["schema", "one of ['amazon2025', 'amazon2023']", "got int 2023"]),
    ("01_extract", {"schema": "amazon2024"}, ["schema", "one of ['amazon2025', 'amazon2023']"]),
    ("01_extract", {"batch_size": 0}, ["batch_size", ">= 1"]),
    ("01_extract", {"batch_size": -8}, ["batch_size", ">= 1"]),
    ("01_extract", {"shard_index": 2, "num_shards": 2}, ["shard_index", "num_shards"]),
]


@pytest.mark.parametrize(("stage", "given", "words"), BAD_PARAMETERS,
                         ids=[f"{s}-{'-'.join(f'{k}={v}' for k, v in g.items())}" for s, g, _ in BAD_PARAMETERS])
def test_the_guard_refuses_each_bad_parameter_by_name(stage, given, words) -> None:
    namespace = {**stage_parameters(stage), **given}
    with pytest.raises(ValueError) as err:
        check_parameters(namespace, stage)
    message = str(err.value)
    for word in words:
        assert word in message, message
    assert "-p " in message or "change one of them" in message, message  # says what to do
    with pytest.raises(ValueError):  # kaggle build checks each kernel's parameters the same way
        check_stage_params(stage, given)


def test_the_defaults_and_plain_values_pass_the_guard() -> None:
    for stage in ("01_extract", "02_correlate", "03_train", "04_ensemble", "05_submit"):
        check_parameters(stage_parameters(stage), stage)
    assert params("03_train", run_name="lgbm_v2.1", pseudo_label_run="").run_name == "lgbm_v2.1"


def test_kaggle_build_refuses_a_run_name_that_leaves_the_work_folder(tmp_path, capsys) -> None:
    out = tmp_path / "build"
    code = main(["kaggle", "build", "--out", str(out), "--owner", "someone", "--data", "someone/amz",
                 "-p", "03_train.run_name=../../.."])
    assert code == 1
    err = capsys.readouterr().err
    assert "run_name" in err and "plain name" in err
    assert not out.exists(), "nothing is built"


# --------------------------------------------------------------------------------------------------
# The same checks in the library functions (Python users call them directly)
# --------------------------------------------------------------------------------------------------


def test_library_functions_refuse_names_that_leave_the_work_folder(demo, tmp_path) -> None:
    data = load_data(demo, "amazon2025")
    work = tmp_path / "sandbox" / "work"
    work.mkdir(parents=True)
    for bad in ("../x", "/tmp/x", "", "a/b", ".."):
        with pytest.raises(ValueError, match="run_name"):
            train_run(data, "amazon2025", work, bad, ["text_stats"], [], learner="ridge_tfidf")
    with pytest.raises(ValueError, match="file_name"):
        submit(work, data["test"], data["train"]["price"].to_numpy(), "amazon2025", "04_ensemble", "../s.csv")
    with pytest.raises(ValueError, match="source"):
        submit(work, data["test"], data["train"]["price"].to_numpy(), "amazon2025", "../../x")
    with pytest.raises(ValueError, match="runs"):
        ensemble(work, ["../../x"])
    assert files_under(tmp_path / "sandbox") == {"work"}, "nothing written inside or outside the work folder"


@pytest.mark.parametrize(("call", "words"), [
    (lambda d, w: train_run(d, "amazon2025", w, "r", ["text_stats"], [], n_folds=1), ["n_folds", ">= 2"]),
    (lambda d, w: train_run(d, "amazon2025", w, "r", ["text_stats"], [], seed=-1), ["seed", ">= 0"]),
    (lambda d, w: train_run(d, "amazon2025", w, "r", ["tfidf"], [], tfidf_dim=0), ["tfidf_dim", ">= 1"]),
    (lambda d, w: train_run(d, "amazon2025", w, "r", ["text_stats"], [], learner_params={"n_folds": 3}),
     ["learner_params", "n_folds", "-p n_folds"]),
    (lambda d, w: correlate(d["train"], "amazon2025", w, ["x"], n_permutations=0), ["n_permutations", ">= 1"]),
    (lambda d, w: correlate(d["train"], "amazon2025", w, ["x"], knn_k=0), ["knn_k", ">= 1"]),
    (lambda d, w: ensemble(w, ["a"], factor_range=(1.5, 1.3)), ["factor_min", "factor_max"]),
    (lambda d, w: duplicate_report(d["train"], d["test"], "amazon2025", text_threshold=-1),
     ["leak_text_threshold", "> 0"]),
    (lambda d, w: extract(d, w, w, "amazon2025", "tfidf-svd", batch_size=0), ["batch_size", ">= 1"]),
], ids=["n_folds=1", "seed=-1", "tfidf_dim=0", "learner_params-n_folds", "n_permutations=0", "knn_k=0",
        "factor_min>factor_max", "leak_text_threshold=-1", "batch_size=0"])
def test_library_functions_check_their_arguments_as_the_guard_does(demo, tmp_path, call, words) -> None:
    data = load_data(demo, "amazon2025")
    with pytest.raises(ValueError) as err:
        call(data, tmp_path)
    for word in words:
        assert word in str(err.value), str(err.value)
    assert not list(tmp_path.rglob("*.csv")) and not list(tmp_path.rglob("*.npy")), "nothing written"


# --------------------------------------------------------------------------------------------------
# Bad CSVs: refused at setup with the file and what to do
# --------------------------------------------------------------------------------------------------

BAD_FILES = [
    ("empty train", lambda f: write_csv_text(f, "", GOOD_TEST), ["train.csv", "empty"]),
    ("header only", lambda f: write_csv_text(f, TRAIN_HEADER, GOOD_TEST), ["train.csv", "no rows"]),
    ("UTF-16", lambda f: write_csv_text(f, TRAIN_HEADER + good_rows(20), GOOD_TEST, "utf-16"),
     ["train.csv", "UTF-16", "UTF-8"]),
    ("latin-1", lambda f: write_csv_text(f, TRAIN_HEADER + "1,Item Name: caf\u00e9,,2.5\n" + good_rows(20, 2),
                                         GOOD_TEST, "latin-1"), ["train.csv", "not UTF-8", "UTF-8"]),
    ("latin-1 deep in the file", lambda f: write_csv_text(  # where in the file, not in the field (pandas' offset)
        f, TRAIN_HEADER + good_rows(20) + '21,"Item Name: caf\u00e9\nBullet Point 1: x",,2.5\n', GOOD_TEST, "latin-1"),
     ["train.csv", f"offset {len(TRAIN_HEADER + good_rows(20)) + 18}, line 22 of the file, after '21,\"Item Name: caf'",
      "save it as UTF-8"]),
    ("trailing commas", lambda f: write_csv_text(f, TRAIN_HEADER + good_rows(20).replace("\n", ",\n"), GOOD_TEST),
     ["train.csv", "trailing comma"]),
    ("ragged row", lambda f: write_csv_text(f, TRAIN_HEADER + good_rows(5) + "9,a,b,c,d,e\n" + good_rows(5, 10),
                                            GOOD_TEST), ["train.csv", "field"]),
    ("text empty in every row", lambda f: write_csv_text(f, TRAIN_HEADER + "".join(f"{i},,,{i}.5\n" for i in range(20)),
                                                         GOOD_TEST), ["train.csv", "empty in every row"]),
    ("ids in both files", lambda f: write_csv_text(f, TRAIN_HEADER + good_rows(20), TEST_HEADER + "7,x,\n3,y,\n"),
     ["both train.csv and test.csv", "[3, 7]", "renumber"]),
    ("id 7 and 007", lambda f: write_csv_text(f, TRAIN_HEADER + good_rows(20) + "007,dup,,3\n", GOOD_TEST),
     ["duplicate sample_id", "007"]),
    ("train.csv is a folder", lambda f: (f.mkdir(parents=True), (f / "train.csv").mkdir(),
                                         (f / "test.csv").write_text(GOOD_TEST)), ["train.csv", "folder"]),
]


@pytest.mark.parametrize(("case", "make", "words"), BAD_FILES, ids=[c for c, _, _ in BAD_FILES])
def test_setup_refuses_bad_csvs_naming_the_file(tmp_path, case, make, words) -> None:
    make(tmp_path / "data")
    work = tmp_path / "work"
    with pytest.raises((ValueError, OSError)) as err:
        runners.setup(params("03_train", data_dir=str(tmp_path / "data"), work_dir=str(work)), "03_train")
    message = str(err.value)
    for word in words:
        assert word in message, message
    assert not work.exists(), "nothing written"


def test_an_unwritable_work_dir_is_refused_before_anything_runs(demo, tmp_path) -> None:
    (tmp_path / "a_file").write_text("not a folder")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        runners.setup(params("01_extract", data_dir=str(demo), work_dir=str(tmp_path / "a_file" / "work")),
                      "01_extract")
    with pytest.raises(ValueError, match="work_dir"):
        runners.setup(params("01_extract", data_dir=str(demo), work_dir=" "), "01_extract")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere: a read-only folder cannot be made for it")
def test_a_read_only_parent_is_refused(demo, tmp_path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(PermissionError, match="not writable"):
            runners.setup(params("01_extract", data_dir=str(demo), work_dir=str(locked / "work")), "01_extract")
    finally:
        locked.chmod(stat.S_IRWXU)


def test_zero_and_absurd_prices_warn_with_their_ids(tmp_path) -> None:
    rows = good_rows(30) + "".join(f"{i},Item Name: free {i},,0\n" for i in range(40, 45)) + "50,Item Name: x,,1e12\n"
    write_csv_text(tmp_path / "data", TRAIN_HEADER + rows, GOOD_TEST)
    with pytest.warns(UserWarning) as caught:
        runners.setup(params("03_train", data_dir=str(tmp_path / "data"), work_dir=str(tmp_path / "w")), "03_train")
    messages = " | ".join(str(w.message) for w in caught)
    assert "5 of 36 rows have price 0 (ids [40, 41, 42, 43, 44])" in messages, messages
    assert "ids [50]" in messages and "1e+12" in messages, messages


# --------------------------------------------------------------------------------------------------
# Data with no signal: the stage stops and says what to do
# --------------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*rows have price 0:UserWarning")
@pytest.mark.parametrize(("case", "rows", "words"), [
    ("one distinct price", good_rows(30, price=5.0), ["every train row has price 5", "nothing to learn"]),
    ("all prices zero", good_rows(30, price=0.0), ["every train row has price 0"]),
    ("three rows", good_rows(3), ["3 rows", "at least 10", "n_folds"]),
    ("nine rows", good_rows(9), ["9 rows", "at least 10"]),
], ids=["one distinct price", "all prices zero", "three rows", "nine rows"])
def test_empty_signal_stops_train_and_correlate_with_what_to_do(tmp_path, case, rows, words) -> None:
    write_csv_text(tmp_path / "data", TRAIN_HEADER + rows, GOOD_TEST)
    ctx = runners.setup(params("03_train", data_dir=str(tmp_path / "data"), work_dir=str(tmp_path / "w"),
                               learner="ridge_tfidf", features=[], embeddings=[]), "03_train")
    for run in (runners.run_train, lambda c: correlate(c.data["train"], "amazon2025", c.work_dir, ["x"])):
        with pytest.raises(ValueError) as err:
            run(ctx)
        for word in words:
            assert word in str(err.value), str(err.value)
    assert not list((tmp_path / "w").rglob("*.csv")), "no folds, runs or predictions written"


# --------------------------------------------------------------------------------------------------
# Ids kept exactly as written, end to end; a rerun replaces its runs.csv row
# --------------------------------------------------------------------------------------------------


def test_an_id_beyond_int64_reaches_the_submission_exactly(demo, tmp_path, capsys) -> None:
    data_dir = copy_demo(demo, tmp_path / "data")
    test = pd.read_csv(data_dir / "test.csv", dtype={"sample_id": str})
    test.loc[3, "sample_id"] = HUGE_ID
    test.to_csv(data_dir / "test.csv", index=False)
    work = str(tmp_path / "work")

    ctx = runners.setup(params("03_train", data_dir=str(data_dir), work_dir=work, run_name="ridge", n_folds=3,
                               learner="ridge_tfidf", features=[], embeddings=[]), "03_train")
    assert ctx.data["test"]["sample_id"][3] == HUGE_ID
    runners.run_train(ctx)
    runners.run_train(ctx)  # a rerun under the same name replaces its row of runs.csv
    assert pd.read_csv(Path(work) / "runs.csv")["run"].tolist() == ["ridge"]

    ctx = runners.setup(params("05_submit", data_dir=str(data_dir), work_dir=work, source="ridge"), "05_submit")
    metrics = runners.run_submit(ctx)
    text = Path(metrics["path"]).read_text()
    assert f"\n{HUGE_ID}," in text and "-9223372036854775808" not in text
    assert main(["validate", metrics["path"], "--test", str(data_dir / "test.csv")]) == 0

    wrapped = text.replace(HUGE_ID, "-9223372036854775808")  # what the int64 load used to write
    (tmp_path / "wrapped.csv").write_text(wrapped)
    capsys.readouterr()
    assert main(["validate", str(tmp_path / "wrapped.csv"), "--test", str(data_dir / "test.csv")]) == 1
    err = capsys.readouterr().err
    assert "INVALID" in err and HUGE_ID in err and "-9223372036854775808" in err


def test_id_hash_of_integer_ids_is_unchanged_so_old_work_folders_stay_valid() -> None:
    # the hash the kit wrote before ids were read as text: sha256 of the decimal ids joined by newlines
    import hashlib

    ids = np.array([217392, 5, 1002])
    before = hashlib.sha256(b"217392\n5\n1002").hexdigest()
    assert id_hash(ids) == before == id_hash(["217392", "5", "1002"]) == id_hash(pd.Series(ids))


# --------------------------------------------------------------------------------------------------
# The validator: every bad file is INVALID with a reason, never a traceback
# --------------------------------------------------------------------------------------------------


@pytest.fixture()
def validator_files(tmp_path) -> Path:
    (tmp_path / "test.csv").write_text(TEST_HEADER + "101,a,u\n205,b,u\n307,c,u\n")
    (tmp_path / "train.csv").write_text(TRAIN_HEADER + "1,a,u,2.0\n2,b,u,3.0\n")
    return tmp_path


BAD_SUBMISSIONS = [
    ("price True", "sample_id,price\n101,1.5\n205,True\n307,2.0\n", ["non-number", "205", "True"]),
    ("price False", "sample_id,price\n101,1.5\n205,False\n307,2.0\n", ["non-number", "205"]),
    ("empty file", "", ["empty"]),
    ("trailing comma", "sample_id,price\n101,1.5,\n205,2.5,\n307,2.0,\n", ["trailing comma", "row 1 has 3"]),
    ("ragged row", "sample_id,price\n101,1.5\n205\n307,2.0\n", ["row 2 has 1", "header's 2 fields"]),
    ("id as float", "sample_id,price\n101.0,1.5\n205,2.5\n307,2.0\n", ["integer ids", "101.0"]),
    ("empty id", "sample_id,price\n,1.5\n205,2.5\n307,2.0\n", ["integer ids", "rows [1]"]),
]


@pytest.mark.parametrize(("case", "text", "words"), BAD_SUBMISSIONS, ids=[c for c, _, _ in BAD_SUBMISSIONS])
def test_validate_says_invalid_and_why(validator_files, capsys, case, text, words) -> None:
    path = validator_files / "sub.csv"
    path.write_text(text)
    assert main(["validate", str(path), "--test", str(validator_files / "test.csv")]) == 1
    out = capsys.readouterr()
    assert "INVALID" in out.err and "Traceback" not in out.err
    for word in words:
        assert word in out.err, out.err


@pytest.mark.parametrize("case", ["utf-16 submission", "missing submission", "folder as submission",
                                  "train.csv as --test", "missing --test", "empty --test"])
def test_validate_reports_unreadable_files_as_invalid(validator_files, capsys, case) -> None:
    good = "sample_id,price\n101,1.5\n205,2.5\n307,2.0\n"
    sub, test = validator_files / "sub.csv", validator_files / "test.csv"
    sub.write_text(good)
    words = {"utf-16 submission": ["UTF-16"], "missing submission": ["not found"],
             "folder as submission": ["folder"], "train.csv as --test": ["not the train file"],
             "missing --test": ["not found", "nope.csv"], "empty --test": ["empty"]}[case]
    if case == "utf-16 submission":
        sub.write_bytes(good.encode("utf-16"))
    elif case == "missing submission":
        sub = validator_files / "absent.csv"
    elif case == "folder as submission":
        sub = validator_files
    elif case == "train.csv as --test":
        test = validator_files / "train.csv"
    elif case == "missing --test":
        test = validator_files / "nope.csv"
    else:
        test.write_text("")
    assert main(["validate", str(sub), "--test", str(test)]) == 1
    out = capsys.readouterr()
    assert "INVALID" in out.err
    for word in words:
        assert word in out.err, out.err


# --------------------------------------------------------------------------------------------------
# 01: a refit invalidates every shard it feeds; outputs get the user's umask
# --------------------------------------------------------------------------------------------------


def test_rerunning_01_after_editing_train_csv_refits_every_shard(demo, tmp_path) -> None:
    data_dir = copy_demo(demo, tmp_path / "data")
    step = {"model": "", "text_model": "tfidf-svd"}
    first = runners.setup(params("01_extract", data_dir=str(data_dir), work_dir=str(tmp_path / "work"), **step),
                          "01_extract")
    runners.run_extract(first)
    run = tmp_path / "work" / "01_extract" / "tfidf-svd"
    test_before = np.load(run / "test.npy")

    train = pd.read_csv(data_dir / "train.csv", dtype={"sample_id": str})
    train.iloc[10:].to_csv(data_dir / "train.csv", index=False)  # edited: 10 rows fewer; test.csv unchanged
    again = runners.setup(params("01_extract", data_dir=str(data_dir), work_dir=str(tmp_path / "work"), **step),
                          "01_extract")
    runners.run_extract(again)
    fresh = runners.setup(params("01_extract", data_dir=str(data_dir), work_dir=str(tmp_path / "fresh"), **step),
                          "01_extract")
    runners.run_extract(fresh)
    fresh_run = tmp_path / "fresh" / "01_extract" / "tfidf-svd"
    for name in ("train.npy", "test.npy", "train_ok.npy", "test_ok.npy"):
        assert (run / name).read_bytes() == (fresh_run / name).read_bytes(), f"{name} mixes two fits"
    assert not np.array_equal(np.load(run / "test.npy"), test_before), "the test rows were embedded again"


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_outputs_get_the_users_umask(tmp_path, umask) -> None:
    old = os.umask(umask)
    try:
        path = write_json(tmp_path / "out" / "m.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_json_outputs_are_strict_json_with_null_for_nan_and_infinity(tmp_path) -> None:
    # 02's table and 04's metrics held NaN, which Python reads but jq, JavaScript and strict parsers refuse
    metrics = {"cv": np.float64("nan"), "rows": [1.5, float("inf"), np.float32("-inf")], "ok": np.float32(2.5),
               "fold": np.array([np.nan, 1.0]), "nested": {"t": (np.nan, 3)}, "n": np.int64(4), "s": "NaN"}
    text = write_json(tmp_path / "m.json", metrics).read_text(encoding="utf-8")
    strict = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in JSON output"))
    assert strict == {"cv": None, "rows": [1.5, None, None], "ok": 2.5, "fold": [None, 1.0], "nested": {"t": [None, 3]},
                      "n": 4, "s": "NaN"}


# --------------------------------------------------------------------------------------------------
# A notebook run the way a user runs it: papermill stops at the guard, before anything is written
# --------------------------------------------------------------------------------------------------


def test_papermill_stops_a_run_name_that_leaves_the_work_folder(tmp_path) -> None:
    pm = pytest.importorskip("papermill")
    work = tmp_path / "work"
    with pytest.raises(pm.PapermillExecutionError) as err:
        pm.execute_notebook(str(runners.NOTEBOOKS_DIR / "03_train.ipynb"), str(tmp_path / "out.ipynb"),
                            parameters={"run_name": "../../escaped", "data_dir": "demo", "work_dir": str(work)},
                            kernel_name="python3", progress_bar=False, cwd=str(tmp_path))
    assert "run_name" in str(err.value) and "plain name" in str(err.value)
    assert not work.exists() and not (tmp_path.parent / "escaped").exists()


# --- hostile image links and a dead network (01, then 02 and 03) ---------------------------------------------
# Everything stays on 127.0.0.1: a port bound but never listening stands for refused connections, *.invalid hosts
# with a resolver that knows none of them (patched: it answers at once) for DNS with Internet off. Nothing depends
# on timing.

BOMB_BYTES = 64 * 1024 * 1024  # decoded; over the 20 MB default byte limit, while ~65 KB are sent


def gzip_bomb(size: int = BOMB_BYTES) -> bytes:
    packer, zeros = zlib.compressobj(9, zlib.DEFLATED, 31), bytes(1 << 20)
    return b"".join(packer.compress(zeros) for _ in range(size >> 20)) + packer.flush()


@pytest.fixture(scope="module")
def bomb_server():
    """A local server whose /bomb.jpg is a gzip bomb (Content-Encoding: gzip, with and without a length)."""
    body = gzip_bomb()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Encoding", "gzip")
            if self.path == "/bomb.jpg":
                self.send_header("Content-Length", str(len(body)))
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the client stops reading past its limit
                pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture()
def offline(no_dns, dead_url):
    """Links nobody answers: i -> a refused 127.0.0.1 port or an unresolvable *.invalid host."""
    return lambda i: f"{dead_url}/{i}.jpg" if i % 2 else f"http://m{i % 3}.media-amazon.invalid/images/{i}.jpg"


def competition(folder: Path, links=None) -> Path:
    """The demo competition (40 train, 20 test rows) in `folder`, its image links replaced by links(i) when given."""
    files = make_demo(folder, n_train=40, n_test=20, seed=3)
    if links is not None:
        for path in (files.train_csv, files.test_csv):
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
            frame["image_link"] = [links(i) for i in range(len(frame))]
            frame.to_csv(path, index=False)
    return files.train_csv.parent


def notebook_context(stage: str, data_dir: Path, work_dir: Path, **params) -> runners.Context:
    """What a notebook's first cells do: its parameters (defaults + `params`) checked, then setup."""
    values = {**stage_parameters(stage), "data_dir": str(data_dir), "work_dir": str(work_dir), **params}
    return runners.setup(check_parameters(values, stage), stage)


def fetch_table(work_dir: Path, run: str, split: str) -> pd.DataFrame:
    return pd.read_csv(work_dir / "01_extract" / run / f"{split}_fetch.csv", keep_default_na=False)


def test_01_with_the_network_down_stops_at_once_and_says_how_to_run_text_only(offline, tmp_path):
    data_dir = competition(tmp_path / "data", offline)
    ctx = notebook_context("01_extract", data_dir, tmp_path / "work", model="color-stats", text_model="tfidf-svd")
    with pytest.raises(RuntimeError) as err:
        runners.run_extract(ctx)
    message = str(err.value)
    assert message.startswith("no image could be fetched: is Internet on for this kernel?")
    assert "the first 20 image links tried (4 hosts: 127.0.0.1, m0.media-amazon.invalid" in message
    assert "all failed to connect and none answered" in message
    assert '-p model ""' in message and "-p images_offline_ok True" in message
    assert str(tmp_path / "work" / "01_extract" / "color-stats" / "train_fetch.csv") in message
    train, test = (fetch_table(tmp_path / "work", "color-stats", split) for split in ("train", "test"))
    assert len(train) == 40 and len(test) == 20, "the fetch table records every link"
    assert set(train["status"]) | set(test["status"]) == {"connection_error", "not_fetched"}
    assert not (tmp_path / "work" / "01_extract" / "color-stats" / "manifest.json").exists(), "no run is left"

    text_only = notebook_context("01_extract", data_dir, tmp_path / "work", model="", text_model="tfidf-svd")
    table = runners.run_extract(text_only)
    assert table.index.tolist() == ["tfidf-svd"] and table.loc["tfidf-svd", "train ok"] == 40


def test_01_refuses_links_outside_the_data_folder_and_gzip_bombs(bomb_server, tmp_path):
    hostile = {0: "../" * 16 + "etc/passwd", 1: "file:///etc/passwd", 2: "/etc/passwd",
               3: f"{bomb_server}/bomb.jpg", 4: f"{bomb_server}/bomb-nolength.jpg"}
    data_dir = competition(tmp_path / "data")
    train_csv = data_dir / "train.csv"
    frame = pd.read_csv(train_csv, dtype=str, keep_default_na=False)
    for row, link in hostile.items():
        frame.loc[row, "image_link"] = link
    frame.to_csv(train_csv, index=False)
    ctx = notebook_context("01_extract", data_dir, tmp_path / "work", model="color-stats", text_model="")
    table = runners.run_extract(ctx)
    assert table.loc["color-stats", "train ok"] == 40 - len(hostile)
    train = fetch_table(tmp_path / "work", "color-stats", "train")
    assert train["status"].head(5).tolist() == ["outside_data_dir"] * 3 + ["too_large"] * 2
    refused = train.head(3)
    assert refused["error"].str.contains(f"is outside the data folder {data_dir}", regex=False).all()
    assert (refused["path"] == "").all() and (refused["bytes"] == 0).all() and not refused["embedded"].any()
    assert train["error"].iloc[3:5].str.contains("over 20000000 bytes decoded from gzip").all()
    assert (train["status"].iloc[5:] == "ok").all()


def test_no_image_at_all_stops_01_then_02_skips_the_run_and_03_says_what_to_do(tmp_path, capsys):
    data_dir = competition(tmp_path / "data", lambda i: f"images/gone-{i}.jpg")  # every image link missing
    work = tmp_path / "work"
    params = {"model": "color-stats", "text_model": "tfidf-svd"}
    with pytest.raises(RuntimeError, match=r"not one of the 60 rows has an image \(train statuses: missing_file 40"):
        runners.run_extract(notebook_context("01_extract", data_dir, work, **params))

    runners.run_extract(notebook_context("01_extract", data_dir, work, images_offline_ok=True, **params))
    assert "WARNING: image run 'color-stats' has no image (0 of 60 rows" in capsys.readouterr().out

    table, results = runners.run_correlate(notebook_context("02_correlate", data_dir, work))
    assert set(results) == {"tfidf-svd"}, "02 analyses the text run and skips the empty image run"
    printed = capsys.readouterr().out
    assert "run 'color-stats' skipped: only 0 of 40 train rows have this embedding" in printed
    assert "01_extract/color-stats/train_fetch.csv" in printed
    with pytest.raises(ValueError, match="02_correlate has no run to analyse: run 'color-stats' skipped"):
        runners.run_correlate(notebook_context("02_correlate", data_dir, work, runs=["color-stats"]))

    train = notebook_context("03_train", data_dir, work, run_name="pca_of_nothing", embeddings=["color-stats:pca:4"],
                     features=["text_stats"])
    with pytest.raises(ValueError, match=r"embedding run 'color-stats': 0 of this fold's \d+ training rows have it"
                                         r".*Leave it out of -p embeddings"):
        runners.run_train(train)
    assert not (work / "03_train" / "pca_of_nothing" / "metrics.json").exists()


def test_01_on_several_devices_also_stops_when_the_network_is_down(offline, tmp_path):
    """The multi-device driver fetches the pictures before its workers start: it watches the network as 01 does."""
    from amzkit.core.schema import load_data
    from amzkit.stages.devices import extract_on_devices

    data_dir = competition(tmp_path / "data", offline)
    data = load_data(data_dir, "amazon2025")
    with pytest.raises(RuntimeError) as err:
        extract_on_devices(data, data_dir, tmp_path / "work", "amazon2025", "color-stats", device="cpu,cpu")
    # stopped by the parent before any worker started, not reported afterwards by every worker
    assert str(err.value).startswith("no image could be fetched: is Internet on for this kernel?"), err.value
    assert len(fetch_table(tmp_path / "work", "color-stats", "train")) == 40
    assert not list((tmp_path / "work" / "01_extract" / "color-stats").glob("shards/*.json")), "no worker ran"


def test_every_stage_removes_the_temporary_files_a_killed_run_left(tmp_path, capsys) -> None:
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    hour_ago = time.time() - 3600
    stale = [work / "03_train" / "lgb" / ".oof.csv.k3j9x2ab.tmp", work / "01_extract" / "minilm" / ".train.npy.q1.tmp",
             work / ".leaderboard.csv.zz.tmp"]
    fresh = work / "03_train" / "lgb" / ".test_pred.csv.w8.tmp"  # maybe a writer at work right now
    kept = [fresh, work / "03_train" / "lgb" / "oof.csv", work / ".notes.tmp.txt",
            elsewhere / ".outputs.csv.old.tmp"]
    for path in [*stale, *kept]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("half a file")
    for path in [*stale, *kept]:
        if path != fresh:
            os.utime(path, (hour_ago, hour_ago))
    (work / "earlier_kernel").symlink_to(elsewhere)  # an earlier kernel's outputs, linked in: not ours to clean

    runners.setup(params("04_ensemble", work_dir=str(work)), "04_ensemble")
    assert [path.exists() for path in stale] == [False] * len(stale)
    assert all(path.exists() for path in kept)
    assert "removed 3 temporary files a killed run left" in capsys.readouterr().out
    runners.setup(params("04_ensemble", work_dir=str(work)), "04_ensemble")
    assert "temporary files" not in capsys.readouterr().out


def test_01s_table_and_metrics_list_every_finished_run_not_only_this_calls(demo, tmp_path) -> None:
    data_dir, work = copy_demo(demo, tmp_path / "data"), str(tmp_path / "work")
    for text_model in ("tfidf-svd", "minilm"):
        runners.run_extract(runners.setup(params("01_extract", data_dir=str(data_dir), work_dir=work, model="",
                                                 text_model=text_model), "01_extract"))
    table = runners.run_extract(runners.setup(params("01_extract", data_dir=str(data_dir), work_dir=work,
                                                     model="", text_model="tfidf-svd"), "01_extract"))
    metrics = read_json(Path(work) / "01_extract" / "metrics.json")
    assert metrics["runs"] == table.index.tolist() == ["minilm", "tfidf-svd"]
    assert metrics["this_call"] == ["tfidf-svd"] and table["this call"].tolist() == [False, True]
    assert table.loc["minilm", "dim"] == 384 and table.loc["minilm", "train rows"] == 60
    assert metrics["table"]["minilm"]["test ok"] == 20

    clip = f"local-dir:{save_random_open_clip(tmp_path / 'models' / 'tinyclip')}"  # the run is named 'tinyclip'
    table = runners.run_extract(runners.setup(params("01_extract", data_dir=str(data_dir), work_dir=work, model=clip,
                                                     text_model=""), "01_extract"))
    metrics = read_json(Path(work) / "01_extract" / "metrics.json")
    assert metrics["this_call"] == ["tinyclip"] and table.loc["tinyclip", "this call"]
    assert metrics["runs"] == ["minilm", "tfidf-svd", "tinyclip"] and table.loc["tinyclip", "train ok"] == 60


@pytest.fixture()
def image_server(tmp_path):
    """http://127.0.0.1:<port>/<name>.jpg: a small JPEG for any name."""
    img = tmp_path / "served.jpg"
    Image.new("RGB", (30, 20), (200, 40, 10)).save(img, "JPEG")
    body = img.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_01_warns_when_the_network_dropped_during_the_run(image_server, dead_url, tmp_path, capsys):
    dropped = {3, 7, 11, 15, 19, 23, 27}  # train rows whose host stopped answering half-way
    data_dir = competition(tmp_path / "data", lambda i: f"{image_server}/{i}.jpg")
    train = pd.read_csv(data_dir / "train.csv", dtype=str, keep_default_na=False)
    train.loc[sorted(dropped), "image_link"] = [f"{dead_url}/{i}.jpg" for i in sorted(dropped)]
    train.to_csv(data_dir / "train.csv", index=False)
    ctx = notebook_context("01_extract", data_dir, tmp_path / "work", model="color-stats", text_model="")
    table = runners.run_extract(ctx)
    assert table.loc["color-stats", "train ok"] == 40 - len(dropped) and table.loc["color-stats", "test ok"] == 20
    out = capsys.readouterr().out
    assert "WARNING: image run 'color-stats': 7 of 40 train links failed for a passing reason (connection_error 7)" \
        in out
    assert "Rerun 01 when it is back" in out and "test links" not in out

    train["image_link"] = [f"{image_server}/{i}.jpg" for i in range(len(train))]  # back (here: other links)
    train.to_csv(data_dir / "train.csv", index=False)
    table = runners.run_extract(notebook_context("01_extract", data_dir, tmp_path / "work", model="color-stats",
                                                 text_model=""))
    assert table.loc["color-stats", "train ok"] == 40 and "WARNING" not in capsys.readouterr().out


def test_02_starts_from_an_empty_folder_so_no_earlier_run_file_sits_beside_this_runs(tmp_path, capsys) -> None:
    # a rerun on another data_dir with leak_report False kept the old leak report beside the new metrics
    write_csv_text(tmp_path / "data", TRAIN_HEADER + good_rows(20), GOOD_TEST)
    work = tmp_path / "work"
    old = work / "02_correlate"
    old.mkdir(parents=True)
    for name in ("leak_report.csv", "metrics.json", "gone-run_corr.csv"):
        (old / name).write_text("from an earlier run")
    ctx = runners.setup(params("02_correlate", data_dir=str(tmp_path / "data"), work_dir=str(work),
                               leak_report=False), "02_correlate")
    assert ctx.out_dir.is_dir() and not any(ctx.out_dir.iterdir())
    assert runners.run_leak_report(ctx) is None


@pytest.mark.parametrize("params, match", [
    ({"model": "", "text_model": ""}, "nothing to extract: -p model and -p text_model are both empty"),
    ({"model": "tfidf-svd", "text_model": ""}, "-p model 'tfidf-svd' is a text model .* pass it as -p text_model"),
    ({"model": "", "text_model": "color-stats"}, "is an image model and text_model takes text models: .* -p model"),
    ({"model": "", "text_model": "fashion-siglip"}, "for its text tower, -p text_model 'fashion-siglip-text'"),
])
def test_01_refuses_no_model_and_a_model_in_the_other_parameter(tmp_path, params, match):
    ctx = notebook_context("01_extract", competition(tmp_path / "data"), tmp_path / "work", **params)
    with pytest.raises(ValueError, match=match):
        runners.run_extract(ctx)
    assert not (tmp_path / "work" / "01_extract" / "tfidf-svd").exists()


def test_01_shows_the_registry_rows_of_the_models_it_runs_not_the_whole_table(tmp_path):
    """01's model cell printed every registry model (20 rows of image and text models) for a text-only run."""
    data_dir = competition(tmp_path / "data")
    text_only = notebook_context("01_extract", data_dir, tmp_path / "work", model="", text_model="tfidf-svd")
    table = runners.show_models(text_only)
    assert table.index.tolist() == ["tfidf-svd"] and table.loc["tfidf-svd", "parameter"] == "text_model"
    assert table.loc["tfidf-svd", "modality"] == "text"
    clip = f"local-dir:{save_random_open_clip(tmp_path / 'models' / 'tinyclip')}"
    both = notebook_context("01_extract", data_dir, tmp_path / "work", model=clip, text_model="minilm")
    table = runners.show_models(both)
    assert table.index.tolist() == ["tinyclip", "minilm"] and table["parameter"].tolist() == ["model", "text_model"]
    assert table.loc["tinyclip", "source"] == f"local-dir:{(tmp_path / 'models' / 'tinyclip').resolve()}"


def test_01_text_only_shows_no_empty_fetch_table_and_04_says_it_reads_no_csv(tmp_path, capsys):
    ctx = notebook_context("01_extract", competition(tmp_path / "data"), tmp_path / "work", model="",
                           text_model="tfidf-svd")
    assert runners.show_fetch_status(ctx) is None and "no pictures were fetched" in capsys.readouterr().out
    notebook_context("04_ensemble", tmp_path / "elsewhere", tmp_path / "work")
    assert "04_ensemble reads no CSV, so data_dir=" in capsys.readouterr().out


def test_the_leak_line_offers_twin_price_as_something_to_check_and_says_why_no_image_was_compared(tmp_path, capsys):
    twin = "Item Name: Acme steel water bottle 750 ml, blue\nBullet Point 1: keeps cold"
    write_csv_text(tmp_path / "data", TRAIN_HEADER + good_rows(20) + f'99,"{twin}",,12.5\n',
                   TEST_HEADER + f'1000,"{twin}",\n1001,Item Name: other,\n')
    ctx = runners.setup(params("02_correlate", data_dir=str(tmp_path / "data"), work_dir=str(tmp_path / "work")),
                        "02_correlate")
    runners.run_leak_report(ctx)
    out = capsys.readouterr().out
    assert "1 of 2 test rows (50.0%) have a train twin" in out
    assert "keep it only if the runs table shows a gain" in out  # not "their prices are a feature": measured worse
    assert "01 cached no picture for a split (no image model" in out


def test_a_write_on_a_read_only_file_system_names_the_file_and_what_to_do(tmp_path, monkeypatch) -> None:
    # /kaggle/input is a read-only mount: mkstemp fails there with EROFS (an OSError, not a PermissionError), and
    # even root gets it, so the chmod test above cannot stand in for it
    import errno
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(PermissionError, match=r"m\.json: Read-only file system.*choose another work_dir"):
        write_json(tmp_path / "m.json", {"a": 1})


@pytest.mark.parametrize(("argv", "words"), [
    (["lb", "show", "--work-dir", "{file}/sub"], ["amzkit lb", "is a file, not a folder"]),
    (["lb", "add", "x", "45", "--work-dir", ""], ["amzkit lb", "work_dir '' is empty"]),
    (["demo", "--n-train", "0", "--out", "{tmp}/demo"], ["amzkit demo", "n_train and n_test must be >= 1"]),
], ids=["lb work_dir under a file", "lb empty work_dir", "demo without rows"])
def test_the_command_line_refuses_bad_input_with_its_message_not_a_traceback(tmp_path, capsys, argv, words) -> None:
    (tmp_path / "a_file").write_text("not a folder")
    argv = [arg.format(file=tmp_path / "a_file", tmp=tmp_path) for arg in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err
    for word in words:
        assert word in err, err
