"""01_extract's shard files: the check of a shard's arrays against its JSON marker, and the merge of one model's
shards (from one kernel or several) into the run folder that later stages read."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from amzkit.core.io import id_hash, read_json, write_csv, write_json, write_npy
from amzkit.core.schema import SPLITS
from amzkit.embed.registry import ModelSpec
from amzkit.embed.runs import SHARDS_DIR, inputs_sha256

NETWORK_DOWN_DIR = "network_down"  # the link statuses of a stop for a dead network, beside a finished run
ARRAY_SUFFIXES = (".npy", ".ok.npy")


def array_sha256(array: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes: what a shard marker records of each array it vouches for."""
    header = f"{array.dtype.str}{array.shape}".encode()
    return hashlib.sha256(header + np.ascontiguousarray(array).tobytes()).hexdigest()


def load_shard_array(path: Path, marker: Path) -> np.ndarray:
    """An array of a shard; an unreadable file (cut short, garbage) is an error naming it and what to do."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{path} is unreadable ({err}): delete it and {marker.name}, then rerun 01_extract "
                         "to compute that shard again") from None


def check_shard_arrays(stem: Path, marker: Path, info: dict) -> tuple[np.ndarray, np.ndarray]:
    """The shard's embeddings and ok-mask, checked against what its marker says they are (rows, width, sha256)."""
    arrays = []
    for suffix, key in zip(ARRAY_SUFFIXES, ("npy_sha256", "ok_sha256"), strict=True):
        path = Path(f"{stem}{suffix}")
        if not path.is_file():
            raise ValueError(f"{path} is missing though {marker} says the shard is finished: delete the marker and "
                             "rerun 01_extract")
        array = load_shard_array(path, marker)
        rows = info["stop"] - info["start"]
        width_ok = suffix != ".npy" or "dim" not in info or (array.ndim == 2 and array.shape[1] == info["dim"])
        if len(array) != rows or not width_ok:
            raise ValueError(f"{path} holds an array of shape {array.shape}, but {marker} describes {rows} rows"
                             f"{' of width ' + str(info['dim']) if 'dim' in info else ''}: it is from another run or "
                             "was edited. Delete both and rerun 01_extract")
        if key in info and array_sha256(array) != info[key]:
            raise ValueError(f"{path} does not hold the array {marker} vouches for (sha256 differs: edited, "
                             "reordered or copied from another run): delete both and rerun 01_extract")
        arrays.append(array)
    return arrays[0], arrays[1]


