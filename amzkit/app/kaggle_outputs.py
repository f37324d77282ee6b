"""Outputs Kaggle can carry: a kernel's output is /kaggle/working, listed file by file (`kaggle kernels output`
lists at most 500 files) and mounted file by file in later kernels.

- 01's image cache (~150k JPEGs) is packed into a few tar shards at the end of the kernel; later stages read
  01's image tables (amzkit.images.tables), never the pictures. `unpack_image_cache` restores the loose files.
- Each kernel lists what it wrote (path and size) in OUTPUT_LISTING, and `kaggle fetch` checks that all of it
  arrived.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

from amzkit.core.io import atomic_path, read_json, remove_stale_temporaries, write_json
from amzkit.images.features import IMAGE_CACHE_DIR
from amzkit.images.records import MANIFEST_NAME

OUTPUT_LISTING = "kaggle_outputs.json"
IMAGE_SHARD_BYTES = 1 << 30  # ~1 GiB per tar shard: 150k pictures (5-9 GB) become 5-9 files
IMAGE_SHARD_PATTERN = "images-{:05d}.tar"


def _loose_images(cache_dir: Path) -> list[Path]:
    return sorted(p for p in cache_dir.iterdir() if p.is_file() and not p.is_symlink()
                  and p.name != MANIFEST_NAME and not p.name.startswith(".") and not p.name.endswith(".tar"))


def pack_image_cache(work_dir: str | Path, shard_bytes: int = IMAGE_SHARD_BYTES) -> list[Path]:
    """Move the loose files of `work_dir/image_cache` (all but the fetch manifest) into tar shards of about
    `shard_bytes`; each shard is written whole (atomically) before its files are removed. Returns new shards."""
    cache_dir = Path(work_dir) / IMAGE_CACHE_DIR
    if not cache_dir.is_dir() or cache_dir.is_symlink():
        return []
    loose = _loose_images(cache_dir)
    existing = sorted(cache_dir.glob(IMAGE_SHARD_PATTERN.replace("{:05d}", "*")))
    # after the highest, not the count: with a gap (images-00001.tar deleted by hand) the count names a shard
    # that exists, and writing it would drop its pictures
    next_no = 1 + max((int(p.name[len('images-'):-len('.tar')]) for p in existing
                       if p.name[len('images-'):-len('.tar')].isdigit()), default=-1)
    groups: list[list[Path]] = []
    size = 0
    for path in loose:
        if not groups or size + path.stat().st_size > shard_bytes:
            groups.append([])
            size = 0
        groups[-1].append(path)
        size += path.stat().st_size
    shards = []
    for group in groups:
        shard = cache_dir / IMAGE_SHARD_PATTERN.format(next_no)
        next_no += 1
        with atomic_path(shard) as tmp, tarfile.open(tmp, "w") as archive:
            for path in group:
                archive.add(path, arcname=path.name)
        for path in group:
            path.unlink()
        shards.append(shard)
    return shards


def unpack_image_cache(work_dir: str | Path) -> int:
    """Extract the tar shards of `work_dir/image_cache` back into loose files (the shards stay); returns files."""
    cache_dir = Path(work_dir) / IMAGE_CACHE_DIR
    return sum(_unpack_shard(shard, cache_dir)
               for shard in sorted(cache_dir.glob(IMAGE_SHARD_PATTERN.replace("{:05d}", "*"))))


def _unpack_shard(shard: Path, cache_dir: Path) -> int:
    """Extract one tar shard's plain files (no paths) into `cache_dir`; returns how many."""
    with tarfile.open(shard) as archive:
        members = [m for m in archive.getmembers() if m.isfile() and "/" not in m.name and m.name != ".."]
        archive.extractall(cache_dir, members=members, filter="data")
    return len(members)


def restore_image_cache(work_dir: str | Path) -> int:
    """Before 01 runs again in a folder whose cache an earlier run packed: the shards back into loose files (then
    the shards go; `finish` packs again), so 01 neither fetches them again nor builds its tables from an empty
    cache. Returns the files restored."""
    cache_dir = Path(work_dir) / IMAGE_CACHE_DIR
    if not cache_dir.is_dir() or cache_dir.is_symlink():
        return 0
    count = 0
    for shard in sorted(cache_dir.glob(IMAGE_SHARD_PATTERN.replace("{:05d}", "*"))):
        count += _unpack_shard(shard, cache_dir)
        shard.unlink()  # one shard at a time: the disk holds the cache once, plus one shard
    return count


def write_output_listing(work_dir: str | Path) -> Path:
    """List every regular file under `work_dir` (relative path -> bytes) in OUTPUT_LISTING there, after removing
    the temporary files a killed writer left however fresh (no writer runs at a kernel's end): never shipped."""
    root = Path(work_dir)
    remove_stale_temporaries(root, older_than_s=0.0, recursive=True)
    files = {}
    for dirpath, dirnames, filenames in os.walk(root):  # symlinks (earlier kernels' outputs) are not followed
        for name in filenames:
            path = Path(dirpath) / name
            if not path.is_symlink() and name != OUTPUT_LISTING:
                files[path.relative_to(root).as_posix()] = path.stat().st_size
        dirnames[:] = [d for d in dirnames if not (Path(dirpath) / d).is_symlink()]
    return write_json(root / OUTPUT_LISTING, {"files": dict(sorted(files.items()))})


def check_listed(folder: str | Path) -> bool:
    """Whether a kernel's listing of its outputs (OUTPUT_LISTING) arrived anywhere under `folder`."""
    return any(Path(folder).rglob(OUTPUT_LISTING))


def check_fetched(folder: str | Path) -> list[str]:
    """Files a kernel listed (OUTPUT_LISTING anywhere under `folder`) that are absent or of another size there."""
    missing = []
    for listing in sorted(Path(folder).rglob(OUTPUT_LISTING)):
        for rel, size in read_json(listing)["files"].items():
            path = listing.parent / rel
            if not path.is_file() or path.stat().st_size != size:
                missing.append(str(path))
    return missing
