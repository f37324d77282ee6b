"""01's image tables: what later stages need from the pictures, computed once in 01 where the pictures are.

01_extract writes, per split, under `01_extract/image_tables/`: the `cached_images` table (status, original
size, mode, bytes; no paths), the colour group's features and the perceptual hash signatures (dHash + colour
grid). 02's leak report and 03's image groups read these tables, so a Kaggle kernel after 01 needs 01's few
table files, not its ~150k cached pictures. A split's tables count only while its image links are exactly
the ones they were computed for (a sha256 of the links in row order); otherwise readers fall back to the cache.
A kernel that embeds only its share of the rows (01's `shard_index`/`num_shards`) writes the same tables for its
rows under `01_extract/image_tables_part/`, with a mask of the rows it owns; the run that merges the kernels'
shards joins those parts into the whole tables.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from amzkit.core.io import read_json, write_json, write_npy
from amzkit.core.workdir import stage_dir

IMAGE_TABLES_DIR = "image_tables"  # inside 01_extract/
PART_TABLES_DIR = "image_tables_part"  # inside 01_extract/ of a kernel that owns some of the rows
TABLES_MANIFEST = "manifest.json"  # written last: present means every split's files are whole
TABLES_VERSION = 1
TEXT_FIELDS = ("status", "mode", "error")


@dataclass
class ImageSignatures:
    """Perceptual hash signatures of one split, as images.hashes.signatures returns them."""

    hashes: np.ndarray  # object array: 64-bit dHash int, None where the row has no readable image
    colours: np.ndarray  # (rows, grid cells * 3) float32 mean RGB per cell, NaN where no image

    def __len__(self) -> int:
        return len(self.hashes)


@dataclass
class ImageTables:
    """One split's tables, rows in CSV order."""

    images: pd.DataFrame  # cached_images' columns; path is None (the pictures stay with 01)
    colour: np.ndarray  # (rows, colour features) float32
    signatures: ImageSignatures
    settings: dict[str, Any]  # colour k / size_px / version / names; hash bits and grid
    owned: np.ndarray | None = None  # a kernel's part: True on the rows it computed (the others hold no image)


def tables_dir(work_dir: str | Path) -> Path:
    return stage_dir(work_dir, "01_extract") / IMAGE_TABLES_DIR


def part_tables_dir(work_dir: str | Path) -> Path:
    return stage_dir(work_dir, "01_extract") / PART_TABLES_DIR


def clean_links(links: pd.Series) -> pd.Series:
    """Links as the fetch code compares them: str, stripped, '' for missing."""
    return links.fillna("").astype(str).str.strip()


def links_hash(links: pd.Series) -> str:
    """sha256 of a split's cleaned links in row order."""
    return hashlib.sha256("\n".join(clean_links(links)).encode()).hexdigest()


def write_split_tables(folder: str | Path, split: str, images: pd.DataFrame, colour: np.ndarray,
                       signatures: ImageSignatures, owned: np.ndarray | None = None) -> None:
    """Write one split's tables into `folder` (call `write_tables_manifest` after every split); a kernel's part
    also writes the mask of the rows it `owned`."""
    folder = Path(folder)
    n = len(images)
    if colour.shape[0] != n or len(signatures) != n:
        raise ValueError(f"{split}: {n} image rows but {colour.shape[0]} colour rows and {len(signatures)} hashes")
    has_hash = np.array([h is not None for h in signatures.hashes], dtype=bool)
    hashes = np.array([int(h) if h is not None else 0 for h in signatures.hashes], dtype=np.uint64)
    numbers = np.stack([images[c].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
                        for c in ("width", "height", "bytes", "attempts")], axis=1)
    write_npy(folder / f"{split}_numbers.npy", numbers)
    write_json(folder / f"{split}_text.json",
               {c: [None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in images[c]]
                for c in TEXT_FIELDS})
    write_npy(folder / f"{split}_colour.npy", np.asarray(colour, dtype=np.float32))
    write_npy(folder / f"{split}_hash.npy", hashes)
    write_npy(folder / f"{split}_hash_ok.npy", has_hash)
    write_npy(folder / f"{split}_grid.npy", np.asarray(signatures.colours, dtype=np.float32))
    if owned is not None:
        write_npy(folder / f"{split}_owned.npy", np.asarray(owned, dtype=bool))


def write_tables_manifest(folder: str | Path, links: dict[str, pd.Series], settings: dict[str, Any]) -> Path:
    """The manifest, last: the links each split's tables belong to, and the settings they were computed with."""
    splits = {split: {"rows": len(series), "links_sha256": links_hash(series)} for split, series in links.items()}
    return write_json(Path(folder) / TABLES_MANIFEST, {"version": TABLES_VERSION, "splits": splits, **settings})


def read_image_tables(work_dir: str | Path, split: str, links: pd.Series) -> ImageTables | None:
    """`split`'s tables when 01 wrote them for exactly these links (row order included), else None."""
    return read_tables(tables_dir(work_dir), split, links)


def read_tables(folder: str | Path, split: str, links: pd.Series) -> ImageTables | None:
    """`split`'s tables in `folder` (whole tables or a kernel's part) when written for exactly these links."""
    folder = Path(folder)
    manifest_path = folder / TABLES_MANIFEST
    if not manifest_path.is_file():
        return None
    manifest = read_json(manifest_path)
    info = manifest.get("splits", {}).get(split)
    if manifest.get("version") != TABLES_VERSION or not info or info["rows"] != len(links) or (
            info["links_sha256"] != links_hash(links)):
        return None
    numbers = np.load(folder / f"{split}_numbers.npy")
    text = read_json(folder / f"{split}_text.json")
    images = pd.DataFrame({"link": clean_links(links).to_numpy(), "path": None, "status": text["status"]},
                          index=links.index)
    images["path"] = images["path"].astype(object)
    for column, values in zip(("width", "height"), numbers[:, :2].T, strict=True):
        images[column] = pd.array(np.where(np.isnan(values), None, values), dtype="Int64")
    images["mode"] = pd.Series(text["mode"], index=links.index, dtype=object)
    images["bytes"] = np.nan_to_num(numbers[:, 2]).astype(np.int64)
    images["attempts"] = np.nan_to_num(numbers[:, 3]).astype(np.int64)
    images["error"] = pd.Series(text["error"], index=links.index, dtype=object)
    has_hash = np.load(folder / f"{split}_hash_ok.npy")
    hashes = np.full(len(links), None, dtype=object)
    hashes[has_hash] = [int(h) for h in np.load(folder / f"{split}_hash.npy")[has_hash]]
    signatures = ImageSignatures(hashes, np.load(folder / f"{split}_grid.npy"))
    settings = {k: v for k, v in manifest.items() if k not in ("version", "splits")}
    owned = np.load(folder / f"{split}_owned.npy") if (folder / f"{split}_owned.npy").is_file() else None
    return ImageTables(images, np.load(folder / f"{split}_colour.npy"), signatures, settings, owned)