def merge_shards(sources: list[str | Path], out_dir: str | Path, ids: dict[str, pd.Series],
                 spec: ModelSpec | None = None, expected_fit: str | None = None,
                 inputs: dict[str, list[str]] | None = None) -> dict:
    """Join shard outputs of one model from one or more run folders into `out_dir`.

    Checks that the shards cover every row of every split exactly once and match `ids` (split -> id
    column) and, given `inputs` (split -> each row's model input), were embedded from them (a shard kernel may have
    run on another CSV with the same ids), that they come from one fit of the model (`expected_fit` when given), and
    that each shard's arrays
    are the ones its marker vouches for; a shard found twice must be identical. Nothing is written unless every
    check passes; then the merged arrays, an image run's {split}_fetch.csv (the link statuses of every shard) and
    the manifest. What the folder held of an earlier run goes first: a text run replacing an image run of the
    same name keeps none of its link statuses, and an earlier stop's NETWORK_DOWN_DIR is superseded.
    """
    out_dir = Path(out_dir)
    markers: dict[tuple[str, int], tuple[Path, dict]] = {}
    for source in sources:
        source = Path(source)
        folder = source / SHARDS_DIR if (source / SHARDS_DIR).is_dir() else source
        for marker in sorted(folder.glob("*-*.json")):
            info = read_json(marker)
            key = (info["split"], info["shard_no"])
            if key in markers and any(markers[key][1].get(k) != info.get(k)
                                      for k in ("ids_sha256", "fit_sha256", "npy_sha256")):
                raise ValueError(f"shard {key} appears twice with different contents: {markers[key][0]} and {marker}"
                                 ": merge the folders of one run of 01_extract only")
            markers.setdefault(key, (marker, info))
    if not markers:
        raise FileNotFoundError(
            f"no shards found in {[str(s) for s in sources]}: no kernel merged here embedded with this model. Run 01 "
            "with it in each shard kernel (-p shard_index i -p num_shards n, and this merge's -p model / -p "
            "text_model) and merge their work folders, or leave the model out of this merge (-p model \"\" or -p "
            "text_model \"\")")
    models = {info["model"] for _, info in markers.values()}
    if len(models) != 1:
        raise ValueError(f"shards from different models cannot be merged: {sorted(models)}")
    fits = {info.get("fit_sha256") for _, info in markers.values()}
    if len(fits) != 1 or (expected_fit is not None and fits != {expected_fit}):
        raise ValueError(f"the shards in {[str(s) for s in sources]} come from {len(fits)} different fits of the "
                         "model (made from other train rows, or by another version of it): rerun 01_extract in every "
                         "kernel with the same train.csv and test.csv")
    stale = sorted(str(path) for (split, _), (path, info) in markers.items() if info["start"] >= len(ids[split]))
    if stale:
        raise ValueError(f"shards past the end of this CSV (left by a longer one): {stale[:5]}: delete them, or "
                         "rerun 01_extract in their folders (it removes them)")
    manifest: dict = {"model": models.pop(), "fit_sha256": fits.pop(), "splits": {}}
    modalities = {info.get("modality") for _, info in markers.values()}  # None: a marker of an older kernel
    modality = spec.modality if spec is not None else modalities.pop() if len(modalities) == 1 else None
    total_seconds = 0.0
    merged = {}
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
            if inputs is not None and info.get("inputs_sha256") and (
                    inputs_sha256(inputs[split][info["start"]:info["stop"]]) != info["inputs_sha256"]):
                what = "image links" if modality == "image" else "text"
                raise ValueError(f"{split} shard #{no} ({path}) was embedded from other {what} than this {split}.csv "
                                 f"holds under the same ids (some of rows {info['start']}-{info['stop'] - 1}): its "
                                 "kernel ran on another CSV; rerun the shard kernels on this CSV, then merge again "
                                 "(or point data_dir at the CSV they embedded)")
            stem = path.with_suffix("")
            embeddings, ok = check_shard_arrays(stem, path, info)
            if blocks and (embeddings.shape[1:] != blocks[0].shape[1:] or embeddings.dtype != blocks[0].dtype):
                raise ValueError(f"{stem}.npy has shape {embeddings.shape} {embeddings.dtype}, the shards before it "
                                 f"{blocks[0].shape[1:]} {blocks[0].dtype}: it is from another model or run. Delete "
                                 f"it and {path.name}, then rerun 01_extract")
            blocks.append(embeddings)
            oks.append(ok)
            if modality != "text" and Path(f"{stem}.fetch.csv").is_file():  # a text shard's is an image run's
                statuses.append(pd.read_csv(f"{stem}.fetch.csv", keep_default_na=False))
            covered = info["stop"]
            total_seconds += info.get("seconds", 0.0)
        if covered != len(split_ids):
            raise ValueError(f"{split}: shards cover rows 0..{covered} of {len(split_ids)}; the rest are missing")
        shard_inputs = [[info["start"], info["stop"], info.get("inputs_sha256")] for _, _, info in found]
        statuses = statuses if len(statuses) == len(found) else []  # a table must hold every row, in order
        merged[split] = (np.concatenate(blocks), np.concatenate(oks), statuses, len(found), id_hash(split_ids),
                         shard_inputs if all(digest for _, _, digest in shard_inputs) else None)
    if merged["train"][0].shape[1:] != merged["test"][0].shape[1:]:
        raise ValueError(f"the train shards have width {merged['train'][0].shape[1:]}, the test shards "
                         f"{merged['test'][0].shape[1:]}: they are from different models or runs; rerun 01_extract")
    # arrays and manifest change together: the manifest (what readers check) and metrics.json (what lists the run
    # as finished, written last) are gone before any array is replaced, so a kill in between never leaves an old
    # manifest vouching for new arrays, nor a run listed that cannot be read; nor link statuses of the run replaced
    (out_dir / "metrics.json").unlink(missing_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)
    for split in SPLITS:
        (out_dir / f"{split}_fetch.csv").unlink(missing_ok=True)
    shutil.rmtree(out_dir / NETWORK_DOWN_DIR, ignore_errors=True)
    for split, (embeddings, ok, statuses, n_shards, ids_sha256, shard_inputs) in merged.items():
        write_npy(out_dir / f"{split}.npy", embeddings)
        write_npy(out_dir / f"{split}_ok.npy", ok)
        if statuses:
            write_csv(pd.concat(statuses, ignore_index=True), out_dir / f"{split}_fetch.csv")
        manifest["dim"] = int(embeddings.shape[1])
        manifest["dtype"] = str(embeddings.dtype)
        manifest["splits"][split] = {"rows": len(ok), "ok": int(ok.sum()), "id_sha256": ids_sha256,
                                     "shards": n_shards,
                                     **({"inputs": shard_inputs} if shard_inputs else {})}  # what load checks
    if spec is not None:
        manifest.update(modality=spec.modality, architecture=spec.architecture, source=spec.source)
    elif modality is not None:
        manifest["modality"] = modality  # merged without the spec: what its shards say (a local-dir model)
    rows = sum(s["rows"] for s in manifest["splits"].values())
    manifest.update(seconds=round(total_seconds, 3), rows_per_second=round(rows / max(total_seconds, 1e-9), 1))
    write_json(out_dir / "manifest.json", manifest)
    write_json(out_dir / "metrics.json", {k: manifest[k] for k in ("model", "dim", "splits", "rows_per_second")})
    return manifest
