"""Stage 01: embed every train and test row with one registry model, in shards that resume.

Work is cut into shards of `shard_rows` consecutive rows per split. Each finished shard is written
atomically under `01_extract/<model>/shards/` (embeddings, ok-mask, fetch statuses, then a JSON marker
last), so a killed Kaggle session resumes from the last complete shard and the merged result equals an
uninterrupted run byte for byte. `shard_index`/`num_shards` split the shards across several kernels
(shard k goes to kernel k % num_shards); `merge_shards` joins their outputs and checks that every row
is covered exactly once. The merged run folder holds train.npy / test.npy (CSV row order; NaN rows
where the input failed), train_ok.npy / test_ok.npy, {split}_fetch.csv for image runs, manifest.json
(model, architecture, dim, rows, sha256 of each split's id column, ok counts, rows/s) and metrics.json.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from amzkit.core.io import id_hash, read_json, write_csv, write_json, write_npy
from amzkit.core.params import Param, Parameters
from amzkit.core.schema import SPLITS, get_schema, row_text
from amzkit.core.workdir import stage_dir
from amzkit.embed.factory import create_embedder
from amzkit.embed.registry import ModelSpec
from amzkit.images.fetch import fetch_images

PARAMETERS = Parameters(
    Param("model", "fashion-siglip", "image model: a registry name or local-dir:<folder>; \"\": none"),
    Param("text_model", "minilm", "text model: a registry name or local-dir:<folder>; \"\": none"),
    Param("batch_size", 64, "rows per forward pass of the neural models"),
    Param("device", "auto", "auto (cuda when present), cuda, cuda:1 or cpu"),
    Param("num_workers", -1, "image decode workers; -1: one per core"),
    Param("shard_index", 0, "this kernel's share when several kernels split the rows (0 .. num_shards - 1)"),
    Param("num_shards", 1, "kernels splitting the rows; each writes its shards, then merge_dirs joins them"),
    Param("merge_dirs", [], "work folders of the kernels whose shards this run joins (instead of embedding)"),
)
D = PARAMETERS.defaults

SHARD_ROWS = 10_000
SHARDS_DIR = "shards"


def plan_shards(n_rows: int, shard_rows: int = SHARD_ROWS) -> list[tuple[int, int]]:
    """(start, stop) row ranges of consecutive shards covering n_rows."""
    if shard_rows < 1:
        raise ValueError(f"shard_rows must be >= 1, got {shard_rows}")
    return [(start, min(start + shard_rows, n_rows)) for start in range(0, n_rows, shard_rows)]


def _shard_stem(split: str, shard_no: int) -> str:
    return f"{split}-{shard_no:05d}"


def _shard_done(shard_dir: Path, split: str, shard_no: int, expected: dict) -> bool:
    """A shard counts as done only when its marker exists and describes exactly these rows and model."""
    marker = shard_dir / f"{_shard_stem(split, shard_no)}.json"
    if not marker.is_file():
        return False
    saved = read_json(marker)
    return all(saved.get(key) == value for key, value in expected.items()) and all(
        (shard_dir / f"{_shard_stem(split, shard_no)}{suffix}").is_file() for suffix in (".npy", ".ok.npy"))


def _output_dtype(spec: ModelSpec):
    return np.float16 if spec.normalize else np.float32


def extract(
    data: dict[str, pd.DataFrame], data_dir: str | Path, work_dir: str | Path, schema: str, model: str,
    batch_size: int = D.batch_size, device: str = D.device, num_workers: int = D.num_workers,
    shard_rows: int = SHARD_ROWS, shard_index: int = D.shard_index, num_shards: int = D.num_shards,
) -> dict:
    """Embed this kernel's shards of both splits with `model`; merge when it is the only kernel.

    Returns the merged manifest (num_shards == 1) or a summary of the shards this kernel wrote.
    """
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"shard_index must be in 0..{num_shards - 1}, got {shard_index}")
    schema_ = get_schema(schema)
    spec, embedder = create_embedder(model, batch_size=batch_size, device=device, num_workers=num_workers)
    run_dir = stage_dir(work_dir, "01_extract") / spec.name
    shard_dir = run_dir / SHARDS_DIR
    if spec.modality == "image" and schema_.image_column is None:
        raise ValueError(f"schema {schema_.name!r} has no image column; choose a text model for it")
    todo = {}
    for split in SPLITS:
        ids = data[split][schema_.id_column].to_numpy()
        for shard_no, (start, stop) in enumerate(plan_shards(len(ids), shard_rows)):
            if shard_no % num_shards != shard_index:
                continue
            expected = {"model": spec.name, "split": split, "shard_no": shard_no, "start": start, "stop": stop,
                        "ids_sha256": id_hash(ids[start:stop])}
            if not _shard_done(shard_dir, split, shard_no, expected):
                todo[(split, shard_no)] = expected
    if todo:
        _embed_shards(todo, data, data_dir, work_dir, schema_, spec, embedder, shard_dir)
    if num_shards == 1:
        return merge_shards([run_dir], run_dir, {s: data[s][schema_.id_column] for s in SPLITS}, spec)
    return {"model": spec.name, "shard_index": shard_index, "num_shards": num_shards, "shards_written": len(todo),
            "shards_dir": str(shard_dir)}


def _embed_shards(todo: dict, data, data_dir, work_dir, schema_, spec: ModelSpec, embedder, shard_dir: Path) -> None:
    """Fetch (images) or gather (text) the inputs of the pending shards, fit, then embed shard by shard."""
    if spec.modality == "image":
        embedder.fit()
    else:
        embedder.fit(row_text(data["train"], schema_).tolist())
    progress = tqdm(sorted(todo.items()), desc=f"{spec.name} shards", unit="shard")
    for (split, shard_no), expected in progress:
        start, stop = expected["start"], expected["stop"]
        started = time.perf_counter()
        rows = data[split].iloc[start:stop]
        if spec.modality == "image":
            fetched = fetch_images(rows[schema_.image_column], base_dir=data_dir,
                                   cache_dir=Path(work_dir) / "image_cache")
            inputs = fetched["path"].tolist()
        else:
            inputs = row_text(rows, schema_).tolist()
        embeddings, ok = embedder.transform(inputs)
        embeddings = np.asarray(embeddings, dtype=_output_dtype(spec))
        if spec.modality == "image":
            ok = ok & (fetched["status"].to_numpy() == "ok")
            write_csv(fetched.assign(embedded=ok).reset_index(drop=True),
                      shard_dir / f"{_shard_stem(split, shard_no)}.fetch.csv")
        embeddings[~ok] = np.nan
        if embeddings.shape[0] != stop - start or ok.shape[0] != stop - start:
            raise RuntimeError(f"{spec.name} returned {embeddings.shape[0]} rows for a shard of {stop - start}")
        seconds = time.perf_counter() - started
        stem = _shard_stem(split, shard_no)
        write_npy(shard_dir / f"{stem}.npy", embeddings)
        write_npy(shard_dir / f"{stem}.ok.npy", ok)
        write_json(shard_dir / f"{stem}.json", {  # the marker goes last: its presence means the shard is whole
            **expected, "rows": stop - start, "ok": int(ok.sum()), "dim": int(embeddings.shape[1]),
            "dtype": str(embeddings.dtype), "seconds": round(seconds, 3),
        })
        progress.set_postfix(rows_per_s=f"{(stop - start) / max(seconds, 1e-9):.0f}")


def merge_shards(sources: list[str | Path], out_dir: str | Path, ids: dict[str, pd.Series],
                 spec: ModelSpec | None = None) -> dict:
    """Join shard outputs of one model from one or more run folders into `out_dir`.

    Checks that the shards cover every row of every split exactly once and match `ids` (split -> id
    column); a shard found twice must be identical. Writes the merged arrays and the manifest.
    """
    out_dir = Path(out_dir)
    markers: dict[tuple[str, int], tuple[Path, dict]] = {}
    for source in sources:
        source = Path(source)
        folder = source / SHARDS_DIR if (source / SHARDS_DIR).is_dir() else source
        for marker in sorted(folder.glob("*-*.json")):
            info = read_json(marker)
            key = (info["split"], info["shard_no"])
            if key in markers and markers[key][1]["ids_sha256"] != info["ids_sha256"]:
                raise ValueError(f"shard {key} appears twice with different rows: {markers[key][0]} and {marker}")
            markers.setdefault(key, (marker, info))
    if not markers:
        raise FileNotFoundError(f"no shards found in {[str(s) for s in sources]}")
    models = {info["model"] for _, info in markers.values()}
    if len(models) != 1:
        raise ValueError(f"shards from different models cannot be merged: {sorted(models)}")
    manifest: dict = {"model": models.pop(), "splits": {}}
    total_seconds = 0.0
    for split in SPLITS:
        split_ids = np.asarray(ids[split])
        found = sorted((no, path, info) for (s, no), (path, info) in markers.items() if s == split)
        covered = 0
        blocks, oks, statuses = [], [], []
        for expected_no, (no, path, info) in enumerate(found):
            if no != expected_no or info["start"] != covered:
                raise ValueError(f"{split}: shard #{expected_no} (rows from {covered}) is missing; it belongs to "
                                 f"the kernel whose shard_index = {expected_no} mod num_shards: check that it "
                                 "finished and that its output folder is among the merged sources")
            if id_hash(split_ids[info["start"]:info["stop"]]) != info["ids_sha256"]:
                raise ValueError(f"{split} shard #{no} ({path}) was computed for other rows than this CSV")
            stem = path.with_suffix("")
            blocks.append(np.load(f"{stem}.npy"))
            oks.append(np.load(f"{stem}.ok.npy"))
            if Path(f"{stem}.fetch.csv").is_file():
                statuses.append(pd.read_csv(f"{stem}.fetch.csv", keep_default_na=False))
            covered = info["stop"]
            total_seconds += info.get("seconds", 0.0)
        if covered != len(split_ids):
            raise ValueError(f"{split}: shards cover rows 0..{covered} of {len(split_ids)}; the rest are missing")
        embeddings, ok = np.concatenate(blocks), np.concatenate(oks)
        write_npy(out_dir / f"{split}.npy", embeddings)
        write_npy(out_dir / f"{split}_ok.npy", ok)
        if statuses:
            write_csv(pd.concat(statuses, ignore_index=True), out_dir / f"{split}_fetch.csv")
        manifest["dim"] = int(embeddings.shape[1])
        manifest["dtype"] = str(embeddings.dtype)
        manifest["splits"][split] = {"rows": len(ok), "ok": int(ok.sum()), "id_sha256": id_hash(split_ids),
                                     "shards": len(found)}
    if spec is not None:
        manifest.update(modality=spec.modality, architecture=spec.architecture, source=spec.source)
    rows = sum(s["rows"] for s in manifest["splits"].values())
    manifest.update(seconds=round(total_seconds, 3), rows_per_second=round(rows / max(total_seconds, 1e-9), 1))
    write_json(out_dir / "manifest.json", manifest)
    write_json(out_dir / "metrics.json", {k: manifest[k] for k in ("model", "dim", "splits", "rows_per_second")})
    return manifest


def status_table(work_dir: str | Path, name: str) -> pd.DataFrame:
    """Counts of fetch statuses per split for an image run (empty for text runs)."""
    run_dir = stage_dir(work_dir, "01_extract") / name
    frames = []
    for split in SPLITS:
        path = run_dir / f"{split}_fetch.csv"
        if path.is_file():
            frames.append(pd.read_csv(path, keep_default_na=False)["status"].value_counts().rename(split))
    return pd.concat(frames, axis=1).fillna(0).astype(int) if frames else pd.DataFrame()
