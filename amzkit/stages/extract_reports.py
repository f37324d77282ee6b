"""01_extract's reports on its runs: the stop when the network is down or no row got an image, the warning when
links failed for a passing reason, and the tables of runs and fetch statuses the notebook shows."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from amzkit.core.io import read_json, write_csv
from amzkit.core.schema import SPLITS
from amzkit.core.workdir import list_runs, stage_dir
from amzkit.images.fetch import fetch_images
from amzkit.images.http import NetworkWatch
from amzkit.images.records import is_passing
from amzkit.stages.extract_shards import NETWORK_DOWN_DIR, SHARDS_DIR

PASSING_FAILURES_WARN_SHARE = 0.01  # warn when this share of a split's links or more failed for a passing reason
PASSING_FAILURES_WARN_ROWS = 5  # ... and at least this many


def network_down_error(data, data_dir, work_dir, schema_, run_dir: Path, watch: NetworkWatch) -> RuntimeError:
    """The error 01 stops with when the network is down, after writing every link's status to {split}_fetch.csv
    (the links not tried: not_fetched; nothing is fetched now): in the run folder, or, when it holds a finished
    run (made from other rows or links, as a rule: this CSV's were tried before), in its NETWORK_DOWN_DIR, so that
    run's arrays and fetch tables stay a matching pair."""
    finished = any((run_dir / name).is_file() for name in ("manifest.json", *(f"{split}.npy" for split in SPLITS)))
    out = run_dir / NETWORK_DOWN_DIR if finished else run_dir
    for split in SPLITS:
        table = fetch_images(data[split][schema_.image_column], base_dir=data_dir,
                             cache_dir=Path(work_dir) / "image_cache", watch=watch, progress=False)
        write_csv(table.assign(embedded=False).reset_index(drop=True), out / f"{split}_fetch.csv")
    kept = (f" ({run_dir} keeps the run it finished before as it was, its arrays beside the fetch tables that "
            "describe them, until a run with the network replaces it)") if finished else ""
    return RuntimeError(
        f"no image could be fetched: is Internet on for this kernel? {watch.summary()}. Every link's status is in "
        f"{out / 'train_fetch.csv'} and test_fetch.csv{kept}. Turn Internet on (Kaggle: the notebook's Settings > "
        "Internet) and rerun 01; or run text-only with -p model \"\"; or carry on without images with "
        "-p images_offline_ok True (every link is then tried, with retries)")


def drop_network_stop(run_dir: Path) -> None:
    """Remove what `network_down_error` wrote, once a later run in the folder got through (a shard kernel that
    wrote its shards; a merge replaces the tables itself): its NETWORK_DOWN_DIR, and the fetch tables it wrote in
    a folder that holds no finished run."""
    shutil.rmtree(run_dir / NETWORK_DOWN_DIR, ignore_errors=True)
    if not (run_dir / "manifest.json").is_file():
        for split in SPLITS:
            (run_dir / f"{split}_fetch.csv").unlink(missing_ok=True)


def report_image_run(manifest: dict, run_dir: Path, images_offline_ok: bool, kernels: bool = False) -> None:
    """After an image run merged (which dropped an earlier stop's NETWORK_DOWN_DIR), unless `images_offline_ok`:
    stop when no row got an image and warn about links that failed for a passing reason. `kernels`: merged from
    shard kernels (-p merge_dirs), which fetched the links: the advice is to rerun them, then the merge."""
    if not images_offline_ok:
        check_some_image(manifest, run_dir, kernels)
        warn_passing_failures(manifest, run_dir, kernels=kernels)


def check_some_image(manifest: dict, run_dir: Path, kernels: bool = False) -> None:
    """Stop an image run in which no row got an image, saying why (the commonest statuses) and what to do: when
    every link failed for a passing reason, rerun 01 later (it fetches them again), else fix the links (`kernels`:
    the shard kernels a merge joined fetched them: rerun those, then the merge)."""
    if any(split["ok"] for split in manifest["splits"].values()):
        return
    fetch = run_dir / "train_fetch.csv"
    statuses = pd.read_csv(fetch, keep_default_na=False)["status"].value_counts() if fetch.is_file() else None
    seen = ", ".join(f"{status} {count}" for status, count in statuses.head(4).items()) if statuses is not None else ""
    rows = sum(split["rows"] for split in manifest["splits"].values())
    if _all_passing(run_dir):
        todo = ("Every link failed for a passing reason (timeouts, connection errors, 429 / 5xx, or not tried): the "
                "image host or the network was down or rate-limiting. "
                + ("Rerun the shard kernels later, then this merge: they fetch these links again and embed the rows "
                   "that get an image (delete nothing)" if kernels else "Rerun 01 later: it fetches these links "
                   "again and embeds the rows that get an image (delete nothing)"))
    elif kernels:
        todo = "Fix the links or the network, then rerun the shard kernels and this merge"
    else:
        todo = f"Fix the links or the network, delete {run_dir} and rerun 01"
    raise RuntimeError(
        f"image run {manifest['model']!r}: not one of the {rows} rows has an image (train statuses: {seen or 'none'}; "
        f"the status and error of each link are in {fetch}). {todo}; or run text-only with -p model \"\"; or keep "
        "this run without images with -p images_offline_ok True (02 then skips it and 03 cannot use it)")


def _all_passing(run_dir: Path) -> bool:
    """Whether every link of the run's fetch tables (both splits, at least one link) failed for a passing reason."""
    tables = [run_dir / f"{split}_fetch.csv" for split in SPLITS]
    if not all(path.is_file() for path in tables):
        return False
    status = pd.concat([pd.read_csv(path, usecols=["status"], dtype=str, keep_default_na=False)["status"]
                        for path in tables])
    return len(status) > 0 and bool(status.map(is_passing).all())


def warn_passing_failures(manifest: dict, run_dir: Path, min_share: float = PASSING_FAILURES_WARN_SHARE,
                          kernels: bool = False) -> str:
    """Warn (and return the line) when links of a finished image run failed for a passing reason (connection
    errors, timeouts, 429, 5xx, or not tried: not_fetched, a host the fetch stopped sending to) in more than
    `min_share` of a split's rows: the network or the host dropped during the run, and a rerun fetches just those
    links again (`kernels`: a merge of shard kernels; rerunning them does)."""
    counts, parts = pd.Series(dtype=int), []
    for split in SPLITS:
        fetch = run_dir / f"{split}_fetch.csv"
        if not fetch.is_file():
            continue
        status = pd.read_csv(fetch, keep_default_na=False)["status"]
        passing = status[status.map(is_passing)]
        if len(passing) >= max(PASSING_FAILURES_WARN_ROWS, min_share * len(status)):
            parts.append(f"{len(passing):,} of {len(status):,} {split} links")
            counts = counts.add(passing.value_counts(), fill_value=0)
    if not parts:
        return ""
    reasons = ", ".join(f"{status} {int(count):,}" for status, count in counts.sort_values(ascending=False).items())
    line = (f"WARNING: image run {manifest['model']!r}: {' and '.join(parts)} failed for a passing reason ({reasons}):"
            f" the network or the image host dropped during the run, and 03 would use these rows without an image. "
            + ("Rerun the shard kernels when it is back, then this merge. " if kernels else
               "Rerun 01 when it is back: it fetches only these links again and keeps every finished row. ")
            + f"Each link's status: {run_dir / 'train_fetch.csv'} and test_fetch.csv")
    print(line)
    return line


def runs_table(work_dir: str | Path, ran_now: Sequence[str] = ()) -> pd.DataFrame:
    """One row per finished 01_extract run in the work folder (its manifest.json), not only those of this call:
    width, modality, rows embedded of each split, speed, and whether this call ran it."""
    rows = {}
    for name in list_runs(work_dir, "01_extract", marker="manifest.json"):
        manifest = read_json(stage_dir(work_dir, "01_extract") / name / "manifest.json")
        splits = manifest.get("splits", {})
        if "dim" not in manifest or set(splits) != set(SPLITS):  # image_tables/ keeps a manifest of its own
            continue
        rows[name] = {"dim": manifest["dim"], "modality": manifest.get("modality", ""),
                      "train ok": splits["train"]["ok"], "train rows": splits["train"]["rows"],
                      "test ok": splits["test"]["ok"], "test rows": splits["test"]["rows"],
                      "rows/s": manifest.get("rows_per_second"), "this call": name in ran_now}
    return pd.DataFrame.from_dict(rows, orient="index")


def status_table(work_dir: str | Path, name: str, kernel: tuple[int, int] | None = None) -> pd.DataFrame:
    """Counts of fetch statuses per split for an image run (empty for text runs); `kernel` (shard_index,
    num_shards): those of the shards that kernel embeds, before any merge."""
    run_dir = stage_dir(work_dir, "01_extract") / name
    frames = []
    for split in SPLITS:
        if kernel is None:
            paths = [run_dir / f"{split}_fetch.csv"]
        else:
            paths = [path for path in sorted((run_dir / SHARDS_DIR).glob(f"{split}-*.fetch.csv"))
                     if int(path.name.split(".")[0].split("-")[1]) % kernel[1] == kernel[0]]
        tables = [pd.read_csv(path, keep_default_na=False)["status"] for path in paths if path.is_file()]
        if tables:
            frames.append(pd.concat(tables).value_counts().rename(split))
    return pd.concat(frames, axis=1).fillna(0).astype(int) if frames else pd.DataFrame()
