"""Reading 01_extract's embedding runs: the arrays, checked against the CSV they must describe row for row."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from amzkit.core.io import id_hash, read_json
from amzkit.core.workdir import check_name, stage_dir
from amzkit.embed.registry import MODELS


def load_embeddings(work_dir: str | Path, name: str, split: str, ids,
                    has_images: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings (float32) and ok-mask of run `name` for `split`, refused unless they match `ids` row for row.
    `has_images`: whether the schema has an image column (without one, an image model's run cannot exist)."""
    run_dir = stage_dir(work_dir, "01_extract") / check_name(name, "embedding run")
    missing = not (run_dir / "manifest.json").is_file()
    if missing and not has_images and name in MODELS and MODELS[name].modality == "image":
        raise FileNotFoundError(
            f"embedding run {name!r} would be an image model's, and this schema has no image column: leave "
            f"{name!r} (and '{name}:...') out of -p embeddings (03's default names it) and use text runs of "
            "01_extract (-p text_model), e.g. -p embeddings '[\"minilm:pca:32\", \"minilm:knn:20\"]', or '[]'"
        )
    if missing:
        raise FileNotFoundError(
            f"no embedding run {name!r} in {run_dir.parent}: run 01_extract with {_making(name)} first, or leave "
            f"{name!r} (and '{name}:...') out of -p embeddings (a text-only setup: 03's default embeddings name "
            "image runs)"
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


def _making(name: str) -> str:
    """The 01_extract parameter that makes run `name`: -p model for an image model, -p text_model for a text one."""
    spec = MODELS.get(name)
    return f"-p text_model {name}" if spec is not None and spec.modality == "text" else f"-p model {name}"
