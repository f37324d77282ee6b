"""The work folder: where each stage keeps its outputs, and where it lives on Kaggle and elsewhere."""

from __future__ import annotations

import os
import re
from pathlib import Path

KAGGLE_INPUT = Path("/kaggle/input")
KAGGLE_WORKING = Path("/kaggle/working")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")  # a plain folder/file name: no separators, no ".."


def on_kaggle() -> bool:
    """True inside a Kaggle notebook or kernel."""
    return bool(os.environ.get("KAGGLE_KERNEL_RUN_TYPE")) or KAGGLE_WORKING.is_dir()


def resolve_work_dir(work_dir: str) -> Path:
    """'auto' is /kaggle/working/amzkit on Kaggle and ./runs/latest elsewhere."""
    if work_dir == "auto":
        return (KAGGLE_WORKING / "amzkit") if on_kaggle() else Path("runs/latest").resolve()
    return Path(work_dir).expanduser().resolve()


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


def check_name(name: str, what: str) -> str:
    """`name` when it is a plain name (letters, digits, '_', '-', '.'; not starting with '.'); else an error.

    Run names and file names become folders and files inside the work folder: a separator, '..' or an absolute
    path would write (or read) outside it.
    """
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise ValueError(f"{what} {name!r} is not a plain name: use letters, digits, '_', '-' and '.' (not first), "
                         "with no '/' or '..', so it stays a folder or file inside the work folder")
    return name
