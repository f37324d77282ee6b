"""Reading 01_extract's embedding runs: the arrays, checked against the CSV they must describe row for row."""

from __future__ import annotations

import difflib
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from amzkit.core.io import id_hash, read_json
from amzkit.core.schema import Schema, row_text
from amzkit.core.workdir import check_name, is_plain_name, list_runs, stage_dir
from amzkit.embed.registry import LOCAL_DIR, LOCAL_DIR_TEXT, MODELS, get_model_spec, run_name

SHARDS_DIR = "shards"  # a run's finished shards, joined into the run once every one is there


def unfinished_runs(work_dir: str | Path) -> list[str]:
    """01 runs begun in `work_dir` and not finished: shards, no manifest (01 stopped, or a kernel's share of them)."""
    folder = stage_dir(work_dir, "01_extract")
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir()
                  if (p / SHARDS_DIR).is_dir() and not (p / "manifest.json").is_file())


def model_argument_runs(given: str) -> list[str]:
    """The runs 01 names after `given` when it is how 01's -p model / text_model names a model (local-dir:<folder>,
    local-dir-text:<folder>, a hub id such as hf-hub:Marqo/marqo-fashionSigLIP) rather than a run; [] otherwise."""
    for prefix in (LOCAL_DIR_TEXT, LOCAL_DIR):
        if given.startswith(prefix):
            try:
                return [get_model_spec(given).name]
            except (OSError, ValueError):  # a folder not on this machine (a Kaggle input): named by the same rule
                tower = "-text" if prefix == LOCAL_DIR_TEXT else ""
                return [run_name(Path(given[len(prefix):]).expanduser()) + tower]
    hub = given.removeprefix("hf-hub:").lower()
    return [s.name for s in MODELS.values() if not is_plain_name(given) and s.source
            and s.source.removeprefix("hf-hub:").lower() == hub]


def model_argument_message(given: str, what: str, suffix: str = "") -> str | None:
    """What to write instead of `given` (a model as 01 takes it, see model_argument_runs) where 02-05 want its run
    (`suffix`: the ':pca:N'-style rest of an embedding spec); None when `given` is no such model."""
    runs = model_argument_runs(given)
    if not runs:
        return None
    return (f"{what} {given + suffix!r} names a model as 01_extract's -p model / text_model takes it; its run is named "
            + " or ".join(repr(run) for run in runs) + " (01_extract/<run>), the name 02-05 read: write "
            + " or ".join(repr(run + suffix) for run in runs))


def model_inputs(frame: pd.DataFrame, schema: Schema, modality: str) -> list[str]:
    """What a model of `modality` reads for each row: its image link or its text."""
    if modality == "image":
        return frame[schema.image_column].fillna("").astype(str).tolist()
    return row_text(frame, schema).tolist()


def inputs_sha256(inputs: list[str]) -> str:
    """sha256 of rows' model inputs (a shard's, in 01's markers and manifest)."""
    return hashlib.sha256("\x00".join(inputs).encode("utf-8", "surrogatepass")).hexdigest()


def check_inputs(name: str, split: str, manifest: dict, frame: pd.DataFrame, schema: Schema) -> None:
    """Refuse a run whose rows were embedded from other inputs than `frame`'s (text edited, links changed under
    the same ids); runs whose manifest predates the record are not checked."""
    shards = manifest["splits"][split].get("inputs")
    if not shards or manifest.get("modality") not in ("image", "text"):
        return
    inputs = model_inputs(frame, schema, manifest["modality"])
    for start, stop, digest in shards:
        if inputs_sha256(inputs[start:stop]) != digest:
            what = "image links" if manifest["modality"] == "image" else "text"
            raise ValueError(f"embedding run {name!r} ({split}) was computed from other {what} than this {split} CSV "
                             f"holds (some of rows {start}-{stop - 1}, the shard holding them, differ; the ids are the "
                             "same): rerun 01_extract on this CSV (it embeds the changed shards again)")


