"""01_extract's image tables (amzkit.images.tables): the image_meta and colour groups' inputs and the leak report's
perceptual hashes, computed where the pictures are so that later stages (and later Kaggle kernels) read tables."""

from __future__ import annotations

from pathlib import Path

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
    tables_dir,
    write_split_tables,
    write_tables_manifest,
)


def table_settings() -> dict:
    """What the tables were computed with: readers use a group only while these still hold."""
    return {"colour": {"k": COLOUR_K, "size_px": COLOUR_SIZE_PX, "version": COLOUR_VERSION,
                       "names": colour_feature_names(COLOUR_K)},
            "hash": {"bits": HASH_BITS, "grid": COLOUR_GRID}}


def write_image_tables(data: dict[str, pd.DataFrame], schema: str | Schema, data_dir: str | Path,
                       work_dir: str | Path, workers: int | None = None, progress: bool = True) -> Path | None:
    """Compute and write every split's image tables from 01's cache (URLs) and local files (never downloads).

    Returns the tables' folder, or None when the schema has no image column.
    """
    schema = get_schema(schema)
    if schema.image_column is None:
        return None
    cache_dir = Path(work_dir) / IMAGE_CACHE_DIR
    (tables_dir(work_dir) / TABLES_MANIFEST).unlink(missing_ok=True)  # the old tables stop counting first
    links = {}
    for split in SPLITS:
        links[split] = data[split][schema.image_column]
        images = cached_images(links[split], data_dir, cache_dir)
        paths = images["path"].where(images["status"] == "ok", None).tolist()
        colour = colour_of_paths(paths, COLOUR_K, COLOUR_SIZE_PX, workers, progress=progress)
        hashes, grid = signatures(paths, len(paths))
        write_split_tables(work_dir, split, images, colour, ImageSignatures(hashes, grid))
    write_tables_manifest(work_dir, links, table_settings())
    return tables_dir(work_dir)
