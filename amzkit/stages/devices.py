"""01_extract on several devices (Kaggle's two T4s): one worker process per device over disjoint shards, then
one merge, so the run equals a one-device run shard for shard.

`resolve_devices` turns the `device` parameter into the devices to use: 'auto' is every CUDA device when there
are several, a comma-separated list ('cuda:0,cuda:1', or 'cpu,cpu' to test the split on a CPU) is taken as it
is. Images are fetched once, by the parent, before the workers start (one writer of the cache's manifest);
worker k embeds the shards numbered k mod n (extract's shard_index/num_shards), and the parent's extract then
finds every shard done and only merges.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from amzkit.core.gpu import usable_gpus
from amzkit.core.schema import SPLITS, get_schema
from amzkit.core.threads import allowed_cores
from amzkit.core.workdir import stage_dir
from amzkit.embed.registry import get_model_spec
from amzkit.images.features import IMAGE_CACHE_DIR
from amzkit.images.fetch import fetch_images
from amzkit.images.http import HostStops, NetworkWatch
from amzkit.stages.extract import PARAMETERS, SHARD_ROWS, D, check_image_column, extract, kernel_rows
from amzkit.stages.extract_reports import network_down_error

# Loaders that ignore `device` (numpy / scikit-learn featurizers): 'auto' keeps them in one process.
DEVICE_FREE_LOADERS: tuple[str, ...] = ("color_stats", "tfidf_svd")




def resolve_devices(device: str, loader: str = "", gpus: Callable[[], list[int]] = usable_gpus) -> list[str]:
    """The devices to embed on: a comma-separated list as given; 'auto' -> every CUDA device torch can run on
    (`gpus`: their indices) when there are several (and the model's loader uses a device); anything else -> that
    one device."""
    parts = [part.strip() for part in str(device).split(",") if part.strip()]
    if len(parts) > 1:
        return parts
    if device == "auto" and loader not in DEVICE_FREE_LOADERS:
        usable = gpus()  # the GPUs torch has kernels for, by index
        if len(usable) > 1:
            return [f"cuda:{index}" for index in usable]
    return parts or ["auto"]


def _worker_error(device: str, err: BaseException) -> str:
    """A device worker's failure in one line per part: the error and its notes (what to do, when it says)."""
    return "\n".join([f"{device}: {type(err).__name__}: {err}", *getattr(err, "__notes__", ())])


def extract_on_devices(data: dict[str, pd.DataFrame], data_dir: str | Path, work_dir: str | Path, schema: str,
                       model: str, batch_size: int = D.batch_size, device: str = D.device,
                       num_workers: int = D.num_workers, shard_rows: int = SHARD_ROWS,
                       images_offline_ok: bool = D.images_offline_ok, shard_index: int = D.shard_index,
                       num_shards: int = D.num_shards, gpus: Callable[[], list[int]] = usable_gpus) -> dict:
    """`extract` of this kernel's shards (all of them, or `shard_index` of `num_shards` kernels'), split over the
    devices `device` names (one worker process each), then merged (one kernel) or left for merge_dirs.

    One device: exactly `extract`. Several: the parent fetches the kernel's images, each worker embeds its share of
    the kernel's shards on its device (worker k of d: shard_index + num_shards * k of num_shards * d, so the shards
    are a one-device kernel's), and the result is the one a single device writes. Returns extract's.
    """
    kernel = PARAMETERS.validate(shard_index=shard_index, num_shards=num_shards)  # before any worker starts
    spec = get_model_spec(model)
    devices = resolve_devices(device, spec.loader, gpus)
    if len(devices) == 1:
        return extract(data, data_dir, work_dir, schema, model, batch_size=batch_size, device=devices[0],
                       num_workers=num_workers, shard_rows=shard_rows, images_offline_ok=images_offline_ok, **kernel)
    schema_ = get_schema(schema)
    check_image_column(spec, schema_)  # here, not in each worker: their failures would read as a run to resume
    host_stops = HostStops()  # the hosts the parent's fetch stopped: each worker's shards send them a probe first
    tried: set[str] = set()  # a link in both splits is requested once
    if spec.modality == "image":
        watch = None if images_offline_ok else NetworkWatch()  # a dead network stops the run early, as in extract
        for split in SPLITS:  # once, here: the workers then find every picture in the cache
            rows = kernel_rows(len(data[split]), **kernel, shard_rows=shard_rows)  # this kernel's
            fetch_images(data[split][schema_.image_column][rows], base_dir=data_dir,
                         cache_dir=Path(work_dir) / IMAGE_CACHE_DIR, watch=watch, host_stops=host_stops,
                         tried=tried)
            if watch is not None and watch.verdict == NetworkWatch.DOWN:
                raise network_down_error(data, data_dir, work_dir, schema_,
                                         stage_dir(work_dir, "01_extract") / spec.name, watch)
    per_worker = num_workers if num_workers >= 0 else max(1, allowed_cores() // len(devices))
    print(f"{spec.name}: {len(devices)} workers on {', '.join(devices)}, shards split between them")
    errors, written = [], 0
    with ProcessPoolExecutor(len(devices), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [(name, pool.submit(extract, data, data_dir, work_dir, schema, model, batch_size=batch_size,
                                      device=name, num_workers=per_worker, shard_rows=shard_rows,
                                      shard_index=kernel["shard_index"] + kernel["num_shards"] * index,
                                      num_shards=kernel["num_shards"] * len(devices),
                                      images_offline_ok=images_offline_ok,
                                      parent_fetched=spec.modality == "image",  # fetched above, once
                                      host_stops=host_stops))
                   for index, name in enumerate(devices)]
        for name, future in futures:
            try:
                written += future.result().get("shards_written", 0)
            except Exception as err:  # every worker's failure is reported, not only the first
                errors.append(_worker_error(name, err))
    if errors:
        raise RuntimeError(f"01_extract {spec.name}: {len(errors)} of {len(devices)} device workers failed; the "
                           "shards that finished are kept and a rerun computes only the rest.\n" + "\n".join(errors))
    result = extract(data, data_dir, work_dir, schema, model, batch_size=batch_size, device=devices[0],
                     num_workers=num_workers, shard_rows=shard_rows, images_offline_ok=images_offline_ok,
                     refetch=False, **kernel)  # the workers have just fetched their shards' failed links again
    return result if "shards_written" not in result else {**result, "shards_written": written}  # a kernel's
