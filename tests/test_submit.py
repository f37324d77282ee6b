"""Tests for amzkit.submit and `python -m amzkit validate`: each fault refused by name, no invalid file."""

from __future__ import annotations

import builtins
import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from amzkit.app.cli import main
from amzkit.stages.submit import SubmissionError, validate_file, validate_submission, write_submission

SAMPLE_2025 = "amz25_sample_test.csv"
IDS = [101, 205, 307, 412]


def make_test_frame() -> pd.DataFrame:
    return pd.DataFrame({"sample_id": IDS, "catalog_content": ["a", "b", "c", "d"], "image_link": ["u"] * 4})




def good_submission() -> pd.DataFrame:
    return pd.DataFrame({"sample_id": IDS, "price": [1.5, 20.0, 300.25, 4.0]})


def real_sample(folder: Path) -> Path:
    path = folder / SAMPLE_2025
    if not path.is_file():
        pytest.skip(f"real-data test skipped: {path} is absent")
    return path


def with_price(value, row: int = 1) -> pd.DataFrame:
    sub = good_submission().astype({"price": object})
    sub.loc[row, "price"] = value
    return sub


# (fault, submission, words the message must hold, offending id that must be named or None)
FAULTS = [
    ("missing id", good_submission().drop(index=2), ["missing"], 307),
    ("extra id", pd.concat([good_submission(), pd.DataFrame({"sample_id": [999], "price": [2.0]})]),
     ["not in the test"], 999),
    ("duplicate id", pd.concat([good_submission(), good_submission().iloc[[3]]]), ["duplicate"], 412),
    ("NaN", with_price(np.nan), ["NaN"], 205),
    ("inf", with_price(np.inf), ["infinite"], 205),
    ("zero", with_price(0.0), ["zero"], 205),
    ("negative", with_price(-4.0), ["negative"], 205),
    ("string price", with_price("cheap"), ["non-number"], 205),
    ("boolean price", with_price(True), ["non-number"], 205),  # True is not a price of 1.0
    ("fullwidth digit", with_price("\uff11.5"), ["non-number"], 205),  # float() reads it; a CSV reader does not
    ("line separator", with_price("1.5\u2028"), ["non-number"], 205),  # not a line end in CSV
    ("wrong column name", good_submission().rename(columns={"price": "Price"}), ["columns", "Price"], None),
    ("wrong column order", good_submission()[["price", "sample_id"]], ["order"], None),
]


@pytest.mark.parametrize(("fault", "submission", "words", "bad_id"), FAULTS, ids=[f[0] for f in FAULTS])
def test_validate_submission_names_each_fault(fault, submission, words, bad_id) -> None:
    assert validate_submission(good_submission(), IDS, "amazon2025") == []
    problems = validate_submission(submission.reset_index(drop=True), IDS, "amazon2025")
    assert len(problems) == 1, problems
    for word in words:
        assert word in problems[0], problems
    if bad_id is not None:
        assert f"[{bad_id}]" in problems[0], problems


@pytest.mark.parametrize(("fault", "submission", "words", "bad_id"), FAULTS, ids=[f[0] for f in FAULTS])
def test_cli_validate_exit_codes(tmp_path: Path, capsys, fault, submission, words, bad_id) -> None:
    test_csv = tmp_path / "test.csv"
    make_test_frame().to_csv(test_csv, index=False)
    good_csv, bad_csv = tmp_path / "good.csv", tmp_path / "bad.csv"
    good_submission().to_csv(good_csv, index=False)
    submission.to_csv(bad_csv, index=False)

    assert main(["validate", str(good_csv), "--test", str(test_csv), "--schema", "amazon2025"]) == 0
    out = capsys.readouterr()
    assert "valid" in out.out and out.err == ""

    assert main(["validate", str(bad_csv), "--test", str(test_csv), "--schema", "amazon2025"]) == 1
    out = capsys.readouterr()
    assert "INVALID" in out.err and out.out == ""
    for word in words:
        assert word in out.err
    if bad_id is not None:
        assert str(bad_id) in out.err


def test_integer_ids_held_as_numpy_scalars_in_an_object_column_are_integer_ids() -> None:
    """An object column of numpy integers (a frame built row by row, or ids mixed with text) was refused as
    'must hold integer ids', naming np.int64(101): numpy 2's repr, not the id's text."""
    ids = pd.Series([np.int64(i) for i in IDS], dtype=object)
    assert validate_submission(good_submission().assign(sample_id=ids), IDS, "amazon2025") == []
    floats = pd.Series([np.float64(i) for i in IDS], dtype=object)
    problems = validate_submission(good_submission().assign(sample_id=floats), IDS, "amazon2025")
    assert len(problems) == 1 and "hold [101.0, 205.0" in problems[0], problems


