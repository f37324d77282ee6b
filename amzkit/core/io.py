"""Atomic writes, JSON, CSV, arrays, figures and id hashes: the file I/O every layer shares.

Files are written atomically (a temporary file beside the target, renamed over it) with the mode the user's
umask gives a new file; readers name the file and what to do when it is missing, cut short or not text.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import mmap
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

NEW_FILE_MODE = 0o666
STALE_TEMP_S = 300.0  # a temporary file untouched this long was left by a killed writer


def current_umask() -> int:
    """This process's umask (read from /proc where it can be, so that it is not changed even for a moment)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:  # EROFS: a read-only mount such as /kaggle/input, for root too
        if not isinstance(err, PermissionError | FileExistsError | NotADirectoryError) and err.errno != errno.EROFS:
            raise
        raise PermissionError(f"cannot write {path}: {err.strerror or err}. The work folder must be a folder this "
                              "user can write: choose another work_dir") from None
    try:
        os.fchmod(fd, NEW_FILE_MODE & ~current_umask())  # mkstemp makes 0600; a new file gets the user's umask
    finally:
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def remove_stale_temporaries(folder: str | Path, older_than_s: float = STALE_TEMP_S, recursive: bool = False) -> int:
    """Delete the temporary files (".<name>.<random>.tmp") a killed writer left in `folder` (and below it when
    `recursive`) untouched for `older_than_s` seconds; return how many. Never trusted: a complete file has its real
    name. Files that cannot be removed (a read-only earlier output) are left."""
    removed, now = 0, time.time()
    pending = [Path(folder)]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except OSError:
            continue
        for entry in entries:
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False):
                    if recursive:
                        pending.append(Path(entry.path))
                elif (entry.name.startswith(".") and entry.name.endswith(".tmp")
                      and entry.is_file(follow_symlinks=False)
                      and now - entry.stat(follow_symlinks=False).st_mtime > older_than_s):
                    os.unlink(entry.path)
                    removed += 1
    return removed


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    """Write `obj` as indented, strict JSON atomically: numpy scalars and arrays are converted, and a NaN or
    infinite number is written as null (Python reads NaN, but jq, JavaScript and most JSON tools refuse it)."""
    return write_text(path, json.dumps(_finite(obj), indent=2, default=_json_default, allow_nan=False) + "\n")


