"""01_extract's image tables (amzkit.images.tables): the image_meta and colour groups' inputs and the leak report's
perceptual hashes, computed where the pictures are so that later stages (and later Kaggle kernels) read tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from amzkit.core.schema import SPLITS, Schema, get_schema
from amzkit.images.features import (
    COLOUR_K,
    COLOUR_SIZE_PX,
    COLOUR_VERSION,
    IMAGE_CACHE_DIR,
    colour_feature_names,
    colour_of_paths,
)
from amzkit.images.fetch import cached_images
from amzkit.images.hashes import COLOUR_GRID, HASH_BITS, signatures
from amzkit.images.tables import (
    TABLES_MANIFEST,
    ImageSignatures,
    ImageTables,
    part_tables_dir,
    read_tables,
    tables_dir,
    write_split_tables,
    write_tables_manifest,
)

ORIENTATION = "exif"  # pictures are read upright by their EXIF tag (tables written before were not: recomputed)


# A row's colour and hash are kept from the tables already written when its picture reads the same: status ok
# then and now, and these numbers equal (a picture fetched again or edited in place changes them).
SAME_PICTURE_COLUMNS = ("width", "height", "bytes", "mode")


def table_settings() -> dict:
    """What the tables were computed with: readers use a group only while these still hold."""
    return {"colour": {"k": COLOUR_K, "size_px": COLOUR_SIZE_PX, "version": COLOUR_VERSION,
                       "names": colour_feature_names(COLOUR_K)},
            "hash": {"bits": HASH_BITS, "grid": COLOUR_GRID}, "orientation": ORIENTATION}


def write_image_tables(data: dict[str, pd.DataFrame], schema: str | Schema, data_dir: str | Path,
                       work_dir: str | Path, workers: int | None = None, progress: bool = True,
                       rows: dict[str, np.ndarray] | None = None) -> Path | None:
    """Compute and write every split's image tables from 01's cache (URLs) and local files (never downloads).

    `rows` (split -> mask), for a kernel that embeds only its share of the rows: the tables of those rows go to
    `01_extract/image_tables_part/` (the other rows hold no image there), for the merging run to join
    (`merge_image_tables`). Returns the tables' folder, or None when the schema has no image column.
    """
    schema = get_schema(schema)
    if schema.image_column is None:
        return None
    cache_dir = Path(work_dir) / IMAGE_CACHE_DIR
    folder = tables_dir(work_dir) if rows is None else part_tables_dir(work_dir)
    links = {split: data[split][schema.image_column] for split in SPLITS}
    written = {split: read_tables(folder, split, links[split]) for split in SPLITS}  # an earlier call's, if any
    (folder / TABLES_MANIFEST).unlink(missing_ok=True)  # the old tables stop counting first
    for split in SPLITS:
        images = cached_images(links[split], data_dir, cache_dir)
        usable = (images["status"] == "ok").to_numpy()
        if rows is not None:
            usable &= np.asarray(rows[split], dtype=bool)
        kept = usable & same_pictures(written[split], images)
        paths = images["path"].where(usable & ~kept, None).tolist()
        colour = colour_of_paths(paths, COLOUR_K, COLOUR_SIZE_PX, workers, progress=progress)
        hashes, grid = signatures(paths, len(paths))
        if kept.any():
            colour[kept] = written[split].colour[kept]
            hashes[kept] = written[split].signatures.hashes[kept]
            grid[kept] = written[split].signatures.colours[kept]
        write_split_tables(folder, split, images, colour, ImageSignatures(hashes, grid),
                           owned=None if rows is None else rows[split])
    write_tables_manifest(folder, links, table_settings())
    return folder


def same_pictures(written: ImageTables | None, images: pd.DataFrame) -> np.ndarray:
    """Rows whose picture the tables `written` (for the same links, with this version's settings) already summarise:
    ok then and now, with the same size, bytes and mode. Their colour and hash need not be computed again."""
    if written is None or written.settings != table_settings():
        return np.zeros(len(images), dtype=bool)
    same = (written.images["status"].to_numpy() == "ok") & (images["status"].to_numpy() == "ok")
    for column in SAME_PICTURE_COLUMNS:
        before = written.images[column].astype(object).where(written.images[column].notna(), None).to_numpy()
        now = images[column].astype(object).where(images[column].notna(), None).to_numpy()
        same &= np.array([a == b for a, b in zip(before, now, strict=True)], dtype=bool)
    if written.owned is not None:
        same &= written.owned
    return same


def merge_image_tables(data: dict[str, pd.DataFrame], schema: str | Schema, work_dirs: list[str | Path],
                       work_dir: str | Path) -> Path | None:
    """Join the kernels' parts (`write_image_tables` with `rows`) into `work_dir`'s whole image tables.

    Every row must be owned by a part written for this CSV's links with this version's settings; otherwise an
    error names the folders and what to do. Returns the tables' folder (None when the schema has no image column).
    """
    schema = get_schema(schema)
    if schema.image_column is None:
        return None
    folders = [part_tables_dir(d) for d in work_dirs]
    folder = tables_dir(work_dir)
    (folder / TABLES_MANIFEST).unlink(missing_ok=True)
    links, merged = {}, {}
    for split in SPLITS:
        links[split] = data[split][schema.image_column]
        parts = [read_tables(f, split, links[split]) for f in folders]
        unusable = [str(f) for f, part in zip(folders, parts, strict=True)
                    if part is None or part.owned is None or part.settings != table_settings()]
        if unusable:
            raise ValueError(
                f"no image tables for this {split}.csv in {unusable}: rerun 01_extract in each of those kernels "
                "with this train.csv/test.csv and amzkit version (finished shards are reused; the kernel then "
                "writes 01_extract/image_tables_part), then merge again")
        owner = np.full(len(links[split]), -1)
        for k, part in enumerate(parts):
            owner[(owner < 0) & part.owned] = k
        if (owner < 0).any():
            rows = np.flatnonzero(owner < 0)
            raise ValueError(f"{split}: {len(rows)} rows (first: {rows[:5].tolist()}) are in none of the image "
                             f"table parts in {[str(f) for f in folders]}: merge the work folders of every kernel")
        merged[split] = _take_rows(parts, owner)
    for split, (images, colour, signature) in merged.items():
        write_split_tables(folder, split, images, colour, signature)
    write_tables_manifest(folder, links, table_settings())
    return folder


def _take_rows(parts: list, owner: np.ndarray) -> tuple[pd.DataFrame, np.ndarray, ImageSignatures]:
    """Each row's tables from the part that owns it."""
    images = parts[0].images.copy()
    colour = parts[0].colour.copy()
    hashes = parts[0].signatures.hashes.copy()
    grid = parts[0].signatures.colours.copy()
    for k, part in enumerate(parts[1:], start=1):
        rows = owner == k
        images.loc[rows] = part.images.loc[rows]
        colour[rows] = part.colour[rows]
        hashes[rows] = part.signatures.hashes[rows]
        grid[rows] = part.signatures.colours[rows]
    return images, colour, ImageSignatures(hashes, grid)
