"""Atomic writes, JSON, id hashes, run folders and figures: the I/O every stage shares."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

KAGGLE_INPUT = Path("/kaggle/input")
KAGGLE_WORKING = Path("/kaggle/working")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    """Write `obj` as indented JSON atomically (numpy scalars and arrays are converted)."""
    return write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"expected {path}; did the stage that writes it run?")
    return json.loads(path.read_text(encoding="utf-8"))


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


def id_hash(ids) -> str:
    """sha256 of the id column in row order: two files align only when their hashes match."""
    text = "\n".join(str(int(i)) for i in np.asarray(ids))
    return hashlib.sha256(text.encode()).hexdigest()


def on_kaggle() -> bool:
    """True inside a Kaggle notebook or kernel."""
    return bool(os.environ.get("KAGGLE_KERNEL_RUN_TYPE")) or KAGGLE_WORKING.is_dir()


def resolve_work_dir(work_dir: str) -> Path:
    """'auto' is /kaggle/working/amzkit on Kaggle and ./runs/latest elsewhere."""
    if work_dir == "auto":
        return (KAGGLE_WORKING / "amzkit") if on_kaggle() else Path("runs/latest").resolve()
    return Path(work_dir).expanduser().resolve()


def resolve_data_dir(data_dir: str, work_dir: Path, train_name: str = "train.csv") -> Path:
    """Find the folder holding train.csv and test.csv.

    'auto' probes /kaggle/input on Kaggle; 'demo' builds the embedded demo under work_dir/data;
    anything else is a folder path.
    """
    if data_dir == "demo":
        from amzkit.demo import make_demo  # the demo generator is data, not a stage

        return make_demo(work_dir / "data").train_csv.parent
    if data_dir == "auto":
        if not on_kaggle():
            raise ValueError(
                "data_dir='auto' only works on Kaggle (it probes /kaggle/input). Pass the folder that "
                "holds train.csv and test.csv with -p data_dir <folder>, or -p data_dir demo."
            )
        from amzkit.kaggle import find_data_dir  # probes the mount layouts; competition mounts first

        return find_data_dir(KAGGLE_INPUT, train_name=train_name)
    folder = Path(data_dir).expanduser().resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"data_dir {folder} does not exist")
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