def _finite(value: Any) -> Any:
    """`value` with every non-finite float (also inside dicts, lists, tuples and arrays) replaced by None."""
    if isinstance(value, float | np.floating):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return _finite(value.tolist())
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def read_json(path: str | Path) -> Any:
    """The JSON in `path`; a missing, cut-short or garbled file is an error that names it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"expected {path}; did the stage that writes it run?")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}): it was cut short or edited. Delete it and rerun the "
                         "stage that writes it") from None


def _first_bad_byte(content: bytes) -> str:
    """Where a file stops being UTF-8: the byte, its offset and line in the file, and the text just before it
    (pandas' own error counts from the start of a field, not of the file)."""
    if content[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "UTF-16 text (it starts with a UTF-16 byte order mark)"
    try:
        content.decode("utf-8")
    except UnicodeDecodeError as err:
        line = content.count(b"\n", 0, err.start) + 1
        before = content[max(content.rfind(b"\n", 0, err.start) + 1, err.start - 40):err.start]
        return (f"not UTF-8 text: byte {content[err.start:err.start + 1]!r} at offset {err.start}, line {line} of the "
                f"file, after {before.decode('utf-8', errors='replace')!r}")
    return "not UTF-8 text"


def _files_named_alike(path: Path, limit: int = 3) -> list[Path]:
    """Files a missing `path` may have been meant as: its name in another case beside it, or the same name one
    folder down (a data_dir one level too high)."""
    try:
        beside = [p for p in path.parent.iterdir() if p.name.lower() == path.name.lower() and p.is_file()]
        below = sorted(p for p in path.parent.glob(f"*/{path.name}") if p.is_file())
    except OSError:  # no such folder, or not readable
        return []
    return (beside + below)[:limit]


def read_csv(path: str | Path, what: str = "CSV", **kwargs) -> pd.DataFrame:
    """pandas.read_csv with errors that name the file and say what to do: missing, a folder, not readable, empty,
    not UTF-8 (UTF-16 or a spreadsheet's encoding), or a row whose fields do not match the header."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{what} {path} is a folder, not a CSV file: give the file's path")
    if not path.is_file():
        near = _files_named_alike(path)
        raise FileNotFoundError(f"{what} not found: {path}" + (
            f"; found {', '.join(map(str, near))}: give the folder that holds it (data_dir), or name the file "
            "as the kit reads it" if near else ""))
    try:
        frame = pd.read_csv(path, encoding="utf-8", **kwargs)
    except PermissionError:
        raise PermissionError(unreadable(path, what)) from None
    except pd.errors.EmptyDataError:
        raise ValueError(f"{what} {path} is empty (not even a header row): write the header and the rows, "
                         "or point to the right file") from None
    except UnicodeDecodeError:
        raise ValueError(f"{what} {path} is {_first_bad_byte(path.read_bytes())}: save it as UTF-8 CSV (e.g. "
                         "df.to_csv(path, index=False))") from None
    except pd.errors.ParserError as err:
        unclosed = re.search(r"EOF inside string starting at row (\d+)", str(err))
        if unclosed:  # pandas counts the rows after the header from 1, as the kit's messages do
            raise ValueError(f"{what} {path} is not a well-formed CSV: a quote (\") opens a field in row "
                             f"{unclosed.group(1)} (1 = first row after the header) and is never closed, so the rest "
                             "of the file reads as one text: close that quote (a quote inside quoted text is "
                             "written twice, \"\")") from None
        raise ValueError(f"{what} {path} is not a well-formed CSV: {str(err).strip()} (a row with more fields "
                         "than the header, e.g. a trailing comma or an unquoted comma in text): fix or quote that "
                         "row") from None
    nul = _first_nul(path)  # pandas' C parser ends a field at a NUL byte and drops the rest of it, silently
    if nul >= 0:
        raise ValueError(f"{what} {path} {_nul_problem(path, nul)}") from None
    return frame


def unreadable(path: str | Path, what: str = "file") -> str:
    """The message for a file this user may not read (errno 13), naming it and what to do."""
    return (f"{what} {path} cannot be read: permission denied for this user: make it readable (chmod u+r "
            f"{path}, or ask its owner) or give the path of a readable copy")


def _first_nul(path: Path) -> int:
    """The offset of the first NUL byte in the file, or -1: a memchr over the mapped file (a few ms per 100 MB)."""
    with open(path, "rb") as fh:
        try:
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                return mapped.find(b"\x00")
        except ValueError:  # an empty file cannot be mapped, and has no NUL
            return -1


def _nul_problem(path: Path, offset: int, chunk: int = 1 << 24) -> str:
    """What is wrong with a file holding NUL bytes: how many, where the first is, and what to do."""
    if offset < 4:
        return ("holds NUL bytes (\\x00) from its first bytes on, as UTF-16 text without a byte order mark does: "
                "save it as UTF-8 CSV (e.g. df.to_csv(path, index=False))")
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        count = sum(mapped[i:i + chunk].count(b"\x00") for i in range(0, len(mapped), chunk))
        line = 1 + sum(mapped[i:min(i + chunk, offset)].count(b"\n") for i in range(0, offset, chunk))
        before = mapped[max(mapped.rfind(b"\n", 0, offset) + 1, offset - 40):offset]
    return (f"holds {count} NUL byte(s) (\\x00), the first on line {line} of the file after "
            f"{before.decode('utf-8', errors='replace')!r}: pandas ends a field at a NUL and drops the rest of that "
            "field without a word, so the kit would read cut text. A copy cut short or damaged leaves them: copy or "
            "download the file again; if the source has them, remove them (tr -d '\\000' < "
            f"{path.name} > fixed.csv) and read fixed.csv")


def write_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return Path(path)


def write_npy(path: str | Path, array: np.ndarray) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)
    return Path(path)


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG atomically; the notebook shows it inline as well."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    return Path(path)


INTEGER_TEXT = re.compile(r"\s*[+-]?[0-9]+\s*")


def id_keys(ids) -> np.ndarray:
    """Ids as the text that identifies them, for comparing and aligning: an integer id (a number, or digits as
    written in a CSV, of any size) becomes its decimal digits without '+' or leading zeros, so 7, "7" and "007"
    are one id; any other id is its text, stripped. Ids are kept as written elsewhere (load_split)."""
    array = np.asarray(ids)
    if array.dtype.kind in "iu":
        return array.astype(str).astype(object)
    keys = np.empty(array.shape, dtype=object)
    for i, value in enumerate(array.ravel().tolist()):
        if isinstance(value, float) and value.is_integer():
            keys.flat[i] = str(int(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            keys.flat[i] = str(value)
        else:
            text = str(value).strip()
            keys.flat[i] = str(int(text)) if INTEGER_TEXT.fullmatch(text) else text
    return keys


def show_ids(ids, n: int = 5) -> str:
    """The first `n` ids as they are written, for messages: [5, 99999999999999999999] (no quotes, no dtype)."""
    values = [v.item() if isinstance(v, np.generic) else v for v in list(np.asarray(ids, dtype=object).ravel())[:n]]
    return "[" + ", ".join(str(v) for v in values) + "]"


def same_ids(left, right) -> bool:
    """True when two id columns hold the same ids in the same order (whatever their dtypes)."""
    left_keys, right_keys = id_keys(left), id_keys(right)
    return left_keys.shape == right_keys.shape and bool((left_keys == right_keys).all())


def ids_difference(saved, now) -> str:
    """How the id column `now` differs from `saved`, in words: reordered, or ids added and gone ('' if the same)."""
    saved_keys, now_keys = id_keys(saved), id_keys(now)
    if saved_keys.shape == now_keys.shape and bool((saved_keys == now_keys).all()):
        return ""
    added, gone = set(now_keys) - set(saved_keys), set(saved_keys) - set(now_keys)
    if not added and not gone:
        return "the same ids in another row order"
    return f"{len(added)} ids added, {len(gone)} gone"


DIGEST_SAMPLE_BYTES = 1 << 20  # of each file of a local model folder, at its start and at its end


def folder_digest(folder: Path, sample_bytes: int = DIGEST_SAMPLE_BYTES) -> str:
    """sha256 of a model folder's files: each one's path, size and first and last `sample_bytes` (weights saved
    anew differ there; reading whole checkpoints of gigabytes on every call would not pay)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        size = path.stat().st_size
        digest.update(f"{path.relative_to(folder).as_posix()}\x00{size}\x00".encode())
        with open(path, "rb") as fh:
            digest.update(fh.read(sample_bytes))
            if size > sample_bytes:
                fh.seek(max(sample_bytes, size - sample_bytes))
                digest.update(fh.read())
    return digest.hexdigest()


def frame_sha256(frame: pd.DataFrame) -> str:
    """sha256 of every cell of a frame in row order (column names aside): an edited text under the same id is
    another frame."""
    return hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()).hexdigest()


def rows_sha256(frame: pd.DataFrame, id_column: str) -> str:
    """sha256 of a CSV's rows as text: ids by their digits (read as numbers or as text), every other cell as text
    with a missing cell empty, so one file read with other dtypes hashes the same."""
    cells = {column: id_keys(frame[column]) if column == id_column else
             frame[column].astype(object).where(frame[column].notna(), "").astype(str) for column in frame.columns}
    return frame_sha256(pd.DataFrame(cells, index=frame.index))


def files_sha256(paths) -> str:
    """sha256 over the bytes of `paths` in order (a missing file hashes as empty): have these files changed?"""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).read_bytes() if Path(path).is_file() else b"")
        digest.update(b"\0")
    return digest.hexdigest()


def id_hash(ids) -> str:
    """sha256 of the id column in row order: two files align only when their hashes match. Integer ids hash as
    their digits (the same hash whether they were read as numbers or as text)."""
    text = "\n".join(id_keys(ids).tolist())
    return hashlib.sha256(text.encode()).hexdigest()
