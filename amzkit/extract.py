"""Stage 01: embed every train and test row with one registry model; write a checked embedding run.

A run folder `01_extract/<model>/` holds train.npy / test.npy (one row per CSV row, in CSV order,
NaN rows where the input failed), train_ok.npy / test_ok.npy masks, manifest.json (model, dim,
rows and the sha256 of each split's id column) and metrics.json.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from amzkit.fetch import fetch_images
from amzkit.io import id_hash, read_json, stage_dir, write_csv, write_json, write_npy
from amzkit.models import create_embedder
from amzkit.schema import get_schema, load_split, row_text

SPLITS = ("train", "test")


def load_data(data_dir: str | Path, schema: str) -> dict[str, pd.DataFrame]:
    """Both splits of a competition folder, checked against the schema."""
    data_dir = Path(data_dir)
    return {split: load_split(data_dir / f"{split}.csv", schema, split) for split in SPLITS}


def extract(
    data: dict[str, pd.DataFrame], data_dir: str | Path, work_dir: str | Path, schema: str, model: str,
    batch_size: int = 64, device: str = "auto",
) -> dict:
    """Embed both splits with `model` and write the run; returns its manifest."""
    schema_ = get_schema(schema)
    spec, embedder = create_embedder(model, batch_size=batch_size, device=device)
    run_dir = stage_dir(work_dir, "01_extract") / spec.name
    started = time.perf_counter()
    fetch_status = {}
    if spec.modality == "image":
        if schema_.image_column is None:
            raise ValueError(f"schema {schema_.name!r} has no image column; choose a text model for it")
        inputs = {}
        for split in SPLITS:
            fetched = fetch_images(data[split][schema_.image_column], base_dir=data_dir,
                                   cache_dir=Path(work_dir) / "image_cache")
            fetch_status[split] = fetched
            inputs[split] = fetched["path"].tolist()
        embedder.fit()
    else:
        inputs = {split: row_text(data[split], schema_).tolist() for split in SPLITS}
        embedder.fit(inputs["train"])
    manifest = {"model": spec.name, "modality": spec.modality, "architecture": spec.architecture,
                "source": spec.source, "schema": schema_.name, "splits": {}}
    for split in SPLITS:
        embeddings, ok = embedder.transform(inputs[split])
        if split in fetch_status:
            statuses = fetch_status[split]["status"].to_numpy()
            ok &= statuses == "ok"
            write_csv(fetch_status[split].assign(embedded=ok), run_dir / f"{split}_fetch.csv")
        write_npy(run_dir / f"{split}.npy", embeddings)
        write_npy(run_dir / f"{split}_ok.npy", ok)
        manifest["dim"] = int(embeddings.shape[1])
        manifest["splits"][split] = {
            "rows": int(len(ok)), "ok": int(ok.sum()),
            "id_sha256": id_hash(data[split][schema_.id_column]),
        }
    seconds = time.perf_counter() - started
    rows = sum(s["rows"] for s in manifest["splits"].values())
    manifest.update(seconds=round(seconds, 3), rows_per_second=round(rows / max(seconds, 1e-9), 1))
    write_json(run_dir / "manifest.json", manifest)
    write_json(run_dir / "metrics.json", {k: manifest[k] for k in ("model", "dim", "splits", "rows_per_second")})
    return manifest


def load_embeddings(work_dir: str | Path, name: str, split: str, ids) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings and ok-mask of run `name` for `split`, refused unless they match `ids` row for row."""
    run_dir = stage_dir(work_dir, "01_extract") / name
    if not (run_dir / "manifest.json").is_file():
        raise FileNotFoundError(
            f"no embedding run {name!r} in {run_dir.parent}: run 01_extract with -p model {name} first"
        )
    manifest = read_json(run_dir / "manifest.json")
    expected = manifest["splits"][split]["id_sha256"]
    if id_hash(ids) != expected:
        raise ValueError(
            f"embedding run {name!r} ({split}) was computed for other rows or another row order than this "
            f"{split} CSV (id sha256 mismatch): rerun 01_extract on this CSV, do not reorder it"
        )
    embeddings = np.load(run_dir / f"{split}.npy").astype(np.float32)
    ok = np.load(run_dir / f"{split}_ok.npy")
    if len(embeddings) != len(ids) or len(ok) != len(ids):
        raise ValueError(f"embedding run {name!r} ({split}) has {len(embeddings)} rows, the CSV {len(ids)}")
    return embeddings, ok


def status_table(work_dir: str | Path, name: str) -> pd.DataFrame:
    """Counts of fetch statuses per split for an image run (empty for text runs)."""
    run_dir = stage_dir(work_dir, "01_extract") / name
    frames = []
    for split in SPLITS:
        path = run_dir / f"{split}_fetch.csv"
        if path.is_file():
            counts = pd.read_csv(path)["status"].value_counts().rename(split)
            frames.append(counts)
    return pd.concat(frames, axis=1).fillna(0).astype(int) if frames else pd.DataFrame()
