"""Speed of 03_train's image feature groups on 512 px product JPEGs (what 01_extract's cache holds).

Prints images/s of the `colour` group (draft decode + 32 px downsample + statistics + batched k-means) on one
thread and on a thread per core, the CPU milliseconds per image (a number other processes on the machine do
not inflate), the time to read the cached chunks back, the `image_meta` header rate, and the time extrapolated
to 150k images (the 2025 competition's train + test). No asserts.

    .venv/bin/python benchmarks/image_features_speed.py [--images 2000] [--workers 0]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's amzkit, not an installed one

TARGET_IMAGES = 150_000


def timed(fn) -> tuple[object, float, float]:
    """(result, wall seconds, CPU seconds of this process, all threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    from amzkit.images.features import colour_features, colour_of_paths, image_meta_features
    from amzkit.images.fetch import cached_images
    from amzkit.testing import write_product_jpegs

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=0, help="threads for the parallel run; 0 = one per core")
    parser.add_argument("--folder", default=str(Path(tempfile.gettempdir()) / "amzkit_bench_images"),
                        help="where the generated JPEGs are kept (reused between runs)")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    workers = args.workers or cores
    folder = Path(args.folder)
    started = time.perf_counter()
    paths = write_product_jpegs(folder / "jpg", args.images, size=512)
    print(f"{len(paths)} product JPEGs of 512x512 ({sum(Path(p).stat().st_size for p in paths) / len(paths) / 1e3:.0f}"
          f" KB each) ready in {time.perf_counter() - started:.1f}s; {cores} cores, load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")

    rates = {}
    for n_workers in sorted({1, workers}):
        _, wall, cpu = timed(lambda n=n_workers: colour_of_paths(paths, workers=n, progress=False))
        rates[n_workers] = len(paths) / wall
        print(f"colour, {n_workers:>2} thread(s): {rates[n_workers]:7.0f} images/s  ({1e3 * cpu / len(paths):.2f} "
              f"CPU ms/image, {cpu / wall:.2f} cores busy)")

    images = cached_images(pd.Series([Path(p).name for p in paths]), folder / "jpg", folder / "cache")
    _, header_wall, _ = timed(lambda: cached_images(pd.Series([Path(p).name for p in paths]), folder / "jpg",
                                                    folder / "cache"))
    _, meta_wall, _ = timed(lambda: image_meta_features(images))
    print(f"image_meta: {len(paths) / (header_wall + meta_wall):7.0f} images/s (local headers read; URLs take "
          "their sizes from the fetch manifest instead)")

    with tempfile.TemporaryDirectory() as out_dir:
        _, first_wall, _ = timed(lambda: colour_features(images, "train", Path(out_dir), workers=workers,
                                                         progress=False))
        _, cached_wall, _ = timed(lambda: colour_features(images, "train", Path(out_dir), workers=workers,
                                                          progress=False))
    print(f"colour_features with its chunk cache: first run {first_wall:.1f}s, second run (cached) "
          f"{cached_wall:.2f}s for {len(paths)} rows")

    best = max(rates.values())
    print(f"extrapolated to {TARGET_IMAGES:,} images: {TARGET_IMAGES / best / 60:.1f} min at the best measured rate "
          f"({best:.0f}/s); {TARGET_IMAGES / rates[1] / 60:.1f} min on one thread")


if __name__ == "__main__":
    main()
