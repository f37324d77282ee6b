"""Perceptual image hashes: a 64-bit difference hash with a colour grid, and the nearest hash search."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from amzkit.images.decode import open_image

HASH_BITS = 64
COLOUR_GRID = 4  # cells per side of the colour signature that goes with the (grayscale) dHash
COLOUR_TOLERANCE = 24.0  # RGB (0-255) difference per cell a re-saved copy stays within; more is another picture
BLOCK_CELLS = 1 << 24  # distance cells per block (128 MiB of int64)


def image_signature(path: str | None) -> tuple[int, np.ndarray] | None:
    """(64-bit difference hash, mean RGB of each cell of a 4x4 grid) of an image; None if unreadable.

    The dHash is a 9x8 grayscale resize with one bit per left<right pixel pair: it sees shapes, not colours,
    so the grid's colours go with it (a re-saved or resized copy keeps both; a recoloured pack shot does not).
    """
    img, status = open_image(path, draft_px=64)
    if status != "ok" or img is None:
        return None
    rgb = img.convert("RGB")
    pixels = np.asarray(rgb.convert("L").resize((9, 8), Image.Resampling.LANCZOS), dtype=np.int16)
    bits = (pixels[:, 1:] > pixels[:, :-1]).ravel()
    colour = np.asarray(rgb.resize((COLOUR_GRID, COLOUR_GRID), Image.Resampling.BOX), dtype=np.float32).ravel()
    return int(sum(1 << i for i, bit in enumerate(bits.tolist()) if bit)), colour


def dhash(path: str | None) -> int | None:
    """64-bit difference hash of an image (see image_signature); None if unreadable."""
    signature = image_signature(path)
    return None if signature is None else signature[0]


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two hashes."""
    return (int(a) ^ int(b)).bit_count()


def nearest_hash(queries: np.ndarray, reference: np.ndarray, within: int = 0, groups: np.ndarray | None = None,
                  query_colours: np.ndarray | None = None,
                  reference_colours: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(index into reference, Hamming distance, how many references lie within `within` bits) of the closest
    reference hash per query hash (uint64 arrays); with `groups` (one label per reference, e.g. the product
    name) the count is of distinct groups, so copies of one product count once. With colours (grid colour
    rows), a candidate pair whose colours differ by more than COLOUR_TOLERANCE anywhere never matches."""
    index = np.full(len(queries), -1, dtype=np.int64)
    distance = np.full(len(queries), HASH_BITS + 1, dtype=np.int64)
    close = np.zeros(len(queries), dtype=np.int64)
    if len(reference) == 0:
        return index, distance, close
    block = max(1, BLOCK_CELLS // len(reference))
    for start in range(0, len(queries), block):
        diff = np.bitwise_count(queries[start:start + block, None] ^ reference[None, :]).astype(np.int64)
        if query_colours is not None and reference_colours is not None:
            rows, cols = np.nonzero(diff <= within)  # only candidate pairs are compared by colour
            gap = np.abs(query_colours[start + rows] - reference_colours[cols]).max(axis=1)
            diff[rows[gap > COLOUR_TOLERANCE], cols[gap > COLOUR_TOLERANCE]] = HASH_BITS + 1
        index[start:start + block] = diff.argmin(axis=1)
        distance[start:start + block] = diff.min(axis=1)
        near = diff <= within
        close[start:start + block] = near.sum(axis=1)
        if groups is not None:
            for row in np.flatnonzero(close[start:start + block] > 1):
                close[start + row] = len(np.unique(groups[near[row]]))
    return index, distance, close


def signatures(paths: Sequence[str | None] | None, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Object array of dHash ints (None where there is no readable image) and grid colours (NaN there)."""
    hashes = np.full(n_rows, None, dtype=object)
    colours = np.full((n_rows, COLOUR_GRID * COLOUR_GRID * 3), np.nan, dtype=np.float32)
    if paths is None:
        return hashes, colours
    if len(paths) != n_rows:
        raise ValueError(f"image_paths has {len(paths)} paths for {n_rows} rows")
    for row, path in enumerate(paths):
        signature = image_signature(path) if path else None
        if signature is not None:
            hashes[row], colours[row] = signature
    return hashes, colours