@pytest.mark.parametrize("dtype", ["Int64", "float64"])
def test_missing_ids_are_named_by_row_not_as_nan(tmp_path: Path, dtype) -> None:
    """An Int64 (or float) id column with a gap: the rows without an id are named, not an id 'nan'."""
    ids = pd.array([101, None, 307, 412], dtype=dtype)
    submission = good_submission().assign(sample_id=ids)
    problems = validate_submission(submission, IDS, "amazon2025")
    assert len(problems) == 1, problems
    assert "rows [2]" in problems[0] and "no id" in problems[0] and "nan" not in problems[0].lower(), problems
    with pytest.raises(SubmissionError, match=r"rows \[2\].*no id") as err:
        write_submission(preds([1.0, 2.0, 3.0, 4.0], ids), make_test_frame(), "amazon2025", tmp_path / "s.csv")
    assert "nan]" not in str(err.value).lower()
    assert not (tmp_path / "s.csv").exists()


def deny_reading(monkeypatch, *paths: Path) -> None:
    """Make opening `paths` fail as a file without read permission does (errno 13; root would read it anyway)."""
    real_open, denied = builtins.open, {os.path.realpath(p) for p in paths}

    def guarded(file, *args, **kwargs):
        if isinstance(file, str | os.PathLike) and os.path.realpath(os.fspath(file)) in denied:
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)
    monkeypatch.setattr(io, "open", guarded)  # pathlib's read_bytes


@pytest.mark.parametrize("unreadable", ["submission", "test"])
def test_cli_validate_names_an_unreadable_file_and_the_fix(tmp_path: Path, capsys, monkeypatch, unreadable) -> None:
    test_csv, submission_csv = tmp_path / "test.csv", tmp_path / "sub.csv"
    make_test_frame().to_csv(test_csv, index=False)
    good_submission().to_csv(submission_csv, index=False)
    denied = submission_csv if unreadable == "submission" else test_csv
    deny_reading(monkeypatch, denied)
    assert main(["validate", str(submission_csv), "--test", str(test_csv)]) == 1
    err = capsys.readouterr().err
    assert "INVALID" in err and f"{denied} cannot be read: permission denied" in err and "chmod u+r" in err, err
    assert "Errno" not in err and "Traceback" not in err, err


def test_cli_rejects_unknown_schema(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["validate", str(tmp_path / "s.csv"), "--test", str(tmp_path / "t.csv"),
              "--schema", "amazon1999"])


# --------------------------------------------------------------------------------------------------
# write_submission
# --------------------------------------------------------------------------------------------------


def preds(values, ids=None) -> pd.DataFrame:
    return pd.DataFrame({"id": IDS if ids is None else ids, "pred": values})


WRITE_FAULTS = [
    ("missing id", preds([1.0, 2.0, 3.0], IDS[:3]), "412"),
    ("extra id", preds([1.0, 2.0, 3.0, 4.0, 5.0], [*IDS, 999]), "999"),
    ("duplicate id", preds([1.0, 2.0, 3.0, 4.0, 5.0], [*IDS, 205]), "duplicate"),
    ("NaN", preds([1.0, np.nan, 3.0, 4.0]), "NaN"),
    ("inf", preds([1.0, np.inf, 3.0, 4.0]), "infinite"),
    ("zero", preds([1.0, 0.0, 3.0, 4.0]), "zero"),
    ("negative", preds([1.0, -2.0, 3.0, 4.0]), "negative"),
]


@pytest.mark.parametrize(("fault", "predictions", "word"), WRITE_FAULTS, ids=[f[0] for f in WRITE_FAULTS])
def test_write_refuses_and_leaves_nothing(tmp_path: Path, fault, predictions, word) -> None:
    target = tmp_path / "out" / "submission.csv"
    with pytest.raises(SubmissionError, match=word):
        write_submission(predictions, make_test_frame(), "amazon2025", target)
    assert not target.exists()
    leftovers = list(target.parent.iterdir()) if target.parent.exists() else []
    assert leftovers == []


