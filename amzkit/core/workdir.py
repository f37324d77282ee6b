"""The work folder: where each stage keeps its outputs, and where it lives on Kaggle and elsewhere."""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

KAGGLE_ROOT_ENV = "AMZKIT_KAGGLE_ROOT"  # a stand-in for /kaggle (the rehearsal test's fake tree); unset on Kaggle
KAGGLE_ROOT = Path(os.environ.get(KAGGLE_ROOT_ENV) or "/kaggle")
KAGGLE_INPUT = KAGGLE_ROOT / "input"
KAGGLE_WORKING = KAGGLE_ROOT / "working"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")  # a plain folder/file name: no separators, no ".."


def on_kaggle() -> bool:
    """True inside a Kaggle notebook or kernel."""
    return bool(os.environ.get("KAGGLE_KERNEL_RUN_TYPE")) or KAGGLE_WORKING.is_dir()


def resolve_work_dir(work_dir: str) -> Path:
    """'auto' is /kaggle/working/amzkit on Kaggle and ./runs/latest elsewhere.

    A folder that does not exist yet must be creatable (an existing one may be read-only: an earlier kernel's
    outputs are read from one); `check_writable` is the check before writing into one.
    """
    if not isinstance(work_dir, str | Path) or str(work_dir).strip() == "":
        raise ValueError(f"work_dir {work_dir!r} is empty: give a folder (-p work_dir <folder>) or 'auto'")
    if work_dir == "auto":
        folder = (KAGGLE_WORKING / "amzkit") if on_kaggle() else Path("runs/latest").resolve()
    else:
        folder = Path(work_dir).expanduser().resolve()
    if folder.is_dir():
        return folder
    return check_writable(folder, "work_dir")


def check_writable(folder: Path, what: str = "work_dir") -> Path:
    """`folder` when it is (or can be created as) a folder this process may write; else an error saying why."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{what} {folder} cannot be created: {existing} is a file, not a folder. Choose another "
                         f"{what}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"{what} {folder} is not writable ({existing} does not let this user write): choose "
                              f"a folder you can write, e.g. -p {what} runs/latest")
    return folder


STAGES = ("01_extract", "02_correlate", "03_train", "04_ensemble", "05_submit")


def stage_dir(work_dir: str | Path, stage: str) -> Path:
    """Where a stage keeps its outputs inside the work folder."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages are {STAGES}")
    return Path(work_dir) / stage


def list_runs(work_dir: str | Path, stage: str, marker: str = "metrics.json") -> list[str]:
    """Names of the finished runs of a stage (folders holding `marker`), sorted."""
    folder = stage_dir(work_dir, stage)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / marker).is_file())


def missing_run(work_dir: str | Path, stage: str, name: str, what: str = "run") -> str:
    """Why run `name` of `stage` cannot be read: the stage's finished runs, and the closest name to a typo."""
    made = list_runs(work_dir, stage)
    close = difflib.get_close_matches(name, made, n=1)
    return (f"no {stage} {what} {name!r} in {stage_dir(work_dir, stage)}"
            + (f" (did you mean {close[0]!r}?)" if close else "") + f"; its finished runs: {made or 'none'}")


def is_plain_name(name: object) -> bool:
    """Whether `name` is a plain folder/file name (see check_name)."""
    return isinstance(name, str) and NAME_PATTERN.fullmatch(name) is not None and ".." not in name


def check_name(name: str, what: str) -> str:
    """`name` when it is a plain name (letters, digits, '_', '-', '.'; not starting with '.'); else an error.

    Run names and file names become folders and files inside the work folder: a separator, '..' or an absolute
    path would write (or read) outside it.
    """
    if not is_plain_name(name):
        raise ValueError(f"{what} {name!r} is not a plain name: use letters, digits, '_', '-' and '.' (not first), "
                         "with no '/' or '..', so it stays a folder or file inside the work folder")
    return name