def load_embeddings(work_dir: str | Path, name: str, split: str, ids, has_images: bool = True,
                    frame: pd.DataFrame | None = None, schema: Schema | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings (float32) and ok-mask of run `name` for `split`, refused unless they match `ids` row for row
    and, given the split's `frame` and `schema`, were embedded from its text or links.
    `has_images`: whether the schema has an image column (without one, an image model's run cannot exist)."""
    if (hint := model_argument_message(name, "embedding run")) is not None:
        raise ValueError(hint)
    run_dir = stage_dir(work_dir, "01_extract") / check_name(name, "embedding run")
    missing = not (run_dir / "manifest.json").is_file()
    if missing and not has_images and name in MODELS and MODELS[name].modality == "image":
        raise FileNotFoundError(
            f"embedding run {name!r} would be an image model's, and this schema has no image column: leave "
            f"{name!r} (and '{name}:...') out of -p embeddings (03's default names it) and use text runs of "
            "01_extract (-p text_model), e.g. -p embeddings '[\"minilm:pca:32\", \"minilm:knn:20\"]', or '[]'"
        )
    if missing and name in unfinished_runs(work_dir):
        raise FileNotFoundError(
            f"embedding run {name!r} is unfinished: {run_dir} holds shards but no manifest.json (01_extract stopped "
            "before it finished, or embedded a share of the rows with -p num_shards, which a merge joins): rerun "
            "01_extract with the model that made it, which resumes from those shards, or leave "
            f"{name!r} out of -p embeddings (03) or -p runs / baseline_runs (02)")
    if missing:
        made = list_runs(work_dir, "01_extract")  # runs mark themselves with metrics.json (image_tables does not)
        close = difflib.get_close_matches(name, made, n=1)
        raise FileNotFoundError(
            f"no embedding run {name!r} in {run_dir.parent}" + (f" (did you mean {close[0]!r}?)" if close else "")
            + f"; its runs: {made or 'none'}. Run 01_extract with {_making(name)} first, or leave "
            f"{name!r} (and '{name}:...') out of -p embeddings (03; a text-only setup: 03's default embeddings name "
            "image runs) or -p runs / baseline_runs (02)"
        )
    manifest = read_json(run_dir / "manifest.json")
    expected = manifest["splits"][split]["id_sha256"]
    if id_hash(ids) != expected:
        raise ValueError(
            f"embedding run {name!r} ({split}) was computed for other rows or another row order than this "
            f"{split} CSV (id sha256 mismatch): rerun 01_extract on this CSV, do not reorder it"
        )
    if frame is not None and schema is not None:
        check_inputs(name, split, manifest, frame, schema)
    embeddings = np.load(run_dir / f"{split}.npy").astype(np.float32)
    ok = np.load(run_dir / f"{split}_ok.npy")
    if len(embeddings) != len(ids) or len(ok) != len(ids):
        raise ValueError(f"embedding run {name!r} ({split}) has {len(embeddings)} rows, the CSV {len(ids)}")
    modality = manifest.get("modality") or (MODELS[manifest["model"]].modality  # a merge made without its spec
                                            if manifest.get("model") in MODELS else None)
    if frame is not None and schema is not None and modality == "text":
        empty = (row_text(frame, schema).str.strip() == "").to_numpy()
        if (empty & ok).any():  # a run an older amzkit made (or merged) holds the vector of "" there: no text
            ok = ok & ~empty
            embeddings[empty] = np.nan
    return embeddings, ok


def _making(name: str) -> str:
    """The 01_extract parameter that makes run `name`: -p model for an image model, -p text_model for a text one."""
    spec = MODELS.get(name)
    if spec is None:  # no registry name: a local model's run, named after its folder
        return (f"-p model local-dir:<folder> (-p text_model for a text model) for the model folder named {name!r} "
                "(a local model's run is named after its folder)")
    return f"-p text_model {name}" if spec.modality == "text" else f"-p model {name}"