@pytest.mark.parametrize(("fault", "predictions", "word"), WRITE_FAULTS, ids=[f[0] for f in WRITE_FAULTS])
def test_failing_write_keeps_existing_valid_file(tmp_path: Path, fault, predictions, word) -> None:
    target = tmp_path / "submission.csv"
    write_submission(preds([1.0, 2.0, 3.0, 4.0]), make_test_frame(), "amazon2025", target)
    before = target.read_bytes()
    with pytest.raises(SubmissionError):
        write_submission(predictions, make_test_frame(), "amazon2025", target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["submission.csv"]


def test_tiny_valid_prices_are_written_exactly_not_rounded_to_zero(tmp_path: Path) -> None:
    target = tmp_path / "submission.csv"
    write_submission(preds([1e-7, 2.0, 3.0, 4.0]), make_test_frame(), "amazon2025", target)
    assert pd.read_csv(target)["price"].tolist() == [1e-7, 2.0, 3.0, 4.0]


def test_write_names_missing_predictions_as_missing(tmp_path: Path) -> None:
    with pytest.raises(SubmissionError, match="missing"):
        write_submission(preds([1.0, 2.0, 3.0], IDS[:3]), make_test_frame(), "amazon2025", tmp_path / "s.csv")


def test_write_orders_rows_like_the_test_csv(tmp_path: Path) -> None:
    shuffled = preds([4.0, 3.0, 1.0, 2.0], [412, 307, 101, 205])
    written = write_submission(shuffled, make_test_frame(), "amazon2025", tmp_path / "s.csv")
    on_disk = pd.read_csv(tmp_path / "s.csv")
    assert list(on_disk.columns) == ["sample_id", "price"]
    assert on_disk["sample_id"].tolist() == IDS
    assert on_disk["price"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert written["sample_id"].tolist() == [str(i) for i in IDS]  # ids as written in the file, as text
    pd.testing.assert_frame_equal(written.astype({"sample_id": int}), on_disk)


def test_real_sample_constant_model_submission_is_valid(tmp_path: Path, shared_data: Path, capsys) -> None:
    test_csv = real_sample(shared_data)
    order = pd.read_csv(test_csv)["sample_id"].tolist()
    test = pd.read_csv(test_csv)
    rng = np.random.default_rng(0)
    predictions = pd.DataFrame({"id": rng.permutation(order), "pred": 17.5})
    path = tmp_path / "submission.csv"
    write_submission(predictions, test, "amazon2025", path)
    assert validate_file(path, test_csv, "amazon2025") == []
    written = pd.read_csv(path)
    assert len(written) == 100 and written["sample_id"].tolist() == order
    assert (written["price"] == 17.5).all()
    assert main(["validate", str(path), "--test", str(test_csv)]) == 0
    # one dropped row makes the same file invalid
    written.iloc[1:].to_csv(tmp_path / "short.csv", index=False)
    problems = validate_file(tmp_path / "short.csv", test_csv, "amazon2025")
    assert problems and str(order[0]) in problems[0]
    assert main(["validate", str(tmp_path / "short.csv"), "--test", str(test_csv)]) == 1
    assert str(order[0]) in capsys.readouterr().err


@pytest.mark.parametrize("text, fix", [("sample_id;price\n1;2.0\n", "seems to use ';' as separator"),
                                       ("sample_id;price\n1;10,5\n2;7\n", "seems to use ';' as separator"),
                                       (",sample_id,price\n0,1,2.0\n", "looks like a saved pandas index")])
def test_validate_says_why_a_submissions_columns_are_wrong(tmp_path, text, fix):
    (tmp_path / "sub.csv").write_text(text)
    (tmp_path / "test.csv").write_text("sample_id,catalog_content,image_link\n1,x,u\n")
    (problem,) = validate_file(tmp_path / "sub.csv", tmp_path / "test.csv", "amazon2025")
    assert problem.startswith("columns must be exactly ['sample_id', 'price']") and fix in problem


@pytest.mark.parametrize("rows", [20, 20_000])
def test_validate_names_an_unclosed_quote_instead_of_crashing(tmp_path, rows):
    """A quote opened in a price and never closed swallowed the rest of the file: on a full-size file the csv
    module's field limit (131072 characters) raised _csv.Error, a traceback from `python -m amzkit validate`;
    on a short one the problem shown was a price holding a dozen lines of the file."""
    lines = ["sample_id,price", *(f"{i},{i + 1.5}" for i in range(rows))]
    lines[5] = '4,"5.5'
    (tmp_path / "sub.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "test.csv").write_text("sample_id,catalog_content,image_link\n"
                                       + "".join(f"{i},text {i},u\n" for i in range(rows)))
    (problem,) = validate_file(tmp_path / "sub.csv", tmp_path / "test.csv", "amazon2025")
    assert "line 6" in problem and "quote" in problem
    assert main(["validate", str(tmp_path / "sub.csv"), "--test", str(tmp_path / "test.csv")]) == 1


def test_a_2023_prediction_of_zero_is_valid_as_its_metric_scores_it(tmp_path: Path) -> None:
    """2023's MAPE divides by the actual only, so a length of 0 is scored (an error of 1 on its row): validate and
    05 refused it, as 2025's positive prices; a negative length is still refused, and 2025 still refuses a zero."""
    from amzkit.stages.submit import _signal_warnings

    submission = pd.DataFrame({"PRODUCT_ID": IDS, "PRODUCT_LENGTH": [10.0, 0.0, 3.5, 4.0]})
    assert validate_submission(submission, IDS, "amazon2023") == []
    negative = submission.assign(PRODUCT_LENGTH=[10.0, -1.0, 3.5, 4.0])
    assert validate_submission(negative, IDS, "amazon2023") == ["1 negative PRODUCT_LENGTH values, ids [205]"]
    assert validate_submission(with_price(0.0), IDS, "amazon2025") == ["1 zero price values, ids [205]"]
    test = pd.DataFrame({"PRODUCT_ID": IDS})
    written = write_submission(preds([10.0, 0.0, 3.5, 4.0]), test, "amazon2023", tmp_path / "s.csv")
    assert written["PRODUCT_LENGTH"].tolist() == [10.0, 0.0, 3.5, 4.0]
    assert any("constant" in line for line in _signal_warnings({}, np.zeros(4), "r", (1.0, 9.0)))
    assert not any("constant" in line for line in _signal_warnings({}, np.array([0.0, 5.0]), "r", (1.0, 9.0)))
