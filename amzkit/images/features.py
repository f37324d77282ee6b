"""Image feature groups for 03_train, from the images 01_extract already cached (nothing is downloaded here).

- `image_meta`: the original picture's width, height, aspect, pixels, file size, Pillow mode and orientation
  flags. URLs take them from the fetch manifest (the cached file may be resized); local files from their header.
- `colour`: brightness, per-channel and saturation statistics, colourfulness, near-white / dark / white-border
  shares, edge density and the k dominant colours (a batched numpy k-means: centre RGB + HSV and share, largest
  share first) of each image decoded in draft mode and shrunk to `size_px` x `size_px`.

Rows without a usable image get NaN (and has_image 0). Colour features are cached in chunks under
`03_train/image_features/colour-k<k>-<size>px/`: a chunk is reused while its rows' links, fetch statuses and
byte counts are unchanged, so a second run reads them back and an interrupted run resumes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from amzkit.core.io import read_json, write_json, write_npy
from amzkit.core.progress import tqdm
from amzkit.core.schema import Schema, get_schema
from amzkit.core.workdir import stage_dir
from amzkit.images.decode import open_image
from amzkit.images.fetch import cached_images
from amzkit.images.tables import TABLES_MANIFEST, ImageTables, read_image_tables, tables_dir

SPLITS = ("train", "test")
IMAGE_FEATURES_DIR = "image_features"
IMAGE_CACHE_DIR = "image_cache"  # where 01_extract's fetch_images keeps downloads and the manifest
SQUARE_TOLERANCE = 0.02  # |w - h| <= 2% of the longer side counts as square
IMAGE_CATEGORICAL = {"image_mode"}

COLOUR_K = 3
COLOUR_SIZE_PX = 32
COLOUR_CHUNK_ROWS = 5_000  # rows per cached chunk: the unit of resume
COLOUR_BATCH = 64  # images decoded and summarised per thread task
KMEANS_ITERATIONS = 10
KMEANS_STRIDE = 2  # centres are fit on every 2nd pixel of every 2nd row (16 x 16 of 32 x 32); shares on all
KMEANS_PICKS = (0.5, 0.618, 0.382, 0.809, 0.191, 0.927, 0.073, 0.691)  # fixed draws: deterministic k-means++
WHITE_LEVEL = 235 / 255  # every channel at least this: near-white (the studio background of product photos)
DARK_LEVEL = 40 / 255  # every channel at most this
BORDER_PX = 2
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
COLOUR_VERSION = 1  # bump when the features change: cached chunks of another version are recomputed

ImageFeatureBuilder = Callable[..., pd.DataFrame]  # (images, split, out_dir, *, workers, progress) -> frame


# ---------------------------------------------------------------- image_meta


def image_meta_features(images: pd.DataFrame, split: str = "", out_dir: Path | None = None, *,
                        workers: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Original size, aspect, pixels, bytes, mode and orientation per row of a `cached_images` table."""
    ok = (images["status"] == "ok").to_numpy()
    width = images["width"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    height = images["height"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    size = images["bytes"].to_numpy(dtype=float)
    width[~ok], height[~ok], size[~ok] = np.nan, np.nan, np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = np.abs(width - height) / np.maximum(width, height)
        square = spread <= SQUARE_TOLERANCE
        out = pd.DataFrame({
            "has_image": ok.astype(np.float32),
            "image_width": width,
            "image_height": height,
            "image_aspect_log": np.log(width / height),
            "image_pixels_log": np.log(width * height),
            "image_bytes_log": np.log1p(np.where(size > 0, size, np.nan)),
            "image_is_square": square.astype(float),
            "image_is_landscape": ((width > height) & ~square).astype(float),
            "image_is_portrait": ((height > width) & ~square).astype(float),
        }, index=images.index)
    flags = ["image_is_square", "image_is_landscape", "image_is_portrait"]
    out.loc[~(ok & np.isfinite(width) & np.isfinite(height)), flags] = np.nan
    out["image_mode"] = images["mode"].where(ok & images["mode"].notna().to_numpy(), None).astype(object)
    return out


# ---------------------------------------------------------------- colour


def colour_feature_names(k: int = COLOUR_K) -> list[str]:
    """Column names of the colour group for `k` dominant colours."""
    names = ["colour_brightness_mean", "colour_brightness_std"]
    names += [f"colour_{c}_{stat}" for c in "rgb" for stat in ("mean", "std")]
    names += ["colour_saturation_mean", "colour_colourfulness", "colour_white_share", "colour_dark_share",
              "colour_border_white_share", "colour_edge_mean"]
    names += [f"colour_c{j}_{part}" for j in range(k) for part in ("r", "g", "b", "h", "s", "v", "share")]
    return names


def image_pixels(path: str, size_px: int = COLOUR_SIZE_PX) -> np.ndarray | None:
    """The image as a (size_px, size_px, 3) uint8 RGB array (JPEGs draft-decoded); None when it does not decode."""
    img, _ = open_image(path, draft_px=2 * size_px)
    if img is None:
        return None
    return np.asarray(img.resize((size_px, size_px), Image.Resampling.BOX), dtype=np.uint8)


def _hsv(rgb: np.ndarray) -> np.ndarray:
    """HSV in [0, 1] of RGB values in [0, 1] (last axis); hue 0 for greys."""
    high, low = rgb.max(axis=-1), rgb.min(axis=-1)
    chroma = high - low
    safe = np.where(chroma > 0, chroma, 1.0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    hue = np.where(high == r, ((g - b) / safe) % 6, np.where(high == g, (b - r) / safe + 2, (r - g) / safe + 4))
    hue = np.where(chroma > 0, hue / 6, 0.0)
    saturation = np.where(high > 0, chroma / np.where(high > 0, high, 1.0), 0.0)
    return np.stack([hue, saturation, high], axis=-1)


def kmeans_colours(pixels: np.ndarray, k: int = COLOUR_K, iterations: int = KMEANS_ITERATIONS,
                   fit_pixels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Dominant colours of many images at once: (centres (n, k, 3), shares (n, k)), largest share first.

    `pixels` is (n, p, 3) float32; the centres are fit on `fit_pixels` (a subsample, default all) and the
    shares count every pixel's nearest centre. Lloyd's algorithm from a k-means++ start (first centre: the
    pixel nearest the mean colour) whose random draws are fixed numbers (KMEANS_PICKS), so an image's result
    never depends on its batch or a seed; an empty cluster keeps its centre with share 0.
    """
    shares_of = pixels
    pixels = pixels if fit_pixels is None else fit_pixels
    n, p, _ = pixels.shape
    rows = np.arange(n)
    centres = np.empty((n, k, 3), dtype=np.float32)
    first = ((pixels - pixels.mean(axis=1, keepdims=True)) ** 2).sum(axis=2).argmin(axis=1)
    centres[:, 0] = pixels[rows, first]
    nearest = ((pixels - centres[:, 0, None]) ** 2).sum(axis=2)
    for j in range(1, k):
        weights = np.where(nearest.sum(axis=1, keepdims=True) > 0, nearest, 1.0)  # all alike: any pixel
        cumulative = np.cumsum(weights, axis=1)
        target = cumulative[:, -1:] * KMEANS_PICKS[(j - 1) % len(KMEANS_PICKS)]
        pick = np.minimum((cumulative < target).sum(axis=1), p - 1)
        centres[:, j] = pixels[rows, pick]
        nearest = np.minimum(nearest, ((pixels - centres[:, j, None]) ** 2).sum(axis=2))
    labels = _nearest_centre(pixels, centres)
    for _ in range(iterations):
        index = (labels + k * rows[:, None]).ravel()
        counts = np.bincount(index, minlength=n * k).reshape(n, k, 1)
        sums = np.stack([np.bincount(index, pixels[..., c].ravel(), minlength=n * k) for c in range(3)], axis=1)
        centres = np.where(counts > 0, sums.reshape(n, k, 3) / np.maximum(counts, 1), centres).astype(np.float32)
        moved, labels = labels, _nearest_centre(pixels, centres)
        if np.array_equal(moved, labels):
            break
    if shares_of is not pixels:
        labels = _nearest_centre(shares_of, centres)
    shares = (labels[:, :, None] == np.arange(k)).mean(axis=1)
    order = np.argsort(-shares, axis=1, kind="stable")
    return np.take_along_axis(centres, order[:, :, None], axis=1), np.take_along_axis(shares, order, axis=1)


def _nearest_centre(pixels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of each pixel's nearest centre: argmin of |c|^2 - 2 x.c (|x|^2 is the same for every centre)."""
    scores = (centres ** 2).sum(axis=2)[:, None, :] - 2 * (pixels @ centres.transpose(0, 2, 1))
    return scores.argmin(axis=2)


def colour_stats(images: np.ndarray, k: int = COLOUR_K) -> np.ndarray:
    """Colour features (columns: `colour_feature_names(k)`) of (n, s, s, 3) uint8 images, as float32."""
    n, side = images.shape[0], images.shape[1]
    rgb = images.astype(np.float32) / 255.0
    flat = rgb.reshape(n, -1, 3)
    luma = flat @ LUMA
    hsv = _hsv(flat)
    rg = flat[..., 0] - flat[..., 1]
    yb = (flat[..., 0] + flat[..., 1]) / 2 - flat[..., 2]
    colourfulness = np.hypot(rg.std(axis=1), yb.std(axis=1)) + 0.3 * np.hypot(rg.mean(axis=1), yb.mean(axis=1))
    white = flat.min(axis=2) >= WHITE_LEVEL
    border = np.ones((side, side), dtype=bool)
    border[BORDER_PX:side - BORDER_PX, BORDER_PX:side - BORDER_PX] = False
    grid = luma.reshape(n, side, side)
    edges = (np.abs(np.diff(grid, axis=1)).mean(axis=(1, 2)) + np.abs(np.diff(grid, axis=2)).mean(axis=(1, 2))) / 2
    channels = np.stack([flat.mean(axis=1), flat.std(axis=1)], axis=2).reshape(n, 6)  # r mean, r std, g mean...
    centres, shares = kmeans_colours(flat, k, fit_pixels=rgb[:, ::KMEANS_STRIDE, ::KMEANS_STRIDE].reshape(n, -1, 3))
    clusters = np.concatenate([centres, _hsv(centres), shares[:, :, None]], axis=2).reshape(n, 7 * k)
    columns = [luma.mean(axis=1, keepdims=True), luma.std(axis=1, keepdims=True), channels,
               hsv[..., 1].mean(axis=1, keepdims=True), colourfulness[:, None], white.mean(axis=1, keepdims=True),
               (flat.max(axis=2) <= DARK_LEVEL).mean(axis=1, keepdims=True),
               white.reshape(n, side, side)[:, border].mean(axis=1, keepdims=True), edges[:, None], clusters]
    return np.concatenate(columns, axis=1).astype(np.float32)


def colour_of_paths(paths: list[str | None], k: int = COLOUR_K, size_px: int = COLOUR_SIZE_PX,
                    workers: int | None = None, progress: bool = True, bar: tqdm | None = None) -> np.ndarray:
    """Colour features per path (NaN rows for None or an image that does not decode), on a thread pool.

    Each distinct path is decoded once; `bar` (else a bar of its own) advances by distinct images.
    """
    out = np.full((len(paths), len(colour_feature_names(k))), np.nan, dtype=np.float32)
    unique = sorted({p for p in paths if p is not None})
    if not unique:
        return out
    batches = [unique[i:i + COLOUR_BATCH] for i in range(0, len(unique), COLOUR_BATCH)]

    def summarise(batch: list[str]) -> tuple[list[str], np.ndarray | None]:
        decoded = [(path, image_pixels(path, size_px)) for path in batch]
        decoded = [(path, pixels) for path, pixels in decoded if pixels is not None]
        if not decoded:
            return [], None
        return [path for path, _ in decoded], colour_stats(np.stack([pixels for _, pixels in decoded]), k)

    found: dict[str, np.ndarray] = {}
    workers = workers or os.cpu_count() or 1
    own_bar = bar is None
    bar = tqdm(total=len(unique), desc="colour", unit="img", disable=not progress, smoothing=0.1) if own_bar else bar
    try:
        with ThreadPoolExecutor(max(1, workers)) as pool:
            for batch, (done, values) in zip(batches, pool.map(summarise, batches), strict=True):
                if values is not None:
                    found.update(zip(done, values, strict=True))
                bar.update(len(batch))
    finally:
        if own_bar:
            bar.close()
    for i, path in enumerate(paths):
        if path in found:
            out[i] = found[path]
    return out


def rows_hash(images: pd.DataFrame) -> str:
    """sha256 of each row's link, fetch status and byte count: a cached chunk is valid while it is unchanged. An ok
    row without a picture path (01's tables' rows) hashes apart, so its all-NaN chunk never stands for the picture."""
    status = images["status"].where(images["path"].notna() | (images["status"] != "ok"), "ok_without_path")
    text = "\n".join(f"{link}\t{status}\t{size}" for link, status, size in
                     zip(images["link"], status, images["bytes"], strict=True))
    return hashlib.sha256(text.encode()).hexdigest()


def colour_features(images: pd.DataFrame, split: str, out_dir: Path, *, workers: int | None = None,
                    progress: bool = True, k: int = COLOUR_K, size_px: int = COLOUR_SIZE_PX,
                    chunk_rows: int = COLOUR_CHUNK_ROWS) -> pd.DataFrame:
    """Colour features per row of a `cached_images` table, computed in chunks cached under `out_dir`."""
    names = colour_feature_names(k)
    folder = Path(out_dir) / f"colour-k{k}-{size_px}px"
    settings = {"version": COLOUR_VERSION, "k": k, "size_px": size_px, "names": names}
    paths = images["path"].where(images["status"] == "ok", None).tolist()
    blocks, todo = {}, []
    for start in range(0, len(images), chunk_rows):
        stop = min(start + chunk_rows, len(images))
        stem = folder / f"{split}-{start // chunk_rows:05d}"
        expected = {**settings, "split": split, "start": start, "stop": stop,
                    "rows_sha256": rows_hash(images.iloc[start:stop])}
        marker = stem.with_suffix(".json")
        if marker.is_file() and stem.with_suffix(".npy").is_file() and read_json(marker) == expected:
            blocks[start] = np.load(stem.with_suffix(".npy"))
        else:
            todo.append((start, stop, stem, expected))
    if todo:
        pending = sum(len({p for p in paths[start:stop] if p is not None}) for start, stop, _, _ in todo)
        with tqdm(total=pending, desc=f"colour {split}", unit="img", disable=not progress, smoothing=0.1) as bar:
            bar.set_postfix(cached_chunks=len(blocks), chunks_to_do=len(todo))
            for start, stop, stem, expected in todo:
                block = colour_of_paths(paths[start:stop], k, size_px, workers, bar=bar)
                stem.with_suffix(".json").unlink(missing_ok=True)  # an old marker must not vouch for the new rows
                write_npy(stem.with_suffix(".npy"), block)
                write_json(stem.with_suffix(".json"), expected)  # the marker last: present means the chunk is whole
                blocks[start] = block
    values = np.concatenate([blocks[s] for s in sorted(blocks)]) if blocks else np.empty((0, len(names)), np.float32)
    return pd.DataFrame(values, columns=names, index=images.index)


# ---------------------------------------------------------------- the public entry point


IMAGE_FEATURE_GROUPS: dict[str, ImageFeatureBuilder] = {
    "image_meta": image_meta_features,
    "colour": colour_features,
}


def image_feature_group(column: str) -> str:
    """The image feature group a column of build_image_features comes from."""
    return "colour" if column in colour_feature_names() else "image_meta"


def build_image_features(
    data: dict[str, pd.DataFrame], schema: str | Schema, data_dir: str | Path, work_dir: str | Path,
    groups: list[str], *, workers: int | None = None, progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and test frames (CSV row order, same columns) of the image feature `groups`.

    Images are what 01_extract cached in `work_dir/image_cache` (URLs) or files beside the CSVs in
    `data_dir` (local links); nothing is downloaded. Prints one line per split counting rows without an image.
    """
    schema = get_schema(schema)
    unknown = [g for g in groups if g not in IMAGE_FEATURE_GROUPS]
    if unknown:
        raise ValueError(f"unknown image feature groups {unknown}; choose from {sorted(IMAGE_FEATURE_GROUPS)}")
    if schema.image_column is None:
        raise ValueError(f"schema {schema.name!r} has no image column, so image feature groups {groups} cannot be "
                         "built; drop them from the features for this schema")
    out_dir = stage_dir(work_dir, "03_train") / IMAGE_FEATURES_DIR
    frames = {}
    for split in SPLITS:
        cache_dir = Path(work_dir) / IMAGE_CACHE_DIR
        tables = read_image_tables(work_dir, split, data[split][schema.image_column])  # 01's, when they match
        images = tables.images if tables is not None else cached_images(data[split][schema.image_column],
                                                                        data_dir, cache_dir)
        line = report_missing(images, split, cache_dir)
        if len(images) and not (images["status"] == "ok").any():
            made = tables_dir(work_dir) / TABLES_MANIFEST
            why = (f"01_extract's image tables ({made.parent}) were made for other rows or links than this "
                   f"{split}.csv (it changed since 01 ran), and the pictures themselves are not at hand (on Kaggle "
                   "they travel only as those tables). Rerun 01_extract with an image model on this data"
                   if tables is None and made.is_file() else
                   "Run 01_extract with an image model where the links can be fetched (Kaggle: Internet on)")
            raise ValueError(f"image feature groups {groups}: not one of the {len(images):,} {split} rows has an "
                             f"image ({line.split(': ', 1)[1]}), so every image column would be NaN for them. {why}, "
                             "or leave the image groups out of -p features")
        parts, pictures = [], (images if tables is None else None)  # tables.images has no paths
        for group in groups:
            frame = _from_tables(group, tables)
            if frame is None:
                if pictures is None:
                    pictures = _pictures_beside(tables, group, data[split][schema.image_column], data_dir, work_dir)
                frame = IMAGE_FEATURE_GROUPS[group](pictures, split, out_dir, workers=workers, progress=progress)
            parts.append(frame)
        frame = pd.concat(parts, axis=1) if parts else pd.DataFrame(index=images.index)
        frames[split] = frame.reset_index(drop=True)
    for column in [c for c in frames["train"].columns if c in IMAGE_CATEGORICAL]:
        values = pd.concat([frames[s][column] for s in SPLITS]).dropna().astype(str)
        categories = sorted(values.unique())
        for split in SPLITS:
            frames[split][column] = pd.Categorical(frames[split][column], categories=categories)
    return frames["train"], frames["test"]


def _from_tables(group: str, tables: ImageTables | None) -> pd.DataFrame | None:
    """A group's frame from 01's image tables (amzkit.images.tables), or None to compute it here."""
    if tables is None:
        return None
    if group == "image_meta":
        return image_meta_features(tables.images)
    colour = {"k": COLOUR_K, "size_px": COLOUR_SIZE_PX, "version": COLOUR_VERSION, "names": colour_feature_names()}
    if group == "colour" and tables.settings.get("colour") == colour:
        return pd.DataFrame(tables.colour, columns=colour["names"], index=tables.images.index)
    return None


def _pictures_beside(tables: ImageTables, group: str, links: pd.Series, data_dir: str | Path,
                     work_dir: str | Path) -> pd.DataFrame:
    """The cached pictures of `links`, for a group 01's tables lack; refused when none of their images is at hand
    (the group would be NaN on every row the tables say has an image)."""
    pictures = cached_images(links, data_dir, Path(work_dir) / IMAGE_CACHE_DIR)
    if (tables.images["status"] == "ok").any() and not (pictures["status"] == "ok").any():
        raise ValueError(f"01_extract's image tables ({tables_dir(work_dir)}) hold no {group!r} features of this "
                         f"amzkit version (theirs: {tables.settings.get(group)}), and the pictures are not at hand to "
                         f"compute them: rerun 01_extract with this amzkit version, or leave {group!r} out of -p "
                         "features")
    return pictures


def report_missing(images: pd.DataFrame, split: str, cache_dir: Path | None = None) -> str:
    """Print (and return) one line: how many rows have an image, and why the others do not."""
    missing = images["status"][images["status"] != "ok"]
    counts = missing.value_counts()
    reasons = ", ".join(f"{status} {count:,}" for status, count in counts.head(4).items())
    if len(counts) > 4:  # the shown reasons always add up to the rows that get NaN
        reasons += f", other {counts.iloc[4:].sum():,}"
    line = (f"image features ({split}): {len(images) - len(missing):,} of {len(images):,} rows have an image"
            + (f"; {len(missing):,} get NaN ({reasons})" if len(missing) else ""))
    if (missing == "not_fetched").any() and cache_dir is not None:
        line += f"; not_fetched: 01_extract with an image model downloads them into {cache_dir}"
    print(line)
    return line
